"""Node failover: a dead node, a node whose store fails (503), and a node killed with SIGKILL mid-run."""

import os
import socket
import threading

from django.core.files.base import ContentFile
from django.test import SimpleTestCase

from nanocdn_django import (
    NanoCdnError,
    NanoCdnFileNotFound,
    NanoCdnHttpError,
    NanoCdnReadError,
    NanoCdnUnavailable,
    NanoCdnUploadUncertain,
)

from tests import live


class FakeNode:
    """A socket server for what a real node cannot be made to do on purpose.

    ``behaviour`` gets the connection and the request head (bytes up to the
    blank line) and does whatever it likes with them.
    """

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.stopped = threading.Event()
        self.url = "http://127.0.0.1:%d" % self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    self.requests.append(head)
                    self.behaviour(conn, head)
                except OSError:
                    pass

    def close(self):
        self.stopped.set()
        self.thread.join(5)
        self.server.close()


def read_body(conn, head):
    """Reads the rest of the request body after the head (answering 100 Continue if asked)."""
    header, _, body = head.partition(b"\r\n\r\n")
    length = 0
    for line in header.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if b"expect: 100-continue" in header.lower():
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return body


class UploadFailoverTests(SimpleTestCase):
    def test_dead_first_node_connection_refused(self):
        s = live.storage(live.DEAD_URL, live.node("2").url)
        name = s.save("failover/refused.txt", ContentFile(b"to node 2"))
        self.assertEqual(name, "2/pub/failover/refused.txt")
        self.assertTrue(os.path.isfile(live.stored_path(live.node("2"), name)))
        # Reads, sizes and deletes get past the dead node too.
        self.assertEqual(s.open(name).read(), b"to node 2")
        self.assertEqual(s.size(name), 9)
        s.delete(name)
        self.assertFalse(live.storage(live.node("2").url).exists(name))

    def test_first_node_answers_503(self):
        node1, node2 = live.node("1"), live.node("2")
        s = live.storage(node1.url, node2.url)
        with live.broken_store(node1):
            name = s.save("failover/store-down.txt", ContentFile(b"node 1 cannot store"))
            self.assertEqual(name, "2/pub/failover/store-down.txt")
            self.assertEqual(s.open(name).read(), b"node 1 cannot store")
            # Alone, node 1 says why: the error names the node, the status, the code and Retry-After.
            with self.assertRaises(NanoCdnUnavailable) as caught:
                live.storage(node1.url).save("failover/alone.txt", ContentFile(b"x"))
            message = str(caught.exception)
            self.assertIn(node1.url, message)
            self.assertIn("503 store_unavailable", message)
            self.assertIsNotNone(caught.exception.retry_after)
            self.assertFalse(os.path.exists(live.stored_path(node1, "1/pub/failover/alone.txt")))
        s.delete(name)
        # Repaired, node 1 takes uploads again.
        fresh = live.storage(node1.url, node2.url)
        name = fresh.save("failover/repaired.txt", ContentFile(b"back"))
        self.assertEqual(name, "1/pub/failover/repaired.txt")
        fresh.delete(name)

    def test_a_node_that_failed_is_asked_last_for_a_while(self):
        s = live.storage(live.DEAD_URL, live.node("1").url)
        first = s.save("failover/cool-1.txt", ContentFile(b"1"))
        second = s.save("failover/cool-2.txt", ContentFile(b"2"))
        self.assertEqual([a.url for a in s.client.ordered_nodes()], [live.node("1").url, live.DEAD_URL])
        for name in (first, second):
            s.delete(name)

    def test_every_node_down(self):
        s = live.storage(live.DEAD_URL, live.DEAD_URL + "/")
        with self.assertRaises(NanoCdnUnavailable) as caught:
            s.save("failover/nowhere.txt", ContentFile(b"x"))
        self.assertEqual(len(caught.exception.attempts), 2)
        self.assertIn("could not connect (connection refused); nothing was sent", str(caught.exception))
        with self.assertRaises(NanoCdnUnavailable):
            s.open("1/pub/anything.txt")
        with self.assertRaises(NanoCdnUnavailable):
            s.exists("1/pub/anything.txt")
        with self.assertRaises(NanoCdnUnavailable):
            s.delete("1/pub/anything.txt")

    def test_507_moves_on_to_the_next_node(self):
        def full(conn, head):
            body = b'{"error":"insufficient_storage","message":"disk full"}'
            conn.sendall(
                b"HTTP/1.1 507 Insufficient Storage\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )

        fake = FakeNode(full)
        self.addCleanup(fake.close)
        s = live.storage(fake.url, live.node("2").url)
        name = s.save("failover/full.txt", ContentFile(b"x" * 1000))
        self.assertEqual(name, "2/pub/failover/full.txt")
        self.assertEqual(len(fake.requests), 1)
        s.delete(name)

    def test_body_sent_then_connection_lost_is_not_retried(self):
        """The node may have stored it: raise, do not store a second copy elsewhere."""

        def take_body_then_vanish(conn, head):
            read_body(conn, head)
            conn.shutdown(socket.SHUT_RDWR)

        fake = FakeNode(take_body_then_vanish)
        self.addCleanup(fake.close)
        s = live.storage(fake.url, live.node("2").url)
        with self.assertRaises(NanoCdnUploadUncertain) as caught:
            s.save("failover/uncertain.txt", ContentFile(b"y" * 5000))
        message = str(caught.exception)
        self.assertIn(fake.url, message)
        self.assertIn("all 5000 bytes were sent", message)
        self.assertNotIn(live.node("2").url, message)
        self.assertFalse(live.storage(live.node("2").url).exists("2/pub/failover/uncertain.txt"))

    def test_body_sent_then_timeout_is_not_retried(self):
        release = threading.Event()

        def take_body_then_hang(conn, head):
            read_body(conn, head)
            release.wait(10)

        fake = FakeNode(take_body_then_hang)
        self.addCleanup(fake.close)
        self.addCleanup(release.set)  # cleanups run last-in first-out: release, then close
        s = live.storage(fake.url, live.node("2").url, timeout=0.5)
        with self.assertRaises(NanoCdnUploadUncertain) as caught:
            s.save("failover/slow.txt", ContentFile(b"z" * 100))
        self.assertIn("timed out", str(caught.exception))
        self.assertFalse(live.storage(live.node("2").url).exists("2/pub/failover/slow.txt"))

    def test_a_node_that_never_asks_for_the_body_gets_none_and_may_be_passed_over(self):
        """No 100 Continue within the timeout: no byte of the body went out, so another node may take it."""
        received = []
        done = threading.Event()

        def never_continue(conn, head):
            conn.settimeout(10)
            body = b""
            while True:  # until the client gives up and closes
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            received.append(len(body))
            done.set()

        fake = FakeNode(never_continue)
        self.addCleanup(fake.close)
        with self.assertRaises(NanoCdnUnavailable) as caught:  # "try elsewhere", not "uncertain"
            live.storage(fake.url, timeout=0.5).save("failover/no-continue.txt", ContentFile(b"w" * 100))
        self.assertIn(fake.url + " did not ask for the body (timed out); it was not sent", str(caught.exception))
        self.assertTrue(done.wait(10))
        self.assertEqual(received, [0])


class NodeKilledTests(SimpleTestCase):
    """Node 3 is SIGKILLed in the middle of this test; nodes 1 and 2 live on."""

    def test_node_killed_mid_run(self):
        node2, node3 = live.node("2"), live.node("3")
        s = live.storage(node3.url, node2.url)
        on_3 = s.save("kill/before.txt", ContentFile(b"stored on 3"))
        on_2 = live.storage(node2.url).save("kill/on-2.txt", ContentFile(b"stored on 2"))
        self.assertEqual(on_3, "3/pub/kill/before.txt")
        self.assertEqual(on_2, "2/pub/kill/on-2.txt")
        big = os.urandom(8 * 1024 * 1024)
        big_name = s.save("kill/big.bin", ContentFile(big))
        self.assertEqual(big_name, "3/pub/kill/big.bin")

        # A small receive buffer keeps most of the 8 MiB on node 3's side while we read.
        reading = live.storage(
            node3.url, node2.url, socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)]
        ).open(big_name)
        self.assertEqual(reading.read(64 * 1024), big[: 64 * 1024])

        live.kill(node3)

        # The read cannot finish, and says so: never a silently short file.
        with self.assertRaises(NanoCdnReadError) as broken:
            reading.read()
        reading.close()
        message = str(broken.exception)
        self.assertIn("the connection to %s broke after" % node3.url, message)
        self.assertIn("of 8388608 bytes", message)
        self.assertIn(node3.url + " could not connect (connection refused)", message)

        # New saves go to the surviving node, with the dead node still first in the list.
        after = s.save("kill/after.txt", ContentFile(b"stored on 2 after the kill"))
        self.assertEqual(after, "2/pub/kill/after.txt")
        dead_first = live.storage(node3.url, node2.url)
        for name, content in ((on_2, b"stored on 2"), (after, b"stored on 2 after the kill")):
            self.assertTrue(dead_first.exists(name))
            self.assertEqual(dead_first.size(name), len(content))
            with dead_first.open(name) as f:
                self.assertEqual(f.read(), content)
        dead_first.delete(after)
        self.assertFalse(dead_first.exists(after))

        # A file only the dead node has: the error tells which node failed how. (A fresh storage: the
        # one above now asks node 3 last, having seen it fail.)
        with self.assertRaises(NanoCdnError) as lost:
            live.storage(node3.url, node2.url).open(on_3)
        message = str(lost.exception)
        self.assertIn(node3.url + " could not connect (connection refused)", message)
        self.assertIn(node2.url, message)
        # (Today nodes are independent, so node 2 does not know node 3; in a cluster it would serve
        # its replica, or answer 503 when it has none yet, and the read would not fail like this.)
        self.assertTrue(isinstance(lost.exception, (NanoCdnHttpError, NanoCdnUnavailable)), repr(lost.exception))
        self.assertNotIsInstance(lost.exception, NanoCdnFileNotFound)
        dead_first.delete(on_2)
