# -*- test-case-name: tests.test_drain -*-
"""
Tests for draining a node before it stops (L{distro.node.Node.drain},
L{distro.drain}): its clients move to other members, resuming their
sessions there, and nobody sees their instances go.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase

from distro.drain import CLOSE_AFTER, moveTargets, spread
from distro.tap import DrainingRoot
from distro.wire import FrameProtocol

from ._memorycluster import ClusterTestMixin


class _Raw(FrameProtocol):
    """
    A client-port connection from before C{move}: it keeps what it gets.
    """

    def __init__(self):
        super().__init__()
        self.received = []
        self.connected = False

    def connectionMade(self):
        self.connected = True

    def messageReceived(self, message):
        self.received.append(message)

    def connectionLost(self, reason):
        self.connected = False


class MoveTargetsTests(SynchronousTestCase):
    """
    Where sessions are sent, and how they are spread.
    """

    def test_otherMembersUp(self):
        """
        The targets are the client addresses of the other members that are
        up.
        """
        members = [
            {"node": "a", "address": "h:1", "state": "UP", "self": True},
            {"node": "b", "address": "h:2", "state": "UP", "self": False},
            {"node": "c", "address": "h:3", "state": "DOWN", "self": False},
            {"node": "d", "address": "h:4", "state": "SUSPICIOUS", "self": False},
            {"node": "e", "address": None, "state": "UP", "self": False},
            {"node": "f", "address": "h:6", "state": "UP", "self": False},
        ]
        self.assertEqual(moveTargets(members), ["h:2", "h:6"])

    def test_spread(self):
        """
        The n-th session is sent to the n-th target first, the others after.
        """
        self.assertEqual([spread(["x", "y", "z"], i) for i in range(4)],
                         [["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"], ["x", "y", "z"]])
        self.assertEqual(spread([], 3), [])


class DrainTests(ClusterTestMixin, SynchronousTestCase):
    """
    A node of a cluster of three (real nodes in memory) drains under
    clients of the library.
    """

    nodes = 3

    def setUp(self):
        self.useCluster(drain_timeout_ms=5000)
        self.movers = []
        for i in range(4):
            client = self.cluster.client(start_at=0, retry_policy=lambda failures: 1.0)
            self.settle(client.register("orders", f"10.0.0.{i + 1}", 8080))
            self.movers.append(client)
        self.ids = [c.client_id for c in self.movers]
        self.expected = sorted(f"10.0.0.{i + 1}#8080#DEFAULT" for i in range(4))
        # Subscribers on the nodes that stay.
        self.views = {1: [], 2: []}
        for index, views in self.views.items():
            watcher = self.cluster.client(start_at=index)
            self.settle(watcher.subscribe("orders", views.append))

    def hostIds(self, index):
        return sorted(h.instance_id for h in self.cluster.view(index, "orders").hosts)

    def test_clientsMoveThenNodeStops(self):
        """
        A draining node asks each session to move: the clients resume at
        the other nodes, spread over them, with their identities; once all
        were taken over there, the node stops. No subscriber ever saw an
        instance go, and every node that stays shows them all.
        """
        d = self.cluster.drain_node(0)
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual([c.client_id for c in self.movers], self.ids)
        self.assertEqual(sorted(c.node for c in self.movers), ["n1", "n1", "n2", "n2"])
        with self.assertRaises(ValueError):
            self.cluster.client_ids(0)  # stopped
        self.advance(*[1] * 10)  # past the disconnect grace and orphan rounds
        for index, views in self.views.items():
            self.assertEqual(self.hostIds(index), self.expected)
            for info in views:
                self.assertEqual(sorted(h.instance_id for h in info.hosts), self.expected)
        # No client came back to it.
        self.assertEqual([op for op in self.ops(0) if op == "hello"], ["hello"] * 4)

    def test_sessionIgnoringMoveClosed(self):
        """
        A session still connected L{CLOSE_AFTER} after it was asked to move
        (a client that does not know C{move}) is closed; then the drain
        ends.
        """
        host, port = self.cluster.servers[0].rsplit(":", 1)
        raw = self.successResultOf(self.cluster.endpoint(host, int(port)).connect(Factory.forProtocol(_Raw)))
        raw.sendMessage({"op": "hello", "id": 1, "proto": 1, "agent": "old/1"})
        self.settle()
        self.assertEqual(raw.received[0]["op"], "ok")
        d = self.cluster.drain_node(0)
        self.settle()
        [move] = [m for m in raw.received if m["op"] == "push"]
        self.assertEqual(move["move"]["reason"], "draining")
        self.assertEqual(sorted(move["move"]["members"]), self.cluster.servers[1:])
        self.assertNoResult(d)
        self.assertTrue(raw.connected)
        self.advance(CLOSE_AFTER)
        self.assertFalse(raw.connected)
        self.assertIsNone(self.successResultOf(d))

    def test_notMovedWithinTimeout(self):
        """
        A node whose clients cannot move (the other nodes stopped answering,
        not yet found down) stops after C{drain_timeout_ms} anyway.
        """
        self.cluster.pause_node(1)
        self.cluster.pause_node(2)
        d = self.cluster.drain_node(0)
        self.advance(*[0.5] * 9)
        self.assertNoResult(d)
        self.advance(0.5)
        self.assertIsNone(self.successResultOf(d))

    def test_drainingRefusesSessions(self):
        """
        While it drains, the node refuses new sessions (C{NOT_READY}): a
        client goes to another node.
        """
        self.cluster.pause_node(1)
        self.cluster.pause_node(2)
        self.cluster.drain_node(0)
        d = self.cluster.connect(start_at=0, retry_policy=lambda failures: 1.0)
        self.assertNoResult(d)
        self.cluster.resume_node(1)
        self.advance(1)
        self.assertEqual(self.successResultOf(d).node, "n1")
        self.assertIn("hello", self.ops(0)[4:])


class _Stopping(Service):
    """
    A service that notes when it is stopped.
    """

    def __init__(self, stopped):
        self.stopped = stopped

    def stopService(self):
        super().stopService()
        self.stopped.append(self)


class _DrainingNode:
    """
    The one thing the root asks of a node when it stops: L{INode.drain},
    here a L{Deferred} the test fires.
    """

    def __init__(self):
        self.drained = Deferred()
        self.asked = 0

    def drain(self):
        self.asked += 1
        return self.drained


class DrainingRootTests(SynchronousTestCase):
    """
    The root of the service tree (what twistd stops on SIGTERM) drains the
    node before it stops any service.
    """

    def test_drainFirst(self):
        """
        Stopping the root asks the node to drain; its services (the ports,
        the cluster) run until the drain is over, then stop.
        """
        stopped = []
        root = DrainingRoot(None, None, "info")
        root.node = _DrainingNode()
        child = _Stopping(stopped)
        child.setServiceParent(root)
        root.startService()
        d = root.stopService()
        self.assertEqual((root.node.asked, stopped), (1, []))
        self.assertNoResult(d)
        root.node.drained.callback(None)
        self.assertEqual(stopped, [child])
        self.successResultOf(d)

    def test_failedDrainStillStops(self):
        """
        A drain that fails is logged, and the services stop all the same.
        """
        stopped = []
        root = DrainingRoot(None, None, "info")
        root.node = _DrainingNode()
        _Stopping(stopped).setServiceParent(root)
        root.startService()
        d = root.stopService()
        root.node.drained.errback(RuntimeError("boom"))
        self.successResultOf(d)
        self.assertEqual(len(stopped), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
