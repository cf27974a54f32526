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

_PRIVATE_PATH = re.compile(r"^/[^/]+/priv/.")


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
    """``path`` with the query that makes it readable without credentials until ``expires`` (unix seconds)."""
    if not _PRIVATE_PATH.match(path):
        raise ValueError("%r is not the path of a private file like /1/priv/file.txt" % (path,))
    if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
        raise ValueError("expires must be a time in unix seconds, not %r" % (expires,))
    return "%s?expires=%d&signature=%s" % (path, expires, url_signature(key, path, expires))
