# -*- test-case-name: tests.test_ratelog -*-
"""
Log lines a client can cause by sending something, at most a few per
interval per kind: what a flood of bad messages would write is counted
instead, and the count is told with the next line of that kind let
through. The kinds are a fixed set of names, so the state is bounded.
"""

from twisted.logger import Logger


class RateLimitedLog:
    """
    At most C{burst} lines of each kind per C{interval} seconds of
    C{clock}.
    """

    def __init__(self, clock, log=None, interval=10.0, burst=5):
        self.clock = clock
        self.log = log or Logger(namespace="distro.notices")
        self.interval = interval
        self.burst = burst
        # kind -> [start of the window, lines in it, lines suppressed]
        self._kinds = {}

    def _allowed(self, kind):
        now = self.clock.seconds()
        state = self._kinds.get(kind)
        if state is None or now - state[0] >= self.interval:
            suppressed = state[2] if state is not None else 0
            self._kinds[kind] = [now, 1, 0]
            return True, suppressed
        if state[1] < self.burst:
            state[1] += 1
            return True, 0
        state[2] += 1
        return False, 0

    def _emit(self, level, kind, format, fields):
        allowed, suppressed = self._allowed(kind)
        if not allowed:
            return
        if suppressed:
            format += " ({suppressed} more like this in the last {interval:g} s not logged)"
            fields = dict(fields, suppressed=suppressed, interval=self.interval)
        getattr(self.log, level)(format, kind=kind, **fields)

    def info(self, kind, format, **fields):
        self._emit("info", kind, format, fields)

    def warn(self, kind, format, **fields):
        self._emit("warn", kind, format, fields)

    def failure(self, kind, format, failure=None, **fields):
        allowed, suppressed = self._allowed(kind)
        if allowed:
            if suppressed:
                format += " ({suppressed} more like this not logged)"
                fields = dict(fields, suppressed=suppressed)
            self.log.failure(format, failure, **fields)
