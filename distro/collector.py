# -*- test-case-name: tests.test_collector -*-
"""
The garbage collector of a running node.

A node's long-lived data (its clients, instances and views) is most of its
heap. Python's full collections walk all of it: 100-200 ms with a hundred
thousand instances, during which nothing is served. With C{gc_freeze}, what
survives a full collection (and what the node loaded at start, see
L{distro.node.Node.loaded}) is moved to the collector's permanent generation
(L{gc.freeze}), so that the next full collection walks only what was created
since. The cost: cyclic garbage made of frozen objects is never reclaimed.
The node makes none in its steady state (a closed connection is freed by
reference counting alone; tests hold it to that), so what could be lost is
bounded by rare events (a peer link replaced), not by traffic.

Every collection is timed; pauses of C{SLOW_PAUSE} or more are logged, and
the longest is logged when the node stops.
"""

import gc
import time

from twisted.logger import Logger

SLOW_PAUSE = 0.020


class CollectorWatch:
    """
    Times the collections of this process and, with C{freeze}, freezes what
    survives a full one.

    @ivar longest: the longest pause seen, in seconds.
    @ivar collections: how many collections were timed.
    """

    log = Logger()

    def __init__(self, *, freeze, collector=gc, now=time.perf_counter):
        self.freeze = freeze
        self._gc = collector
        self._now = now
        self._started = None
        self.longest = 0.0
        self.collections = 0

    def start(self):
        self._gc.callbacks.append(self._observe)

    def stop(self):
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
        if generation == 2 and self.freeze:
            self._gc.freeze()
        if pause >= SLOW_PAUSE:
            self.log.warn(
                "gc: generation {generation} collection paused the node {pause:.1f} ms",
                generation=generation,
                pause=pause * 1000,
            )
