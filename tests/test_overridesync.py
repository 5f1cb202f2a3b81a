"""
Tests for L{distro.cluster.overridesync}: the operators' overrides reach
every member, last writer wins everywhere, digests repair what a member
missed, and a restarted member gets them back (PROTOCOL.md 5.7); on the
in-memory cluster of real nodes.
"""

import msgpack
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.auth import EVERYTHING
from distro.cluster.dialect import Dialect, Offer
from distro.cluster.overridesync import OverrideSync
from distro.interfaces import IOverrideObserver
from distro.model import ServiceKey

from ._cluster import DROP, FakeCluster
from .test_overrides import overrides

ORDERS = "orders"
ONE = "10.1.0.1#8080#DEFAULT"
TWO = "10.1.0.2#8080#DEFAULT"
VERIFY = 1.0  # the harness' verify_interval_ms, in seconds, or more


class OverrideSyncTests(SynchronousTestCase):
    def setUp(self):
        self.cluster = FakeCluster(3)
        self.addCleanup(self.cluster.close)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        client = self.cluster.client(0)
        client.register(ORDERS, "10.1.0.1")
        client.register(ORDERS, "10.1.0.2")
        self.cluster.flush()
        self.service = self.cluster.view(0, ORDERS).service
        self.verify = self.cluster.node(0).config.verify_interval_ms / 1000.0

    def write(self, index, instanceId, **changes):
        return self.successResultOf(self.cluster.node(index).writeOverride(
            EVERYTHING, "127.0.0.1", self.service, instanceId, changes, "test"))

    def everywhere(self):
        return [self.cluster.hosts(i, ORDERS) for i in self.cluster.live()]

    def entries(self, index):
        return sorted((k[1], o.stamp, o.cleared) for k, o in self.cluster.node(index).overrides.entries.items())

    def test_observer(self):
        verifyObject(IOverrideObserver, self.cluster.slot(0).cluster.overrideSync)

    def test_reachesEveryMember(self):
        """
        An override written at any member shows at every member; its clear
        too.
        """
        self.write(1, ONE, enabled=False)
        self.cluster.flush()
        self.assertEqual(self.everywhere(), [[TWO]] * 3)
        self.cluster.node(2).clearOverride(EVERYTHING, "127.0.0.1", self.service, ONE, "back")
        self.cluster.flush()
        self.assertEqual(self.everywhere(), [[ONE, TWO]] * 3)
        self.assertEqual(self.entries(0), self.entries(1))
        self.assertEqual(self.entries(0), self.entries(2))

    def test_concurrentWritesConverge(self):
        """
        Two members write the same key at once: every member ends with the
        same entry, the one with the higher stamp.
        """
        a = self.write(0, ONE, weight=5)
        b = self.write(2, ONE, enabled=False)
        self.cluster.flush()
        winner = max(a, b, key=lambda o: o.stamp)
        for i in range(3):
            self.assertEqual(self.cluster.node(i).overrides.get(self.service, ONE).stamp, winner.stamp)

    def test_digestRepairs(self):
        """
        A member that missed an entry (its frame was lost) gets it after
        one verify interval: the digests differ, it asks, it is sent all.
        """
        remove = self.cluster.intercept(
            lambda src, dst, m: DROP if dst == 2 and m.get("op") == "overrides" else None)
        self.write(0, ONE, removed=True)
        self.cluster.flush()
        self.assertEqual(self.cluster.hosts(2, ORDERS), [ONE, TWO])
        remove()
        self.cluster.advance(self.verify * 2)
        self.assertEqual(self.everywhere(), [[TWO]] * 3)
        self.assertEqual(self.entries(2), self.entries(0))

    def test_noneNothingSent(self):
        """
        A cluster without overrides sends none of their frames.
        """
        frames = self.cluster.record()
        self.cluster.advance(self.verify * 3)
        self.assertEqual([m["op"] for _, _, m in frames if m["op"].startswith("override")], [])

    def test_agreeingDigestsAskNothing(self):
        self.write(0, ONE, weight=3)
        self.cluster.flush()
        frames = self.cluster.record()
        self.cluster.advance(self.verify * 3)
        self.assertEqual([m["op"] for _, _, m in frames if m["op"] in ("override_ask", "overrides")], [])
        self.assertIn("override_digest", [m["op"] for _, _, m in frames])

    def test_restartedMemberGetsThem(self):
        """
        A member restarted without its data (no data_dir here) is sent
        every entry when its links come up.
        """
        self.write(0, ONE, enabled=False)
        self.cluster.flush()
        self.cluster.crash(1)
        self.write(2, TWO, weight=9)
        self.cluster.restart(1)
        self.cluster.flush()
        self.assertEqual(self.entries(1), self.entries(0))
        self.assertEqual([h.weight for h in self.cluster.view(1, ORDERS).hosts], [9.0])

    def test_reregistrationKeepsTheDrain(self):
        """
        A client that registers its instance again (on another member, as
        a client resuming elsewhere would) does not undo a drain.
        """
        self.write(1, ONE, enabled=False)
        self.cluster.flush()
        other = self.cluster.client(2)
        other.register(ORDERS, "10.1.0.1", weight=4.0)
        self.cluster.flush()
        self.assertEqual(self.everywhere(), [[TWO]] * 3)


