"""
Tests for L{distro.watchdog}: a connection's silence, judged after a turn
of reading, not counted while the node does not read.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from distro.watchdog import Watchdog
from tests._turns import nextTurn


class WatchdogTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.expired = []
        self.stalled = []
        self.watchdog = Watchdog(
            self.clock, 10.0, self.expired.append, stalledLimit=30.0, stalled=self.stalled.append
        )
        self.watchdog.start()

    def at(self, when):
        """
        Move the clock to C{when} and run one reactor turn there.
        """
        self.clock.rightNow = when
        nextTurn(self.clock)

    def test_silenceExpires(self):
        """
        Silent for the limit, the connection expires, once; the watchdog is
        stopped then.
        """
        self.clock.advance(9.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [10.0])
        self.assertFalse(self.watchdog.running)
        self.clock.advance(100)
        self.assertEqual(self.expired, [10.0])

    def test_heardPostpones(self):
        for _ in range(5):
            self.clock.advance(6)
            self.watchdog.heard()
        self.assertEqual(self.expired, [])
        self.clock.advance(10)
        self.assertEqual(self.expired, [10.0])

    def test_judgedAfterReading(self):
        """
        The limit passed (a node woken from a stop runs its timers before it
        reads): the watchdog looks again a turn later, and what arrived
        meanwhile counts.
        """
        self.at(25.0)
        self.assertEqual(self.expired, [])
        self.watchdog.heard()  # read in the same turn, after the timers
        self.at(25.0)
        self.assertEqual(self.expired, [])
        self.assertTrue(self.watchdog.running)
        self.at(35.0)
        self.at(35.0)
        self.assertEqual(self.expired, [10.0])

    def test_expecting(self):
        """
        Silence counts from the first unanswered question, not from before
        it; an answer clears it.
        """
        self.clock.advance(8)
        self.watchdog.heard()
        self.clock.advance(5)  # 13: quiet, nothing asked
        self.watchdog.expecting()
        self.clock.advance(4)
        self.watchdog.expecting()  # a second question: still counted from 13
        self.assertEqual(self.watchdog.silentSince(), 13)
        self.clock.advance(5)  # 22: 9 s unanswered
        self.assertEqual(self.expired, [])
        self.clock.advance(1)
        self.assertEqual(self.expired, [10.0])

    def test_holdNotCounted(self):
        """
        While held, silence is not counted; it counts again from the
        release.
        """
        self.clock.advance(5)
        self.watchdog.hold()
        self.clock.advance(20)
        self.assertEqual(self.expired, [])
        self.watchdog.release()
        self.clock.advance(9.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [10.0])

    def test_stalled(self):
        """
        A hold that lasts C{stalledLimit} is a stall: reported once.
        """
        self.watchdog.hold()
        self.clock.advance(29.9)
        self.assertEqual(self.stalled, [])
        self.clock.advance(0.1)
        self.assertEqual((self.stalled, self.expired), ([30.0], []))
        self.assertFalse(self.watchdog.running)

    def test_holdWithoutStallLimit(self):
        """
        Without a stall limit a hold lasts as long as it does.
        """
        self.watchdog.stop()
        expired = []
        watchdog = Watchdog(self.clock, 1.0, expired.append)
        watchdog.start()
        watchdog.hold()
        self.clock.advance(1000)
        self.assertEqual(expired, [])
        watchdog.release()
        self.clock.advance(1)
        self.assertEqual(expired, [1.0])

    def test_stop(self):
        self.watchdog.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(self.expired, [])
        self.watchdog.stop()  # twice is harmless
        self.watchdog.start()
        self.clock.advance(10)
        self.assertEqual(self.expired, [10.0])

    def test_neverBusyLoops(self):
        """
        A remainder below the clock's resolution is a millisecond: the
        watchdog never re-arms for the same instant.
        """
        self.clock.advance(1e-12)
        self.watchdog.heard()
        self.clock.advance(10 - 1e-12)
        (call,) = self.clock.getDelayedCalls()
        self.assertAlmostEqual(call.getTime() - self.clock.seconds(), 0.001)

    def test_end(self):
        """
        Ended, the watchdog runs no timer and holds no callback.
        """
        self.watchdog.end()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(self.watchdog.expired)
        self.watchdog.heard()  # what a late read does: harmless
        self.clock.advance(100)
        self.assertEqual(self.expired, [])
