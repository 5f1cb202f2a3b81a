# -*- test-case-name: tests.test_drain -*-
"""
Moving a node's client sessions to other members: all of them when the node
drains before it stops (SIGTERM), some of them when it holds more than its
share (L{distro.rebalance}).

A session is asked to move with its port's own words (msgpack: a C{move}
push, PROTOCOL.md 4.5; Nacos: C{ConnectResetRequest}); a msgpack client
resumes its session at the member it is sent to, which takes the client
over (4.1), so that nobody sees its instances go. A client has moved when
this node no longer holds it as its own: taken over by another member, or
removed (a Nacos SDK's connection, which does not resume, ends and its
client goes after the disconnect grace, while the SDK registers again
elsewhere).
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from distro.interfaces import IClientObserver

# How long a draining node gives a session to leave once asked: one still
# connected then does not know how (a client from before moves), and is
# closed, which makes it fail over (resume elsewhere) as when a node dies.
CLOSE_AFTER = 1.0


def moveTargets(members):
    """
    The client-port addresses a session of this node may move to: those of
    the other members that are C{UP}, as the C{members} op describes them.
    """
    return [m["address"] for m in members if not m["self"] and m["state"] == "UP" and m["address"]]


def spread(targets, index):
    """
    C{targets} rotated by C{index}: the n-th session moved is sent first to
    the n-th target, so that moved sessions spread evenly over them.
    """
    if not targets:
        return []
    at = index % len(targets)
    return targets[at:] + targets[:at]


@implementer(IClientObserver)
class Moves:
    """
    Sessions asked to move, and a L{Deferred} that fires once their clients
    are no longer this node's own, or after a timeout.

    @ivar left: the ids of the clients that have not moved yet.
    """

    log = Logger()

    def __init__(self, manager, clock):
        self._manager = manager
        self._clock = clock
        self.left = set()
        self._waiters = []
        self._timer = None
        manager.addObserver(self)

    def move(self, sessions, targets, reason, timeout, closeAfter=None):
        """
        Ask each of C{sessions} (C{{clientId: session}}) to move to
        C{targets} (spread over them), for C{reason} (C{"draining"} or
        C{"rebalance"}); with C{closeAfter}, close those still connected
        that many seconds later.

        @return: a L{Deferred} firing with the number of clients that did not
            move within C{timeout} seconds (0 when all did).
        """
        asked = []
        for index, (clientId, session) in enumerate(sorted(sessions.items())):
            client = self._manager.clients.get(clientId)
            if client is None or not client.native:
                continue
            self.left.add(clientId)
            session.move(spread(targets, index), reason)
            asked.append((clientId, session))
        if closeAfter is not None and asked:
            self._clock.callLater(min(closeAfter, timeout), self._closeStill, asked)
        d = Deferred()
        self._waiters.append(d)
        if self._timer is None or not self._timer.active():
            self._timer = self._clock.callLater(timeout, self._timedOut)
        self._check()
        return d

    def _closeStill(self, asked):
        for clientId, session in asked:
            if clientId in self.left and session.client is not None and session.client.native:
                session.closeConnection()

    def _check(self):
        if not self.left:
            self._fire(0)

    def _timedOut(self):
        self._timer = None
        self._fire(len(self.left))

    def _fire(self, notMoved):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waiters, self._waiters = self._waiters, []
        self.left = set()
        for d in waiters:
            d.callback(notMoved)

    # IClientObserver: a client taken over elsewhere, or gone, has moved.

    def clientChanged(self, change):
        pass

    def clientRemoved(self, client):
        self._gone(client.clientId)

    def clientMoved(self, client):
        if not client.native:
            self._gone(client.clientId)

    def _gone(self, clientId):
        if clientId in self.left:
            self.left.discard(clientId)
            self._check()
