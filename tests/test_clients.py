# -*- test-case-name: tests.test_clients -*-
"""
Tests for L{distro.clients}: client records, ids and the change stream.
"""

from functools import partial

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from distro.clients import REMOVAL_SLICE, ClientIds, ClientManager, hashResumeToken
from distro.config import Config
from distro.interfaces import IClientObserver
from distro.model import ServiceKey
from distro.errors import LIMIT_EXCEEDED, LimitExceeded, RequestError
from distro.turns import Turns
from tests._factories import modelInstance
from tests._turns import CostlyRemovals, CostlySteps, SteppedTimer, nextTurn

ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")


# An instance on 10.0.0.1:PORT.
inst = partial(modelInstance, "10.0.0.1")


@implementer(IClientObserver)
class Stream:
    """
    Records the change stream.
    """

    def __init__(self):
        self.events = []

    def clientChanged(self, change):
        self.events.append((
            "changed", change.client.clientId, change.baseRevision, change.client.revision,
            sorted(i.instanceId for _, i in change.put),
            sorted(iid for _, iid, _ in change.remove),
        ))

    def clientRemoved(self, client):
        self.events.append(("removed", client.clientId, client.instanceCount))

    def clientMoved(self, client):
        self.events.append(("moved", client.clientId, client.native, client.owner, client.epoch))


