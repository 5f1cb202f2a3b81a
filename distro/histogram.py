# -*- test-case-name: tests.test_collector -*-
"""
A histogram of durations kept as they happen: a count per bucket, their
sum and the largest, so that reading it (a metrics scrape) walks nothing
but its buckets.
"""

import bisect

INF = float("inf")

_bisect = bisect.bisect_left


class Histogram:
    """
    Values counted in the buckets of C{bounds} (ascending upper bounds, in
    seconds), and above the last.

    @ivar total: the sum of the values.
    @ivar count: how many values.
    @ivar largest: the largest value, or C{None} before the first.
    """

    __slots__ = ("bounds", "counts", "total", "largest")

    def __init__(self, bounds):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.largest = None

    def add(self, value):
        # Counted on every request of every port: a bisect and three
        # updates (the count is the buckets' sum, made when read).
        self.counts[_bisect(self.bounds, value)] += 1
        self.total += value
        largest = self.largest
        if largest is None or value > largest:
            self.largest = value

    @property
    def count(self):
        return sum(self.counts)

    def cumulative(self):
        """
        C{[(upper bound, values at most that)]}, the last bound C{inf}: what
        a Prometheus histogram shows.
        """
        result, running = [], 0
        for bound, count in zip(self.bounds + (INF,), self.counts):
            running += count
            result.append((bound, running))
        return result
