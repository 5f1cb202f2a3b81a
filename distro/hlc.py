# -*- test-case-name: tests.test_overrides -*-
"""
A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014):
stamps that follow the wall clock, never run backwards on one node, and
order every stamp a node has seen (its own and those it received) before
any it makes afterwards, whatever the skew between the nodes' clocks.

A stamp is the tuple C{(ms, counter, node)}: tuples compare as stamps do,
the node id breaking the tie of two nodes' stamps made at the same
C{(ms, counter)}.
"""

# A stamp may run ahead of this node's clock by at most this much (ms): a
# member with a clock days ahead, or a forged stamp, cannot drag every
# node's stamps into the future for good.
MAX_AHEAD_MS = 60_000


class HybridClock:
    """
    The hybrid logical clock of one node.

    @param clock: the node's clock (C{seconds()}).
    @param node: this node's id, the last part of its stamps.
    """

    def __init__(self, clock, node):
        self.clock = clock
        self.node = node
        self.ms = 0
        self.counter = 0

    def _wall(self):
        return int(self.clock.seconds() * 1000)

    def last(self):
        """
        C{(ms, counter)} of the last stamp made or witnessed (what is kept
        on disk, so that a restarted node's stamps follow its last ones).
        """
        return (self.ms, self.counter)

    def now(self):
        """
        A new stamp, above every stamp made or witnessed here.
        """
        wall = self._wall()
        if wall > self.ms:
            self.ms, self.counter = wall, 0
        else:
            self.counter += 1
        return (self.ms, self.counter, self.node)

    def witness(self, stamp, *, own=False):
        """
        C{stamp} was seen: the stamps made from now on order after it. A
        member's stamp (not C{own}, this node's own read back from disk)
        more than L{MAX_AHEAD_MS} ahead of this node's clock moves it no
        further than that.
        """
        ms, counter = stamp[0], stamp[1]
        ceiling = self._wall() + MAX_AHEAD_MS
        if ms > ceiling and not own:
            ms, counter = ceiling, 0
        if (ms, counter) > (self.ms, self.counter):
            self.ms, self.counter = ms, counter

    def after(self, stamp):
        """
        A new stamp above C{stamp} as well (the stamp of what a write
        replaces: a write made here wins over what it saw, even when that
        came from a member whose clock runs far ahead).
        """
        mine = self.now()
        if stamp is None or mine > stamp:
            return mine
        if stamp[0] > self._wall() + MAX_AHEAD_MS:
            # A stamp far ahead: this write goes just above it, the clock
            # does not follow it there.
            return (stamp[0], stamp[1] + 1, self.node)
        self.ms, self.counter = stamp[0], stamp[1] + 1
        return (self.ms, self.counter, self.node)