class ClientManagerTests(SynchronousTestCase):
    """
    L{ClientManager}.
    """

    def setUp(self):
        self.clock = Clock()
        self.config = Config(max_instances_per_client=3, max_subscriptions_per_client=2)
        self.manager = ClientManager("n1", self.clock, self.config)
        self.stream = Stream()
        self.manager.addObserver(self.stream)
        self.client, self.token = self.manager.clientConnected()

    def test_observerInterface(self):
        """
        The recorder used here is a real change-stream observer.
        """
        verifyObject(IClientObserver, self.stream)

    def test_nativeClient(self):
        """
        A connected client is native, owned by this node, epoch 1, revision 0,
        and keeps only the hash of its resume token.
        """
        c = self.client
        self.assertEqual((c.native, c.owner, c.epoch, c.revision), (True, "n1", 1, 0))
        self.assertEqual(c.resumeTokenHash, hashResumeToken(self.token))
        self.assertNotIn(self.token, repr(vars(type(c))))

    def test_idsNeverRepeat(self):
        """
        Ids differ within a run and across restarts (a new boot id each start).
        """
        first = ClientIds("n1")
        again = ClientIds("n1")
        a = {first.next() for _ in range(100)}
        b = {again.next() for _ in range(100)}
        self.assertEqual(len(a | b), 200)
        self.assertTrue(all(i.startswith("n1#") for i in a))

    def test_everyChangeIsOneRevision(self):
        """
        register, deregister and batch_register each raise the revision by one
        and are announced with their base revision.
        """
        cid = self.client.clientId
        self.manager.register(self.client, ORDERS, inst(1))
        self.manager.batchRegister(self.client, ORDERS, [inst(2), inst(3)])
        self.assertTrue(self.manager.deregister(self.client, ORDERS, "10.0.0.1#2#DEFAULT"))
        self.assertFalse(self.manager.deregister(self.client, ORDERS, "10.0.0.1#2#DEFAULT"))
        self.assertEqual(self.stream.events, [
            ("changed", cid, 0, 1, ["10.0.0.1#1#DEFAULT"], []),
            ("changed", cid, 1, 2, ["10.0.0.1#2#DEFAULT", "10.0.0.1#3#DEFAULT"], ["10.0.0.1#1#DEFAULT"]),
            ("changed", cid, 2, 3, [], ["10.0.0.1#2#DEFAULT"]),
        ])
        self.assertEqual(self.client.instanceCount, 1)

    def test_batchInSlices(self):
        """
        A batch applied in slices: the instances not wanted go first, then
        the wanted are put, each step a revision of at most C{size}; the
        client never holds more than the larger of before and after, and
        the limit refuses before any step.
        """
        self.config = Config(max_instances_per_client=5)
        self.manager = ClientManager("n1", self.clock, self.config)
        self.manager.addObserver(self.stream)
        client, _ = self.manager.clientConnected()
        cid = client.clientId
        self.manager.batchRegister(client, ORDERS, [inst(1), inst(2), inst(3), inst(4), inst(5)])
        del self.stream.events[:]
        steps = self.manager.batchRegisterInSlices(client, ORDERS, [inst(4), inst(5), inst(6), inst(7), inst(8)], 2)
        counts = []
        for _ in steps:
            counts.append(client.instanceCount)
        counts.append(client.instanceCount)
        self.assertEqual(self.stream.events, [
            ("changed", cid, 1, 2, [], ["10.0.0.1#1#DEFAULT", "10.0.0.1#2#DEFAULT"]),
            ("changed", cid, 2, 3, [], ["10.0.0.1#3#DEFAULT"]),
            ("changed", cid, 3, 4, ["10.0.0.1#4#DEFAULT", "10.0.0.1#5#DEFAULT"], []),
            ("changed", cid, 4, 5, ["10.0.0.1#6#DEFAULT", "10.0.0.1#7#DEFAULT"], []),
            ("changed", cid, 5, 6, ["10.0.0.1#8#DEFAULT"], []),
        ])
        self.assertEqual(counts, [3, 2, 2, 4, 5])
        self.assertEqual(sorted(client.instances(ORDERS)), [f"10.0.0.1#{p}#DEFAULT" for p in range(4, 9)])
        too_many = self.manager.batchRegisterInSlices(client, ORDERS, [inst(p) for p in range(1, 7)], 2)
        self.assertRaises(LimitExceeded, next, too_many)
        self.assertEqual(client.revision, 6)

    def test_smallBatchInSlicesIsOneStep(self):
        """
        A batch of at most C{size} is one step, as L{batchRegister}.
        """
        cid = self.client.clientId
        self.manager.batchRegister(self.client, ORDERS, [inst(1)])
        self.assertEqual(list(self.manager.batchRegisterInSlices(self.client, ORDERS, [inst(2), inst(3)], 4)), [])
        self.assertEqual(self.stream.events[-1],
                         ("changed", cid, 1, 2, ["10.0.0.1#2#DEFAULT", "10.0.0.1#3#DEFAULT"], ["10.0.0.1#1#DEFAULT"]))

    def test_batchInSlicesStopsWhenTheClientGoes(self):
        """
        The steps stop once the client is gone.
        """
        steps = self.manager.batchRegisterInSlices(self.client, ORDERS, [inst(1), inst(2), inst(3)], 1)
        next(steps)
        self.manager.removeClient(self.client.clientId)
        self.assertEqual(list(steps), [])
        self.assertEqual(self.client.revision, 1)

    def test_writeTs(self):
        """
        Each write is stamped with the node's clock in milliseconds.
        """
        self.clock.advance(12.5)
        self.manager.register(self.client, ORDERS, inst(1))
        self.assertEqual(self.client.instances(ORDERS)["10.0.0.1#1#DEFAULT"].writeTs, 12500)

    def test_instanceLimit(self):
        """
        C{max_instances_per_client} bounds register and batch_register, counting
        replacements as no growth; nothing is applied when the limit refuses.
        """
        self.manager.batchRegister(self.client, ORDERS, [inst(1), inst(2), inst(3)])
        self.manager.register(self.client, ORDERS, inst(3))
        e = self.assertRaises(RequestError, self.manager.register, self.client, ORDERS, inst(4))
        self.assertEqual(e.code, LIMIT_EXCEEDED)
        self.assertIn("max_instances_per_client", e.message)
        other = ServiceKey("public", "DEFAULT_GROUP", "other")
        self.assertRaises(RequestError, self.manager.batchRegister, self.client, other, [inst(9)])
        self.manager.batchRegister(self.client, ORDERS, [inst(7), inst(8), inst(9)])
        self.assertEqual(sorted(self.client.instances(ORDERS)), ["10.0.0.1#7#DEFAULT", "10.0.0.1#8#DEFAULT", "10.0.0.1#9#DEFAULT"])
        self.assertEqual(self.client.instanceCount, 3)

    def test_subscriptionLimit(self):
        """
        C{max_subscriptions_per_client} bounds subscriptions; repeating one is free.
        """
        self.assertTrue(self.manager.subscribe(self.client, ORDERS, None))
        self.assertFalse(self.manager.subscribe(self.client, ORDERS, None))
        self.manager.subscribe(self.client, ORDERS, ("A",))
        e = self.assertRaises(RequestError, self.manager.subscribe, self.client, ORDERS, ("B",))
        self.assertIn("max_subscriptions_per_client", e.message)
        self.assertTrue(self.manager.unsubscribe(self.client, ORDERS, ("A",)))
        self.assertFalse(self.manager.unsubscribe(self.client, ORDERS, ("A",)))

    def test_disconnectGrace(self):
        """
        Without bye, a client's instances outlive the connection for
        C{disconnect_grace_ms}, then go; its subscriptions go at once.
        """
        self.manager.register(self.client, ORDERS, inst(1))
        self.manager.subscribe(self.client, ORDERS, None)
        self.manager.clientDisconnected(self.client.clientId, orderly=False)
        self.assertEqual(self.client.subscriptions, set())
        self.clock.advance(1.999)
        self.assertIn(self.client.clientId, self.manager.clients)
        self.clock.advance(0.002)
        self.assertNotIn(self.client.clientId, self.manager.clients)
        self.assertEqual(self.stream.events[-1], ("removed", self.client.clientId, 1))

    def test_orderlyDisconnect(self):
        """
        After bye a client's instances go at once.
        """
        self.manager.register(self.client, ORDERS, inst(1))
        self.manager.clientDisconnected(self.client.clientId, orderly=True)
        self.assertNotIn(self.client.clientId, self.manager.clients)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopCancelsExpiries(self):
        """
        Stopping the manager leaves no timer behind.
        """
        self.manager.register(self.client, ORDERS, inst(1))
        self.manager.clientDisconnected(self.client.clientId, orderly=False)
        self.manager.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class Barrier:
    """
    An L{ISyncBarrier} the test answers: C{whenSynced} waits until
    L{answer}.
    """

    def __init__(self):
        self.waiting = []

    def whenSynced(self):
        from twisted.internet.defer import Deferred

        d = Deferred()
        self.waiting.append(d)
        return d

    def answer(self, restoring=()):
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(frozenset(restoring))


