"""Kept-alive connections: reused per node, replaced when the node closed them while idle, closed after a failure."""

import gc
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import SimpleTestCase, override_settings

import django
from nanocdn_django import NanoCdnClient, NanoCdnStorage

from tests import live
from tests.loopback_server import LoopbackServer


class KeepAliveNode(LoopbackServer):
    """A node that keeps connections open and answers every request; counts connections and requests.

    With ``close_after`` set, it closes each connection after that many
    answers without saying so, as a node does with a connection idle too long.
    """

    def __init__(self, close_after=None):
        self.close_after = close_after
        self.connections = 0
        self.requests = []
        super().__init__()

    def accepted(self, conn):
        self.connections += 1
        threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        with conn:
            conn.settimeout(5)
            reader = conn.makefile("rb")
            answered = 0
            try:
                while self.close_after is None or answered < self.close_after:
                    line = reader.readline()
                    if not line:
                        return
                    headers = {}
                    while True:
                        field = reader.readline()
                        if field in (b"\r\n", b""):
                            break
                        key, _, value = field.decode("latin-1").partition(":")
                        headers[key.strip().lower()] = value.strip()
                    method, target = line.decode("latin-1").split()[:2]
                    self.requests.append((method, target))
                    if headers.get("expect", "").lower() == "100-continue":
                        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    reader.read(int(headers.get("content-length", "0")))
                    if method == "PUT":
                        name = "/7/" + target.split("/", 2)[2]
                        conn.sendall(b"HTTP/1.1 201 Created\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % name.encode())
                    elif method == "DELETE":
                        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                    else:
                        body = b"" if method == "HEAD" else b"kept alive"
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + body)
                    answered += 1
            except OSError:
                pass


class KeepAliveTests(SimpleTestCase):
    def node(self, **options):
        node = KeepAliveNode(**options)
        self.addCleanup(node.close)
        return node

    def cdn(self, *urls):
        client = NanoCdnClient(list(urls), live.USER, live.PASSWORD, timeout=5)
        self.addCleanup(client.close)
        return client

    def test_one_connection_serves_request_after_request(self):
        node = self.node()
        client = self.cdn(node.url)
        self.assertEqual(client.upload("pub", "a.txt", b"0123456789").name, "7/pub/a.txt")
        self.assertIsNotNone(client.head("7/pub/a.txt"))
        with client.open("7/pub/a.txt") as f:
            self.assertEqual(f.read(), b"kept alive")
        self.assertEqual(client.upload("pub", "b.txt", b"x").name, "7/pub/b.txt")
        self.assertTrue(client.delete("7/pub/a.txt"))
        # After the first upload, the client asked the node once which node it is (GET /check/).
        self.assertEqual(
            node.requests,
            [
                ("PUT", "/upload/pub/a.txt"),
                ("GET", "/check/"),
                ("HEAD", "/7/pub/a.txt"),
                ("GET", "/7/pub/a.txt"),
                ("PUT", "/upload/pub/b.txt"),
                ("DELETE", "/7/pub/a.txt"),
            ],
        )
        self.assertEqual(node.connections, 1)

    def test_a_connection_the_node_closed_while_idle_is_replaced_without_an_error(self):
        node = self.node(close_after=1)
        client = self.cdn(node.url)
        for _ in range(3):
            self.assertIsNotNone(client.head("7/pub/a.txt"))
        self.assertTrue(client.delete("7/pub/a.txt"))
        self.assertEqual(client.upload("pub", "c.txt", b"0123456789").name, "7/pub/c.txt")
        self.assertEqual(client.upload("pub", "d.txt", b"0123456789").name, "7/pub/d.txt")
        # The GET is the /check/ after the first upload.
        self.assertEqual([m for m, _ in node.requests], ["HEAD"] * 3 + ["DELETE", "PUT", "GET", "PUT"])
        self.assertEqual(node.connections, 7)

    def test_a_connection_that_failed_is_not_reused(self):
        # A read left half-way (the connection is mid-answer) and a node's error answer both close theirs.
        node = self.node()
        client = self.cdn(node.url)
        with client.open("7/pub/a.txt") as f:
            self.assertEqual(f.read(4), b"kept")
        self.assertIsNotNone(client.head("7/pub/a.txt"))
        self.assertEqual(node.connections, 2)

    def test_a_file_the_garbage_collector_closes_leaves_no_dead_connection_in_the_pool(self):
        # A model instance and its FieldFile refer to each other, so a file opened through the field and
        # never closed is closed by the garbage collector, which finalizes its connection's socket too
        # (fd -1). Given back to the pool then, that connection failed the next request with EBADF.
        node = self.node()
        client = self.cdn(node.url)
        for read, connections in ((lambda f: f.read(), 1), (lambda f: f.read(4), 2)):
            f = client.open("7/pub/a.txt")
            read(f)
            cycle = [f]
            cycle.append(cycle)
            del f, cycle
            self.assertGreater(gc.collect(), 0)
            self.assertIsNotNone(client.head("7/pub/a.txt"))
            # A file read to its end gave its connection back at once; one left half-way had it closed.
            self.assertEqual(node.connections, connections)


class StaticFilesTests(SimpleTestCase):
    if django.VERSION >= (4, 2):
        settings = {"STORAGES": {"default": {"BACKEND": "nanocdn_django.NanoCdnStorage"}, "staticfiles": {"BACKEND": "nanocdn_django.NanoCdnStorage"}}}
    else:
        settings = {"STATICFILES_STORAGE": "nanocdn_django.NanoCdnStorage"}

    def test_refuses_to_be_the_staticfiles_storage_and_says_what_to_use(self):
        with override_settings(**self.settings):
            with self.assertRaises(ImproperlyConfigured) as caught:
                call_command("collectstatic", interactive=False, verbosity=0)
            message = str(caught.exception)
            self.assertIn("nanocdn cannot hold static files", message)
            self.assertIn("1/pub/static/app.css", message)
            self.assertIn("StaticFilesStorage", message)
            from django.contrib.staticfiles.storage import staticfiles_storage

            with self.assertRaises(ImproperlyConfigured):
                staticfiles_storage.url("app.css")
            with self.assertRaises(ImproperlyConfigured):
                NanoCdnStorage()
        # As the default storage only, it is welcome.
        NanoCdnStorage()
