"""The running nanocdn nodes the suite talks to, as test/clients/django.test.ts describes them.

NANOCDN_TEST_NODES is a JSON list of {"id", "url", "pid", "data",
"max_upload_bytes"}: the node id, its base URL, the process id (to SIGKILL
it), its data folder (to break its store) and its upload limit.
NANOCDN_TEST_TLS describes a node that serves HTTPS: {"url", "ca"}.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from urllib.parse import urlsplit

_RUN_HINT = "run the suite through `npx vitest run test/clients/django.test.ts`, which starts the nodes"


class _Node:
    def __init__(self, entry):
        self.id = str(entry["id"])
        self.url = entry["url"].rstrip("/")
        self.pid = int(entry["pid"])
        self.data = entry["data"]
        self.max_upload_bytes = int(entry["max_upload_bytes"])

    def __repr__(self):
        return "node %s at %s" % (self.id, self.url)


try:
    NODES = [_Node(e) for e in json.loads(os.environ["NANOCDN_TEST_NODES"])]
    USER = os.environ["NANOCDN_TEST_USER"]
    PASSWORD = os.environ["NANOCDN_TEST_PASSWORD"]
    # A node serving HTTPS with a self-signed certificate: {"url", "ca"} (the certificate's PEM file).
    TLS = json.loads(os.environ["NANOCDN_TEST_TLS"])
except KeyError as missing:
    raise SystemExit("%s is not set: %s" % (missing, _RUN_HINT))


# A port bound for the whole run but never listening: connections to it are refused, and no other
# process can start listening there meanwhile (as could happen with a port that was merely free).
_dead_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_dead_socket.bind(("127.0.0.1", 0))
DEAD_URL = "http://127.0.0.1:%d" % _dead_socket.getsockname()[1]


def node(node_id):
    for n in NODES:
        if n.id == node_id:
            return n
    raise LookupError("no node %s in NANOCDN_TEST_NODES; %s" % (node_id, _RUN_HINT))


def storage(*urls, **options):
    """A fresh NanoCdnStorage on these URLs (its own memory of failed nodes)."""
    from nanocdn_django import NanoCdnStorage

    options.setdefault("username", USER)
    options.setdefault("password", PASSWORD)
    options.setdefault("timeout", 30)
    options.setdefault("connect_timeout", 2)
    return NanoCdnStorage(nodes=list(urls), **options)


def refuses_connections(url):
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def kill(n):
    """SIGKILLs a node (no graceful shutdown) and waits until its port refuses connections."""
    os.kill(n.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not refuses_connections(n.url):
        if time.monotonic() > deadline:
            raise AssertionError("%r still accepts connections 10 s after SIGKILL" % n)
        time.sleep(0.02)


@contextlib.contextmanager
def broken_store(n):
    """Makes a node's store fail (its tmp/ folder becomes a regular file), as a full or broken disk would.

    The node then answers uploads with 503 and Retry-After, having stored
    nothing. The folder comes back afterwards.
    """
    tmp = os.path.join(n.data, "tmp")
    shutil.rmtree(tmp)
    with open(tmp, "w") as f:
        f.write("a file where the temp folder should be")
    try:
        yield
    finally:
        os.remove(tmp)
        os.rename(tempfile.mkdtemp(dir=n.data), tmp)


def stored_path(n, name):
    """Where a node keeps a stored name on its disk."""
    return os.path.join(n.data, "files", *name.split("/"))
