"""
Tests for L{distro.cluster.digest}: the bucket hashes of PROTOCOL.md 5.2,
the same on every node whatever the order of changes.
"""

import random

from twisted.trial.unittest import SynchronousTestCase

from distro.cluster import digest
from distro.cluster.digest import BUCKETS, DigestIndex


class DefinitionTests(SynchronousTestCase):
    def test_vector(self):
        """
        The bucket and contribution of a known client, as PROTOCOL.md
        defines them: a node written from the page computes the same.
        """
        self.assertEqual(digest.bucketOf("n0#boot#1"), 674)
        self.assertEqual(digest.contribution("n0#boot#1", 7), 0x41E6A01D247E2643)

    def test_packedForm(self):
        """
        The hashes travel as 1024 big-endian 8-byte integers.
        """
        index = DigestIndex()
        index.put("n0#boot#1", 7)
        packed = index.packed()
        self.assertEqual(len(packed), 8 * BUCKETS)
        self.assertTrue(digest.isPackedHashes(packed))
        self.assertEqual(packed[674 * 8 : 675 * 8], (0x41E6A01D247E2643).to_bytes(8, "big"))
        self.assertEqual(packed[: 674 * 8] + packed[675 * 8 :], bytes(8 * BUCKETS - 8))
        self.assertFalse(digest.isPackedHashes(packed[:-1]))
        self.assertFalse(digest.isPackedHashes("x" * 8 * BUCKETS))


class IndexTests(SynchronousTestCase):
    def test_orderDoesNotMatter(self):
        """
        Two indexes given the same final clients and revisions, through
        different histories, have the same hashes.
        """
        rng = random.Random(4)
        final = {f"n1#b#{i}": rng.randrange(1, 50) for i in range(3000)}
        a = DigestIndex()
        for clientId, revision in final.items():
            a.put(clientId, revision)
        b = DigestIndex()
        ids = list(final)
        rng.shuffle(ids)
        for clientId in ids:
            b.put(clientId, final[clientId] + 3)
            b.put(f"gone-{clientId}", 1)
        for clientId in ids:
            b.discard(f"gone-{clientId}")
            b.put(clientId, final[clientId])
        self.assertEqual(a.hashes, b.hashes)
        self.assertEqual(a.differing(b.packed()), [])
        self.assertEqual(b.revisions(), final)
        self.assertEqual(len(b), 3000)

    def test_differing(self):
        """
        A client missing, extra, or at another revision makes exactly its
        bucket differ; the listing of that bucket names what the index
        holds there.
        """
        a, b = DigestIndex(), DigestIndex()
        for i in range(500):
            a.put(f"c{i}", 1)
            b.put(f"c{i}", 1)
        b.put("c7", 2)
        b.discard("c8")
        b.put("extra", 1)
        expected = sorted({digest.bucketOf(c) for c in ("c7", "c8", "extra")})
        self.assertEqual(a.differing(b.packed()), expected)
        listing = b.listing(expected)
        self.assertEqual(sorted(listing), expected)
        listed = {c: r for entries in listing.values() for c, r in entries}
        self.assertEqual(listed["c7"], 2)
        self.assertIn("extra", listed)
        self.assertNotIn("c8", listed)
        self.assertEqual(sorted(b.inBuckets(expected)), sorted(listed))

    def test_emptyIsZero(self):
        index = DigestIndex()
        index.put("a", 1)
        index.discard("a")
        index.discard("never")
        self.assertEqual(index.packed(), bytes(8 * BUCKETS))
