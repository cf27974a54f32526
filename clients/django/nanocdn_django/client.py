"""A small nanocdn HTTP client with node failover, on http.client only.

Failover rules (those of the TypeScript client in src/client/):

- A node that cannot be reached, or answers 502, 503 or 504, hands the request
  to the next node. Reads (GET/HEAD) and deletes are safe to repeat, so they
  always move on.
- An upload moves on only when the node cannot have stored the file: it could
  not be reached, or it answered 502, 503, 504 or 507. When the whole body
  was sent and then the connection broke or timed out, the outcome is unknown
  and :class:`NanoCdnUploadUncertain` is raised instead.

Where this client knows more than fetch lets the TypeScript client know:

- Uploads send ``Expect: 100-continue``, so a node that refuses (409, 401,
  413, 503) says so before the body is sent, and a node that fails before it
  asks for the body (or while the body is still being sent: a node never keeps
  an incomplete body) cannot have stored anything, so the upload moves on.
- A read whose connection breaks mid-body goes on from the same byte with a
  Range request, on the same node first, then on the others.
- A node that failed is asked after the others for ``cooldown`` seconds; reads
  and deletes go to the file's owner first when its URL is known: configured
  (``{node id: URL}``), or learnt from a node's own ``GET /check/`` answer,
  which names its id (never from an upload's Location alone: a node whose
  store fails passes the upload to a peer, whose name it answers).
- A node that does not answer ``Expect: 100-continue`` within
  ``continue_timeout`` seconds (a hung node: its kernel still accepts
  connections) gets no byte of the body, so the upload moves on at once;
  unless it answers ``GET /check/`` within a second: then it is a server that
  ignores ``Expect`` (workerd: the edge, the dev worker), or one that was slow
  that once, which gets the body. Its uploads for the next
  ``EXPECT_AGAIN_AFTER`` seconds (5 minutes) do not wait; then one sends
  ``Expect`` again, so a node that was only slow gets it back (and a server
  that ignores it costs one wait per 5 minutes).
- An upload sent without ``Expect`` (``expect_continue=False``, an empty
  body, or those 5 minutes) first asks ``GET /check/`` of a node that has
  answered nothing in the last second: one that does not answer it, or a
  proxy's ``502``/``504``/``521``-``523`` for it, gets no byte of the upload,
  which moves on.

Connections are kept alive per node and reused (a few idle ones per node);
one that fails is closed. A client object may be shared between threads.
"""

import base64
import datetime
import http.client
import io
import json
import logging
import math
import os
import socket
import stat
import tempfile
import threading
import time
from urllib.parse import quote, unquote, urlsplit

from .connections import ConnectionPool
from .errors import (
    Attempt,
    NanoCdnError,
    NanoCdnFileExists,
    NanoCdnFileNotFound,
    NanoCdnHttpError,
    NanoCdnReadError,
    NanoCdnUnavailable,
    NanoCdnUploadUncertain,
    error_class_for,
)

log = logging.getLogger("nanocdn_django")

NAMESPACES = ("pub", "priv")
#: a CDN in front (Cloudflare) could not reach the node: it never saw the request
ORIGIN_NOT_REACHED = (521, 522, 523)
#: answers that mean "not me, not now": the request goes to the next node
RETRY_STATUSES = frozenset((502, 503, 504) + ORIGIN_NOT_REACHED)
#: answers after which an upload was certainly not stored
UPLOAD_RETRY_STATUSES = frozenset((503, 507) + ORIGIN_NOT_REACHED)
#: a proxy's answers (nanocdn gives neither) when the node behind it failed or took too long once
#: the request was on its way: it may have stored the upload
PROXY_GAVE_UP = frozenset((502, 504))
#: the code of the 500 a node answers when a peer it passed the upload to failed after the body went out
OUTCOME_UNKNOWN = "outcome_unknown"
#: failures of a kept-alive connection that the node closed while it was idle: the request never arrived
_STALE_CONNECTION = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)
CHUNK_SIZE = 64 * 1024
USER_AGENT = "nanocdn-django/0.1"
#: seconds a node that did not ask for an upload's body has to answer GET /check/ before it counts as hung
CHECK_TIMEOUT = 1.0
#: an upload sent without ``Expect: 100-continue`` first asks GET /check/ of a node not heard from for this many seconds
PROBE_AFTER = 1.0
#: seconds that a node which took an upload's body without asking for it (it answered GET /check/ instead of
#: 100 Continue) gets uploads without ``Expect: 100-continue``; then one upload sends Expect again
EXPECT_AGAIN_AFTER = 300.0
# Characters RFC 3986 allows in a path segment besides the unreserved ones (as the nodes write Location).
_SEGMENT_SAFE = "!$&'()*+,;=:@"


def quote_segment(segment):
    return quote(segment, safe=_SEGMENT_SAFE)


def name_to_target(name):
    """The URL path of a stored name: ``1/pub/a b.txt`` -> ``/1/pub/a%20b.txt``."""
    return "/" + "/".join(quote_segment(s) for s in name.split("/"))


