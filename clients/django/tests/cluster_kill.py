"""Node 1 of the cluster SIGKILLed in the middle of a test, with node 2 living on.

Not named test_*.py, so that the main run does not pick it up: every other
test needs node 1. test/clients/django.test.ts runs it on its own, after the
main run:  runtests.py tests.cluster_kill
"""

import socket

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import TestCase

from nanocdn_django import NanoCdnFileNotFound, NanoCdnReadError, NanoCdnUnavailable

from tests import live
from tests.models import Document

BIG = 8 * 1024 * 1024


class NodeOneKilledTests(TestCase):
    def test_node_1_killed_mid_test(self):
        live.wait_until_cluster_ready()
        node1, node2 = live.node("1"), live.node("2")
        private = live.storage(node1.url, node2.url, namespace="priv")

        # Before: files of node 1 that reached node 2, files it has not pushed yet, and one of node 2.
        doc = Document(title="Invoice")
        doc.file.save("invoice 42.pdf", ContentFile(b"%PDF-1.4 invoice"), save=True)
        self.assertEqual(doc.file.name, "1/pub/docs/invoice_42.pdf")
        secret = private.save("kill/secret.txt", ContentFile(b"psst"))
        self.assertEqual(secret, "1/priv/kill/secret.txt")
        big = bytes(range(256)) * (BIG // 256)
        big_name = default_storage.save("kill/big.bin", ContentFile(big))
        self.assertEqual(big_name, "1/pub/kill/big.bin")
        of_2 = live.storage(node2.url).save("kill/of-2.txt", ContentFile(b"stored on 2"))
        self.assertEqual(of_2, "2/pub/kill/of-2.txt")
        for name in (doc.file.name, secret, big_name):
            live.wait_until_replicated(name, on=node2)
        # Placed last: a full pass (node 1 runs one whenever it sees node 2 come back) would carry them.
        pending = live.place_unreplicated(node1, "1/pub/kill/not-pushed.txt", b"not on node 2")
        pending_big = live.place_unreplicated(node1, "1/pub/kill/big-not-pushed.bin", big)

        # Two reads under way from node 1 when it dies. A small receive buffer keeps most of the
        # 8 MiB on node 1's side, so the connections break with megabytes still to come.
        reader = live.storage(node1.url, node2.url, socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
        reading = reader.open(big_name)
        reading_pending = reader.open(pending_big)
        for f in (reading, reading_pending):
            self.assertEqual(f.node, node1.url)
            self.assertEqual(f.read(64 * 1024), big[: 64 * 1024])

        live.kill(node1)
        # Node 2 sees it at its next health check. Nothing below needs it to, but it makes the
        # path node 2 takes the same on every run.
        live.eventually(lambda: self.assertFalse(live.peer_up(node2, "1")))

        # The read of a replicated file goes on from the same byte on node 2.
        rest = reading.read()
        reading.close()
        self.assertEqual(len(rest), BIG - 64 * 1024)
        self.assertTrue(rest == big[64 * 1024 :], "the resumed read returned other bytes")
        self.assertEqual(reading.node, node2.url)
        # The read of a file node 2 has no copy of cannot finish, and says so: never a short file.
        with self.assertRaises(NanoCdnReadError) as broken:
            reading_pending.read()
        reading_pending.close()
        message = str(broken.exception)
        self.assertIn("the connection to %s broke after" % node1.url, message)
        self.assertIn("of 8388608 bytes", message)
        self.assertIn(node1.url + " could not connect (connection refused)", message)
        self.assertIn(node2.url + " answered 503 try_later: owner node 1 is unreachable", message)

        # The model saved before the kill reads back, through the settings' nodes (node 1 first).
        again = Document.objects.get(pk=doc.pk)
        self.assertEqual(again.file.name, "1/pub/docs/invoice_42.pdf")
        self.assertEqual(again.file.size, 16)
        with again.file.open("rb") as f:
            self.assertEqual(f.read(), b"%PDF-1.4 invoice")
            self.assertEqual(again.file.file.node, node2.url)
        self.assertTrue(default_storage.exists(again.file.name))
        self.assertEqual(private.open(secret).read(), b"psst")
        self.assertEqual(live.storage(node1.url, node2.url).open(of_2).read(), b"stored on 2")

        # A file node 1 had not pushed yet is not missing: it is unavailable for now.
        for method in ("open", "exists", "size"):
            with self.assertRaises(NanoCdnUnavailable, msg=method) as unavailable:
                getattr(live.storage(node1.url, node2.url), method)(pending)
            self.assertNotIsInstance(unavailable.exception, NanoCdnFileNotFound)
            attempts = unavailable.exception.attempts
            self.assertEqual([(a.node, a.status) for a in attempts], [(node1.url, None), (node2.url, 503)])
            self.assertIn(node1.url + " could not connect (connection refused)", str(unavailable.exception))
            self.assertIn(node2.url + " answered 503", str(unavailable.exception))
            self.assertGreater(unavailable.exception.retry_after, 0)
        with self.assertRaises(NanoCdnUnavailable) as unavailable:
            live.storage(node1.url, node2.url).open(pending)
        # A GET's answer has a body: node 2 says why.
        self.assertIn(
            node2.url + " answered 503 try_later: owner node 1 is unreachable and no reachable replica holds",
            str(unavailable.exception),
        )

        # New files go to node 2, under its id: a model, and a plain save with node 1 first.
        after = Document.objects.create(title="after", file=ContentFile(b"after the kill", name="after.txt"))
        self.assertEqual(after.file.name, "2/pub/docs/after.txt")
        self.assertEqual(Document.objects.get(pk=after.pk).file.read(), b"after the kill")
        saved = live.storage(node1.url, node2.url).save("kill/after.txt", ContentFile(b"also after"))
        self.assertEqual(saved, "2/pub/kill/after.txt")
        self.assertEqual(live.storage(node1.url, node2.url).open(saved).read(), b"also after")

        # Only node 1 deletes its files: node 2 answers 503, and the storage says to try later.
        with self.assertRaises(NanoCdnUnavailable) as refused:
            live.storage(node1.url, node2.url).delete(big_name)
        attempts = refused.exception.attempts
        self.assertEqual([a.node for a in attempts], [node1.url, node2.url])
        self.assertEqual(attempts[0].outcome, "could not connect (connection refused)")
        self.assertEqual((attempts[1].status, attempts[1].code), (503, "try_later"))
        message = str(refused.exception)
        self.assertIn("DELETE %s: no node could answer" % big_name, message)
        self.assertIn(
            node2.url + " answered 503 try_later: only the owner node 1 deletes its files, and it is unreachable", message
        )
        self.assertGreater(refused.exception.retry_after, 0)
        with self.assertRaises(NanoCdnUnavailable):
            again.file.delete(save=True)
        # Nothing was deleted, and the model still points at its file.
        again = Document.objects.get(pk=doc.pk)
        self.assertEqual(again.file.name, "1/pub/docs/invoice_42.pdf")
        self.assertEqual(again.file.read(), b"%PDF-1.4 invoice")
        self.assertEqual(live.storage(node1.url, node2.url).size(big_name), BIG)

        # Node 2's own files delete as ever.
        after.file.delete(save=True)
        live.storage(node1.url, node2.url).delete(saved)
        self.assertFalse(live.storage(node1.url, node2.url).exists(saved))
        self.assertFalse(default_storage.exists("2/pub/docs/after.txt"))
