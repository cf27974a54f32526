"""Node failover: a dead node, a node whose store fails (503), and fake nodes that misbehave on purpose.

A node of the cluster SIGKILLed mid-test: tests/cluster_kill.py.
"""

import json
import os
import socket
import threading
import time
from unittest import mock

from django.core.files.base import ContentFile
from django.test import SimpleTestCase

from nanocdn_django import NanoCdnClient, NanoCdnUnavailable, NanoCdnUploadUncertain
from nanocdn_django.client import EXPECT_AGAIN_AFTER, PROBE_AFTER

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


def read_until_closed(conn):
    """Everything the client sends until it closes the connection (or 10 seconds pass)."""
    conn.settimeout(10)
    received = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return received
        received += chunk


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

    def test_a_proxys_502_or_504_before_the_body_moves_on(self):
        """A proxy whose node is down refuses before it asks for the body: nothing was sent, so the next node takes it."""
        for status in (b"502 Bad Gateway", b"504 Gateway Timeout"):
            received = []
            done = threading.Event()

            def gateway_failed(conn, head, status=status, received=received, done=done):
                conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status)
                conn.shutdown(socket.SHUT_WR)
                received.append(len(read_until_closed(conn)))
                done.set()

            fake = FakeNode(gateway_failed)
            self.addCleanup(fake.close)
            s = live.storage(fake.url, live.node("2").url)
            stored = s.client.upload("pub", "failover/gateway.txt", b"g" * 5000)
            self.assertEqual([stored.name, stored.node], ["2/pub/failover/gateway.txt", live.node("2").url], status)
            s.delete(stored.name)
            self.assertTrue(done.wait(10), status)
            self.assertEqual(received, [0], status)

    def test_the_check_probe_takes_a_proxys_502_for_no_answer(self):
        """A node that does not ask for the body, behind a proxy whose GET /check/ says its node failed: hung, not slow."""
        received = []
        done = threading.Event()

        def hung_behind_a_proxy(conn, head):
            if head.startswith(b"GET /check/ "):
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            received.append(len(read_until_closed(conn)))  # until the client gives up and closes
            done.set()

        class Proxy(FakeNode):
            """Each connection in a thread: the GET /check/ is answered while the upload waits."""

            def accepted(self, conn):
                threading.Thread(target=FakeNode.accepted, args=(self, conn), daemon=True).start()

        fake = Proxy(hung_behind_a_proxy)
        self.addCleanup(fake.close)
        s = live.storage(fake.url, live.node("2").url, continue_timeout=0.5)
        # Watched, since a /check/ that timed out would end the same way: the proxy's 502 was read.
        with mock.patch.object(s.client, "_release", wraps=s.client._release) as released:
            stored = s.client.upload("pub", "failover/hung-behind-proxy.txt", b"h" * 100)
        self.assertIn(502, [call.args[1].status for call in released.call_args_list])
        self.assertEqual(stored.name, "2/pub/failover/hung-behind-proxy.txt")
        s.delete(stored.name)
        self.assertTrue(done.wait(10))
        self.assertEqual(received, [0])
        self.assertTrue(any(r.startswith(b"GET /check/ ") for r in fake.requests))
        # Not taken for a server that ignores Expect: its next upload waits for 100 Continue again.
        self.assertTrue(s.client._sends_expect(s.client.nodes[0]))

    def test_an_upload_without_expect_asks_check_first_and_a_proxys_502_moves_it_on(self):
        """Expect switched off, or an empty body: a node behind a proxy whose node is down gets no byte of the upload."""

        def gateway_failed(conn, head):
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        for content, options in ((b"w" * 100, {"expect_continue": False}), (b"", {})):
            fake = FakeNode(gateway_failed)
            self.addCleanup(fake.close)
            s = live.storage(fake.url, live.node("2").url, **options)
            stored = s.client.upload("pub", "failover/unprobed-%d.txt" % len(content), content)
            self.assertEqual([stored.name, stored.node], ["2/pub/failover/unprobed-%d.txt" % len(content), live.node("2").url])
            s.delete(stored.name)
            self.assertEqual([r.split(b" ", 2)[:2] for r in fake.requests], [[b"GET", b"/check/"]], options)

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
            received.append(len(read_until_closed(conn)))  # until the client gives up and closes
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

    With ``slow_once``, a node that was slow once instead: it asks for the
    first body only once the client, tired of waiting for that, asked
    ``GET /check/``; for the next ones at once.
    """

    def __init__(self, slow_once=False):
        self.slow_once = slow_once
        self.was_slow = False
        self.checked = threading.Event()
        super().__init__(self._answer)

    def accepted(self, conn):
        threading.Thread(target=FakeNode.accepted, args=(self, conn), daemon=True).start()

    def _answer(self, conn, head):
        if head.startswith(b"GET /check/ "):
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{"status":"ok"}')
            self.checked.set()
            return
        header, _, body = head.partition(b"\r\n\r\n")
        if self.slow_once and b"expect: 100-continue" in header.lower():
            if not self.was_slow:
                self.was_slow = True
                self.checked.wait(10)
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

    def exchanges(self):
        """The uploads and probes so far, in order: ``PUT+Expect``, ``PUT`` or ``CHECK``.

        A ``CHECK`` right after a ``PUT+Expect`` means that upload waited
        ``continue_timeout`` for 100 Continue in vain.
        """
        kinds = []
        for r in self.requests:
            if r.startswith(b"GET /check/ "):
                kinds.append("CHECK")
            elif r.startswith(b"PUT "):
                kinds.append("PUT+Expect" if b"expect: 100-continue" in r.lower() else "PUT")
        return kinds


class ExpectIgnoredTests(SimpleTestCase):
    # How long an upload waits for 100 Continue.
    CONTINUE_TIMEOUT = 1.5

    def test_a_server_that_ignores_expect_but_answers_check_gets_the_body_and_is_not_waited_on_again(self):
        server = IgnoresExpect()
        try:
            s = live.storage(server.url, continue_timeout=self.CONTINUE_TIMEOUT)
            started = time.monotonic()
            self.assertEqual(s.save("expect/first.txt", ContentFile(b"first")), "9/pub/expect/first.txt")
            self.assertGreaterEqual(time.monotonic() - started, self.CONTINUE_TIMEOUT)
            self.assertEqual(s.save("expect/second.txt", ContentFile(b"second")), "9/pub/expect/second.txt")
            # The second went without Expect, and unprobed: the node had just answered.
            self.assertEqual(server.exchanges(), ["PUT+Expect", "CHECK", "PUT"])
        finally:
            server.close()

    def test_expect_is_sent_again_after_five_minutes_to_a_node_that_took_a_body_without_asking(self):
        now = [1000.0]
        # Uploads without Expect ask GET /check/ first: each comes a second after the node's last answer.
        for server, exchanges, third_waited in (
            (IgnoresExpect(), ["PUT+Expect", "CHECK", "CHECK", "PUT", "PUT+Expect", "CHECK", "CHECK", "PUT"], True),
            (IgnoresExpect(slow_once=True), ["PUT+Expect", "CHECK", "CHECK", "PUT", "PUT+Expect", "PUT+Expect"], False),
        ):
            self.addCleanup(server.close)
            client = NanoCdnClient([server.url], live.USER, live.PASSWORD, continue_timeout=self.CONTINUE_TIMEOUT, clock=lambda: now[0])
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
            self.assertEqual(server.exchanges(), exchanges)
            self.assertGreaterEqual(seconds[0], self.CONTINUE_TIMEOUT)
            if third_waited:
                self.assertGreaterEqual(seconds[2], self.CONTINUE_TIMEOUT)

    def test_an_upload_without_expect_asks_check_only_of_a_node_not_heard_from_for_a_while(self):
        now = [1000.0]
        server = IgnoresExpect()
        self.addCleanup(server.close)
        client = NanoCdnClient([server.url], live.USER, live.PASSWORD, expect_continue=False, clock=lambda: now[0])
        self.addCleanup(client.close)
        for i, later in enumerate((0, PROBE_AFTER / 2, PROBE_AFTER)):
            now[0] += later
            self.assertEqual(client.upload("pub", "probed/%d.txt" % i, b"upload %d" % i).name, "9/pub/probed/%d.txt" % i)
        # Half a second after the first upload's answer the second went unprobed; a second after that, the third was probed.
        self.assertEqual(server.exchanges(), ["CHECK", "PUT", "PUT", "CHECK", "PUT"])


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
