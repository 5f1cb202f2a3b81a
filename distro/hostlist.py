# -*- test-case-name: tests.test_hostlist -*-
"""
The hosts of a service view, sorted by instance id, in chunks whose
encodings (msgpack for distro's port, JSON for Nacos') are made once and
reused until one of their hosts changes, with the view's checksum kept up
to date as a sum. A change costs O(log n + chunk), not O(n): a view of ten
thousand hosts is pushed as a few dozen byte strings, none of them rebuilt
but the one that changed.

The checksum (PROTOCOL.md 3): each host contributes the BLAKE2b-128 of its
canonical content (L{distro.model.Instance.contentHash}); the view's checksum
is their sum modulo 2**128, as 32 hex digits. Equal content gives equal
checksums on every node, whatever order the hosts arrived in.
"""

import bisect

from distro.model import CHECKSUM_MODULUS, checksumSum, formatChecksum

CHUNK = 256

_PENDING_LIMIT = 256


class Encoded:
    """
    An immutable snapshot that keeps what the ports encode of it, one
    encoding per port's key, made when first asked for and gone with it.
    A subclass has a C{_encodings} slot, C{None} at first.
    """

    __slots__ = ()

    def isEncoded(self, key):
        """
        Whether the encoding C{key} names is made.
        """
        return self._encodings is not None and key in self._encodings

    def encoded(self, key, encode):
        """
        C{encode(self)}, made once for C{key} (a port's name for its
        encoding).
        """
        encodings = self._encodings
        if encodings is None:
            encodings = self._encodings = {}
        if key not in encodings:
            encodings[key] = encode(self)
        return encodings[key]


class HostGroup(Encoded):
    """
    The hosts of one chunk of a view as they were when taken: a tuple of
    L{distro.model.Instance}s in instance id order, the same object in
    every snapshot of the view until one of its hosts changes. The
    encodings the ports make of it are kept with it (L{Encoded}).
    """

    __slots__ = ("hosts", "_encodings")

    def __init__(self, hosts):
        self.hosts = hosts
        self._encodings = None


class _Chunk:
    __slots__ = ("ids", "hosts", "_group")

    def __init__(self, ids, hosts):
        self.ids = ids
        self.hosts = hosts
        self._group = None

    def changed(self):
        """
        Its hosts changed: its group is made again when next asked.
        """
        self._group = None

    def group(self):
        """
        The L{HostGroup} of this chunk as it is now, made once until it
        changes.
        """
        if self._group is None:
            self._group = HostGroup(tuple(self.hosts))
        return self._group


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
        # hash), or done when _PENDING_LIMIT wait (the work of a large
        # change is then done as it is made, a slice at a time when it is
        # made in slices, not all at the next read).
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
        if self._added or self._removed:
            total = self._sum + checksumSum(self._added) - checksumSum(self._removed)
            self._sum = total % CHECKSUM_MODULUS
            self._added = []
            self._removed = []

    def _pend(self, pending, instance):
        pending.append(instance)
        if len(pending) >= _PENDING_LIMIT:
            self._settle()

    def put(self, instance):
        """
        Show C{instance} (replacing the host of the same instance id).
        """
        iid = instance.instanceId
        chunks = self._chunks
        if not chunks:
            # The first (a new view's, most often): a chunk of it alone.
            chunks.append(_Chunk([iid], [instance]))
            self._lasts.append(iid)
            self.count = 1
            self._pend(self._added, instance)
            return
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
        L{HostGroup}s: an immutable snapshot, in O(number of chunks) but for
        the chunks changed since the last call.
        """
        return [chunk.group() for chunk in self._chunks]