class ResumeTests(SynchronousTestCase):
    """
    L{ClientManager.resume} and L{ClientManager.restored}: a resumed session
    builds the client's new state, published only when its redo is done
    (PROTOCOL.md 4.1).
    """

    def setUp(self):
        self.clock = Clock()
        self.config = Config(max_instances_per_client=3, disconnect_grace_ms=2000)
        self.manager = ClientManager("n1", self.clock, self.config)
        self.barrier = self.manager.barrier = Barrier()
        self.stream = Stream()
        self.manager.addObserver(self.stream)
        self.client, self.token = self.manager.clientConnected()
        self.manager.register(self.client, ORDERS, inst(1))
        self.manager.register(self.client, ORDERS, inst(2))
        del self.stream.events[:]

    def resume(self, epoch=0):
        return self.manager.resume(self.client.clientId, self.token, epoch)

    def test_wrongToken(self):
        self.assertIsNone(self.manager.resume(self.client.clientId, "nope"))
        self.assertIsNone(self.manager.resume("unknown", self.token))

    def test_restoringPublishesNothing(self):
        """
        Until the redo is done, the session's writes build a new state that
        nobody is told of; the held client stays as it was.
        """
        state = self.resume()
        self.assertTrue(state.restoring)
        self.assertEqual(state.epoch, 2)
        self.assertNotIn(state, self.manager.clients.values())
        self.manager.batchRegister(state, ORDERS, [inst(2), inst(3)])
        self.assertEqual(self.stream.events, [])
        self.assertEqual(self.manager.clients[self.client.clientId].instanceCount, 2)

    def test_restoredIsExact(self):
        """
        At the end of the redo the client holds exactly what was re-sent, at
        a new epoch, announced as a change then a move.
        """
        self.clock.advance(0)
        state = self.resume()
        self.manager.batchRegister(state, ORDERS, [inst(2), inst(3)])
        client = self.manager.restored(state)
        self.assertIs(client, self.client)
        self.assertEqual(sorted(client.instances(ORDERS)), ["10.0.0.1#2#DEFAULT", "10.0.0.1#3#DEFAULT"])
        self.assertEqual((client.native, client.owner, client.epoch), (True, "n1", 2))
        changed, moved = self.stream.events
        self.assertEqual(changed[0], "changed")
        # Only what differs: #2 was re-sent as it was.
        self.assertEqual(changed[4:], (["10.0.0.1#3#DEFAULT"], ["10.0.0.1#1#DEFAULT"]))
        self.assertEqual(moved, ("moved", client.clientId, True, "n1", 2))

    def test_epochAboveGiven(self):
        """
        The takeover is above the epoch the client was last given, even if
        this node held an older one.
        """
        state = self.resume(epoch=7)
        self.assertEqual(state.epoch, 8)
        self.assertEqual(self.manager.restored(state).epoch, 8)

    def test_epochAboveHeldMeanwhile(self):
        """
        A newer epoch learnt during the redo is topped too.
        """
        state = self.resume()
        self.manager.clients[self.client.clientId].epoch = 5
        self.assertEqual(self.manager.restored(state).epoch, 6)

    def test_removedMeanwhileComesBack(self):
        """
        A client removed during the redo (its old owner's grace ran out) is
        brought back by the session that resumed it.
        """
        state = self.resume()
        self.manager.batchRegister(state, ORDERS, [inst(1)])
        self.manager.removeClient(self.client.clientId)
        client = self.manager.restored(state)
        self.assertIs(self.manager.clients[client.clientId], client)
        self.assertEqual(client.epoch, 2)
        self.assertEqual(self.stream.events[-1][0], "changed")
        self.assertEqual(self.stream.events[-1][4], ["10.0.0.1#1#DEFAULT"])

    def test_resumeStopsExpiry(self):
        """
        A native client in its disconnect grace does not expire while a
        session resumes it; if that session ends before its redo is done,
        the grace starts again.
        """
        self.manager.clientDisconnected(self.client.clientId, orderly=False)
        state = self.resume()
        self.clock.advance(5)
        self.assertEqual(self.barrier.waiting, [])
        self.manager.restoreAbandoned(state)
        self.clock.advance(2)
        self.barrier.answer()
        self.assertNotIn(self.client.clientId, self.manager.clients)

    def test_expiryWaitsForSync(self):
        """
        A client whose grace passed is removed only once the node is in
        sync with the other members; a resume meanwhile cancels it.
        """
        self.manager.clientDisconnected(self.client.clientId, orderly=False)
        self.clock.advance(2)
        self.assertIn(self.client.clientId, self.manager.clients)
        self.assertEqual(len(self.barrier.waiting), 1)
        state = self.resume()
        self.barrier.answer()
        self.assertIn(self.client.clientId, self.manager.clients)
        self.manager.restored(state)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_restoringElsewhereGetsAnotherGrace(self):
        """
        A member that answers the sync while resuming the client keeps it
        from being removed: another grace begins.
        """
        self.manager.clientDisconnected(self.client.clientId, orderly=False)
        self.clock.advance(2)
        self.barrier.answer(restoring=[self.client.clientId])
        self.assertIn(self.client.clientId, self.manager.clients)
        self.clock.advance(2)
        self.barrier.answer()
        self.assertNotIn(self.client.clientId, self.manager.clients)


