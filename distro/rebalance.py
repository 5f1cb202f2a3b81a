# -*- test-case-name: tests.test_rebalance -*-
"""
Rebalancing: a node that holds more than its share of the cluster's client
sessions moves the excess to the members below theirs, a few per second,
with the C{move} push of a drain (L{distro.drain}, PROTOCOL.md 4.6). After a
restart, a member holds none; this gives it its share back.

A node counts its own sessions, and each other member's by the session
clients it replicated (those that wrote something; a heartbeat client,
whose id has no C{#}, is no session). The share is the total over the
members that are up, divided among them, rounded up.
"""

import collections

from twisted.logger import Logger

# Sessions moved per second unless the operator says otherwise.
DEFAULT_RATE = 5.0
MAX_RATE = 1000
# How long after the members change a node with rebalance_after_restart
# looks at its share: time for the member that came back to load, and for
# the clients that moved meanwhile to settle.
SETTLE_SECONDS = 5.0


def sessionCounts(clients, nodeId, ownSessions):
    """
    How many sessions each member holds: C{ownSessions} for this node
    (C{nodeId}), and for the others the session clients of C{clients} (the
    client manager's, by id) they own.
    """
    counts = collections.Counter()
    for client in clients.values():
        if not client.native and "#" in client.clientId:
            counts[client.owner] += 1
    counts[nodeId] = ownSessions
    return counts


def plan(members, counts):
    """
    What this node is to move: C{(share, targets)}, C{targets} one
    client-port address per session to move (as many as this node holds
    over its share), taken in turn from the members below their share, as
    far as each is below it.

    @param members: the members as the C{members} op describes them.
    @param counts: sessions per node id (L{sessionCounts}).
    """
    up = [m for m in members if m["self"] or (m["state"] == "UP" and m["address"])]
    total = sum(counts.get(m["node"], 0) for m in up)
    share = -(-total // len(up)) if up else 0
    me = [m for m in up if m["self"]]
    excess = counts.get(me[0]["node"], 0) - share if me else 0
    deficits = [[m["address"], share - counts.get(m["node"], 0)] for m in up if not m["self"]]
    deficits = [d for d in deficits if d[1] > 0]
    targets = []
    while len(targets) < excess and deficits:
        for deficit in list(deficits):
            if len(targets) == excess:
                break
            targets.append(deficit[0])
            deficit[1] -= 1
            if not deficit[1]:
                deficits.remove(deficit)
    return share, targets


class Rebalancer:
    """
    Moves sessions one at a time, C{rate} per second: each to its target
    first, then to the other members up.
    """

    log = Logger()

    def __init__(self, clock):
        self._clock = clock
        self._call = None
        self._queue = []

    @property
    def moving(self):
        """
        How many sessions are still to be asked to move.
        """
        return len(self._queue)

    def start(self, sessions, targets, others, rate):
        """
        Ask C{sessions} (C{[(clientId, session)]}, as many as C{targets}) to
        move, the n-th to C{targets[n]} first, then to C{others}, at
        C{rate} a second; a rebalance under way is replaced.
        """
        self.stop()
        self._queue = [
            (session, [target] + [o for o in others if o != target])
            for (_, session), target in zip(sessions, targets)
        ]
        self._interval = 1.0 / rate
        self._next()

    def _next(self):
        self._call = None
        while self._queue:
            session, members = self._queue.pop(0)
            if session.client is not None and session.client.native and not getattr(session, "closing", False):
                session.move(members, "rebalance")
                break
        if self._queue:
            self._call = self._clock.callLater(self._interval, self._next)

    def stop(self):
        """
        Stop moving (the node drains, or a new rebalance starts).
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._queue = []
