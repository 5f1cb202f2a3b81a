"""
Tests for L{distro.ratelog}: lines a client can cause, rate-limited.
"""

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from distro.ratelog import RateLimitedLog


class RateLimitedLogTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        self.clock = Clock()
        self.notices = RateLimitedLog(self.clock, Logger(observer=self.events.append),
                                      interval=10.0, burst=3)

    def lines(self):
        from twisted.logger import formatEvent

        out = [formatEvent(e) for e in self.events]
        self.events.clear()
        return out

    def test_burstThenCounted(self):
        """
        At most C{burst} lines of a kind per interval; the next one let
        through tells how many were not logged.
        """
        for n in range(1000):
            self.notices.warn("bad", "bad message {n}", n=n)
        self.assertEqual(self.lines(), ["bad message 0", "bad message 1", "bad message 2"])
        self.clock.advance(10)
        self.notices.warn("bad", "bad message {n}", n=1000)
        self.assertEqual(self.lines(), ["bad message 1000 (997 more like this in the last 10 s not logged)"])

    def test_kindsApart(self):
        for _ in range(5):
            self.notices.info("a", "a")
            self.notices.info("b", "b")
        self.assertEqual(self.lines(), ["a", "b"] * 3)

    def test_failure(self):
        try:
            1 / 0
        except ZeroDivisionError:
            for _ in range(5):
                self.notices.failure("boom", "failed {what}", what="x")
        self.assertEqual(len(self.events), 3)
        self.assertIn("log_failure", self.events[0])