def target_to_name(target):
    """A Location path back to a stored name: ``/1/pub/a%20b.txt`` -> ``1/pub/a b.txt``."""
    path = urlsplit(target).path
    return "/".join(unquote(s) for s in path.lstrip("/").split("/"))


def parse_name(name):
    """Splits a stored name into ``(owner, namespace, path)``; owner is None for legacy names.

    Returns None when ``name`` is not the name of a stored file (no namespace
    in first or second place, or an empty segment).
    """
    if not isinstance(name, str) or not name:
        return None
    segments = name.split("/")
    if any(s == "" for s in segments):
        return None
    if segments[0] in NAMESPACES and len(segments) >= 2:
        return None, segments[0], "/".join(segments[1:])
    if len(segments) >= 3 and segments[1] in NAMESPACES:
        return segments[0], segments[1], "/".join(segments[2:])
    return None


def _describe(error):
    """A short text for a network error: 'connection refused', 'timed out', ..."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, BrokenPipeError):
        return "connection closed by the node (broken pipe)"
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return "connection closed after %d bytes, %s more expected" % (len(error.partial), error.expected)
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(error, socket.gaierror):
        return "name lookup failed (%s)" % (error.strerror or error)
    text = str(error) or error.__class__.__name__
    return "%s: %s" % (error.__class__.__name__, text)


def _retry_after(response):
    value = response.getheader("Retry-After")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _answer_attempt(node, response, body=None):
    """An Attempt from an answer that is not a success: status, error code and message."""
    if body is None:
        try:
            body = response.read(64 * 1024)
        except (OSError, http.client.HTTPException):
            body = b""
    code = message = None
    try:
        data = json.loads(body.decode("utf-8"))
        if isinstance(data, dict):
            code, message = data.get("error"), data.get("message")
    except (ValueError, UnicodeDecodeError):
        pass
    outcome = "answered %d %s" % (response.status, response.reason)
    if code:
        outcome = "answered %d %s" % (response.status, code)
    if message:
        outcome += ": %s" % message
    retry = _retry_after(response)
    if retry is not None:
        outcome += " (Retry-After: %ds)" % retry
    return Attempt(node.url, outcome, status=response.status, code=code, retry_after=retry)


#: the latest expiry the nodes take (the last second of the year 9999, as HTTP dates have four-digit years)
LAST_DELETE_AT = 253402300799


def expiry_headers(delete_after=None, delete_at=None):
    """The headers that make the nodes delete an upload later; ValueError for a value they would refuse."""
    if delete_after is not None and delete_at is not None:
        raise ValueError("give delete_after or delete_at, not both")
    if delete_after is not None:
        if isinstance(delete_after, datetime.timedelta):
            delete_after = delete_after.total_seconds()
        valid = isinstance(delete_after, (int, float)) and not isinstance(delete_after, bool)
        if not valid or not float(delete_after).is_integer() or delete_after <= 0:
            raise ValueError("delete_after must be a whole number of seconds above 0, not %r" % (delete_after,))
        if math.ceil(time.time()) + delete_after > LAST_DELETE_AT:
            raise ValueError("delete_after: %r seconds from now is after the year 9999" % (delete_after,))
        return {"X-Delete-After": str(int(delete_after))}
    if delete_at is not None:
        if isinstance(delete_at, datetime.datetime):
            if delete_at.tzinfo is None:
                raise ValueError("delete_at must be an aware datetime (with a time zone), not %r" % (delete_at,))
            delete_at = int(delete_at.timestamp())
        if isinstance(delete_at, bool) or not isinstance(delete_at, int) or delete_at <= 0:
            raise ValueError("delete_at must be a datetime or unix seconds, not %r" % (delete_at,))
        if delete_at <= int(time.time()):
            raise ValueError("delete_at: %r is not in the future" % (delete_at,))
        if delete_at > LAST_DELETE_AT:
            raise ValueError("delete_at: %r is after the year 9999" % (delete_at,))
        return {"X-Delete-At": str(delete_at)}
    return {}


class Node:
    """One nanocdn node: its base URL, split for http.client."""

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            # Said without the URL: it holds a password, which would then show in errors and links.
            raise ValueError(
                "a node URL takes no user or password (it would show in every error and link): "
                "give them with the 'username' and 'password' options"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a node URL must look like http(s)://host[:port][/prefix], not %r" % url)
        if parts.query or parts.fragment:
            raise ValueError("a node URL takes no query or fragment: %r" % url)
        self.url = url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")

    def __repr__(self):
        return "Node(%r)" % self.url


class Stored:
    """The answer to an upload: the stored name (``<node>/<ns>/<path>``) and what the node said about it."""

    def __init__(self, name, size, etag, node, copies=None):
        self.name = name
        self.size = size
        self.etag = etag
        #: base URL of the node that took the upload
        self.node = node
        #: how many nodes' disks held the file when it was answered (fewer than the nodes' sync_copies: some were
        #: down, and replication delivers it later); None when the answer did not say (a server without copies)
        self.copies = copies

    def __repr__(self):
        return "Stored(%r, size=%r, node=%r, copies=%r)" % (self.name, self.size, self.node, self.copies)


def _copies(response):
    value = response.getheader("X-Nanocdn-Copies")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


class _StaleConnection(Exception):
    """Internal: a kept-alive connection the node had closed; the request never reached it."""


class _Retry(Exception):
    """Internal: this node did not do it, and the next node may."""

    def __init__(self, attempt):
        super().__init__(str(attempt))
        self.attempt = attempt


class _PreRead:
    """Stands in for a socket whose first bytes were already read: http.client reads from ``fp``."""

    def __init__(self, fp):
        self._fp = fp

    def makefile(self, mode, *args, **kwargs):
        return self._fp


class _Replay(io.RawIOBase):
    """Gives back ``head`` first, then whatever ``reader`` has."""

    def __init__(self, head, reader):
        super().__init__()
        self._head = head
        self._reader = reader

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._reader.readinto(buffer)


class _LocalReadError(Exception):
    """Reading the content to upload failed: not the node's fault, so never retried."""


