# -*- test-case-name: tests.test_hostlist -*-
"""
The hosts of a service view, kept as they go on the wire: packed, sorted by
instance id, in chunks whose packed bytes are joined once and reused until
one of their hosts changes, with the view's checksum kept up to date as a
sum. A change costs O(log n + chunk), not O(n): a view of ten thousand
hosts is pushed as a few dozen byte strings, none of them rebuilt but the
one that changed.

The checksum (PROTOCOL.md 3): each host contributes the BLAKE2b-128 of its
canonical content (L{distro.model.Instance.contentHash}); the view's checksum
is their sum modulo 2**128, as 32 hex digits. Equal content gives equal
checksums on every node, whatever order the hosts arrived in.
"""

import bisect

from distro.model import CHECKSUM_MODULUS, checksumSum, formatChecksum

CHUNK = 256

_PENDING_LIMIT = 1024


class _Chunk:
    __slots__ = ("ids", "hosts", "_frozen")

    def __init__(self, ids, hosts):
        self.ids = ids
        self.hosts = hosts
        self._frozen = None

    def changed(self):
        """
        Its hosts changed: the frozen form is made again when next asked.
        """
        self._frozen = None

    def frozen(self):
        """
        C{(packed bytes, hosts tuple)} of this chunk as it is now, made once
        until it changes.
        """
        if self._frozen is None:
            hosts = tuple(self.hosts)
            self._frozen = (b"".join(h.packedHost() for h in hosts), hosts)
        return self._frozen


class HostList:
    """
    The visible hosts of one view, sorted by instance id.

    @ivar count: how many there are.
    """

    def __init__(self):
        self._chunks = []
        self._lasts = []  # the last instance id of each chunk
        self.count = 0
        self._sum = 0
        # Hosts added and removed since the sum was last brought up to date:
        # hashing is left to the first read (a write nobody reads costs no
        # hash); past a bound, both are None and the read sums it all.
        self._added = []
        self._removed = []

    @property
    def sum(self):
        """
        The sum of the shown hosts' content hashes, modulo 2**128.
        """
        self._settle()
        return self._sum

    def _settle(self):
        if self._added is None:
            # Too much changed unread: sum what is shown (each instance's
            # hash is made once, so this hashes only the new ones).
            self._sum = checksumSum(h for c in self._chunks for h in c.hosts)
            self._added, self._removed = [], []
        elif self._added or self._removed:
            total = self._sum + checksumSum(self._added) - checksumSum(self._removed)
            self._sum = total % CHECKSUM_MODULUS
            self._added = []
            self._removed = []

    def _pend(self, pending, instance):
        if pending is not None:
            pending.append(instance)
            if len(pending) > _PENDING_LIMIT:
                self._added = self._removed = None

    def put(self, instance):
        """
        Show C{instance} (replacing the host of the same instance id).
        """
        iid = instance.instanceId
        chunks = self._chunks
        if not chunks:
            chunks.append(_Chunk([], []))
            self._lasts.append(iid)
        c = bisect.bisect_left(self._lasts, iid)
        if c == len(chunks):
            c -= 1
        chunk = chunks[c]
        i = bisect.bisect_left(chunk.ids, iid)
        chunk.changed()
        if i < len(chunk.ids) and chunk.ids[i] == iid:
            self._pend(self._removed, chunk.hosts[i])
            chunk.hosts[i] = instance
            self._pend(self._added, instance)
            return
        chunk.ids.insert(i, iid)
        chunk.hosts.insert(i, instance)
        self._lasts[c] = chunk.ids[-1]
        self.count += 1
        self._pend(self._added, instance)
        if len(chunk.ids) > 2 * CHUNK:
            half = len(chunk.ids) // 2
            upper = _Chunk(chunk.ids[half:], chunk.hosts[half:])
            del chunk.ids[half:], chunk.hosts[half:]
            chunks.insert(c + 1, upper)
            self._lasts[c] = chunk.ids[-1]
            self._lasts.insert(c + 1, upper.ids[-1])

    def discard(self, instanceId):
        """
        Stop showing the host of C{instanceId}, if shown.
        """
        c = bisect.bisect_left(self._lasts, instanceId)
        if c == len(self._chunks):
            return
        chunk = self._chunks[c]
        i = bisect.bisect_left(chunk.ids, instanceId)
        if i == len(chunk.ids) or chunk.ids[i] != instanceId:
            return
        self._pend(self._removed, chunk.hosts[i])
        self.count -= 1
        del chunk.ids[i], chunk.hosts[i]
        chunk.changed()
        if chunk.ids:
            self._lasts[c] = chunk.ids[-1]
        else:
            del self._chunks[c], self._lasts[c]

    def checksum(self):
        """
        The view's checksum: L{sum} as 32 hex digits.
        """
        return formatChecksum(self.sum)

    def parts(self):
        """
        The hosts as they are now, in instance id order, as a few
        C{(packed bytes, hosts tuple)} parts: an immutable snapshot, in
        O(number of chunks) but for the chunks changed since the last call.
        """
        return [chunk.frozen() for chunk in self._chunks]
