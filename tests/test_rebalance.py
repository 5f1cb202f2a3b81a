# -*- test-case-name: tests.test_rebalance -*-
"""
Tests for rebalancing (L{distro.rebalance}, the C{rebalance} op and
C{rebalance_after_restart}): a node over its share of the cluster's client
sessions moves the excess, gently, to the members below theirs.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro.client import DistroError
from distro.rebalance import SETTLE_SECONDS, plan

from ._memorycluster import ClusterTestMixin


def member(node, state="UP", me=False):
    return {"node": node, "address": f"{node}:1", "state": state, "self": me}


class PlanTests(SynchronousTestCase):
    """
    What a node moves, and where.
    """

    def test_overShare(self):
        """
        A node over its share (the total over the members up, divided,
        rounded up) moves the excess to the members below theirs.
        """
        members = [member("a", me=True), member("b"), member("c")]
        self.assertEqual(plan(members, {"a": 23, "b": 22, "c": 0}), (15, ["c:1"] * 8))
        self.assertEqual(plan(members, {"a": 15, "b": 30, "c": 0}), (15, []))

    def test_spreadOverMembersBelow(self):
        """
        The targets alternate between the members below their share, each
        as far as it is below.
        """
        members = [member("a", me=True), member("b"), member("c"), member("d")]
        share, targets = plan(members, {"a": 10, "b": 0, "c": 1, "d": 1})
        self.assertEqual(share, 3)
        self.assertEqual(targets, ["b:1", "c:1", "d:1", "b:1", "c:1", "d:1", "b:1"])

    def test_membersDownIgnored(self):
        """
        Members that are not up neither count in the share nor receive.
        """
        members = [member("a", me=True), member("b", "DOWN"), member("c", "SUSPICIOUS")]
        self.assertEqual(plan(members, {"a": 9, "b": 0, "c": 0}), (9, []))


class RebalanceTests(ClusterTestMixin, SynchronousTestCase):
    """
    Three real nodes in memory; node 0 holds no session (it restarted).
    """

    nodes = 3

    def setUp(self):
        # The clients of the cluster in memory are at 10.0.0.1.
        self.useCluster(admin_from="10.0.0.0/8")
        self.clients = []
        for i in range(12):
            client = self.cluster.client(start_at=1 + i % 2, retry_policy=lambda failures: 1.0)
            self.settle(client.register("orders", f"10.0.0.{i + 1}", 8080))
            self.clients.append(client)
        self.views = []
        watcher = self.cluster.client(start_at=2)
        self.settle(watcher.subscribe("orders", self.views.append))
        self.expected = sorted(f"10.0.0.{i + 1}#8080#DEFAULT" for i in range(12))

    def on(self, node):
        return sorted(c.client_id for c in self.clients if c.node == node)

    def test_gentleMoves(self):
        """
        Asked to rebalance, each node over its share moves its excess to
        the node below, C{rate} sessions a second, those that publish
        first, never the operator's own; the clients resume there (same
        identity), and nobody sees their instances go.
        """
        operator = self.cluster.client(start_at=1)
        reply = self.settle(operator.rebalance(rate=2))
        # n1: 6 clients and the operator's session; n2: 6 and the watcher's
        # (not counted by n1: it wrote nothing); 13 sessions, 5 each.
        self.assertEqual(reply, {"node": "n1", "sessions": 7, "share": 5, "moving": 2})
        self.assertEqual(len(self.on("n0")), 1)  # the first at once
        self.advance(0.5)
        self.assertEqual(len(self.on("n0")), 2)
        self.advance(5)
        self.assertEqual(len(self.on("n0")), 2)
        self.assertEqual(operator.node, "n1")
        ids = [c.client_id for c in self.clients]
        self.advance(*[1] * 5)
        self.assertEqual([c.client_id for c in self.clients], ids)
        for info in self.views:
            self.assertEqual(sorted(h.instance_id for h in info.hosts), self.expected)

    def test_atShareMovesNothing(self):
        """
        A node at or below its share moves nothing.
        """
        operator = self.cluster.client(start_at=0)
        reply = self.settle(operator.rebalance())
        self.assertEqual((reply["node"], reply["moving"]), ("n0", 0))
        self.advance(5)
        self.assertEqual(self.on("n0"), [])

    def test_badRate(self):
        """
        A C{rate} that is not a positive number is C{BAD_REQUEST} naming it.
        """
        operator = self.cluster.client(start_at=1)
        for rate in (0, -1, "5", True, 10**6):
            d = operator.rebalance(rate=rate)
            self.settle()
            failure = self.failureResultOf(d, DistroError)
            self.assertEqual(failure.value.code, "BAD_REQUEST")
            self.assertIn("rate", failure.value.message)


class OperatorOnlyTests(ClusterTestMixin, SynchronousTestCase):
    """
    With credentials configured, rebalancing needs an admin grant.
    """

    nodes = 1

    def test_needsAdmin(self):
        """
        A token of some namespaces only is refused C{FORBIDDEN}; a token of
        every namespace (an admin's) is answered.
        """
        self.useCluster(auth_tokens={"reader": ["public"], "root": ["*"]})
        reader = self.cluster.client(token="reader")
        d = reader.rebalance()
        self.settle()
        failure = self.failureResultOf(d, DistroError)
        self.assertEqual(failure.value.code, "FORBIDDEN")
        self.assertIn("rebalance", failure.value.message)
        root = self.cluster.client(token="root")
        self.assertEqual(self.settle(root.rebalance())["moving"], 0)

    def test_loopbackOrAdminFrom(self):
        """
        Without credentials, a client that is neither on loopback nor in
        C{admin_from} is refused C{FORBIDDEN}.
        """
        self.useCluster()
        d = self.cluster.client().rebalance()
        self.settle()
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "FORBIDDEN")


class AfterRestartTests(ClusterTestMixin, SynchronousTestCase):
    """
    C{rebalance_after_restart}: the nodes do it on their own when a member
    comes back.
    """

    nodes = 3

    def restart(self, **config):
        """
        Nine clients spread over the nodes; node 0 restarts, its clients go
        to the others. Return the clients.
        """
        self.useCluster(**config)
        clients = []
        for i in range(9):
            client = self.cluster.client(start_at=i % 3, retry_policy=lambda failures: 1.0)
            self.settle(client.register("orders", f"10.0.0.{i + 1}", 8080))
            clients.append(client)
        self.cluster.stop_node(0)
        self.advance(*[1] * 3)
        self.assertEqual(sum(c.node == "n0" for c in clients), 0)
        self.cluster.start_node(0)
        return clients

    def test_restartedMemberGetsItsShare(self):
        """
        A node restarts: its clients moved to the others; once it is back
        (and things settled), the others move its share back to it.
        """
        clients = self.restart(rebalance_after_restart=True)
        self.advance(*[1] * int(SETTLE_SECONDS + 5))
        self.assertEqual(sum(c.node == "n0" for c in clients), 3)

    def test_offByDefault(self):
        """
        Without C{rebalance_after_restart}, sessions stay where they are.
        """
        clients = self.restart()
        self.advance(*[1] * int(SETTLE_SECONDS + 5))
        self.assertEqual(sum(c.node == "n0" for c in clients), 0)
