"""The storage on the two-node cluster, both nodes up: any node answers for any file.

Node 1 SIGKILLed mid-test: tests/cluster_kill.py.
"""

import os
import urllib.error
import urllib.request

from django.core.files.base import ContentFile
from django.test import SimpleTestCase

from nanocdn_django import NanoCdnStorage

from tests import live


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


class ClusterTests(SimpleTestCase):
    def setUp(self):
        # A test that disturbed the cluster (a broken store) must not spill into the next one.
        live.wait_until_cluster_ready()
        self.node1, self.node2 = live.node("1"), live.node("2")
        self.via1 = live.storage(self.node1.url)
        self.via2 = live.storage(self.node2.url)

    def test_saved_through_node_1_is_read_through_node_2(self):
        name = self.via1.save("cluster/ticket.txt", ContentFile(b"ticket 42"))
        self.addCleanup(self.via1.delete, name)
        self.assertEqual(name, "1/pub/cluster/ticket.txt")
        # At once: node 2 has its copy already, or streams the file from node 1; the storage need not care.
        with self.via2.open(name) as f:
            self.assertEqual(f.read(), b"ticket 42")
            self.assertEqual(f.node, self.node2.url)
        self.assertTrue(self.via2.exists(name))
        self.assertEqual(self.via2.size(name), 9)

        live.wait_until_replicated(name, on=self.node2)
        self.assertTrue(os.path.isfile(live.stored_path(self.node2, name)))
        with self.via2.open(name) as f:
            self.assertEqual(f.read(), b"ticket 42")
        # Every copy carries the owner's modification time: the same ETag and Last-Modified everywhere.
        on_1, on_2 = self.via1.client.head(name), self.via2.client.head(name)
        self.assertEqual(on_2["x-nanocdn-served-by"], "2")
        self.assertEqual(on_2["etag"], on_1["etag"])
        self.assertEqual(self.via2.get_modified_time(name), self.via1.get_modified_time(name))

    def test_private_files_through_node_2_need_credentials(self):
        private = live.storage(self.node1.url, namespace="priv")
        name = private.save("cluster/secret.txt", ContentFile(b"psst"))
        self.addCleanup(private.delete, name)
        self.assertEqual(name, "1/priv/cluster/secret.txt")
        self.assertEqual(self.via2.open(name).read(), b"psst")
        # Node 2 checks the credentials itself, before it reads anything anywhere.
        with self.assertRaises(urllib.error.HTTPError) as anonymous:
            fetch(self.via2.url(name))
        self.assertEqual(anonymous.exception.code, 401)
        live.wait_until_replicated(name, on=self.node2)
        with self.assertRaises(urllib.error.HTTPError) as anonymous:
            fetch(self.via2.url(name))
        self.assertEqual(anonymous.exception.code, 401)
        self.assertEqual(self.via2.open(name).read(), b"psst")

    def test_node_2_streams_a_file_only_node_1_has_from_its_owner(self):
        data = bytes(range(256)) * 2048  # 512 KiB
        name = live.place_unreplicated(self.node1, "1/pub/cluster/only-on-1.bin", data)
        self.addCleanup(self.via1.delete, name)
        self.assertFalse(os.path.exists(live.stored_path(self.node2, name)))
        self.assertEqual(self.via2.client.head(name)["x-nanocdn-served-by"], "1")
        self.assertEqual(self.via2.size(name), len(data))
        with self.via2.open(name) as f:
            self.assertEqual(f.read(1000), data[:1000])
            # Seeking is a Range request, which node 2 passes on to node 1.
            f.seek(300 * 1024 + 7)
            self.assertEqual(f.read(5000), data[300 * 1024 + 7 : 300 * 1024 + 5007])
            self.assertEqual(f.node, self.node2.url)

        # With the owner up, a file nobody has is a plain 404, whichever node is asked.
        missing = "1/pub/cluster/never-stored.txt"
        self.assertFalse(self.via2.exists(missing))
        with self.assertRaises(FileNotFoundError):
            self.via2.open(missing)
        self.assertFalse(self.via2.client.delete(missing))

    def test_delete_through_a_node_that_is_not_the_owner(self):
        of_1 = self.via1.save("cluster/delete-me.txt", ContentFile(b"1"))
        of_2 = self.via2.save("cluster/delete-me-too.txt", ContentFile(b"2"))
        self.assertEqual((of_1, of_2), ("1/pub/cluster/delete-me.txt", "2/pub/cluster/delete-me-too.txt"))
        live.wait_until_replicated(of_1, on=self.node2)
        live.wait_until_replicated(of_2, on=self.node1)
        # Only the owner deletes: the other node passes the delete on.
        self.via2.delete(of_1)
        self.via1.delete(of_2)
        self.assertFalse(os.path.exists(live.stored_path(self.node1, of_1)))
        self.assertFalse(os.path.exists(live.stored_path(self.node2, of_2)))
        self.assertFalse(self.via1.exists(of_1))
        self.assertFalse(self.via2.exists(of_2))

        # The replicas go with the owner's next push.
        def replicas_gone():
            self.assertFalse(os.path.exists(live.stored_path(self.node2, of_1)))
            self.assertFalse(os.path.exists(live.stored_path(self.node1, of_2)))
            self.assertFalse(self.via2.exists(of_1))
            self.assertFalse(self.via1.exists(of_2))

        live.eventually(replicas_gone)

    def test_the_same_path_through_each_node_is_two_files(self):
        first = self.via1.save("cluster/same.txt", ContentFile(b"through 1"))
        second = self.via2.save("cluster/same.txt", ContentFile(b"through 2"))
        self.addCleanup(self.via1.delete, first)
        self.addCleanup(self.via2.delete, second)
        # Names are per owner: no 409, no suffix.
        self.assertEqual((first, second), ("1/pub/cluster/same.txt", "2/pub/cluster/same.txt"))
        for storage in (self.via1, self.via2):
            self.assertEqual(storage.open(first).read(), b"through 1")
            self.assertEqual(storage.open(second).read(), b"through 2")

    def test_a_node_whose_store_fails_passes_the_upload_to_its_peer(self):
        # Unlike node 3 on its own (test_failover), node 1 answers the upload itself, with node 2's name.
        self.addCleanup(live.wait_until_cluster_ready)
        with live.broken_store(self.node1):
            name = self.via1.save("cluster/passed-on.txt", ContentFile(b"passed on"))
            self.assertEqual(name, "2/pub/cluster/passed-on.txt")
            self.assertTrue(os.path.isfile(live.stored_path(self.node2, name)))
            self.assertEqual(self.via2.open(name).read(), b"passed on")
            self.assertFalse(os.path.exists(live.stored_path(self.node1, "1/pub/cluster/passed-on.txt")))
        self.via2.delete(name)

    def test_an_upload_passed_on_leaves_reads_of_the_owners_files_with_the_owner(self):
        # Node 1, whose store fails, answers with node 2's name: node 2 owns the file, at node 2's URL.
        self.addCleanup(live.wait_until_cluster_ready)
        by_id = NanoCdnStorage(nodes={"1": self.node1.url, "2": self.node2.url}, username=live.USER, password=live.PASSWORD)
        with live.broken_store(self.node1):
            name = by_id.save("cluster/owner.txt", ContentFile(b"passed on"))
        self.addCleanup(self.via2.delete, name)
        self.assertEqual(name, "2/pub/cluster/owner.txt")
        with by_id.open(name) as f:
            self.assertEqual(f.read(), b"passed on")
            self.assertEqual(f.node, self.node2.url)
        # Listed without ids, node 1 is learnt to be node 1 (its /check/ says so), and nothing more.
        listed = live.storage(self.node1.url, self.node2.url)
        with live.broken_store(self.node1):
            name = listed.save("cluster/owner-listed.txt", ContentFile(b"passed on"))
        self.addCleanup(self.via2.delete, name)
        self.assertEqual(name, "2/pub/cluster/owner-listed.txt")
        self.assertEqual(listed.client._owner_urls, {"1": self.node1.url})
