"""Exceptions of the nanocdn client.

Every exception carries ``attempts``: one :class:`Attempt` per node that was
asked, saying what that node answered (or why it could not be asked), and its
message lists them, so a log line alone tells which node did what.
"""


class Attempt:
    """What one node did with one request."""

    def __init__(self, node, outcome, status=None, code=None, retry_after=None):
        #: the node's base URL
        self.node = node
        #: a human sentence: "could not connect (connection refused)", "503 store_unavailable: ..."
        self.outcome = outcome
        #: the HTTP status, if the node answered
        self.status = status
        #: the ``error`` code of the node's JSON answer, if any
        self.code = code
        #: the node's Retry-After, in seconds, if it sent one
        self.retry_after = retry_after

    def __str__(self):
        return "%s %s" % (self.node, self.outcome)

    def __repr__(self):
        return "Attempt(%r, %r)" % (self.node, self.outcome)


class NanoCdnError(Exception):
    """Base class of every error of this package."""

    def __init__(self, message, attempts=()):
        #: the message without the list of attempts
        self.summary = message
        self.attempts = list(attempts)
        if self.attempts:
            message = "%s [%s]" % (message, "; ".join(str(a) for a in self.attempts))
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message

    @property
    def node(self):
        """The base URL of the node whose answer decided this error (the last one asked)."""
        return self.attempts[-1].node if self.attempts else None

    @property
    def status(self):
        """The HTTP status of the deciding answer, if a node answered."""
        return self.attempts[-1].status if self.attempts else None

    @property
    def retry_after(self):
        """The longest Retry-After any node sent, in seconds, or None."""
        values = [a.retry_after for a in self.attempts if a.retry_after is not None]
        return max(values) if values else None


class NanoCdnUnavailable(NanoCdnError):
    """No node could do it now: each could not be reached or answered 502/503/504 (507 for uploads).

    Nothing was stored or deleted. Trying again later may succeed (see ``retry_after``).
    """


class NanoCdnUploadUncertain(NanoCdnError):
    """The whole body reached a node, then the connection failed before its answer.

    The node may or may not have stored the file, so the upload was not sent to
    another node (that could store it twice under two names). Look the name up
    on that node, or upload again under a new name.
    """


class NanoCdnHttpError(NanoCdnError):
    """A node gave an answer that settles the request and is not a success (400, 401, 413, 500, ...)."""


class NanoCdnFileExists(NanoCdnHttpError, FileExistsError):
    """409: the name is taken on the node that took the upload (by a file, or by a folder or file in its way)."""


class NanoCdnFileNotFound(NanoCdnHttpError, FileNotFoundError):
    """404: no such file (a node answers 404 only when the file's owner says so)."""


class NanoCdnUnauthorized(NanoCdnHttpError, PermissionError):
    """401/403: missing or wrong credentials (writes, deletes and priv reads need them)."""


class NanoCdnTooLarge(NanoCdnHttpError):
    """413: the file is larger than the node's max_upload_bytes."""


def error_class_for(status):
    """The exception class for a final, unsuccessful answer."""
    return {
        404: NanoCdnFileNotFound,
        409: NanoCdnFileExists,
        401: NanoCdnUnauthorized,
        403: NanoCdnUnauthorized,
        413: NanoCdnTooLarge,
    }.get(status, NanoCdnHttpError)


class NanoCdnReadError(NanoCdnError):
    """A streamed read broke after it started, and no node could continue it."""
