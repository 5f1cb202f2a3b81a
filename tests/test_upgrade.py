"""
A rolling upgrade (PROTOCOL.md 5.1): a member that speaks only the previous
peer protocol (one version, no capabilities: the challenge and hello it
always sent) beside current members, on the in-process cluster. Replication,
digests and failover work across them; what a capability brings is never
sent to it, and reaches it once it is upgraded.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro.cluster import dialect
from distro.cluster.dialect import Offer
from tests._cluster import FakeCluster
from tests._factories import instance

ORDERS = "orders"
ONE = "10.1.0.1#8080#DEFAULT"
TWO = "10.1.0.2#8080#DEFAULT"
DOTTED = "10.1.0.3#8080#eu.west"
OLD = 2


def previousVersion():
    """
    What a member from before ranges and capabilities offers.
    """
    return Offer(dialect.LOWEST, dialect.LOWEST, ())


class RollingUpgradeTests(SynchronousTestCase):
    def setUp(self):
        self.cluster = FakeCluster(3)
        self.addCleanup(self.cluster.close)
        self.cluster.slots[OLD].offer = previousVersion()
        self.frames = self.cluster.record()
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def hosts(self):
        return [self.cluster.hosts(i, ORDERS) for i in range(3)]

    def test_handshakes(self):
        """
        The old member's handshake frames are those it always sent (no
        C{proto_max}, no C{caps}); every link with it speaks its version
        without capabilities, the links between current members have them.
        """
        sentByOld = [m for src, _, m in self.frames
                     if src == OLD and m["op"] in ("challenge", "peer_hello")]
        self.assertEqual(len(sentByOld), 4)
        for message in sentByOld:
            self.assertNotIn("caps", message)
            self.assertNotIn("proto_max", message)
            self.assertEqual(message["proto"], dialect.LOWEST)
        for a in range(3):
            for b in range(3):
                if a == b:
                    continue
                spoken = self.cluster.feed(a, b).link.dialect
                self.assertEqual(spoken.version, dialect.LOWEST)
                self.assertEqual(spoken.whole, OLD not in (a, b), (a, b))

    def test_replicationBothWays(self):
        """
        A current member's client and the old member's client are seen
        everywhere.
        """
        self.cluster.client(0).register(ORDERS, "10.1.0.1")
        self.cluster.client(OLD).register(ORDERS, "10.1.0.2")
        self.cluster.flush()
        self.assertEqual(self.hosts(), [[ONE, TWO]] * 3)

    def test_capabilityNotSentToOld(self):
        """
        An instance whose cluster name has dots (the C{cluster_dots}
        capability) reaches the current members but is never sent to the old
        one, which holds the client at the same revision without it: no
        record is refused, the digests agree (nothing is asked again at any
        later interval), and removing it is seen everywhere.
        """
        cluster = self.cluster
        client = cluster.client(0)
        client.register(ORDERS, "10.1.0.1")
        client.register(ORDERS, "10.1.0.3", cluster="eu.west")
        cluster.flush()
        self.assertEqual(self.hosts(), [[ONE, DOTTED], [ONE, DOTTED], [ONE]])
        self.assertEqual(cluster.held(OLD, client.clientId).revision,
                         cluster.held(0, client.clientId).revision)
        del self.frames[:]
        cluster.advance(5)  # five digest intervals
        toOld = [m for src, dst, m in self.frames if dst == OLD]
        self.assertFalse([m for m in toOld if any(
            "eu.west" in repr(records) for _, records in m.get("put", m.get("services", [])))])
        repairs = [m["op"] for _, _, m in self.frames
                   if m["op"] in ("resend", "digest_ask", "error", "client_state")]
        self.assertEqual(repairs, [])
        for i in range(3):
            self.assertEqual(cluster.slots[i].cluster.receiver.rejectedCount(), 0)
        client.deregister(ORDERS, "10.1.0.3", cluster="eu.west")
        client.deregister(ORDERS, "10.1.0.1")
        cluster.flush()
        self.assertEqual(self.hosts(), [[], [], []])

    def test_wholeStateWithoutCapability(self):
        """
        A snapshot to the old member (its link came up again) leaves the
        dotted instance out too.
        """
        cluster = self.cluster
        client = cluster.client(0)
        client.register(ORDERS, "10.1.0.1")
        client.register(ORDERS, "10.1.0.3", cluster="eu.west")
        cluster.cut(0, OLD)
        cluster.restore(0, OLD)
        cluster.advance(3)
        self.assertEqual(self.hosts(), [[ONE, DOTTED], [ONE, DOTTED], [ONE]])
        for i in range(3):
            self.assertEqual(cluster.slots[i].cluster.receiver.rejectedCount(), 0)

    def test_oldRefusesWhatItLacks(self):
        """
        A receiver refuses a record that its link's capabilities do not
        allow (5.2 rule 6: C{BAD_REQUEST} naming the field), as a member
        from before would: a sender that broke the rule is told.
        """
        cluster = self.cluster
        client = cluster.client(0)
        feed = cluster.feed(0, OLD)
        feed.link.dialect = dialect.Dialect(dialect.LOWEST, dialect.CAPABILITIES)  # lies
        client.register(ORDERS, "10.1.0.3", cluster="eu.west")
        cluster.flush()
        errors = [m for src, dst, m in self.frames if (src, dst) == (OLD, 0) and m["op"] == "error"]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["code"], "BAD_REQUEST")
        self.assertIn("cluster: a cluster name with dots", errors[0]["message"])
        self.assertEqual(cluster.hosts(OLD, ORDERS), [])

    def test_failoverAcross(self):
        """
        A client moves from a current member to the old one, and another
        from the old one to a current one; subscribers on every member never
        see their instances vanish. When a current member dies, the old one
        keeps the clients taken over.
        """
        cluster = self.cluster
        watchers = [cluster.client(i) for i in range(3)]
        for w in watchers:
            w.subscribe(ORDERS)
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1")
        b = cluster.client(OLD)
        b.register(ORDERS, "10.1.0.2")
        cluster.flush()
        a.drop()
        movedA = cluster.client(OLD, resume=a.identity)
        self.assertTrue(movedA.helloReply["resumed"])
        movedA.redo({ORDERS: [instance("10.1.0.1")]})
        b.drop()
        movedB = cluster.client(1, resume=b.identity)
        self.assertTrue(movedB.helloReply["resumed"])
        movedB.redo({ORDERS: [instance("10.1.0.2")]})
        cluster.advance(3)
        self.assertEqual(cluster.held(1, a.clientId).owner, cluster.slots[OLD].nodeId)
        self.assertEqual(cluster.held(0, b.clientId).owner, "n1")
        cluster.crash(0)
        cluster.advance(10)  # past down_after_ms and orphan_grace_ms
        self.assertEqual([cluster.hosts(i, ORDERS) for i in (1, OLD)], [[ONE, TWO]] * 2)
        for w in watchers[1:]:
            seen = set()
            for info in w.takePushes():
                shown = {h["instance_id"] for h in info["hosts"]}
                self.assertFalse(seen - shown, f"a push lacked {sorted(seen - shown)}")
                seen |= shown
            self.assertEqual(seen, {ONE, TWO})

    def test_upgraded(self):
        """
        Once the old member is upgraded (restarted speaking everything), its
        links have the capability and the snapshot brings what it lacked.
        """
        cluster = self.cluster
        client = cluster.client(0)
        client.register(ORDERS, "10.1.0.3", cluster="eu.west")
        cluster.flush()
        self.assertEqual(cluster.hosts(OLD, ORDERS), [])
        cluster.slots[OLD].offer = None
        cluster.restart(OLD)
        cluster.advance(2)
        self.assertEqual(self.hosts(), [[DOTTED]] * 3)
        self.assertTrue(cluster.feed(0, OLD).link.dialect.whole)