class CapabilityTests(SynchronousTestCase):
    def test_notSentToAMemberWithout(self):
        """
        A member of an earlier release (no C{overrides} capability) is sent
        no override frame; the others still are.
        """
        cluster = FakeCluster(3)
        self.addCleanup(cluster.close)
        cluster.slots[2].offer = Offer(3, 3, ())
        frames = cluster.record()
        cluster.start()
        self.addCleanup(cluster.stop)
        cluster.client(0).register(ORDERS, "10.1.0.1")
        cluster.flush()
        service = cluster.view(0, ORDERS).service
        self.successResultOf(cluster.node(0).writeOverride(EVERYTHING, "127.0.0.1", service, ONE, {"weight": 2}, ""))
        cluster.advance(3)
        ops = {(src, dst) for src, dst, m in frames if m["op"].startswith("override")}
        self.assertEqual(ops, {(0, 1), (1, 0)})
        self.assertEqual([h.weight for h in cluster.view(1, ORDERS).hosts], [2.0])

    def test_refusedWithout(self):
        sync = OverrideSync(overrides(None), list, 1 << 20)

        class Link:
            nodeId = "n2"
            dialect = Dialect(3, ["forward"])

        answer = sync.received(Link(), {"op": "overrides", "entries": []})
        self.assertEqual((answer["op"], answer["code"]), ("error", "BAD_REQUEST"))


class ReceivedTests(SynchronousTestCase):
    """
    L{OverrideSync.received}: what a member sends, checked.
    """

    def setUp(self):
        self.clock = Clock()
        self.map = overrides(self.clock)
        self.sync = OverrideSync(self.map, list, 1 << 20)

        class Link:
            nodeId = "n2"
            dialect = Dialect(3, ["overrides"])

        self.link = Link()
        self.other = overrides(self.clock, "n2")

    def test_badEntryNamed(self):
        """
        A bad entry is refused naming its field; the good ones are applied.
        """
        good = self.other.write(self.serviceKey(), ONE, {"weight": 2}, who="ops", why="").toWire()
        bad = dict(good, instance_id="nope")
        answer = self.sync.received(self.link, {"op": "overrides", "entries": [bad, good]})
        self.assertEqual(answer["code"], "BAD_REQUEST")
        self.assertTrue(answer["message"].startswith("entries[0].instance_id"), answer["message"])
        self.assertEqual(len(self.map.live()), 1)

    def test_malformed(self):
        for message, field in (({"op": "overrides", "entries": {}}, "entries"),
                               ({"op": "override_digest", "hash": b"123"}, "hash")):
            answer = self.sync.received(self.link, message)
            self.assertTrue(answer["message"].startswith(field), answer)

    def test_digest(self):
        self.assertIsNone(self.sync.received(self.link, {"op": "override_digest", "hash": bytes(8)}))
        self.map.write(self.serviceKey(), ONE, {"weight": 2}, who="ops", why="")
        self.assertEqual(self.sync.received(self.link, {"op": "override_digest", "hash": bytes(8)}),
                         {"op": "override_ask"})

    def test_framesWithinTheLimit(self):
        """
        Every entry is sent, in frames within half of C{peer_max_frame}.
        """
        for n in range(90):
            self.map.write(self.serviceKey(), f"10.1.{n // 250}.{n % 250 + 1}#8080#DEFAULT",
                           {"metadata": {"k": "v" * 100}}, who="ops", why="why " * 20)
        sync = OverrideSync(self.map, list, 16384)
        frames = sync.framesOfAll()
        self.assertGreater(len(frames), 2)
        self.assertTrue(all(len(f) <= 8192 + 512 for f in frames))
        target = overrides(self.clock, "n3")
        for frame in frames:
            OverrideSync(target, list, 16384).received(self.link, msgpack.unpackb(frame[4:]))
        self.assertEqual(target.digest, self.map.digest)

    def serviceKey(self):
        return ServiceKey("public", "DEFAULT_GROUP", "orders")


class DigestExampleTests(SynchronousTestCase):
    def test_protocolExample(self):
        """
        PROTOCOL.md 5.7's example digest.
        """
        from distro.overrides import Override, entryHash

        entry = Override(ServiceKey("public", "DEFAULT_GROUP", "orders"), "10.0.0.1#8080#DEFAULT",
                         weight=1.0, who="ops", why="", stamp=(1700000000000, 0, "127.0.0.1:9849"))
        self.assertEqual(entryHash(entry).to_bytes(8, "big").hex(), "61316b536a7585ec")