class _Body:
    """The content of an upload: knows its size, and rewinds for another node when it can."""

    def __init__(self, content):
        if isinstance(content, str):
            content = content.encode("utf-8")
        if isinstance(content, (bytes, bytearray, memoryview)):
            content = io.BytesIO(bytes(content))
        self._spool = None
        # Text content (ContentFile("...")) counts characters, not bytes: spool it as UTF-8.
        self.size = None if self._is_text(content) else self._size_of(content)
        if self.size is None:
            # Unknown length: a node needs Content-Length, so spool it (to disk past 4 MiB).
            self._spool = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)
            try:
                content.seek(0)
            except (AttributeError, OSError, ValueError):
                pass
            while True:
                chunk = content.read(CHUNK_SIZE)
                if not chunk:
                    break
                self._spool.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            self.size = self._spool.tell()
            content = self._spool
        self._content = content
        self._touched = False  # whether any byte was read from the content yet
        self.sent = 0

    @staticmethod
    def _is_text(content):
        if isinstance(content, io.TextIOBase) or isinstance(getattr(content, "file", None), io.TextIOBase):
            return True
        try:
            position = content.tell()
            probe = content.read(0)
            content.seek(position)
        except (AttributeError, OSError, ValueError):
            return False
        return isinstance(probe, str)

    @staticmethod
    def _size_of(content):
        """The bytes ``content`` holds from its start, or None when only reading them all tells.

        A pipe, a socket or a stream that cannot seek has no size to trust:
        Django's ``File.size`` says 0 for a pipe (the size of its file
        descriptor) and raises for a stream that cannot seek.
        """
        raw = getattr(content, "file", content)
        try:
            if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
                return None
        except (AttributeError, OSError, ValueError):
            pass  # no file descriptor: an in-memory file, or a wrapper that says its size itself
        try:
            size = content.size
        except Exception:  # Django's File computes it, and raises what its file raises
            size = None
        if isinstance(size, int):
            return size
        try:
            position = content.tell()
            end = content.seek(0, io.SEEK_END)
            content.seek(position)
            return end
        except (AttributeError, OSError, ValueError):
            return None

    def close(self):
        if self._spool is not None:
            self._spool.close()

    def start(self):
        """Rewinds to the first byte; False when bytes were read and the content cannot go back."""
        self.sent = 0
        try:
            self._content.seek(0)
        except (AttributeError, OSError, ValueError):
            return not self._touched
        return True

    def send(self, sock):
        """Sends exactly ``size`` bytes. Local read problems raise _LocalReadError, network ones OSError."""
        while self.sent < self.size:
            self._touched = True
            try:
                chunk = self._content.read(min(CHUNK_SIZE, self.size - self.sent))
            except Exception as e:  # anything the content raises is the caller's problem, not the node's
                raise _LocalReadError("reading the content to upload failed: %s" % _describe(e)) from e
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            if not chunk:
                raise _LocalReadError(
                    "the content to upload ended after %d of its %d bytes" % (self.sent, self.size)
                )
            sock.sendall(chunk)
            self.sent += len(chunk)


