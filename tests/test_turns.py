"""
Tests for L{distro.turns}: the budget of client work per reactor turn.
"""

import weakref

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.interfaces import ITurns
from distro.turns import Turns

from ._gc import CollectorOff
from ._turns import SteppedTimer, nextTurn


class TurnsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.timer = SteppedTimer()
        self.turns = Turns(self.clock, budget=0.005, timer=self.timer)

    def test_interface(self):
        verifyObject(ITurns, self.turns)

    def test_withinBudget(self):
        """
        Work may run until the turn's budget is spent; the next turn has a
        budget of its own.
        """
        self.assertTrue(self.turns.available())
        self.timer.now += 0.004
        self.assertTrue(self.turns.available())
        self.timer.now += 0.001
        self.assertFalse(self.turns.available())
        nextTurn(self.clock)
        self.assertTrue(self.turns.available())

    def test_spent(self):
        """
        Work given its turn goes on until the budget is spent, whatever
        waits behind it.
        """
        self.assertFalse(self.turns.spent())
        self.turns.later(lambda: None)
        self.assertFalse(self.turns.available())
        self.assertFalse(self.turns.spent())
        self.timer.now += 0.005
        self.assertTrue(self.turns.spent())

    def test_deferredInOrder(self):
        """
        Deferred work runs in the next turns, oldest first, each turn
        within its budget; while any waits, nothing new may jump ahead.
        """
        ran = []

        def work(name, cost):
            def run():
                ran.append(name)
                self.timer.now += cost
            return run

        self.assertTrue(self.turns.available())
        self.timer.now += 0.006
        self.assertFalse(self.turns.available())
        for name in "abcd":
            self.turns.later(work(name, 0.003))
        self.timer.now += 0.01
        self.assertFalse(self.turns.available())
        nextTurn(self.clock)
        self.assertEqual(ran, ["a", "b"])
        self.assertEqual(self.turns.pending(), 2)
        self.assertFalse(self.turns.available())
        nextTurn(self.clock)
        self.assertEqual(ran, ["a", "b", "c", "d"])
        self.assertEqual(self.turns.pending(), 0)
        nextTurn(self.clock)
        self.assertTrue(self.turns.available())

    def test_deferredAgainWaitsItsTurn(self):
        """
        Work that defers more of itself while it runs goes behind what was
        waiting: a turn runs only what waited when it began.
        """
        ran = []

        def again():
            ran.append("again")

        def first():
            ran.append("first")
            self.turns.later(again)

        self.turns.later(first)
        self.turns.later(lambda: ran.append("second"))
        nextTurn(self.clock)
        self.assertEqual(ran, ["first", "second"])
        nextTurn(self.clock)
        self.assertEqual(ran, ["first", "second", "again"])

    def test_failedWorkLogged(self):
        """
        Work that fails is logged, and the work after it runs.
        """
        ran = []

        def broken():
            raise RuntimeError("boom")

        self.turns.later(broken)
        self.turns.later(lambda: ran.append("after"))
        nextTurn(self.clock)
        self.assertEqual(ran, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_quietWhenIdle(self):
        """
        With no work, no turn is scheduled.
        """
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.turns.available()
        nextTurn(self.clock)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_atEnd(self):
        """
        Work for the end of a turn runs once the turn's work is done, in
        the same reactor turn, before the next turn's work; asked outside a
        turn's work (a read handled at once), it runs first in the next.
        """
        ran = []

        def first():
            ran.append("first")
            self.turns.atEnd(lambda: ran.append("end of first's turn"))
            self.turns.later(lambda: ran.append("next turn's"))

        self.turns.later(first)
        self.turns.later(lambda: ran.append("second"))
        nextTurn(self.clock)
        self.assertEqual(ran, ["first", "second", "end of first's turn"])
        self.turns.atEnd(lambda: ran.append("end of a read's turn"))
        nextTurn(self.clock)
        self.assertEqual(ran[3:], ["end of a read's turn", "next turn's"])

    def test_atEndAsksMore(self):
        """
        Work for the end of a turn that asks for more: that runs too, in
        the same end; a failure is logged and the rest runs.
        """
        ran = []

        def broken():
            raise RuntimeError("boom")

        self.turns.atEnd(lambda: self.turns.atEnd(lambda: ran.append("asked at the end")))
        self.turns.atEnd(broken)
        self.turns.atEnd(lambda: ran.append("after"))
        nextTurn(self.clock)
        self.assertEqual(ran, ["after", "asked at the end"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class BackgroundTests(SynchronousTestCase):
    """
    L{Turns.background}: the node's upkeep, after the work waiting and the
    end of that work, at least a slice a turn.
    """

    def setUp(self):
        self.clock = Clock()
        self.timer = SteppedTimer()
        self.turns = Turns(self.clock, budget=0.005, timer=self.timer, upkeepBudget=0.005)
        self.ran = []

    def upkeep(self, slices, cost):
        for n in range(slices):
            self.ran.append(f"upkeep {n}")
            self.timer.now += cost
            yield
        return "done"

    def work(self, name, cost=0.0):
        def run():
            self.ran.append(name)
            self.timer.now += cost
            self.turns.atEnd(lambda: self.ran.append(f"end of {name}"))
        return run

    def spendBudget(self):
        self.turns.spent()  # opens this turn
        self.timer.now += 0.005

    def test_afterWorkAndItsEnd(self):
        """
        Work that comes while upkeep waits runs first in the next turn, and
        so does what it asked for the end of its turn; then the upkeep, as
        far as the budget lasts.
        """
        self.spendBudget()
        done = self.turns.background(self.upkeep(2, 0.001))
        self.turns.later(self.work("request"))
        self.assertEqual(self.ran, [])
        nextTurn(self.clock)
        self.assertEqual(self.ran, ["request", "end of request", "upkeep 0", "upkeep 1"])
        self.assertEqual(self.successResultOf(done), "done")

    def test_slicePerTurnUnderLoad(self):
        """
        However much other work waits, each turn runs a slice of upkeep.
        """
        self.spendBudget()
        done = self.turns.background(self.upkeep(3, 0.002))
        for n in range(3):
            self.turns.later(self.work(f"request {n}", 0.006))
        for _ in range(3):
            nextTurn(self.clock)
        self.assertEqual(self.ran, ["request 0", "end of request 0", "upkeep 0", "request 1", "end of request 1",
                                    "upkeep 1", "request 2", "end of request 2", "upkeep 2"])
        self.assertNoResult(done)
        nextTurn(self.clock)
        self.assertEqual(self.successResultOf(done), "done")

    def test_workNotHeldBehindUpkeep(self):
        """
        Work that comes while upkeep is under way runs before its next
        slice, in the next turn.
        """
        self.spendBudget()
        done = self.turns.background(self.upkeep(3, 0.004))
        self.turns.later(self.work("request"))
        nextTurn(self.clock)
        self.assertEqual(self.ran, ["request", "end of request", "upkeep 0", "upkeep 1"])
        self.turns.later(self.work("next request"))
        nextTurn(self.clock)
        self.assertEqual(self.ran[4:], ["next request", "end of next request", "upkeep 2"])
        nextTurn(self.clock)
        self.assertEqual(self.successResultOf(done), "done")
        self.assertEqual(self.turns.pending(), 0)

    def test_upkeepBudget(self):
        """
        Past its one slice, upkeep runs within a budget of its own, shorter
        than the turn's: a request that comes meanwhile waits for no more.
        """
        turns = Turns(self.clock, budget=0.005, timer=self.timer)
        self.assertEqual(turns.upkeepBudget, 0.001)
        turns.spent()
        self.timer.now += 0.005
        done = turns.background(self.upkeep(6, 0.0004))
        nextTurn(self.clock)
        self.assertEqual(self.ran, ["upkeep 0", "upkeep 1", "upkeep 2"])
        nextTurn(self.clock)
        self.assertEqual(len(self.ran), 6)
        nextTurn(self.clock)
        self.assertEqual(self.successResultOf(done), "done")


class NoCyclesTests(CollectorOff, SynchronousTestCase):
    """
    Work run over turns is freed by reference counting once done: never
    left to the collector, which L{distro.collector} may have made freeze it.
    """

    def test_stepsOverTurnsFreed(self):
        timer = SteppedTimer()
        clock = Clock()
        turns = Turns(clock, timer=timer)

        def steps():
            for _ in range(3):
                timer.now += 0.006  # each step past a turn's budget
                yield

        for run in (turns.run, turns.background):
            done = run(steps())
            freed = weakref.ref(done)
            for _ in range(5):
                nextTurn(clock)
            self.assertIsNone(self.successResultOf(done))
            del done
            self.assertIsNone(freed())
