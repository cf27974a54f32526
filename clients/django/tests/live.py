"""The running nanocdn nodes the suite talks to, as test/clients/django.test.ts describes them.

NANOCDN_TEST_NODES is a JSON list of {"id", "url", "pid", "data",
"max_upload_bytes", "cluster"}: the node id, its base URL, the process id (to
SIGKILL it), its data folder (to break its store, or to look for replicas),
its upload limit, and whether it belongs to the cluster (nodes 1 and 2, which
replicate into each other's data folders) or runs on its own (node 3; node 5,
which leads its own process group, so that a test can stop it whole).
NANOCDN_TEST_TLS describes a node that serves HTTPS: {"url", "ca"}.
"""

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

_RUN_HINT = "run the suite through `npx vitest run test/clients/django.test.ts`, which starts the nodes"


class _Node:
    def __init__(self, entry):
        self.id = str(entry["id"])
        self.url = entry["url"].rstrip("/")
        self.pid = int(entry["pid"])
        self.data = entry["data"]
        self.max_upload_bytes = int(entry["max_upload_bytes"])
        self.cluster = bool(entry.get("cluster"))
        self.process_group = bool(entry.get("process_group"))

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

#: the nodes of the cluster (1 and 2)
CLUSTER = [n for n in NODES if n.cluster]


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
def hung(n):
    """SIGSTOPs every process of a node (its kernel still accepts connections, nothing answers); SIGCONT after."""
    assert n.process_group, "%r does not lead its own process group" % n
    os.killpg(n.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(n.pid, signal.SIGCONT)


@contextlib.contextmanager
def broken_store(n):
    """Makes a node's store fail (its tmp/ folder becomes a regular file), as a full or broken disk would.

    A node on its own then answers uploads with 503 and Retry-After, having
    stored nothing; a node of the cluster passes them to its peer. The folder
    comes back afterwards, and the context ends once the node's next probe
    has found its store working again.
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

        def healthy():
            assert status(n)["storeHealthy"], "%r has not found its store working again yet" % n

        eventually(healthy)


def stored_path(n, name):
    """Where a node keeps a stored name on its disk."""
    return os.path.join(n.data, "files", *name.split("/"))


def eventually(check, timeout=15.0, every=0.05):
    """Calls ``check`` until it returns without an AssertionError, for at most ``timeout`` seconds.

    For things that become true soon (a file replicated, a peer seen down)
    without asserting how soon; the last failure is raised at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(every)


def _request(n, method, target):
    token = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode("utf-8")).decode("ascii")
    request = urllib.request.Request(n.url + target, method=method, headers={"Authorization": "Basic " + token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers, answer.read()


def status(n):
    """The node's GET /status (with the suite's credentials), as a dict."""
    code, _, body = _request(n, "GET", "/status")
    assert code == 200, "%r answered %d to /status: %r" % (n, code, body)
    return json.loads(body.decode("utf-8"))


def peer_up(n, peer_id):
    """Whether node ``n`` believes its peer ``peer_id`` is up."""
    return [p["up"] for p in status(n)["peers"] if p["id"] == peer_id] == [True]


def wait_until_cluster_ready(timeout=30.0):
    """Until every cluster node takes uploads itself, has its own files, sees its peers up and has pushed a full pass to them.

    A node whose store failed passes uploads to its peer until its next probe
    passes (``storeHealthy``), so a test that broke a store waits for this.
    After that, only uploads and deletes make a node push anything, so a file
    put on a node's disk by hand (:func:`place_unreplicated`) stays where it is.
    """

    def ready():
        for n in CLUSTER:
            state = status(n)
            assert state["storeHealthy"], "%r has not found its store working again yet" % n
            assert state["ownFiles"] == "complete", "%r is gathering its files: %r" % (n, state["ownFiles"])
            assert all(p["up"] for p in state["peers"]), "%r sees a peer down: %r" % (n, state["peers"])
            for push in state["replication"]:
                assert not push["needsFullPass"] and push.get("lastFullPass"), "%r: %r" % (n, push)

    eventually(ready, timeout)


def served_from_own_disk(n, name):
    """Whether node ``n`` answers for ``name`` from its own disk (X-Nanocdn-Served-By: its id)."""
    from nanocdn_django.client import name_to_target

    code, headers, _ = _request(n, "HEAD", name_to_target(name))
    return code == 200 and headers.get("X-Nanocdn-Served-By") == n.id


def wait_until_replicated(name, on):
    """Until node ``on`` serves ``name`` from its own copy: replicated, and seen by its serving process."""

    def replicated():
        assert served_from_own_disk(on, name), "%r does not serve %s from its own disk yet" % (on, name)

    eventually(replicated)


def place_unreplicated(n, name, content):
    """Puts a file on its owner's disk by hand, as an upload not yet pushed to the peers would be.

    Replication carries it only with the owner's next full pass (on an
    interval the suite never reaches, or when a peer comes back). Written
    aside, then renamed into place, so the node never sees it half-written.
    """
    path = stored_path(n, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=n.data)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.rename(temp, path)
    return name
