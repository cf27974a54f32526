"""Node failover: a dead node, a node whose store fails (503), and fake nodes that misbehave on purpose.

A node of the cluster SIGKILLed mid-test: tests/cluster_kill.py.
"""

import json
import os
import socket
import threading
import time

from django.core.files.base import ContentFile
from django.test import SimpleTestCase

from nanocdn_django import NanoCdnClient, NanoCdnUnavailable, NanoCdnUploadUncertain
from nanocdn_django.client import EXPECT_AGAIN_AFTER

from tests import live
from tests.loopback_server import LoopbackServer


class FakeNode(LoopbackServer):
    """A node for what a real one cannot be made to do on purpose, one connection at a time.

    ``behaviour`` gets the connection and the request head (bytes up to the
    blank line) and does whatever it likes with them.
    """

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests = []
        super().__init__()

    def accepted(self, conn):
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
        # Node 3 runs on its own: a node of the cluster whose store fails passes the upload to its
        # peer itself instead of answering 503 (tests/test_cluster.py).
        node3, node2 = live.node("3"), live.node("2")
        s = live.storage(node3.url, node2.url)
        with live.broken_store(node3):
            name = s.save("failover/store-down.txt", ContentFile(b"node 3 cannot store"))
            self.assertEqual(name, "2/pub/failover/store-down.txt")
            self.assertEqual(s.open(name).read(), b"node 3 cannot store")
            # Alone, node 3 says why: the error names the node, the status, the code and Retry-After.
            with self.assertRaises(NanoCdnUnavailable) as caught:
                live.storage(node3.url).save("failover/alone.txt", ContentFile(b"x"))
            message = str(caught.exception)
            self.assertIn(node3.url, message)
            self.assertIn("503 store_unavailable", message)
            self.assertIsNotNone(caught.exception.retry_after)
            self.assertFalse(os.path.exists(live.stored_path(node3, "3/pub/failover/alone.txt")))
        s.delete(name)
        # Repaired, node 3 takes uploads again.
        fresh = live.storage(node3.url, node2.url)
        name = fresh.save("failover/repaired.txt", ContentFile(b"back"))
        self.assertEqual(name, "3/pub/failover/repaired.txt")
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
            if len(received) == 2:
                done.set()

        fake = FakeNode(never_continue)
        self.addCleanup(fake.close)
        with self.assertRaises(NanoCdnUnavailable) as caught:  # "try elsewhere", not "uncertain"
            live.storage(fake.url, continue_timeout=0.5).save("failover/no-continue.txt", ContentFile(b"w" * 100))
        self.assertIn(fake.url + " did not ask for the body within 0.5s (timed out); it was not sent", str(caught.exception))
        self.assertTrue(done.wait(10))
        # The upload's connection, and the GET /check/ that found the node answering nothing either.
        self.assertTrue(fake.requests[-1].startswith(b"GET /check/ "))
        self.assertEqual(received, [0, 0])


class IgnoresExpect(FakeNode):
    """A server that never answers ``Expect: 100-continue`` but takes the body (as workerd does), each connection in a thread.

    With ``slow_once`` (seconds), a node that was slow once instead: it asks
    for the first body that late, and for the next ones at once.
    """

    def __init__(self, slow_once=None):
        self.slow_once = slow_once
        super().__init__(self._answer)

    def accepted(self, conn):
        threading.Thread(target=FakeNode.accepted, args=(self, conn), daemon=True).start()

    def _answer(self, conn, head):
        if head.startswith(b"GET /check/ "):
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{"status":"ok"}')
            return
        header, _, body = head.partition(b"\r\n\r\n")
        if self.slow_once is not None and b"expect: 100-continue" in header.lower():
            delay, self.slow_once = self.slow_once, 0
            time.sleep(delay)
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in header.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        path = header.split(b" ")[1].decode().replace("/upload/", "/9/", 1)
        answer = json.dumps({"name": path, "size": len(body), "etag": '"e"'}).encode()
        conn.sendall(
            b"HTTP/1.1 201 Created\r\nLocation: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (path.encode(), len(answer), answer)
        )

    def expects(self):
        """For each upload so far, whether it sent ``Expect: 100-continue``."""
        return [b"expect: 100-continue" in r.lower() for r in self.requests if r.startswith(b"PUT ")]


