# -*- test-case-name: tests.test_requeststats -*-
"""
The requests each port served, counted as they are answered: how many by
op and code, and how long each op took, in a histogram. A metrics scrape
reads them (L{distro.http.metrics}); nothing here is walked per request.

A request costs a port two dictionary lookups and a histogram's bisect
(well under a microsecond); prometheus_client's own C{labels().observe()}
costs a few, more than a tenth of a registration. Ops are the port's own
names, from a set fixed when the port starts: anything else a client sends
counts as L{UNKNOWN}, so no client can grow the labels.
"""

from zope.interface import implementer

from distro.histogram import Histogram
from distro.interfaces import IPortRequests, IRequestStats

# What an op outside a port's set counts as.
UNKNOWN = "unknown"

# The upper bounds of the request duration histogram's buckets, in seconds:
# from the tens of microseconds a registration takes to a large batch's
# seconds.
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class _Op:
    """
    What one op of one port served: its durations (one per request), and a
    count per code but the success code (those are the rest).
    """

    __slots__ = ("others", "durations")

    def __init__(self):
        self.others = {}
        self.durations = Histogram(DURATION_BUCKETS)

    def codes(self, success):
        """
        C{{code: count}}, successes under C{success}.
        """
        codes = dict(self.others)
        answered = self.durations.count - sum(codes.values())
        if answered:
            codes[success] = answered
        return codes


@implementer(IPortRequests)
class PortRequests:
    """
    The requests of one port.

    @ivar name: the port's name (C{distro}, C{nacos}, C{http}).
    @ivar success: the code of a success (counted without a dictionary).
    """

    def __init__(self, name, ops, success):
        self.name = name
        self.success = success
        self._known = frozenset(ops) | {UNKNOWN}
        self._ops = {}

    def record(self, op, code, seconds):
        entry = self._ops.get(op)
        if entry is None:
            entry = self._add(op)
        if code != self.success:
            others = entry.others
            others[code] = others.get(code, 0) + 1
        entry.durations.add(seconds)

    def _add(self, op):
        if op not in self._known:
            op = UNKNOWN
        entry = self._ops.get(op)
        if entry is None:
            entry = self._ops[op] = _Op()
        return entry

    def served(self):
        """
        C{[(op, {code: count}, durations)]} of every op served so far.
        """
        return [(op, entry.codes(self.success), entry.durations)
                for op, entry in sorted(self._ops.items())]


@implementer(IRequestStats)
class RequestStats:
    """
    The requests of every port of a node.
    """

    def __init__(self):
        self._ports = {}

    def port(self, name, ops, success):
        ports = self._ports.get(name)
        if ports is None:
            ports = self._ports[name] = PortRequests(name, ops, success)
        return ports

    def served(self):
        return [
            (name, op, codes, durations)
            for name, port in sorted(self._ports.items())
            for op, codes, durations in port.served()
        ]
