"""Every case of clients/failover.json, against this client: a node that behaves so first, node 2 second.

The TypeScript suite runs the same cases (test/clients/failover.test.ts).
"""

import json
import os
import threading

from django.test import SimpleTestCase

import nanocdn_django
from nanocdn_django import NanoCdnClient, NanoCdnHttpError

from tests import live
from tests.test_failover import FakeNode, read_body

with open(os.path.join(os.path.dirname(__file__), "..", "..", "failover.json"), encoding="utf-8") as shared:
    FAILOVER = json.load(shared)


def behaving(case, release):
    """A FakeNode behaviour for one case of the table."""

    def answer(conn, head):
        if case.get("network") == "hung":
            release.wait(30)
            return
        read_body(conn, head)
        if case.get("network") == "closed_after_request":
            return  # the connection closes without a word
        body = json.dumps({"error": case.get("code", "fake"), "message": "fake node answers %d" % case["status"]}).encode()
        conn.sendall(
            b"HTTP/1.1 %d Fake\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (case["status"], len(body), body)
        )

    return answer


def case_name(case):
    if "network" in case:
        return case["when"]
    return "%d %s" % (case["status"], case.get("code", ""))


class FailoverTableTests(SimpleTestCase):
    def cdn(self, first, case):
        """A fresh client (nothing learnt about the nodes yet) on ``first``, then node 2.

        Quick to give up on a hung first node, but not so quick that node 2, whose 201 waits for its
        peer's copy, may run out of time on a loaded machine: the time-out applies to both.
        """
        hung = case.get("network") == "hung"
        return NanoCdnClient(
            [first, live.node("2").url], live.USER, live.PASSWORD, timeout=5 if hung else 30, continue_timeout=1 if hung else 3
        )

    def first_node(self, case):
        if case.get("network") == "refused":
            return live.DEAD_URL
        release = threading.Event()
        fake = FakeNode(behaving(case, release))
        self.addCleanup(fake.close)
        self.addCleanup(release.set)
        return fake.url

    def assert_outcome(self, error, outcome, first):
        expected = getattr(nanocdn_django, FAILOVER["outcomes"][outcome]["django"])
        self.assertIsInstance(error, expected)
        if outcome == "error":
            self.assertIs(type(error), NanoCdnHttpError)
        # A final answer ends the request there: node 2 was never asked.
        self.assertEqual([a.node for a in error.attempts], [first])

    def test_every_case(self):
        node2 = live.node("2")
        for number, case in enumerate(FAILOVER["cases"]):
            with self.subTest(case_name(case)):
                path = "failover-table/%d.txt" % number
                name = live.storage(node2.url).client.upload("pub", path, b"on node 2").name
                first = self.first_node(case)

                try:
                    with self.cdn(first, case).open(name) as f:
                        read = (f.read(), f.node)
                except Exception as e:  # the table says which exception
                    read = e
                if case["read"] == "next":
                    self.assertEqual(read, (b"on node 2", node2.url))
                else:
                    self.assert_outcome(read, case["read"], first)

                try:
                    deleted = self.cdn(first, case).delete(name)
                except Exception as e:
                    deleted = e
                if case["read"] == "next":
                    self.assertIs(deleted, True)
                elif case["read"] == "not_found":
                    self.assertIs(deleted, False)
                else:
                    self.assert_outcome(deleted, case["read"], first)
                    live.storage(node2.url).delete(name)

                try:
                    upload = self.cdn(first, case).upload("pub", path + ".up", b"uploaded")
                except Exception as e:
                    upload = e
                if case["upload"] == "next":
                    self.assertEqual((upload.name, upload.node), ("2/pub/%s.up" % path, node2.url))
                    live.storage(node2.url).delete(upload.name)
                else:
                    self.assert_outcome(upload, case["upload"], first)
                    self.assertFalse(live.storage(node2.url).exists("2/pub/%s.up" % path))
