# -*- test-case-name: tests.test_watchdog -*-
"""
A connection's silence, judged the same way on every port and on peer links.

A connection silent for its limit has expired, but silence is judged after
reading what has arrived: when the watchdog finds the limit passed, it looks
again one reactor turn later, after the reactor read its sockets. A node
woken from a stop (or a long pause) runs its overdue timers before it reads,
and would otherwise drop connections whose data was waiting all along.

Silence counts only while the node listens: while the watchdog is held (the
node stopped reading the connection, whose messages may be waiting in the
socket) it is not counted, and a hold that lasts too long is a stall of its
own.
"""


class Watchdog:
    """
    Calls C{expired(silent)} once nothing was heard on a connection for
    C{limit} seconds.

    @param clock: an L{IReactorTime}.
    @param limit: the seconds of silence allowed.
    @param expired: called with the seconds of silence, once; the watchdog
        is stopped by then (L{start} arms it again).
    @param stalledLimit: the seconds a hold may last, if bounded.
    @param stalled: called with the seconds held, once, when a hold lasted
        C{stalledLimit}.
    """

    def __init__(self, clock, limit, expired, *, stalledLimit=None, stalled=None):
        self.clock = clock
        self.limit = limit
        self.expired = expired
        self.stalledLimit = stalledLimit
        self.stalled = stalled
        self.lastHeard = 0.0
        self._expectingSince = None
        self._heldSince = None
        self._timer = None
        self._confirming = False

    @property
    def running(self):
        return self._timer is not None

    def start(self):
        """
        Watch from now on: silence counts from this moment.
        """
        self.stop()
        self.lastHeard = self.clock.seconds()
        self._arm(self.limit)

    def stop(self):
        """
        Watch no more (the connection ended, or is closing).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._confirming = False

    def end(self):
        """
        The connection ended: stop for good, and let go of the callbacks (a
        connection is then freed by reference counting, without a cycle
        through its watchdog).
        """
        self.stop()
        self.expired = self.stalled = None

    def heard(self):
        """
        Something arrived: the connection is not silent.
        """
        self.lastHeard = self.clock.seconds()
        self._expectingSince = None

    def expecting(self):
        """
        An answer is due from now on (a ping was sent): on a connection
        where the other end only answers, silence counts from the first
        unanswered question, not from before a pause of ours in which we
        asked nothing.
        """
        if self._expectingSince is None:
            self._expectingSince = self.clock.seconds()

    def silentSince(self):
        """
        Since when the connection has been silent in a way that counts.
        """
        if self._expectingSince is None:
            return self.lastHeard
        return max(self.lastHeard, self._expectingSince)

    def hold(self):
        """
        The node stopped reading the connection: its silence is not counted
        until L{release}.
        """
        if self._heldSince is None:
            self._heldSince = self.clock.seconds()

    def release(self):
        """
        The node reads the connection again; silence counts from now at the
        earliest.
        """
        if self._heldSince is not None:
            self._heldSince = None
            self.lastHeard = max(self.lastHeard, self.clock.seconds())

    def _arm(self, delay):
        self._timer = self.clock.callLater(delay, self._check)

    def _check(self):
        self._timer = None
        now = self.clock.seconds()
        if self._heldSince is not None:
            self._confirming = False
            held = now - self._heldSince
            if self.stalledLimit is None:
                self._arm(self.limit)
            elif held >= self.stalledLimit:
                self.stalled(held)
            else:
                self._arm(max(min(self.limit, self.stalledLimit - held), 0.001))
            return
        silent = now - self.silentSince()
        if silent >= self.limit:
            if not self._confirming:
                self._confirming = True
                self._arm(0)
                return
            self._confirming = False
            self.expired(silent)
            return
        self._confirming = False
        # Never less than a millisecond: a remainder below the clock's
        # resolution would fire at the same instant forever.
        self._arm(max(self.limit - silent, 0.001))
