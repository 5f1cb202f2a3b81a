# -*- test-case-name: tests.test_clients -*-
"""
Tests for L{distro.clients}: client records, ids and the change stream.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from distro.clients import ClientIds, ClientManager, hashResumeToken
from distro.config import Config
from distro.interfaces import IClientObserver
from distro.model import ServiceKey, parseInstance
from distro.wire import LIMIT_EXCEEDED, ProtocolError

ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")


def inst(port):
    """
    An instance on 10.0.0.1:C{port}.
    """
    return parseInstance({"ip": "10.0.0.1", "port": port})


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
        e = self.assertRaises(ProtocolError, self.manager.register, self.client, ORDERS, inst(4))
        self.assertEqual(e.code, LIMIT_EXCEEDED)
        self.assertIn("max_instances_per_client", e.message)
        other = ServiceKey("public", "DEFAULT_GROUP", "other")
        self.assertRaises(ProtocolError, self.manager.batchRegister, self.client, other, [inst(9)])
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
        e = self.assertRaises(ProtocolError, self.manager.subscribe, self.client, ORDERS, ("B",))
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
