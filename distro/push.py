# -*- test-case-name: tests.test_push -*-
"""
Pushes to the subscribers connected to this node (PROTOCOL.md 4.3).

A change is pushed at the end of the node's turn it happened in
(L{distro.interfaces.ITurns.atEnd}), before the next turn's work: the
changes of one turn (the requests answered in it, the peer frames read at
once) are one push, with the newest view, written in the same reactor turn
as the replies. With C{push_delay_ms}, a subscription is pushed at most
once per that interval, what changes meanwhile at its end. While a
connection cannot take more data only the fact that a subscription is due is
kept, and the view is read when it is sent, so a slow subscriber costs one
pending flag per subscription, never a queue of views.
"""

import heapq
import itertools

from twisted.logger import Logger
from zope.interface import implementer

from distro.histogram import Histogram
from distro.interfaces import IViewListener
from distro.turns import Turns

# The upper bounds of the push latency histogram's buckets, in seconds: from
# a view's change to its push written.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _closed(info):
    """
    What a closed channel sends: nothing.
    """


class Subscription:
    """
    One subscription of one connection: a service and an optional cluster
    filter, with what was last pushed and when.
    """

    __slots__ = ("channel", "service", "clusters", "lastPushAt", "lastChecksum", "due", "changedAt")

    def __init__(self, channel, service, clusters, checksum):
        self.channel = channel
        self.service = service
        self.clusters = clusters
        self.lastPushAt = float("-inf")
        self.lastChecksum = checksum
        self.due = None
        # When the first change the next push carries happened (set with
        # due).
        self.changedAt = None


class PushChannel:
    """
    The push side of one client connection.

    @param send: called with a L{distro.registry.ServiceInfo} to write one push.
    """

    def __init__(self, pusher, send):
        self.pusher = pusher
        self._send = send
        self.subscriptions = {}
        self.paused = False
        self._pending = set()
        # (due, sequence, subscription) of the pending subscriptions, with
        # stale entries (forgotten, or pushed meanwhile) skipped when met:
        # scheduling a change costs O(log n), whatever else is pending.
        self._dueHeap = []
        self._sequence = itertools.count()
        self._timer = None

    def changed(self, subscription):
        """
        The view behind C{subscription} changed.
        """
        if subscription.due is not None:
            self.pusher.stats.coalesced += 1
            return
        now = self.pusher.clock.seconds()
        subscription.changedAt = now
        # Pushed at the end of this reactor turn (every change of the turn
        # in one push), or of its minimum interval since the last push.
        subscription.due = due = max(now, subscription.lastPushAt + self.pusher.delay)
        self._pending.add(subscription)
        heapq.heappush(self._dueHeap, (due, next(self._sequence), subscription))
        if due <= now:
            self.pusher._atTurnEnd(self)
        else:
            self._scheduleAt(due)

    def again(self, service, clusters):
        """
        Push the view of a subscription again, changed or not (its last
        push was lost): at the end of this turn, or when the connection
        can take it.
        """
        subscription = self.subscriptions.get((service, clusters))
        if subscription is not None:
            subscription.lastChecksum = None
            self.changed(subscription)

    def forget(self, subscription):
        """
        C{subscription} ended: it is no longer due.
        """
        self._pending.discard(subscription)
        subscription.due = None

    def _push(self, subscription, now):
        info = self.pusher.registry.serviceInfo(subscription.service, subscription.clusters)
        if info.checksum == subscription.lastChecksum:
            return
        subscription.lastChecksum = info.checksum
        subscription.lastPushAt = now
        stats = self.pusher.stats
        stats.sent += 1
        stats.latency.add(now - subscription.changedAt)
        self._send(info)

    def _next(self):
        """
        The first live entry of the heap (stale ones are dropped), or
        L{None}.
        """
        heap = self._dueHeap
        while heap:
            due, _, subscription = heap[0]
            if subscription in self._pending and subscription.due == due:
                return heap[0]
            heapq.heappop(heap)
        return None

    def _scheduleAt(self, due):
        if self.paused:
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= due:
                return
            self._timer.cancel()
        delay = max(0.0, due - self.pusher.clock.seconds())
        self._timer = self.pusher.clock.callLater(delay, self.flush)

    def flush(self):
        """
        Push every subscription due by now (and wait for the next one due).
        """
        self._timer = None
        now = self.pusher.clock.seconds()
        while not self.paused:
            entry = self._next()
            if entry is None or entry[0] > now:
                break
            heapq.heappop(self._dueHeap)
            subscription = entry[2]
            self._pending.discard(subscription)
            subscription.due = None
            self._push(subscription, now)
        entry = self._next()
        if entry is not None:
            self._scheduleAt(entry[0])

    def pause(self):
        """
        The connection's send buffer is full: hold pushes.
        """
        self.paused = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def resume(self):
        """
        The connection can take data again: send what is due.
        """
        self.paused = False
        self.flush()

    def pendingCount(self):
        """
        How many subscriptions wait for a push.
        """
        return len(self._pending)

    def close(self):
        """
        The connection is gone: forget its subscriptions.
        """
        self.pause()
        for subscription in list(self.subscriptions.values()):
            self.pusher._unindex(subscription)
        self.subscriptions.clear()
        self._pending.clear()
        self._dueHeap.clear()
        # Let go of the connection: nothing is sent any more, and a closed
        # connection is then freed by reference counting alone.
        self._send = _closed