class NanoCdnClient:
    """Talks to a set of nanocdn nodes, moving on to the next node as the module docstring says.

    ``nodes``: base URLs, asked in this order (a node that failed in the last
    ``cooldown`` seconds is asked last), or a dict ``{node id: base URL}``.
    Reads and deletes of a file go first to its owner (the first segment of
    its name) when the client knows the owner's URL: from that dict (never
    changed), or learnt from the node itself: after a node took an upload of
    a node id with no known URL, the client asks it ``GET /check/`` (once per
    URL), whose answer names its id. ``timeout``: seconds to wait
    for an answer or for the next bytes of one. ``connect_timeout``: seconds to wait
    for a connection. ``continue_timeout``: seconds a node has to ask for the
    body of an upload (``100 Continue``) before the upload moves on, unsent.
    ``socket_options``: ``(level, option, value)`` tuples set on each socket
    before it connects. ``clock``: monotonic seconds, for the cooldown and for
    when to send ``Expect`` again (tests pass one they control).
    """

    def __init__(
        self,
        nodes,
        username=None,
        password=None,
        timeout=30.0,
        connect_timeout=3.0,
        cooldown=30.0,
        expect_continue=True,
        ssl_context=None,
        socket_options=(),
        continue_timeout=3.0,
        clock=time.monotonic,
    ):
        #: node id -> base URL: configured, or learnt from the node's own GET /check/
        self._owner_urls = {}
        if isinstance(nodes, str):
            nodes = [n for n in (p.strip() for p in nodes.split(",")) if n]
        if isinstance(nodes, dict):
            self._owner_urls = {str(k): str(v).rstrip("/") for k, v in nodes.items()}
            nodes = list(nodes.values())
        #: the node ids of the configured map, whose URLs nothing learnt replaces
        self._configured_owners = frozenset(self._owner_urls)
        #: base URL -> the node id its GET /check/ named (None: it named none)
        self._node_ids = {}
        self.nodes = [n if isinstance(n, Node) else Node(n) for n in nodes]
        if not self.nodes:
            raise ValueError("nanocdn needs at least one node URL")
        self.username = username
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.cooldown = cooldown
        self.expect_continue = expect_continue
        self.continue_timeout = continue_timeout
        self._pool = ConnectionPool(connect_timeout, timeout, ssl_context, tuple(socket_options or ()))
        self._authorization = None
        if username is not None:
            token = ("%s:%s" % (username, password or "")).encode("utf-8")
            self._authorization = "Basic " + base64.b64encode(token).decode("ascii")
        self.clock = clock
        self._failed_at = {}
        #: base URL -> when (``clock``) the node last answered a request of this client
        self._answered_at = {}
        #: base URL -> when (``clock``) the node took an upload's body without asking for it
        self._skips_expect_since = {}
        self._lock = threading.Lock()

    # -- node order -------------------------------------------------------

    def ordered_nodes(self, owner=None, first=None):
        """The nodes in the order to ask them.

        ``first`` (a URL) comes first whatever happened to it; else the
        ``owner``'s node, if its URL is known and it did not fail lately; then
        the configured order, the nodes that failed in the last ``cooldown``
        seconds last.
        """
        now = self.clock()
        with self._lock:
            recent = {url for url, at in self._failed_at.items() if now - at < self.cooldown}
            owner_url = self._owner_urls.get(owner) if owner is not None else None
        ordered = [n for n in self.nodes if n.url not in recent] + [n for n in self.nodes if n.url in recent]
        lead = first if first is not None else (owner_url if owner_url not in recent else None)
        if lead is not None:
            ordered.sort(key=lambda n: n.url != lead)
        return ordered

    def _learn_owner(self, name, node):
        """After ``node`` took an upload now named ``name``: learns where the owner is, if ``node`` is that owner.

        The Location names the node that stored the file, which is not the
        node asked when that one passed the upload to a peer (its store
        failed). So the URL is learnt from the node's GET /check/, which names
        its own id, asked once per URL (a node that gives no answer within a
        second is not asked again); a configured URL is never replaced.
        """
        owner = name.split("/", 1)[0]
        with self._lock:
            if owner in self._configured_owners or self._owner_urls.get(owner) == node.url:
                return
            if node.url in self._node_ids:
                return  # its id is known, and is another one (or none)
        if not self._check(node, reuse=True):
            self._identified(node, None)

    def _identified(self, node, node_id):
        """``node``'s GET /check/ named ``node_id`` (None: no id): its files are there, unless configured elsewhere."""
        with self._lock:
            self._node_ids[node.url] = node_id
            if node_id is not None and node_id not in self._configured_owners:
                self._owner_urls[node_id] = node.url

    def _failed(self, url):
        with self._lock:
            self._failed_at[url] = self.clock()

    def _worked(self, url):
        with self._lock:
            self._failed_at.pop(url, None)
        self._heard_from(url)

    def _heard_from(self, url):
        """The node answered something (a 503 of a store that fails included): it is there."""
        with self._lock:
            self._answered_at[url] = self.clock()

    def _answered_lately(self, node):
        with self._lock:
            at = self._answered_at.get(node.url)
        return at is not None and self.clock() - at < PROBE_AFTER

    # -- connections ------------------------------------------------------

    def close(self):
        """Closes the idle connections kept for reuse."""
        self._pool.close()

    def _release(self, conn, response):
        """Done with an answer: its connection goes back for reuse if the answer was read to its end."""
        self._pool.give_back(conn, response)

    def _headers(self, namespace, extra=None, auth=False):
        headers = {"User-Agent": USER_AGENT}
        # Public reads go without credentials: checking a password costs the node a hash.
        if self._authorization and (auth or namespace == "priv"):
            headers["Authorization"] = self._authorization
        if extra:
            headers.update(extra)
        return headers

    def _exchange(self, method, target, what, headers, owner=None, first=None):
        """Sends a repeatable request (no body) to one node after another until one settles it.

        Returns ``(node, conn, response, attempts)`` for the first answer that
        is not a network failure or a 502/503/504; the caller reads and closes.
        """
        attempts = []
        nodes = self.ordered_nodes(owner, first)
        for node in nodes:
            try:
                conn, response = self._request(node, method, target, headers)
            except _Retry as retry:
                self._failed(node.url)
                attempts.append(retry.attempt)
                continue
            if response.status in RETRY_STATUSES:
                attempt = _answer_attempt(node, response)
                conn.close()
                self._failed(node.url)
                attempts.append(attempt)
                if node is not nodes[-1]:
                    log.warning("nanocdn: %s: %s; trying the next node", what, attempt)
                continue
            self._worked(node.url)
            if attempts:
                log.warning("nanocdn: %s: answered by %s after %s", what, node.url, "; ".join(map(str, attempts)))
            return node, conn, response, attempts
        raise NanoCdnUnavailable("%s: no node could answer" % what, attempts)

    def _request(self, node, method, target, headers):
        """Sends a request without a body; ``(conn, response)``, or _Retry saying why this node did not answer.

        A kept-alive connection that the node closed while idle is replaced
        by a new one at once: the request never reached the node.
        """
        reuse = True
        while True:
            try:
                conn, reused = self._pool.take(node, reuse)
            except OSError as e:
                raise _Retry(Attempt(node.url, "could not connect (%s)" % _describe(e)))
            try:
                conn.request(method, node.prefix + target, headers=headers)
                return conn, conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused and isinstance(e, _STALE_CONNECTION):
                    reuse = False
                    continue
                raise _Retry(Attempt(node.url, "gave no answer (%s)" % _describe(e)))

    def _settle(self, what, node, conn, response, attempts):
        """Turns an answer that is not a success into the matching exception (and closes)."""
        attempt = _answer_attempt(node, response)
        conn.close()
        attempts = attempts + [attempt]
        if response.status == 404:
            return NanoCdnFileNotFound("%s: no such file" % what, attempts)
        return error_class_for(response.status)("%s failed" % what, attempts)

    # -- reads ------------------------------------------------------------

    def head(self, name):
        """The headers of a stored file (a dict with lower-case keys), or None if there is no such file."""
        owner, namespace, _ = self._parse(name)
        what = "HEAD %s" % name
        node, conn, response, attempts = self._exchange(
            "HEAD", name_to_target(name), what, self._headers(namespace), owner
        )
        if response.status == 404:
            response.read()
            self._release(conn, response)
            return None
        if response.status != 200:
            raise self._settle(what, node, conn, response, attempts)
        headers = {k.lower(): v for k, v in response.getheaders()}
        response.read()
        self._release(conn, response)
        return headers

    def get(self, name, offset=0, expected_size=None, first=None, etag=None):
        """Starts a GET of a stored file from ``offset`` on; returns ``(node, conn, response, size)``.

        The body is not read: the caller streams it from ``response`` and
        closes ``conn``. ``size`` is the size of the whole file. With ``etag``
        (the rest of a file read before), only that file will do.
        """
        owner, namespace, _ = self._parse(name)
        what = "GET %s" % name if not offset else "GET %s from byte %d" % (name, offset)
        extra = {"Range": "bytes=%d-" % offset} if offset else {}
        if offset and etag:
            # A node that holds another file under the name (deleted and stored again) answers it whole.
            extra["If-Range"] = etag
        node, conn, response, attempts = self._exchange(
            "GET", name_to_target(name), what, self._headers(namespace, extra or None), owner, first
        )
        if offset and etag and response.status == 200:
            conn.close()
            raise NanoCdnReadError(
                "%s: %s holds another file under this name now (ETag %s, not %s)" % (what, node.url, response.getheader("ETag"), etag),
                attempts,
            )
        if response.status == (206 if offset else 200):
            size = self._size_of(response, offset)
            if size is not None and (expected_size is None or size == expected_size):
                return node, conn, response, size
            conn.close()
            raise NanoCdnReadError(
                "%s: %s answered a file of %s bytes, not %s" % (what, node.url, size, expected_size), attempts
            )
        raise self._settle(what, node, conn, response, attempts)

    @staticmethod
    def _size_of(response, offset):
        if offset:
            value = response.getheader("Content-Range") or ""
            # bytes <first>-<last>/<size>
            try:
                span, total = value.split(" ", 1)[1].split("/")
                if int(span.split("-")[0]) != offset:
                    return None
                return int(total)
            except (IndexError, ValueError):
                return None
        try:
            return int(response.getheader("Content-Length"))
        except (TypeError, ValueError):
            return None

    def open(self, name, offset=0):
        """A lazily read, seekable binary stream of a stored file (an io.RawIOBase with ``size``)."""
        node, conn, response, size = self.get(name, offset)
        return HttpReader(self, name, node, conn, response, size, offset)

    # -- writes -----------------------------------------------------------

    def delete(self, name):
        """Deletes a stored file; True if it was there, False if there was nothing to delete."""
        owner, namespace, _ = self._parse(name)
        what = "DELETE %s" % name
        node, conn, response, attempts = self._exchange(
            "DELETE", name_to_target(name), what, self._headers(namespace, auth=True), owner
        )
        if response.status in (200, 204):
            response.read()
            self._release(conn, response)
            return True
        if response.status == 404:
            response.read()
            self._release(conn, response)
            return False
        raise self._settle(what, node, conn, response, attempts)

    def upload(self, namespace, path, content, delete_after=None, delete_at=None):
        """Uploads ``content`` (bytes or a file object) as ``<namespace>/<path>``.

        Returns a :class:`Stored` whose ``name`` is the stored name
        ``<node>/<namespace>/<path>``. Raises :class:`NanoCdnFileExists` (409)
        when the node that took it already has that name. ``delete_after``
        (seconds, or a timedelta) or ``delete_at`` (an aware datetime, or unix
        seconds) make the nodes delete the file then.
        """
        if namespace not in NAMESPACES:
            raise ValueError("namespace must be one of %s, not %r" % (", ".join(NAMESPACES), namespace))
        headers = self._headers(None, auth=True)
        headers.update(expiry_headers(delete_after, delete_at))
        target = "/upload/%s/%s" % (namespace, "/".join(quote_segment(s) for s in path.split("/")))
        what = "upload of %s/%s" % (namespace, path)
        body = _Body(content)
        attempts = []
        try:
            nodes = self.ordered_nodes()
            for node in nodes:
                if not body.start():
                    raise NanoCdnUnavailable(
                        "%s: the content cannot be rewound to try another node" % what, attempts
                    )
                try:
                    stored = self._upload_to(node, target, what, body, attempts, headers)
                except _Retry as retry:
                    self._failed(node.url)
                    attempts.append(retry.attempt)
                    if node is not nodes[-1]:
                        log.warning("nanocdn: %s: %s; trying the next node", what, retry.attempt)
                    continue
                # Once the upload's connection is back in the pool, for the GET /check/ this may ask.
                self._learn_owner(stored.name, node)
                return stored
            raise NanoCdnUnavailable("%s: no node could take it" % what, attempts)
        finally:
            body.close()

    def _upload_to(self, node, target, what, body, attempts, headers):
        # A kept-alive connection is reused only when the node must ask for the body first
        # (100-continue): one that the node closed while idle then fails before any byte of it.
        expect = self.expect_continue and body.size > 0 and self._sends_expect(node)
        # Without Expect nothing tells a dead node behind a proxy from a live one before the body
        # has gone (the proxy's 502 after it leaves the upload uncertain): ask first, as Expect would.
        if not expect and not self._answered_lately(node) and not self._check(node, reuse=True):
            raise _Retry(
                Attempt(node.url, "did not answer GET /check/, asked before an upload without Expect; nothing was sent")
            )
        reuse = expect
        while True:
            try:
                conn, reused = self._pool.take(node, reuse)
            except OSError as e:
                raise _Retry(Attempt(node.url, "could not connect (%s); nothing was sent" % _describe(e)))
            try:
                response, reusable, whole = self._upload_on(conn, reused, node, target, what, body, attempts, expect, headers)
            except _StaleConnection:
                conn.close()
                reuse = False
                continue
            except BaseException:
                conn.close()
                raise
            try:
                return self._upload_answer(node, response, what, body, attempts, whole)
            finally:
                if reusable:
                    self._release(conn, response)
                else:
                    conn.close()

    def _sends_expect(self, node):
        """Whether an upload to ``node`` sends ``Expect: 100-continue`` (see EXPECT_AGAIN_AFTER)."""
        now = self.clock()
        with self._lock:
            since = self._skips_expect_since.get(node.url)
            if since is None:
                return True
            if now - since < EXPECT_AGAIN_AFTER:
                return False
            # This upload asks again. The others meanwhile go on without waiting: one wait per interval at most.
            self._skips_expect_since[node.url] = now
            return True

    def _answered_expect(self, node):
        """``node`` answered an upload's ``Expect: 100-continue`` (asked for the body, or refused): the next ones send it too."""
        with self._lock:
            self._skips_expect_since.pop(node.url, None)

    def _upload_on(self, conn, reused, node, target, what, body, attempts, expect, headers):
        """Sends the upload on ``conn``; ``(response, reusable, whole)``: the node's answer, whether ``conn`` may
        serve again, and whether the whole body went before the answer came."""
        try:
            conn.putrequest("PUT", node.prefix + target, skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.putheader("Content-Length", str(body.size))
            if expect:
                conn.putheader("Expect", "100-continue")
            conn.endheaders()
        except OSError as e:
            if reused and isinstance(e, _STALE_CONNECTION):
                raise _StaleConnection()
            raise _Retry(Attempt(node.url, "connection failed before the body was sent (%s)" % _describe(e)))
        if expect:
            # Wait for "100 Continue" or a refusal, before sending any byte of the body. Unbuffered, so
            # that nothing past the interim answer is taken from the socket before http.client reads on.
            reader = conn.sock.makefile("rb", buffering=0)
            conn.sock.settimeout(self.continue_timeout)
            try:
                head = reader.readline(65537)
                if not head and reused:
                    raise _StaleConnection()
                if not head:
                    raise _Retry(Attempt(node.url, "closed the connection before asking for the body; it was not sent"))
                self._answered_expect(node)
                parts = head.split(None, 2)
                if len(parts) < 2 or parts[1] != b"100":
                    return self._response(head, reader), False, False
                while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
            except OSError as e:
                if reused and isinstance(e, _STALE_CONNECTION):
                    raise _StaleConnection()
                if not (isinstance(e, socket.timeout) and self._answers_check(node)):
                    raise _Retry(
                        Attempt(
                            node.url,
                            "did not ask for the body within %gs (%s); it was not sent" % (self.continue_timeout, _describe(e)),
                        )
                    )
                # Not hung, since it answers /check/ at once: a server that ignores Expect, as workerd
                # (the edge, the dev worker) does, or a node that was slow this once. The body goes now,
                # and its uploads of the next EXPECT_AGAIN_AFTER seconds do not wait.
                with self._lock:
                    self._skips_expect_since[node.url] = self.clock()
                log.info(
                    "nanocdn: %s did not answer Expect: 100-continue; sending bodies without waiting for %gs",
                    node.url,
                    EXPECT_AGAIN_AFTER,
                )
            finally:
                if conn.sock is not None:
                    conn.sock.settimeout(self.timeout)
        try:
            body.send(conn.sock)
        except _LocalReadError as e:
            raise NanoCdnError("%s: %s; the node was left with an incomplete body, which it discards" % (what, e), attempts)
        except OSError as e:
            # The node may have answered before it closed (a refusal): read that answer if there is one.
            try:
                return conn.getresponse(), False, False
            except (OSError, http.client.HTTPException):
                raise _Retry(
                    Attempt(
                        node.url,
                        "connection lost after %d of %d bytes of the body (%s); a node never keeps an incomplete body"
                        % (body.sent, body.size, _describe(e)),
                    )
                )
        try:
            return conn.getresponse(), True, True
        except (OSError, http.client.HTTPException) as e:
            self._failed(node.url)
            raise NanoCdnUploadUncertain(
                "%s: all %d bytes were sent to %s, then its answer never came (%s): the file may or may not "
                "be stored there, so it was not sent to another node" % (what, body.size, node.url, _describe(e)),
                attempts + [Attempt(node.url, "gave no answer after the whole body (%s)" % _describe(e))],
            )

    @staticmethod
    def _response(head, reader):
        """The answer whose first line, ``head``, was read already; the rest comes from ``reader``."""
        fp = io.BufferedReader(_Replay(head, reader))
        response = http.client.HTTPResponse(_PreRead(fp), method="PUT")
        response.begin()
        return response

    def _answers_check(self, node):
        """Whether the node answers GET /check/ (whatever it says) within a second, on a connection of its own (see _check)."""
        return self._check(node, reuse=False)

    def _check(self, node, reuse):
        """Asks ``node`` GET /check/, and notes the node id its answer names; whether it answered within a second.

        Any answer of the node counts (a node whose store fails answers 503,
        and names itself too); a proxy's that the node behind it failed or
        could not be reached (502, 504, 521-523) does not. ``reuse``: whether
        a kept-alive connection may serve.
        """
        while True:
            try:
                conn, reused = self._pool.take(node, reuse)
            except OSError:
                return False
            try:
                # A server that is up answers at once; a hung one should cost little more than continue_timeout.
                conn.sock.settimeout(min(CHECK_TIMEOUT, self.continue_timeout))
                conn.request("GET", node.prefix + "/check/", headers=self._headers(None))
                response = conn.getresponse()
                data = response.read(64 * 1024)
                if conn.sock is not None:  # None once an answer with Connection: close was read
                    conn.sock.settimeout(self.timeout)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused and isinstance(e, _STALE_CONNECTION):
                    reuse = False
                    continue
                return False
            self._release(conn, response)
            if response.status in PROXY_GAVE_UP or response.status in ORIGIN_NOT_REACHED:
                return False
            try:
                info = json.loads(data.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                info = None
            node_id = info.get("node") if isinstance(info, dict) else None
            self._identified(node, node_id if isinstance(node_id, str) and node_id else None)
            self._heard_from(node.url)
            return True

    def _upload_answer(self, node, response, what, body, attempts, whole):
        if response.status == 201:
            try:
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                data = b""
                log.warning("nanocdn: %s: could not read the 201 body from %s (%s)", what, node.url, _describe(e))
            location = response.getheader("Location")
            if not location:
                raise NanoCdnHttpError(
                    "%s: the node answered 201 without a Location" % what, attempts + [Attempt(node.url, "answered 201", 201)]
                )
            try:
                info = json.loads(data.decode("utf-8")) if data else {}
            except (ValueError, UnicodeDecodeError):
                info = {}
            self._worked(node.url)
            if attempts:
                log.warning("nanocdn: %s: taken by %s after %s", what, node.url, "; ".join(map(str, attempts)))
            name = target_to_name(location)
            return Stored(name, info.get("size", body.size), response.getheader("ETag"), node.url, _copies(response))
        attempt = _answer_attempt(node, response)
        # A proxy that gave up before it had the whole body: the node behind it cannot have stored an incomplete one.
        if response.status in UPLOAD_RETRY_STATUSES or (response.status in PROXY_GAVE_UP and not whole):
            raise _Retry(attempt)
        if response.status in PROXY_GAVE_UP:
            self._failed(node.url)
            raise NanoCdnUploadUncertain(
                "%s: a proxy in front of the node at %s answered %d: the node behind it may or may not have stored "
                "the file, so it was not sent to another node" % (what, node.url, response.status),
                attempts + [attempt],
            )
        self._worked(node.url)
        attempts = attempts + [attempt]
        if response.status == 500 and attempt.code == OUTCOME_UNKNOWN:
            raise NanoCdnUploadUncertain(
                "%s: %s passed the upload to another node, which failed after the body was sent: the file may or "
                "may not be stored there, so it was not sent to another node" % (what, node.url),
                attempts,
            )
        if response.status == 409:
            raise NanoCdnFileExists("%s: the name is taken on %s" % (what, node.url), attempts)
        raise error_class_for(response.status)("%s failed" % what, attempts)

    # -- names ------------------------------------------------------------

    @staticmethod
    def _parse(name):
        parsed = parse_name(name)
        if parsed is None:
            raise ValueError(
                "%r is not the name of a stored file: expected <node>/<pub|priv>/<path> (as upload returns it)" % (name,)
            )
        return parsed


class HttpReader(io.RawIOBase):
    """The body of a GET, read as it is asked for, and seekable with Range requests.

    If the connection breaks mid-way, the read goes on from the same byte on
    the next node that answers (any node serves any file in a cluster); if none
    can, :class:`NanoCdnReadError` says how far it got and what each node said.
    Never returns a truncated file silently.

    The connection goes back to the pool from the read that reaches the end
    of the body, never from ``close()``: ``close()`` is also what the garbage
    collector calls for a file nobody closed, and when such a file was part of
    a reference cycle (a model instance and its ``FieldFile`` are one), the
    same collection has already finalized the connection's socket (closed it:
    fd -1). Given back then, that dead connection would fail the next request
    to the node with ``EBADF``.
    """

    def __init__(self, client, name, node, conn, response, size, offset=0):
        super().__init__()
        self._client = client
        self.name = name
        self.node = node.url
        self._conn = conn
        self._response = response
        self.size = size
        self._position = offset
        #: the file being read: a read that goes on elsewhere takes the rest of this one only
        self.etag = response.getheader("ETag")

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError("invalid whence %r" % whence)
        if position < 0:
            raise ValueError("negative seek position %d" % position)
        if position != self._position:
            self._drop()
            self._position = position
        return position

    def _drop(self):
        """Closes the connection, if the body was not read to its end (see the class docstring)."""
        conn = self._conn
        self._conn = self._response = None
        if conn is not None:
            conn.close()

    def _give_back(self):
        """The body was read to its end: the connection serves the next request."""
        conn, response = self._conn, self._response
        self._conn = self._response = None
        try:
            response.read()  # nothing is left: this only marks the answer complete (an empty body's too)
        except (OSError, http.client.HTTPException):
            conn.close()
            return
        self._client._release(conn, response)

    def _reopen(self, failure=None):
        # After a broken connection, the same node first: it may have been the network, not the node.
        first = self.node if failure is not None else None
        try:
            node, conn, response, _ = self._client.get(self.name, self._position, self.size, first=first, etag=self.etag)
        except NanoCdnError as e:
            if failure is None:
                raise
            raise NanoCdnReadError(
                "reading %s: %s; going on from byte %d failed: %s" % (self.name, failure, self._position, e.summary),
                e.attempts,
            ) from e
        self.node, self._conn, self._response = node.url, conn, response

    def readinto(self, buffer):
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._position >= self.size:
            if self._conn is not None:
                self._give_back()
            return 0
        if len(buffer) == 0:
            return 0
        if self._response is None:
            self._reopen()
        # One retry per node: each failure moves the read on to the next one.
        for _ in range(len(self._client.nodes) + 1):
            try:
                n = self._response.readinto(buffer)
                if n == 0:
                    raise http.client.IncompleteRead(b"", self.size - self._position)
                self._position += n
                if self._position >= self.size:
                    self._give_back()
                return n
            except (OSError, http.client.HTTPException) as e:
                failure = "the connection to %s broke after %d of %d bytes (%s)" % (
                    self.node,
                    self._position,
                    self.size,
                    _describe(e),
                )
                log.warning("nanocdn: reading %s: %s; going on from byte %d", self.name, failure, self._position)
                self._drop()
                self._reopen(failure)
        raise NanoCdnReadError("reading %s: gave up after %d broken connections" % (self.name, len(self._client.nodes) + 1))

    def close(self):
        self._drop()
        super().close()
