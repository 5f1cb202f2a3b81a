# -*- test-case-name: tests.test_sortedlist -*-
"""
A sorted list of distinct items in chunks: adding or removing one costs a
bisection and a move within its chunk, however many items there are (a
plain list moves all those after it: a namespace's 20,000 service names
cost each new service some 10 us), and a slice costs a walk of the chunks'
sizes plus its own length.
"""

import bisect

# Items per chunk: a chunk is split past twice this.
CHUNK = 512


class SortedList:
    """
    Distinct, comparable items kept in order.
    """

    __slots__ = ("_chunks", "_lasts", "_length")

    def __init__(self):
        self._chunks = []
        self._lasts = []  # each chunk's last item
        self._length = 0

    def __len__(self):
        return self._length

    def _find(self, item):
        """
        C{(chunk index, index in it)} where C{item} is or would go.
        """
        c = bisect.bisect_left(self._lasts, item)
        if c == len(self._chunks):
            c -= 1
        return c, bisect.bisect_left(self._chunks[c], item)

    def add(self, item):
        """
        Add C{item}; return whether it was not there.
        """
        if not self._chunks:
            self._chunks.append([item])
            self._lasts.append(item)
            self._length = 1
            return True
        c, i = self._find(item)
        chunk = self._chunks[c]
        if i < len(chunk) and chunk[i] == item:
            return False
        chunk.insert(i, item)
        self._lasts[c] = chunk[-1]
        self._length += 1
        if len(chunk) > 2 * CHUNK:
            upper = chunk[CHUNK:]
            del chunk[CHUNK:]
            self._chunks.insert(c + 1, upper)
            self._lasts[c] = chunk[-1]
            self._lasts.insert(c + 1, upper[-1])
        return True

    def discard(self, item):
        """
        Remove C{item}; return whether it was there.
        """
        if not self._chunks:
            return False
        c, i = self._find(item)
        chunk = self._chunks[c]
        if i == len(chunk) or chunk[i] != item:
            return False
        del chunk[i]
        self._length -= 1
        if chunk:
            self._lasts[c] = chunk[-1]
        else:
            del self._chunks[c], self._lasts[c]
        return True

    def slice(self, start, stop):
        """
        The items from index C{start} to C{stop} (not included), in order.
        """
        out = []
        for chunk in self._chunks:
            if stop <= 0 or start >= stop:
                break
            size = len(chunk)
            if start < size:
                out.extend(chunk[max(start, 0):stop])
            start -= size
            stop -= size
        return out

    def __iter__(self):
        for chunk in self._chunks:
            yield from chunk
