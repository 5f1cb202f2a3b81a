# -*- test-case-name: tests.test_turns -*-
"""
The reactor's time, shared: work that clients cause (reading their
requests, answering them, slices of a large request) takes at most a
budget of each reactor turn, and what is left waits for the next turns in
the order it came. A thousand connections that speak at once are then
served over several turns, and a ping on another connection waits for one
budget, not for all of them.

A turn is measured from the first work in it: L{Turns.available} opens it
and schedules its end (C{callLater(0)}, which runs once the reactor has
handled the events of this turn); the work deferred runs at the start of
the following turns, oldest first, within the budget of each. Work asked
for the end of a turn (L{Turns.atEnd}: the pushes of what the turn's work
changed) runs once the turn's work is done, before the next turn's.
The node's own upkeep (L{Turns.background}: removing the clients that
left) runs in each turn after that: at least a slice, more within a short
budget of its own (L{UPKEEP_BUDGET}), so that a request never waits a turn
behind it, nor more than a millisecond or so.
"""

import collections
import time

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from distro.interfaces import ITurns

# The time client work may take in one reactor turn.
TURN_BUDGET = 0.005
# The time upkeep may take in one turn (past its one slice): a request that
# comes meanwhile waits for it, so it is short.
UPKEEP_BUDGET = 0.001


class _Stepping:
    """
    A generator's steps, run while C{available()} says so, the rest put off
    with C{later} (itself, again: no closure that refers to itself, which
    would be garbage for the collector alone, and L{distro.collector} may
    freeze it first); C{done} fires with its return value.
    """

    __slots__ = ("steps", "later", "available", "done")

    def __init__(self, steps, later, available):
        self.steps = steps
        self.later = later
        self.available = available
        self.done = Deferred()

    def __call__(self):
        try:
            next(self.steps)
            while self.available():
                next(self.steps)
        except StopIteration as e:
            self.done.callback(e.value)
        except Exception:
            self.done.errback()
        else:
            self.later(self)


@implementer(ITurns)
class Turns:
    log = Logger()

    def __init__(self, clock, budget=TURN_BUDGET, timer=time.perf_counter, upkeepBudget=UPKEEP_BUDGET):
        self.clock = clock
        self.budget = budget
        self.upkeepBudget = upkeepBudget
        self.timer = timer
        self._started = None  # when this turn's first work began
        self._next = None  # the call that ends this turn
        self._waiting = collections.deque()
        self._upkeep = collections.deque()  # background work, after the rest
        self._ending = []  # work for the end of this turn

    def _open(self):
        if self._started is None:
            self._started = self.timer()
            self._next = self.clock.callLater(0, self._turn)

    def available(self):
        self._open()
        return not self._waiting and self.timer() - self._started < self.budget

    def spent(self):
        self._open()
        return self.timer() - self._started >= self.budget

    def later(self, work):
        self._open()
        self._waiting.append(work)

    def run(self, steps):
        return self._steps(steps, self.later, self.available)

    def background(self, steps):
        return self._steps(steps, self._upkeepLater, self._upkeepAvailable)

    def _upkeepLater(self, work):
        self._open()
        self._upkeep.append(work)

    def _upkeepAvailable(self):
        self._open()
        return not self._waiting and self.timer() - self._started < self.upkeepBudget

    def _steps(self, steps, later, available):
        stepping = _Stepping(steps, later, available)
        if available():
            stepping()
        else:
            later(stepping)
        return stepping.done

    def pending(self):
        return len(self._waiting)

    def atEnd(self, work):
        self._ending.append(work)
        self._open()

    def _end(self):
        # Work it runs may ask for more (bounded by what it asks): run
        # until none is left.
        while self._ending:
            ending, self._ending = self._ending, []
            for work in ending:
                try:
                    work()
                except Exception:
                    self.log.failure("work for the end of a turn failed: {work!r}", work=work)

    def _turn(self):
        self._started = self._next = None
        # The end of the turn begun outside this call (reads handled at
        # once, timers): what it asked for runs before the next work.
        self._end()
        if not self._waiting and not self._upkeep:
            return
        self._open()
        self._runWaiting(self._waiting, 0, self.budget)
        self._end()
        # Upkeep after the clients' work and what that changed is told: at
        # least one slice a turn, so that it goes on under any load, and no
        # more than its own short budget.
        self._runWaiting(self._upkeep, 1, self.upkeepBudget)
        self._end()

    def _runWaiting(self, waiting, least, budget):
        # Only the work waiting when the turn began: what it defers again
        # goes to the back, for a later turn.
        count = len(waiting)
        while count and (least > 0 or self.timer() - self._started < budget):
            count -= 1
            least -= 1
            work = waiting.popleft()
            try:
                work()
            except Exception:
                # Its owner's failure: the work after it still runs.
                self.log.failure("work deferred to a turn failed: {work!r}", work=work)
