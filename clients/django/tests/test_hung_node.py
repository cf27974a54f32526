"""A hung node (SIGSTOP: its kernel still accepts connections, nothing answers) costs one upload a few seconds, and no upload its certainty."""

import time

from django.core.files.base import ContentFile
from django.test import SimpleTestCase

from tests import live


class HungNodeTests(SimpleTestCase):
    def test_ten_uploads_all_land_on_the_other_node_and_none_is_uncertain(self):
        node5, node2 = live.node("5"), live.node("2")
        s = live.storage(node5.url, node2.url)
        # A storage in use: its kept-alive connection to node 5 waits in the pool.
        before = s.save("hung/before.txt", ContentFile(b"before"))
        self.assertEqual(before, "5/pub/hung/before.txt")

        names, seconds = [], []
        with live.hung(node5):
            for i in range(10):
                started = time.monotonic()
                names.append(s.save("hung/during-%d.txt" % i, ContentFile(b"during %d" % i)))
                seconds.append(time.monotonic() - started)
            # Node 5, which failed, is asked last for the cooldown.
            self.assertEqual([n.url for n in s.client.ordered_nodes()], [node2.url, node5.url])
        print("\nuploads with node 5 hung took (s): %s" % ", ".join("%.2f" % x for x in seconds))

        self.assertEqual(names, ["2/pub/hung/during-%d.txt" % i for i in range(10)])
        for i, name in enumerate(names):
            self.assertEqual(s.open(name).read(), b"during %d" % i)
        # Node 5, awake again, got none of them: it never received a byte of a body.
        awake = live.storage(node5.url)
        for i in range(10):
            self.assertFalse(awake.exists("5/pub/hung/during-%d.txt" % i))
        self.assertTrue(awake.exists(before))
        for name in names:
            s.delete(name)
        awake.delete(before)
