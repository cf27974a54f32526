"""The storage API against the two healthy nodes of the cluster (1 and 2), through default_storage."""

import datetime
import io
import os
import re
import urllib.error
import urllib.request

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.test import SimpleTestCase

from nanocdn_django import NanoCdnFileExists, NanoCdnHttpError, NanoCdnReadError, NanoCdnStorage, NanoCdnTooLarge, NanoCdnUnauthorized

from tests import live
from tests.loopback_server import CuttingProxy


def fetch(url, headers=None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        return response.read()


def _content(path):
    """A file's bytes, or None while there is none."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class _Unseekable(io.RawIOBase):
    """A stream read once, front to back (a download, a decompressor)."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._data.readinto(buffer)


class RoundTripTests(SimpleTestCase):
    def test_default_storage_is_nanocdn(self):
        self.assertIsInstance(default_storage, NanoCdnStorage)
        self.assertEqual(default_storage.client.nodes[0].url, live.node("1").url)

    def test_save_open_exists_size_url_delete(self):
        name = default_storage.save("docs/hello world.txt", ContentFile(b"Hello world"))
        # The node that stored it (1, the first healthy one) and the namespace come first; no leading slash.
        self.assertEqual(name, "1/pub/docs/hello world.txt")
        self.assertTrue(os.path.isfile(live.stored_path(live.node("1"), name)))
        self.assertTrue(default_storage.exists(name))
        self.assertEqual(default_storage.size(name), 11)
        with default_storage.open(name) as f:
            self.assertEqual(f.read(), b"Hello world")
            self.assertEqual(f.node, live.node("1").url)
        url = default_storage.url(name)
        self.assertEqual(url, live.node("1").url + "/1/pub/docs/hello%20world.txt")
        self.assertEqual(fetch(url), b"Hello world")
        modified = default_storage.get_modified_time(name)
        self.assertIsNotNone(modified.tzinfo)
        self.assertLess(abs(datetime.datetime.now(datetime.timezone.utc) - modified), datetime.timedelta(minutes=5))

        default_storage.delete(name)
        self.assertFalse(default_storage.exists(name))
        self.assertFalse(os.path.exists(live.stored_path(live.node("1"), name)))
        default_storage.delete(name)  # already gone: no error, like FileSystemStorage
        with self.assertRaises(FileNotFoundError):
            default_storage.open(name)
        with self.assertRaises(FileNotFoundError):
            default_storage.size(name)

    def test_an_upload_says_how_many_nodes_hold_it(self):
        # Both nodes of the live cluster: the answer waits for the peer's copy (sync_copies = 2).
        # A node that saw its peer down a moment ago answers with one copy, as it should.
        live.wait_until_cluster_ready()
        stored = default_storage.client.upload("pub", "docs/copies.txt", b"on two disks")
        self.assertEqual([stored.name, stored.copies], ["1/pub/docs/copies.txt", 2])
        self.assertTrue(os.path.isfile(live.stored_path(live.node("2"), stored.name)))
        default_storage.delete(stored.name)

    def test_saves_file_objects_of_every_kind(self):
        # A pipe's File says size 0 (its file descriptor's), and a stream that cannot seek has none: both are read whole.
        reader, writer = os.pipe()
        os.write(writer, b"from a pipe")
        os.close(writer)
        names = [
            default_storage.save("kinds/bytes.bin", ContentFile(b"\x00\x01\x02")),
            default_storage.save("kinds/text.txt", ContentFile("héllo")),  # text: sent as UTF-8
            default_storage.save("kinds/file.bin", File(io.BytesIO(b"from a file object"), name="file.bin")),
            default_storage.save("kinds/empty.txt", ContentFile(b"")),
            default_storage.save("kinds/pipe.bin", File(os.fdopen(reader, "rb"))),
            default_storage.save("kinds/stream.bin", File(_Unseekable(b"from a stream"), name="stream.bin")),
        ]
        expected = [b"\x00\x01\x02", "héllo".encode("utf-8"), b"from a file object", b"", b"from a pipe", b"from a stream"]
        for name, content in zip(names, expected):
            with default_storage.open(name) as f:
                self.assertEqual(f.read(), content, name)
            default_storage.delete(name)

    def test_a_taken_name_is_retried_with_a_suffix(self):
        first = default_storage.save("dup/report.txt", ContentFile(b"first"))
        second = default_storage.save("dup/report.txt", ContentFile(b"second"))
        self.assertEqual(first, "1/pub/dup/report.txt")
        self.assertRegex(second, r"^1/pub/dup/report_[A-Za-z0-9]{7}\.txt$")
        self.assertEqual(default_storage.open(first).read(), b"first")
        self.assertEqual(default_storage.open(second).read(), b"second")
        # The client underneath raises a typed error for the 409, naming the node.
        with self.assertRaises(NanoCdnFileExists) as caught:
            default_storage.client.upload("pub", "dup/report.txt", b"third")
        self.assertIsInstance(caught.exception, FileExistsError)
        self.assertEqual(caught.exception.status, 409)
        self.assertEqual(caught.exception.node, live.node("1").url)
        self.assertIn("409 exists", str(caught.exception))
        for name in (first, second):
            default_storage.delete(name)

    def test_open_streams_the_body_lazily_and_seeks_with_ranges(self):
        size = 3 * 1024 * 1024
        data = bytes(range(256)) * (size // 256)
        name = default_storage.save("big/stream.bin", ContentFile(data))
        self.addCleanup(default_storage.delete, name)
        f = default_storage.open(name)
        try:
            self.assertEqual(f.size, size)  # from Content-Length, before reading
            self.assertEqual(f.read(10), data[:10])
            # Only what was asked for (and one buffer) came off the connection so far.
            self.assertLess(f.raw.tell(), 256 * 1024)
            f.seek(2 * 1024 * 1024 + 5)
            self.assertEqual(f.read(100), data[2 * 1024 * 1024 + 5 : 2 * 1024 * 1024 + 105])
            f.seek(0)
            chunks = list(f.chunks(chunk_size=256 * 1024))
            self.assertEqual(b"".join(chunks), data)
            self.assertGreater(len(chunks), 10)
        finally:
            f.close()
        self.assertTrue(f.closed)

    def _through_cutting_proxy(self):
        """A storage that reads node 1 through a proxy whose first connection breaks when the test says."""
        # More than a read's first 64 KiB buffer, which must arrive whole; far less than the file.
        proxy = CuttingProxy(live.node("1").url, limit=256 * 1024)
        self.addCleanup(proxy.close)
        return proxy, live.storage(proxy.url)

    def test_a_broken_connection_mid_read_goes_on_from_the_same_byte(self):
        data = os.urandom(2 * 1024 * 1024)
        name = default_storage.save("big/resume.bin", ContentFile(data))
        self.addCleanup(default_storage.delete, name)
        proxy, proxied = self._through_cutting_proxy()
        with proxied.open(name) as f:
            head = f.read(1000)
            self.assertEqual(proxy.connections, 1)
            proxy.cut()
            rest = f.read()
        self.assertEqual(head + rest, data)
        self.assertEqual(proxy.connections, 2)

    def test_a_read_that_goes_on_never_splices_in_another_file_stored_under_the_name(self):
        first = os.urandom(2 * 1024 * 1024)
        name = default_storage.save("big/swapped.bin", ContentFile(first))
        self.addCleanup(default_storage.delete, name)
        proxy, proxied = self._through_cutting_proxy()
        with proxied.open(name) as f:
            f.read(1000)
            # Meanwhile the name came to hold another file of the same size (deleted, stored again).
            default_storage.delete(name)
            second = os.urandom(len(first))
            self.assertEqual(default_storage.save("big/swapped.bin", ContentFile(second)), name)
            self.assertEqual(_content(live.stored_path(live.node("1"), name)), second)
            self.assertEqual(proxy.connections, 1)
            proxy.cut()
            with self.assertRaises(NanoCdnReadError) as caught:
                f.read()
        self.assertIn("holds another file under this name now", str(caught.exception))
        self.assertEqual(proxy.connections, 2)

    def test_text_mode(self):
        name = default_storage.save("text/poem.txt", ContentFile("ligne un\nligne deux\n".encode("utf-8")))
        self.addCleanup(default_storage.delete, name)
        with default_storage.open(name, "r") as f:
            self.assertEqual(f.readlines(), ["ligne un\n", "ligne deux\n"])
        with self.assertRaises(ValueError):
            default_storage.open(name, "wb")

    def test_private_namespace_needs_credentials_to_read(self):
        private = live.storage(live.node("1").url, live.node("2").url, namespace="priv")
        name = private.save("secret.txt", ContentFile(b"psst"))
        self.addCleanup(private.delete, name)
        self.assertEqual(name, "1/priv/secret.txt")
        self.assertTrue(private.exists(name))
        self.assertEqual(private.open(name).read(), b"psst")
        with self.assertRaises(urllib.error.HTTPError) as anonymous:
            fetch(private.url(name))
        self.assertEqual(anonymous.exception.code, 401)
        # A stored name says its namespace, so the default (pub) storage reads it with credentials too.
        self.assertEqual(default_storage.open(name).read(), b"psst")

    def test_wrong_credentials_are_not_retried_elsewhere(self):
        wrong = live.storage(live.node("1").url, live.node("2").url, password="wrong")
        with self.assertRaises(NanoCdnUnauthorized) as caught:
            wrong.save("nope.txt", ContentFile(b"x"))
        self.assertEqual(caught.exception.status, 401)
        self.assertEqual([a.node for a in caught.exception.attempts], [live.node("1").url])
        self.assertIn("401 unauthorized", str(caught.exception))

    def test_too_large_is_refused_before_the_body_is_sent(self):
        node1 = live.node("1")
        big = ContentFile(b"\0" * (node1.max_upload_bytes + 1))
        with self.assertRaises(NanoCdnTooLarge) as caught:
            live.storage(node1.url, live.node("2").url).save("too/large.bin", big)
        self.assertIsInstance(caught.exception, NanoCdnHttpError)
        self.assertEqual(caught.exception.status, 413)
        self.assertEqual([a.node for a in caught.exception.attempts], [node1.url])
        self.assertIn("413 too_large", str(caught.exception))

    def test_names_save_cannot_have_returned(self):
        # Not "<node>/<ns>/<path>": no request, no such file.
        self.assertFalse(default_storage.exists("docs/hello.txt"))
        with self.assertRaises(FileNotFoundError):
            default_storage.open("docs/hello.txt")
        default_storage.delete("docs/hello.txt")
        for bad in ("../etc/passwd", "a//b.txt", "a/./b.txt", "/abs.txt", "tab\there.txt"):
            with self.assertRaises(SuspiciousFileOperation, msg=bad):
                default_storage.save(bad, ContentFile(b"x"))

    def test_nodes_by_id_send_reads_to_the_owner_first(self):
        node1, node2 = live.node("1"), live.node("2")
        name = live.storage(node1.url).save("owner/first.txt", ContentFile(b"on 1"))
        self.addCleanup(live.storage(node1.url).delete, name)
        # Node 2 comes first in the dict, but the name says node 1 owns the file. (Node 2 could serve it
        # too, from its replica or from node 1: the node that answered shows who was asked first.)
        s = NanoCdnStorage(nodes={"2": node2.url, "1": node1.url}, username=live.USER, password=live.PASSWORD)
        with s.open(name) as f:
            self.assertEqual(f.read(), b"on 1")
            self.assertEqual(f.node, node1.url)
        self.assertEqual(s.size(name), 4)
        self.assertEqual(s.url(name), node2.url + "/1/pub/owner/first.txt")

    def test_url_uses_base_url(self):
        s = live.storage(live.node("1").url, base_url="https://cdn.example.com/")
        self.assertEqual(s.url("2/pub/a b/ü.png"), "https://cdn.example.com/2/pub/a%20b/%C3%BC.png")


class NameTests(SimpleTestCase):
    def test_get_available_name_keeps_room_for_the_prefix_and_a_suffix(self):
        s = live.storage(live.node("1").url)
        self.assertEqual(s.get_available_name("a/b.txt"), "a/b.txt")
        shortened = s.get_available_name("r/" + "x" * 60 + ".pdf", max_length=40)
        # "<node, up to 3 chars>/pub/" (8) + the name (24) + "_xxxxxxx" (8) fit in 40.
        self.assertEqual(shortened, "r/" + "x" * 18 + ".pdf")
        with self.assertRaises(SuspiciousFileOperation):
            s.get_available_name("r/" + "x" * 60 + ".pdf", max_length=12)

    def test_generate_filename(self):
        s = live.storage(live.node("1").url)
        self.assertEqual(s.generate_filename("a\\b/my file!.txt"), "a/b/my_file.txt")
        with self.assertRaises(SuspiciousFileOperation):
            s.generate_filename("../x/y.txt")

    def test_settings_are_checked(self):
        from django.core.exceptions import ImproperlyConfigured
        from django.test import override_settings

        with override_settings(NANOCDN={"NODES": ["http://127.0.0.1:1"], "NAMESPAC": "pub"}):
            with self.assertRaisesRegex(ImproperlyConfigured, "unknown key 'NAMESPAC'"):
                NanoCdnStorage().config
        with override_settings(NANOCDN={}):
            with self.assertRaisesRegex(ImproperlyConfigured, "needs node URLs"):
                NanoCdnStorage().config
            self.assertEqual(NanoCdnStorage(nodes="http://a:1, http://b:2/").config["nodes"], ["http://a:1", "http://b:2"])
        with override_settings(NANOCDN={"NODES": ["ftp://x"]}):
            with self.assertRaisesRegex(ImproperlyConfigured, "node URL"):
                NanoCdnStorage().client
        # A password in a node URL would be sent nowhere, and shown in every error and link.
        with override_settings(NANOCDN={"NODES": ["https://app:s3cret@cdn1.example.com"]}):
            with self.assertRaisesRegex(ImproperlyConfigured, "takes no user or password") as caught:
                NanoCdnStorage().client
            self.assertNotIn("s3cret", str(caught.exception))
        self.assertTrue(re.match(r"^http://127\.0\.0\.1:\d+$", default_storage.config["base_url"]))
