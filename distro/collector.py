# -*- test-case-name: tests.test_collector -*-
"""
The garbage collector of a running node.

A node's long-lived data (its clients, instances and views) is most of its
heap. Python's full collections walk all of it: 100-200 ms with a hundred
thousand instances, during which nothing is served. With C{gc_freeze}, what
exists when the node starts, what it loaded (L{distro.node.Node.loaded})
and what survives each full collection are moved to the collector's
permanent generation (L{gc.freeze}), and full collections come often, so
that each walks only what was created since the last: a few ms. The cost:
cyclic garbage made of frozen objects is never reclaimed. The node makes none in its steady state (a closed connection is freed by
reference counting alone; tests hold it to that), so what could be lost is
bounded by rare events (a peer link replaced), not by traffic.

Every collection is timed; pauses of C{SLOW_PAUSE} or more are logged, the
longest is logged when the node stops, and every pause is counted in the
buckets of L{PAUSE_BUCKETS} per generation (the metrics' histogram).
"""

import gc
import time

from twisted.logger import Logger

from distro.histogram import Histogram

SLOW_PAUSE = 0.020

# With freezing, a full collection follows more than this many of generation
# 1 (Python's default: 10).
FULL_AFTER = 1

# The upper bounds of the pause histogram's buckets, in seconds.
PAUSE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class CollectorWatch:
    """
    Times the collections of this process and, with C{freeze}, freezes what
    survives a full one.

    @ivar longest: the longest pause seen, in seconds.
    @ivar collections: how many collections were timed.
    @ivar pauses: generation -> the L{Histogram} of its collections' pauses.
    """

    log = Logger()

    def __init__(self, *, freeze, collector=gc, now=time.perf_counter):
        self.freeze = freeze
        self._gc = collector
        self._now = now
        self._started = None
        self.longest = 0.0
        self.collections = 0
        self.pauses = {}

    def start(self):
        """
        Time the collections from now on. With C{freeze}: what exists now
        (the code, the node as set up) lives as long as the process and is
        frozen at once, and a full collection comes after every
        L{FULL_AFTER} + 1 of generation 1, so that each walks only what was
        promoted since the last (some 15,000 objects under load, a few ms),
        not ten times that (a 20-60 ms pause; the total walked is the same:
        each object once).
        """
        self._gc.callbacks.append(self._observe)
        if self.freeze:
            self._gc.freeze()
            young, middle, _ = self._gc.get_threshold()
            self._gc.set_threshold(young, middle, FULL_AFTER)

    def stop(self):
        """
        Stop timing. What is frozen stays frozen, the thresholds as they
        are: a stopping node drains its clients for up to
        C{drain_timeout_ms} while it serves, and must not meet a full
        collection of its whole registry then (a process that goes on
        after its node, a test's, undoes them itself).
        """
        if self._observe in self._gc.callbacks:
            self._gc.callbacks.remove(self._observe)
        self.log.info(
            "gc: {collections} collections, longest pause {longest:.1f} ms",
            collections=self.collections,
            longest=self.longest * 1000,
        )

    def _observe(self, phase, info):
        if phase == "start":
            self._started = self._now()
            return
        if self._started is None:
            return
        pause = self._now() - self._started
        self._started = None
        self.collections += 1
        self.longest = max(self.longest, pause)
        generation = info.get("generation")
        pauses = self.pauses.get(generation)
        if pauses is None:
            pauses = self.pauses[generation] = Histogram(PAUSE_BUCKETS)
        pauses.add(pause)
        if generation == 2 and self.freeze:
            self._gc.freeze()
        if pause >= SLOW_PAUSE:
            self.log.warn(
                "gc: generation {generation} collection paused the node {pause:.1f} ms",
                generation=generation,
                pause=pause * 1000,
            )
