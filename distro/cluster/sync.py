# -*- test-case-name: tests.test_sync -*-
"""
The sync barrier (PROTOCOL.md 5.4): before a node removes a client on its
own judgement (its disconnect grace passed, its owner stopped naming it, its
owner is presumed dead), it makes sure it has read everything the other
members sent before it asked. If one of them took the client over, that
member's record is then in: a delayed link, a partition or a node woken from
a stop can no longer make a live client vanish.

A round: this node sends C{sync {n}} to every member that is not presumed
dead, on its own outbound link to that member; each answers C{synced {n}} on
its outbound link back, after everything it had to send (5.2 keeps each link
in order, and a feed answers only once its dirty clients and any snapshot are
out). The round completes when every member it waits for answered, was
presumed dead, or left the cluster. Requests made during a round wait for
the next one, so every request is covered by a round that started after it.

An answer also names the clients that sessions of the member are resuming
right now (their takeover is not announced until their redo is done): the
round's result, so that none of them is removed meanwhile.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from distro.interfaces import ISyncBarrier


@implementer(ISyncBarrier)
class SyncBarrier:
    """
    Sync rounds with the other members.

    @param members: returns the other L{distro.cluster.members.Member}s.
    @param ask: C{(member, message) -> bool}: send C{message} on the
        outbound link to C{member}; false if no authenticated link is up
        (L{linkUp} tells when one is).
    @ivar round: the number of the current (or last) round.
    """

    log = Logger()

    def __init__(self, members, ask):
        self._members = members
        self._ask = ask
        self.round = 0
        self._waiting = None
        self._current = []
        self._next = []
        self._dead = set()
        self._restoring = set()

    def whenSynced(self):
        d = Deferred()
        self._next.append(d)
        if self._waiting is None:
            self._start()
        return d

    def waitingFor(self):
        """
        The addresses of the members the current round still waits for.
        """
        return set(self._waiting or ())

    def _start(self):
        self.round += 1
        self._current, self._next = self._next, []
        self._waiting = {m.address for m in self._members() if m.address not in self._dead}
        message = {"op": "sync", "n": self.round}
        for member in self._members():
            if member.address in self._waiting:
                self._ask(member, message)
        self._check()

    def _check(self):
        if self._waiting is None or self._waiting:
            return
        self._waiting = None
        done, self._current = self._current, []
        restoring, self._restoring = frozenset(self._restoring), set()
        for d in done:
            d.callback(restoring)
        if self._next and self._waiting is None:
            self._start()

    def linkUp(self, member):
        """
        An outbound link to C{member} is up: ask it, if the round waits for
        it (a sync sent on an earlier link may have been lost with it).
        """
        if self._waiting is not None and member.address in self._waiting:
            self._ask(member, {"op": "sync", "n": self.round})

    def answered(self, member, n, restoring=()):
        """
        C{member} answered round C{n}, resuming the clients C{restoring}
        right now; an answer to an earlier round says nothing about this
        one.
        """
        if self._waiting is not None and n == self.round:
            self._waiting.discard(member.address)
            self._restoring.update(restoring)
            self._check()

    def presumedDead(self, member):
        """
        C{member} has been down for C{orphan_grace_ms} (or left): rounds no
        longer wait for it, until it is heard from again.
        """
        self._dead.add(member.address)
        if self._waiting is not None and member.address in self._waiting:
            self.log.info("sync round {n}: not waiting for {member} any more", n=self.round, member=member.address)
            self._waiting.discard(member.address)
            self._check()

    def alive(self, member):
        """
        C{member} was heard from: the next rounds wait for it again.
        """
        self._dead.discard(member.address)
