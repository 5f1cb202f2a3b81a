"""
A rolling upgrade (PROTOCOL.md 5.1.1), on the in-process cluster: beside a
current member, one that speaks what the previous release spoke (version 3
alone, no capabilities: the challenge and hello it always sent) and one
that speaks what a next release would (a range up to a later version, and
a capability this release lacks). Every link settles on version 3; the
links between this release and the next speak C{forward} (5.6), those of
the previous release none; replication, digests and failover work across
them.
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
CURRENT, NEXT, PREVIOUS = 0, 1, 2


def previousRelease():
    """
    What a member of the previous release offers: version 3 alone.
    """
    return Offer(3, 3, ())


def nextRelease():
    """
    What a member of a next release might offer: up to version 5, with a
    capability this release does not have.
    """
    return Offer(3, 5, {"forward", "later"})


class RollingUpgradeTests(SynchronousTestCase):
    def setUp(self):
        self.cluster = FakeCluster(3)
        self.addCleanup(self.cluster.close)
        self.cluster.slots[PREVIOUS].offer = previousRelease()
        self.cluster.slots[NEXT].offer = nextRelease()
        self.frames = self.cluster.record()
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def hosts(self):
        return [self.cluster.hosts(i, ORDERS) for i in range(3)]

    def test_handshakes(self):
        """
        The previous release's member sends the handshake frames it always
        sent (C{proto} alone); this release's adds its capability. The next
        release's offers its range and capabilities. Every link speaks
        version 3; C{forward} between this release and the next only
        (which does not have C{overrides}).
        """
        sent = {}
        for src, _, m in self.frames:
            if m["op"] in ("challenge", "peer_hello"):
                sent.setdefault(src, []).append(m)
        for member, caps in ((CURRENT, ["forward", "overrides"]), (PREVIOUS, None)):
            self.assertEqual(len(sent[member]), 4)
            for message in sent[member]:
                self.assertEqual(message["proto"], dialect.LOWEST)
                self.assertEqual(message.get("caps"), caps)
                self.assertNotIn("proto_max", message)
        challenges = [m for m in sent[NEXT] if m["op"] == "challenge"]
        self.assertEqual({(m["proto"], m["proto_max"], tuple(m["caps"])) for m in challenges},
                         {(3, 5, ("forward", "later"))})
        for a in range(3):
            for b in range(3):
                if a != b:
                    spoken = self.cluster.feed(a, b).link.dialect
                    forward = {a, b} == {CURRENT, NEXT}
                    self.assertEqual((spoken.version, spoken.capabilities),
                                     (3, frozenset(["forward"] if forward else [])))

    def test_replicationEveryWay(self):
        """
        Each member's client is seen at every member, a cluster name with
        dots included (version 3 carries them); no record is refused, and
        the digests agree: nothing is asked again at any later interval.
        """
        self.cluster.client(CURRENT).register(ORDERS, "10.1.0.1")
        self.cluster.client(PREVIOUS).register(ORDERS, "10.1.0.2")
        self.cluster.client(NEXT).register(ORDERS, "10.1.0.3", cluster="eu.west")
        self.cluster.flush()
        self.assertEqual(self.hosts(), [[ONE, TWO, DOTTED]] * 3)
        del self.frames[:]
        self.cluster.advance(5)  # five digest intervals
        repairs = [m["op"] for _, _, m in self.frames
                   if m["op"] in ("resend", "digest_ask", "error", "client_state")]
        self.assertEqual(repairs, [])
        for i in range(3):
            self.assertEqual(self.cluster.slots[i].cluster.receiver.rejectedCount(), 0)

    def test_failoverAcross(self):
        """
        A client moves from the current member to the previous release's,
        another from there to the next release's; subscribers never see
        their instances vanish. When the current member dies, the others
        keep the clients taken over.
        """
        cluster = self.cluster
        watchers = [cluster.client(i) for i in range(3)]
        for w in watchers:
            w.subscribe(ORDERS)
        a = cluster.client(CURRENT)
        a.register(ORDERS, "10.1.0.1")
        b = cluster.client(PREVIOUS)
        b.register(ORDERS, "10.1.0.2")
        cluster.flush()
        a.drop()
        movedA = cluster.client(PREVIOUS, resume=a.identity)
        self.assertTrue(movedA.helloReply["resumed"])
        movedA.redo({ORDERS: [instance("10.1.0.1")]})
        b.drop()
        movedB = cluster.client(NEXT, resume=b.identity)
        self.assertTrue(movedB.helloReply["resumed"])
        movedB.redo({ORDERS: [instance("10.1.0.2")]})
        cluster.advance(3)
        self.assertEqual(cluster.held(NEXT, a.clientId).owner, cluster.slots[PREVIOUS].nodeId)
        self.assertEqual(cluster.held(CURRENT, b.clientId).owner, cluster.slots[NEXT].nodeId)
        cluster.crash(CURRENT)
        cluster.advance(10)  # past down_after_ms and orphan_grace_ms
        self.assertEqual([cluster.hosts(i, ORDERS) for i in (NEXT, PREVIOUS)], [[ONE, TWO]] * 2)
        for w in watchers[1:]:
            seen = set()
            for info in w.takePushes():
                shown = {h["instance_id"] for h in info["hosts"]}
                self.assertFalse(seen - shown, f"a push lacked {sorted(seen - shown)}")
                seen |= shown
            self.assertEqual(seen, {ONE, TWO})

    def test_upgraded(self):
        """
        The previous release's member restarted as this release's (its
        upgrade) gets everything back in its snapshots, and its links come
        up as before.
        """
        cluster = self.cluster
        cluster.client(CURRENT).register(ORDERS, "10.1.0.3", cluster="eu.west")
        cluster.client(NEXT).register(ORDERS, "10.1.0.1")
        cluster.flush()
        cluster.slots[PREVIOUS].offer = None
        cluster.restart(PREVIOUS)
        cluster.advance(2)
        self.assertEqual(self.hosts(), [[ONE, DOTTED]] * 3)
        self.assertEqual(cluster.feed(CURRENT, PREVIOUS).link.dialect.version, 3)
