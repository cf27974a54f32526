"""A node that serves HTTPS itself, with a certificate from a private CA (here: self-signed)."""

from django.core.files.base import ContentFile
from django.test import SimpleTestCase

from nanocdn_django import NanoCdnUnavailable

from tests import live


class HttpsTests(SimpleTestCase):
    def test_round_trip_with_a_private_ca(self):
        s = live.storage(live.TLS["url"], ca_file=live.TLS["ca"])
        content = b"over TLS\n" * 20000
        name = s.save("tls/hello.txt", ContentFile(content))
        self.assertEqual(name, "4/pub/tls/hello.txt")
        self.assertTrue(s.exists(name))
        self.assertEqual(s.size(name), len(content))
        with s.open(name) as f:
            self.assertEqual(f.read(100), content[:100])
            f.seek(90000)
            self.assertEqual(f.read(), content[90000:])
        self.assertEqual(s.url(name), live.TLS["url"] + "/4/pub/tls/hello.txt")
        s.delete(name)
        self.assertFalse(s.exists(name))

    def test_a_certificate_nobody_vouches_for_is_refused(self):
        s = live.storage(live.TLS["url"])  # the system's CAs only
        with self.assertRaises(NanoCdnUnavailable) as caught:
            s.save("tls/refused.txt", ContentFile(b"x"))
        self.assertIn(live.TLS["url"] + " could not connect", str(caught.exception))
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(caught.exception))
