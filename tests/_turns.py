"""
Reactor turns on a L{task.Clock}, for tests of work spread over turns
(L{distro.turns}).
"""

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from distro.interfaces import IClientObserver


def nextTurn(clock):
    """
    Run one reactor turn's timed calls, as the reactor does: those due when
    it begins (L{Clock.advance} would also run the ones they schedule).
    """
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in due:
        if call.active():
            clock.calls.remove(call)
            call.called = True
            call.func(*call.args, **call.kw)


class SteppedTimer:
    """
    A C{time.perf_counter} a test moves: work "costs" what the test adds to
    C{now}.
    """

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def finish(steps):
    """
    Run the generator C{steps} (work in slices) to its end: its return
    value, and how many times it stopped between slices.
    """
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as e:
            return e.value, pauses
        pauses += 1


def settled(clock, result, turns=10000):
    """
    C{result}, or what the L{Deferred} C{result} fires with once C{clock}
    has run the turns it waits for (at most C{turns}).
    """
    if not isinstance(result, Deferred):
        return result
    for _ in range(turns):
        if result.called:
            break
        clock.advance(0)
    outcome = []
    result.addBoth(outcome.append)
    if not outcome:
        raise AssertionError(f"not settled within {turns} turns")
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


class TickingTimer(SteppedTimer):
    """
    A timer that moves C{step} each time it is read: with a step of more
    than half a L{distro.turns.Turns} budget, each turn runs one slice.
    """

    def __init__(self, step):
        super().__init__()
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


@implementer(IClientObserver)
class CostlySteps:
    """
    An observer of a node's change stream for which each change of a
    client costs 6 ms of a L{SteppedTimer}: more than a turn's budget
    (5 ms), so that each step of a batch takes a turn. C{revisions} lists
    the revision of each change seen.
    """

    def __init__(self, timer):
        self.timer = timer
        self.revisions = []

    def clientChanged(self, change):
        self.timer.now += 0.006
        self.revisions.append(change.client.revision)

    def clientRemoved(self, client):
        pass

    def clientMoved(self, client):
        pass


@implementer(IClientObserver)
class CostlyRemovals:
    """
    An observer of a node's change stream for which each removal of a
    client costs 6 ms of a L{SteppedTimer} (more than a turn's budget);
    C{removed} lists the ids of the clients removed, in order.
    """

    def __init__(self, timer):
        self.timer = timer
        self.removed = []

    def clientChanged(self, change):
        pass

    def clientRemoved(self, client):
        self.timer.now += 0.006
        self.removed.append(client.clientId)

    def clientMoved(self, client):
        pass