class RemoveClientsTests(SynchronousTestCase):
    """
    L{ClientManager.removeClients}: many clients removed in the node's
    turns, a client at a time.
    """

    def setUp(self):
        self.timer = SteppedTimer()
        self.clock = Clock()
        self.manager = ClientManager("n1", self.clock, Config(), turns=Turns(self.clock, timer=self.timer))
        self.costly = CostlyRemovals(self.timer)
        self.manager.addObserver(self.costly)
        self.ids = [self.manager.clientConnected()[0].clientId for _ in range(4)]

    def test_aClientPerTurn(self):
        """
        Each removal costing more than a turn's budget, the first client
        goes at once and one more each turn after, until all have gone.
        """
        removing = self.manager.removeClients(self.ids, lambda client: True)
        self.assertEqual(self.costly.removed, self.ids[:1])
        for turn in range(1, 4):
            self.assertNoResult(removing)
            nextTurn(self.clock)
            self.assertEqual(self.costly.removed, self.ids[:turn + 1])
        nextTurn(self.clock)
        self.assertEqual(self.successResultOf(removing), self.ids)
        self.assertEqual(self.manager.clients, {})

    def test_dueWhenItsTurnComes(self):
        """
        Whether a client is still due is asked when its turn comes: one
        no longer due (resumed meanwhile, say) is kept, and not counted.
        """
        kept = set()
        removing = self.manager.removeClients(self.ids, lambda client: client.clientId not in kept)
        kept.add(self.ids[2])
        for _ in range(5):
            nextTurn(self.clock)
        self.assertEqual(self.successResultOf(removing), [self.ids[0], self.ids[1], self.ids[3]])
        self.assertEqual(list(self.manager.clients), [self.ids[2]])

    def test_goneMeanwhile(self):
        """
        A client removed otherwise before its turn is skipped.
        """
        removing = self.manager.removeClients(self.ids, lambda client: True)
        self.manager.removeClient(self.ids[1])
        for _ in range(5):
            nextTurn(self.clock)
        self.assertEqual(self.successResultOf(removing), [self.ids[0], self.ids[2], self.ids[3]])