class PushStats:
    """
    What the pushes of a node came to, counted as they happen.

    @ivar sent: pushes written to a connection.
    @ivar coalesced: changes that joined a push already due (one push for
        several changes).
    @ivar failed: pushes a port could not deliver (the subscriber could not
        take the view, or never acknowledged it).
    @ivar latency: the L{Histogram} of a view's change to its push, seconds.
    """

    __slots__ = ("sent", "coalesced", "failed", "latency")

    def __init__(self):
        self.sent = 0
        self.coalesced = 0
        self.failed = 0
        self.latency = Histogram(LATENCY_BUCKETS)


@implementer(IViewListener)
class Pusher:
    """
    The subscriber index of a node: which connections subscribe to which
    service, told by the registry when a view changes.
    """

    log = Logger()

    def __init__(self, registry, clock, delayMs, turns=None):
        self.registry = registry
        self.clock = clock
        self.turns = Turns(clock) if turns is None else turns
        self.delay = delayMs / 1000.0
        self._due = {}  # channels with a push due at the end of this turn (a dict: in order)
        self._subscribers = {}
        # Every connection's subscriptions, counted as they come and go.
        self.subscriptionCount = 0
        self.stats = PushStats()
        registry.addViewListener(self)

    def _atTurnEnd(self, channel):
        """
        C{channel} has a push due now: flushed at the end of this turn.
        """
        if not self._due:
            self.turns.atEnd(self._flushDue)
        self._due[channel] = None

    def _flushDue(self):
        due, self._due = self._due, {}
        for channel in due:
            try:
                channel.flush()
            except Exception:
                # One connection's failure: the others are still pushed.
                self.log.failure("pushing failed")

    def channel(self, send):
        """
        A L{PushChannel} for a new connection.
        """
        return PushChannel(self, send)

    def subscribe(self, channel, service, clusters, checksum):
        """
        Subscribe C{channel} to C{service}; C{checksum} is that of the view the
        subscriber already has (from the C{subscribe} reply).
        """
        key = (service, clusters)
        subscription = channel.subscriptions.get(key)
        if subscription is None:
            subscription = Subscription(channel, service, clusters, checksum)
            channel.subscriptions[key] = subscription
            self._subscribers.setdefault(service, set()).add(subscription)
            self.subscriptionCount += 1
        else:
            subscription.lastChecksum = checksum
        return subscription

    def unsubscribe(self, channel, service, clusters):
        """
        Drop one subscription of C{channel}.
        """
        subscription = channel.subscriptions.pop((service, clusters), None)
        if subscription is not None:
            channel.forget(subscription)
            self._unindex(subscription)

    def _unindex(self, subscription):
        subscribers = self._subscribers.get(subscription.service)
        if subscribers is not None and subscription in subscribers:
            subscribers.discard(subscription)
            self.subscriptionCount -= 1
            if not subscribers:
                del self._subscribers[subscription.service]

    def subscriberCount(self, service):
        """
        How many subscriptions this node holds for C{service}.
        """
        return len(self._subscribers.get(service, ()))

    def viewChanged(self, service):
        subscribers = self._subscribers.get(service)
        if subscribers:
            for subscription in list(subscribers):
                subscription.channel.changed(subscription)