class ExpectIgnoredTests(SimpleTestCase):
    def test_a_server_that_ignores_expect_but_answers_check_gets_the_body_and_is_not_waited_on_again(self):
        server = IgnoresExpect()
        try:
            s = live.storage(server.url, continue_timeout=0.5)
            started = time.monotonic()
            self.assertEqual(s.save("expect/first.txt", ContentFile(b"first")), "9/pub/expect/first.txt")
            self.assertGreaterEqual(time.monotonic() - started, 0.5)
            started = time.monotonic()
            self.assertEqual(s.save("expect/second.txt", ContentFile(b"second")), "9/pub/expect/second.txt")
            self.assertLess(time.monotonic() - started, 0.5)
            puts = [r for r in server.requests if r.startswith(b"PUT ")]
            self.assertIn(b"expect: 100-continue", puts[0].lower())
            self.assertNotIn(b"expect: 100-continue", puts[1].lower())
        finally:
            server.close()

    def test_expect_is_sent_again_after_five_minutes_to_a_node_that_took_a_body_without_asking(self):
        now = [1000.0]
        for server, expects in ((IgnoresExpect(), [True, False, True, False]), (IgnoresExpect(slow_once=0.8), [True, False, True, True])):
            self.addCleanup(server.close)
            client = NanoCdnClient([server.url], live.USER, live.PASSWORD, continue_timeout=0.5, clock=lambda: now[0])
            self.addCleanup(client.close)
            seconds = []
            for i in range(4):
                if i == 2:  # one interval after the upload that did not wait for the node to ask
                    now[0] += EXPECT_AGAIN_AFTER
                started = time.monotonic()
                self.assertEqual(client.upload("pub", "again/%d.txt" % i, b"upload %d" % i).name, "9/pub/again/%d.txt" % i)
                seconds.append(time.monotonic() - started)
                now[0] += 1
            # The third upload asked again. Workerd still ignores Expect: the third waited, the fourth did not.
            # The node that was only slow once asked for the third body at once, and the fourth sent Expect too.
            self.assertEqual(server.expects(), expects)
            self.assertGreaterEqual(seconds[0], 0.5)
            self.assertLess(seconds[1], 0.5)
            self.assertEqual(seconds[2] >= 0.5, expects == [True, False, True, False])
            self.assertLess(seconds[3], 0.5)


class OwnerNode(FakeNode):
    """A node that says in GET /check/ that it is ``node_id``, and answers uploads with ``answer`` (a status line and headers)."""

    def __init__(self, node_id, answer):
        self.node_id = node_id
        self.answer = answer
        super().__init__(self._answer)

    def _answer(self, conn, head):
        if head.startswith(b"GET /check/ "):
            body = json.dumps({"status": "ok", "node": self.node_id}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            return
        read_body(conn, head)
        conn.sendall(self.answer + b"Content-Length: 0\r\nConnection: close\r\n\r\n")


class OwnerTests(SimpleTestCase):
    def test_the_node_that_took_an_upload_is_the_owner_only_if_it_says_so_itself(self):
        # Node 2 cannot store (503); node 8 takes the upload and answers with node 2's name, as a node whose
        # store fails does once it passed the upload on to node 2.
        node2 = OwnerNode("2", b"HTTP/1.1 503 Service Unavailable\r\n")
        node8 = OwnerNode("8", b"HTTP/1.1 201 Created\r\nLocation: /2/pub/owner/a.txt\r\n")
        for fake in (node2, node8):
            self.addCleanup(fake.close)
        client = NanoCdnClient([node2.url, node8.url], live.USER, live.PASSWORD, cooldown=0)
        self.addCleanup(client.close)
        self.assertEqual(client.upload("pub", "owner/a.txt", b"passed on").name, "2/pub/owner/a.txt")
        # Node 8's /check/ says it is node 8: reads of its files go to it first, those of node 2 keep the list's order.
        self.assertTrue(node8.requests[-1].startswith(b"GET /check/ "))
        self.assertEqual([n.url for n in client.ordered_nodes(owner="8")], [node8.url, node2.url])
        self.assertEqual([n.url for n in client.ordered_nodes(owner="2")], [node2.url, node8.url])
        # Its id is known now: the next upload asks no /check/.
        client.upload("pub", "owner/b.txt", b"passed on")
        self.assertEqual([r.split(b" ")[0] for r in node8.requests], [b"PUT", b"GET", b"PUT"])

        # A configured map is never changed: node 2's files stay at node 2's URL, and no /check/ is asked.
        configured = NanoCdnClient({"2": node2.url, "8": node8.url}, live.USER, live.PASSWORD, cooldown=0)
        self.addCleanup(configured.close)
        configured.upload("pub", "owner/c.txt", b"passed on")
        self.assertEqual([n.url for n in configured.ordered_nodes(owner="2")], [node2.url, node8.url])
        self.assertEqual([r.split(b" ")[0] for r in node8.requests], [b"PUT", b"GET", b"PUT", b"PUT"])
