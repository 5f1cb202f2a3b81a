# -*- test-case-name: tests.test_collector -*-
"""
The garbage collector of a running node.

A node's long-lived data (its clients, instances and views) is most of its
heap. Python's full collections walk all of it: 100-200 ms with a hundred
thousand instances, during which nothing is served. With C{gc_freeze}, what
exists when the node starts, what it loaded (L{distro.node.Node.loaded})
and what survives each collection of generation 1 (or 2) are moved to the
collector's permanent generation (L{gc.freeze}): each collection walks
only what was created since the last (about a ms under load), and what
lasts is walked twice (in generations 0 and 1), not three times. The
cost: cyclic garbage made of frozen objects is never reclaimed. So the
node makes none for what its clients do: a closed connection of every
port (a native session, behind TLS too; a Nacos SDK's gRPC connection) and
work run over turns are freed by reference counting alone, and a test runs
a workload of them with the collector saving what it finds
(tests/test_collector.py, C{NoCyclesTests}). What could still be lost is
bounded by rare events, not by traffic.

Every collection is timed; pauses of C{SLOW_PAUSE} or more are logged, the
longest is logged when the node stops, and every pause is counted in the
buckets of L{PAUSE_BUCKETS} per generation (the metrics' histogram).
"""

import gc
import time

from twisted.logger import Logger

from distro.histogram import Histogram

SLOW_PAUSE = 0.020

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
        frozen at once, and what survives each collection of generation 1
        or 2 is frozen after it, so that each walks only what came since
        the last (some 7,000 objects under load, about a ms), never the
        registry. Python's thresholds are kept.
        """
        self._gc.callbacks.append(self._observe)
        if self.freeze:
            self._gc.freeze()

    def stop(self):
        """
        Stop timing, and freezing. What is frozen stays frozen: a stopping
        node drains its clients for up to C{drain_timeout_ms} while it
        serves, and must not meet a full collection of its whole registry
        then (a process that goes on after its node, a test's, unfreezes
        it itself).
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
        if generation and self.freeze:
            self._gc.freeze()
        if pause >= SLOW_PAUSE:
            self.log.warn(
                "gc: generation {generation} collection paused the node {pause:.1f} ms",
                generation=generation,
                pause=pause * 1000,
            )
