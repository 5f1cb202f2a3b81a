# -*- test-case-name: tests.test_digest -*-
"""
Bucketed digests (PROTOCOL.md 5.2, C{digest}): the clients one member owns,
as C{BUCKETS} hashes that two members holding the same clients at the same
revisions compute alike, kept up to date change by change.

A client falls in bucket C{BLAKE2b-64(client_id) mod BUCKETS}; it adds
C{BLAKE2b-64(client_id 0x00 revision)} to its bucket's hash by XOR. A digest
of a hundred thousand clients is then 8 KiB, and a receiver asks for the
listing of the buckets that differ only.
"""

from hashlib import blake2b

BUCKETS = 1024

# A member owning at most this many clients lists them all in its digest:
# smaller than the bucket hashes, and one round trip less.
LIST_AT_MOST = 256

_HASH_BYTES = 8


def bucketOf(clientId):
    """
    The bucket of C{clientId}.
    """
    digest = blake2b(clientId.encode("utf-8"), digest_size=_HASH_BYTES).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def contribution(clientId, revision):
    """
    What C{clientId} at C{revision} adds to its bucket's hash.
    """
    data = clientId.encode("utf-8") + b"\x00" + str(revision).encode("ascii")
    return int.from_bytes(blake2b(data, digest_size=_HASH_BYTES).digest(), "big")


class DigestIndex:
    """
    The bucket hashes of a set of C{(client_id, revision)}, updated in O(1)
    per change. The hashing itself waits for the next read (a digest every
    C{verify_interval_ms}): a client changing a thousand times in between
    is hashed once.
    """

    def __init__(self):
        self._hashes = [0] * BUCKETS
        # client id -> (bucket or None, revision, what it adds to the hashes now)
        self._entries = {}
        self._dirty = set()

    def __len__(self):
        return len(self._entries)

    def put(self, clientId, revision):
        """
        C{clientId} is held at C{revision}.
        """
        entry = self._entries.get(clientId)
        if entry is None:
            self._entries[clientId] = (None, revision, 0)
        elif entry[1] == revision:
            return
        else:
            self._entries[clientId] = (entry[0], revision, entry[2])
        self._dirty.add(clientId)

    def discard(self, clientId):
        """
        C{clientId} is no longer held.
        """
        entry = self._entries.pop(clientId, None)
        if entry is not None:
            self._dirty.discard(clientId)
            if entry[0] is not None:
                self._hashes[entry[0]] ^= entry[2]

    def _settle(self):
        entries = self._entries
        hashes = self._hashes
        for clientId in self._dirty:
            bucket, revision, old = entries[clientId]
            if bucket is None:
                bucket = bucketOf(clientId)
            new = contribution(clientId, revision)
            hashes[bucket] ^= old ^ new
            entries[clientId] = (bucket, revision, new)
        self._dirty.clear()

    @property
    def hashes(self):
        """
        The hash of each bucket (0 for an empty one).
        """
        self._settle()
        return self._hashes

    def packed(self):
        """
        The hashes as the C{digest}'s C{hashes}: each bucket's as a
        big-endian 8-byte integer, in bucket order.
        """
        return b"".join(h.to_bytes(_HASH_BYTES, "big") for h in self.hashes)

    def differing(self, packed):
        """
        The buckets whose hash differs from the C{packed} ones.
        """
        mine = self.packed()
        if packed == mine:
            return []
        return [
            b
            for b in range(BUCKETS)
            if packed[b * _HASH_BYTES : (b + 1) * _HASH_BYTES]
            != mine[b * _HASH_BYTES : (b + 1) * _HASH_BYTES]
        ]

    def listing(self, buckets):
        """
        C{bucket -> [[client_id, revision], ...]} for each of C{buckets}.
        """
        self._settle()
        listed = {b: [] for b in buckets}
        for clientId, (bucket, revision, _) in self._entries.items():
            clients = listed.get(bucket)
            if clients is not None:
                clients.append([clientId, revision])
        return listed

    def inBuckets(self, buckets):
        """
        The held client ids in C{buckets}.
        """
        return [c for entries in self.listing(buckets).values() for c, _ in entries]

    def revisions(self):
        """
        C{client id -> revision} of everything held.
        """
        return {c: e[1] for c, e in self._entries.items()}


def isPackedHashes(value):
    """
    Whether C{value} is a well-formed C{hashes} field.
    """
    return type(value) is bytes and len(value) == BUCKETS * _HASH_BYTES
