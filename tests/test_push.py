"""
L{distro.push}: coalescing windows, one timer per connection, and the cost
of many subscriptions changing in one turn.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from distro.push import Pusher
from distro.turns import Turns

from ._turns import nextTurn


class _Info:
    def __init__(self, service, checksum):
        self.service = service
        self.checksum = checksum


class _Views:
    """
    The registry as the pusher sees it: a view per service, whose checksum
    a test bumps to change it.
    """

    def __init__(self):
        self.versions = {}
        self.listeners = []

    def addViewListener(self, listener):
        self.listeners.append(listener)

    def serviceInfo(self, service, clusters=None):
        return _Info(service, str(self.versions.get(service, 0)))

    def change(self, service):
        self.versions[service] = self.versions.get(service, 0) + 1
        for listener in self.listeners:
            listener.viewChanged(service)


class PushChannelTests(SynchronousTestCase):
    """
    With a minimum interval (C{push_delay_ms} 10): a change is pushed at the
    end of its turn, or of the interval since the subscription's last push.
    """

    delayMs = 10

    def setUp(self):
        self.clock = Clock()
        self.views = _Views()
        self.pusher = Pusher(self.views, self.clock, self.delayMs)
        self.sent = []
        self.channel = self.pusher.channel(lambda info: self.sent.append(
            (round(self.clock.seconds(), 3), info.service)))

    def subscribe(self, *services):
        for service in services:
            self.pusher.subscribe(self.channel, service, None, "0")

    def endOfTurn(self):
        """
        The reactor ends its turn: what was due now runs.
        """
        self.clock.advance(0)

    def test_eachAtTheEndOfItsWindow(self):
        """
        A change within a subscription's window is pushed when that
        subscription's own window ends, not another's.
        """
        self.subscribe("a", "b")
        self.views.change("a")
        self.endOfTurn()
        self.clock.advance(0.004)
        self.views.change("b")
        self.endOfTurn()
        self.clock.advance(0.002)
        self.views.change("b")
        self.views.change("a")
        self.clock.advance(0.004)
        self.assertEqual(self.sent, [(0.0, "a"), (0.004, "b"), (0.01, "a")])
        self.clock.advance(0.004)
        self.assertEqual(self.sent[3:], [(0.014, "b")])
        self.assertEqual(self.channel.pendingCount(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_manyInOneTurn(self):
        """
        Thousands of subscriptions of one connection changing in one turn
        wait behind one timer and are each pushed once, at the end of the
        turn; changing again within the interval, at the end of it.
        """
        services = [f"s{i}" for i in range(5000)]
        self.subscribe(*services)
        for service in services:
            self.views.change(service)
            self.views.change(service)
        self.assertEqual(self.sent, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.endOfTurn()
        self.assertEqual(len(self.sent), 5000)
        for service in services:
            self.views.change(service)
            self.views.change(service)
        self.assertEqual(self.channel.pendingCount(), 5000)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.01)
        self.assertEqual(len(self.sent), 10000)
        self.assertEqual({service for _, service in self.sent[5000:]}, set(services))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unsubscribedWhilePending(self):
        """
        A subscription dropped while a push of it waits is not pushed.
        """
        self.subscribe("a", "b")
        self.views.change("a")
        self.views.change("b")
        self.endOfTurn()
        self.views.change("a")
        self.views.change("b")
        self.pusher.unsubscribe(self.channel, "a", None)
        self.assertEqual(self.channel.pendingCount(), 1)
        self.clock.advance(0.01)
        self.assertEqual(self.sent[2:], [(0.01, "b")])

    def test_pausedHolds(self):
        """
        While the connection cannot take data nothing is pushed and no timer
        runs; on resume what is due goes at once, what is not yet due waits
        for its window.
        """
        self.subscribe("a", "b")
        self.views.change("a")
        self.endOfTurn()
        self.clock.advance(0.005)
        self.views.change("b")
        self.endOfTurn()
        self.channel.pause()
        self.views.change("a")
        self.views.change("b")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0.007)
        self.channel.resume()
        self.assertEqual(self.sent[2:], [(0.012, "a")])
        self.clock.advance(0.003)
        self.assertEqual(self.sent[3:], [(0.015, "b")])


class PushAtOnceTests(SynchronousTestCase):
    """
    Without a minimum interval (the default): a change is pushed at the end
    of the reactor turn it happened in, however recent the last push; the
    changes of one turn go as one push.
    """

    def setUp(self):
        self.clock = Clock()
        self.views = _Views()
        self.pusher = Pusher(self.views, self.clock, 0)
        self.sent = []
        self.channel = self.pusher.channel(lambda info: self.sent.append(
            (round(self.clock.seconds(), 4), info.service, info.checksum)))
        for service in ("a", "b"):
            self.pusher.subscribe(self.channel, service, None, "0")

    def test_backToBack(self):
        """
        Changes a tenth of a millisecond apart are each pushed in their own
        turn, without waiting for any window.
        """
        for n in range(5):
            self.views.change("a")
            self.clock.advance(0)
            self.clock.advance(0.0001)
        self.assertEqual([(t, c) for t, _, c in self.sent],
                         [(0.0, "1"), (0.0001, "2"), (0.0002, "3"), (0.0003, "4"), (0.0004, "5")])

    def test_endOfItsTurn(self):
        """
        A change made by a turn's work (a request answered) is pushed at
        the end of that turn, in the same reactor turn, before the next
        turn's work: not after it, as a timed call made in the turn would
        run.
        """
        turns = Turns(self.clock)
        pusher = Pusher(self.views, self.clock, 0, turns)
        order = []
        channel = pusher.channel(lambda info: order.append(("push", info.checksum)))
        pusher.subscribe(channel, "a", None, "0")

        def request():
            self.views.change("a")
            turns.later(lambda: order.append("next turn's work"))

        turns.later(request)
        nextTurn(self.clock)
        self.assertEqual(order, [("push", "1")])
        nextTurn(self.clock)
        self.assertEqual(order, [("push", "1"), "next turn's work"])

    def test_oneFailureOthersPushed(self):
        """
        A connection whose push fails (logged) does not keep the others'
        of the same turn from going, nor its own later ones.
        """
        failing = {"on": True}

        def broken(info):
            if failing["on"]:
                raise RuntimeError("boom")
            self.sent.append(("broken", info.checksum))

        other = self.pusher.channel(broken)
        self.pusher.subscribe(other, "a", None, "0")
        later = self.pusher.channel(lambda info: self.sent.append(("later", info.checksum)))
        self.pusher.subscribe(later, "a", None, "0")
        self.views.change("a")
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn(("later", "1"), self.sent)
        failing["on"] = False
        self.views.change("a")
        self.clock.advance(0)
        self.assertIn(("broken", "2"), self.sent)

    def test_oneTurnOnePush(self):
        """
        The changes of one turn (say, a batch of replicated frames read at
        once) are one push per subscription, with the newest view.
        """
        for _ in range(10):
            self.views.change("a")
            self.views.change("b")
        self.assertEqual(self.sent, [])
        self.clock.advance(0)
        self.assertEqual(sorted(self.sent), [(0.0, "a", "10"), (0.0, "b", "10")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pausedCoalesces(self):
        """
        While the connection cannot take data, changes pile up as one
        pending push per subscription, sent with the newest view on resume.
        """
        self.channel.pause()
        for _ in range(100):
            self.views.change("a")
        self.clock.advance(1)
        self.assertEqual(self.sent, [])
        self.channel.resume()
        self.assertEqual(self.sent, [(1.0, "a", "100")])
