"""Expiring uploads and signed URLs, as the storage sends and makes them.

The signing vectors are shared with the TypeScript suite (test/clients/ts-lifecycle.test.ts).
"""

import datetime
import json
import os
import tempfile
import time
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import SimpleTestCase

from nanocdn_django.signing import sign_path, signing_key, url_signature

from tests import live
from tests.test_failover import FakeNode, read_body

with open(os.path.join(os.path.dirname(__file__), "..", "..", "signing-vectors.json"), encoding="utf-8") as shared:
    VECTORS = json.load(shared)


class SigningTests(SimpleTestCase):
    def secret_file(self, text):
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        self.addCleanup(os.remove, path)
        return path

    def test_vectors(self):
        for v in VECTORS["urls"]:
            self.assertEqual(url_signature(v["key"], v["path"], v["expires"]), v["signature"], v["path"])
            self.assertEqual(sign_path(v["path"], v["key"], v["expires"]), v["signed"], v["path"])
        # Signed as a browser sends it: percent-encoded.
        v = VECTORS["urls"][1]
        self.assertEqual(sign_path("/12/priv/a b/été.txt", v["key"], v["expires"]), v["signed"])
        for path in ("/1/priv/a?b.pdf", "/1/priv/a#b.pdf", "/1/priv/../pub/a.pdf", "/1/priv/./a.pdf"):
            with self.assertRaisesRegex(ValueError, "not the path of a private file", msg=path):
                sign_path(path, v["key"], v["expires"])
        # Twelve digits at most, as the nodes take.
        self.assertIn("?expires=999999999999&", sign_path("/1/priv/a.pdf", v["key"], 999999999999))
        with self.assertRaisesRegex(ValueError, "up to 999999999999"):
            sign_path("/1/priv/a.pdf", v["key"], 10**12)
        for v in VECTORS["keys"]:
            if v["key"] is None:
                with self.assertRaisesRegex(ValueError, "holds no key"):
                    signing_key(v["file"])
            else:
                self.assertEqual(signing_key(v["file"]), v["key"])

    def test_url_of_a_private_file_is_signed_for_the_configured_lifetime(self):
        v = VECTORS["urls"][1]
        secret = self.secret_file("\n  %s  \nan-older-key\n" % v["key"])
        s = live.storage("http://127.0.0.1:9", base_url="https://cdn.example.com", url_signing_secret_file=secret, signed_url_ttl=600)
        name = "12/priv/a b/été.txt"
        before = int(time.time())
        url = urlsplit(s.url(name))
        after = int(time.time())
        self.assertEqual("%s://%s%s" % (url.scheme, url.netloc, url.path), "https://cdn.example.com" + v["path"])
        query = parse_qs(url.query)
        expires = int(query["expires"][0])
        self.assertTrue(before + 600 <= expires <= after + 600, expires)
        self.assertEqual(query["signature"], [url_signature(v["key"], v["path"], expires)])
        # Public files need no signature; without the key, a private file's link is the plain one.
        self.assertEqual(s.url("1/pub/logo.png"), "https://cdn.example.com/1/pub/logo.png")
        plain = live.storage("http://127.0.0.1:9", base_url="https://cdn.example.com")
        self.assertEqual(plain.url("1/priv/x.pdf"), "https://cdn.example.com/1/priv/x.pdf")
        # A link that would expire as it is made is a configuration error too.
        for ttl in (0, 0.5):
            with self.assertRaisesRegex(ImproperlyConfigured, "signed_url_ttl"):
                live.storage("http://127.0.0.1:9", url_signing_secret_file=secret, signed_url_ttl=ttl).url(name)
        # A key file without a key is a configuration error, said as such.
        empty = live.storage("http://127.0.0.1:9", url_signing_secret_file=self.secret_file("\n \n"))
        with self.assertRaisesRegex(ImproperlyConfigured, "url_signing_secret_file.*holds no key"):
            empty.url("1/priv/x.pdf")


class ExpiryTests(SimpleTestCase):
    def test_sends_x_delete_after_or_at_and_refuses_bad_values_before_sending(self):
        def refuse(conn, head):
            read_body(conn, head)
            conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        fake = FakeNode(refuse)
        self.addCleanup(fake.close)
        node2 = live.node("2")
        # No cooldown: every upload goes to the fake node first, which shows what it was sent.
        s = live.storage(fake.url, node2.url, delete_after=86400, cooldown=0)
        at = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        names = [
            s.save("expiry/default.txt", ContentFile(b"x")),
            s.save("expiry/after.txt", ContentFile(b"x"), delete_after=60),
            s.save("expiry/after-delta.txt", ContentFile(b"x"), delete_after=datetime.timedelta(hours=1)),
            s.save("expiry/at.txt", ContentFile(b"x"), delete_at=at),
            live.storage(fake.url, node2.url).save("expiry/never.txt", ContentFile(b"x")),
        ]
        self.assertEqual(names, ["2/pub/expiry/%s.txt" % n for n in ("default", "after", "after-delta", "at", "never")])

        def expiry(head):
            lines = head.decode("latin-1").lower().split("\r\n")
            return [line for line in lines if line.startswith("x-delete-")]

        self.assertEqual(
            [expiry(head) for head in fake.requests],
            [["x-delete-after: 86400"], ["x-delete-after: 60"], ["x-delete-after: 3600"], ["x-delete-at: 1893553445"], []],
        )
        sent = len(fake.requests)
        bad_values = (
            {"delete_after": 0},
            {"delete_after": 1.5},
            {"delete_at": datetime.datetime(2030, 1, 1)},
            {"delete_after": 5, "delete_at": 1893553445},
            # What the nodes refuse: a time past, and one after the year 9999.
            {"delete_at": 1},
            {"delete_at": int(time.time())},
            {"delete_at": 253402300800},
            {"delete_after": 10**12},
            {"delete_after": 1e20},
        )
        for bad in bad_values:
            with self.assertRaises(ValueError, msg=bad):
                s.save("expiry/bad.txt", ContentFile(b"x"), **bad)
        self.assertEqual(len(fake.requests), sent)
        with self.assertRaisesRegex(ImproperlyConfigured, "delete_after"):
            live.storage(fake.url, delete_after=-1).save("expiry/bad.txt", ContentFile(b"x"))
        for name in names:
            s.delete(name)