class RemoveLargeClientTests(SynchronousTestCase):
    """
    L{ClientManager.removeClients} of a client of thousands of instances:
    a native one is emptied a slice per turn, each slice a revision.
    """

    size = 3 * REMOVAL_SLICE + 10

    def setUp(self):
        self.timer = SteppedTimer()
        self.clock = Clock()
        self.manager = ClientManager("n1", self.clock, Config(), turns=Turns(self.clock, timer=self.timer))
        self.client = self.manager.clientConnected()[0]
        self.manager.batchRegister(self.client, ServiceKey("public", "DEFAULT_GROUP", "many"), [
            modelInstance(f"10.0.{n // 250}.{n % 250 + 1}", 8080) for n in range(REMOVAL_SLICE)])
        for n in range(self.size - REMOVAL_SLICE):
            self.manager.register(self.client, ServiceKey("public", "DEFAULT_GROUP", f"s{n}"),
                                  modelInstance("10.0.0.1", 8080))
        # Each change costs more than a turn's budget.
        self.steps = CostlySteps(self.timer)
        self.manager.addObserver(self.steps)
        self.revision = self.client.revision

    def test_emptiedInSlices(self):
        """
        REMOVAL_SLICE instances go at once, as many each turn after, each a
        revision announced; the last few go with the client.
        """
        removing = self.manager.removeClients([self.client.clientId], lambda client: True)
        left = [self.client.instanceCount]
        for _ in range(3):
            self.assertNoResult(removing)
            nextTurn(self.clock)
            left.append(self.client.instanceCount)
        self.assertEqual(left[:3], [self.size - REMOVAL_SLICE, self.size - 2 * REMOVAL_SLICE, 10])
        self.assertEqual(self.steps.revisions, [self.revision + 1, self.revision + 2, self.revision + 3])
        nextTurn(self.clock)
        self.assertEqual(self.successResultOf(removing), [self.client.clientId])
        self.assertEqual(self.manager.clients, {})

    def test_byeEmptiesInSlices(self):
        """
        After bye a client of more than REMOVAL_SLICE instances goes
        without a grace, emptied as an expired one is: a slice at once, as
        many each turn after, each a revision.
        """
        self.manager.clientDisconnected(self.client.clientId, orderly=True)
        left = [self.client.instanceCount]
        for _ in range(3):
            nextTurn(self.clock)
            left.append(self.client.instanceCount)
        self.assertEqual(left[:3], [self.size - REMOVAL_SLICE, self.size - 2 * REMOVAL_SLICE, 10])
        self.assertEqual(self.steps.revisions, [self.revision + 1, self.revision + 2, self.revision + 3])
        nextTurn(self.clock)
        self.assertEqual(self.manager.clients, {})
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])

    def test_byeThenResumedKept(self):
        """
        A client that said bye and is taken over again (its session
        resumes) before its slices are done is kept, with what it still
        holds.
        """
        self.manager.clientDisconnected(self.client.clientId, orderly=True)
        self.client.connected = True  # as a resume makes it
        for _ in range(5):
            nextTurn(self.clock)
        self.assertIs(self.manager.clients[self.client.clientId], self.client)
        self.assertEqual(self.client.instanceCount, self.size - REMOVAL_SLICE)

    def test_keptWhenNoLongerDue(self):
        """
        A client no longer due (resumed) when its next slice's turn comes
        is kept, with what it still holds.
        """
        due = [True]
        removing = self.manager.removeClients([self.client.clientId], lambda client: due[0])
        due[0] = False
        for _ in range(5):
            nextTurn(self.clock)
        self.assertEqual(self.successResultOf(removing), [])
        self.assertIs(self.manager.clients[self.client.clientId], self.client)
        self.assertEqual(self.client.instanceCount, self.size - REMOVAL_SLICE)

    def test_syncedAtOnce(self):
        """
        A synced client goes whole, in one step: its owner sliced its own
        removal.
        """
        services = {ServiceKey("public", "DEFAULT_GROUP", f"s{n}"): {} for n in range(self.size)}
        for n, held in enumerate(services.values()):
            instance = modelInstance(f"10.1.{n // 250}.{n % 250 + 1}", 8080)
            held[instance.instanceId] = instance
        synced = self.manager.syncState("n2-1", "n2", 1, 5, "", services)
        del self.steps.revisions[:]
        removing = self.manager.removeClients([synced.clientId], lambda client: True)
        self.assertEqual(self.successResultOf(removing), [synced.clientId])
        self.assertEqual(self.steps.revisions, [])
