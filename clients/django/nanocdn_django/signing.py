"""Signed URLs for private files, as the nodes check them.

``GET /<node>/priv/<path>?expires=<unix seconds>&signature=<hex>`` is served
without credentials until ``expires``. The signature is the lowercase hex
HMAC-SHA256, keyed with the UTF-8 bytes of the key, of
``GET\\n<expires>\\n<path>``, ``<path>`` being the URL path exactly as sent
(percent-encoded).
"""

import hashlib
import hmac
import re
from urllib.parse import quote

_PRIVATE_PATH = re.compile(r"^/[^/]+/priv/.")
#: the latest ``expires`` the nodes take (the year 33658): twelve digits
LAST_LINK_EXPIRES = 999999999999
# What a browser leaves as it is in a path: the WHATWG URL standard's path percent-encode set is
# controls, space, " # < > ? ` { } and every non-ASCII character; a % already there stays.
_AS_SENT = "!$%&'()*+,-./:;=@[\\]^_|~"


def signing_key(secret_file_text):
    """The key that signs: the first non-empty line, trimmed, of the nodes' ``url_signing_secret_file``.

    The lines after it are older keys the nodes still accept while a new one is rolled out.
    """
    for line in secret_file_text.splitlines():
        if line.strip():
            return line.strip()
    raise ValueError("the URL signing secret file holds no key: every line is empty")


def url_signature(key, path, expires):
    message = "GET\n%d\n%s" % (expires, path)
    return hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_path(path, key, expires):
    """``path`` with the query that makes it readable without credentials until ``expires`` (unix seconds).

    ``path`` may be percent-encoded or not (``/1/priv/a b.pdf``): what is
    signed, and returned, is the path as browsers send it, for that is what
    the node checks.
    """
    segments = path.split("/") if isinstance(path, str) else []
    # A ? or # would start the query or the fragment, and a dot segment would be resolved away: another file.
    if not _PRIVATE_PATH.match(path) or "?" in path or "#" in path or any(s in (".", "..") for s in segments):
        raise ValueError("%r is not the path of a private file like /1/priv/file.txt" % (path,))
    if isinstance(expires, bool) or not isinstance(expires, int) or not 0 <= expires <= LAST_LINK_EXPIRES:
        raise ValueError("expires must be a time in unix seconds up to %d, not %r" % (LAST_LINK_EXPIRES, expires))
    sent = quote(path, safe=_AS_SENT)
    return "%s?expires=%d&signature=%s" % (sent, expires, url_signature(key, sent, expires))
