"""
Tests for L{distro.cluster.service.Cluster}: replication, membership,
orphans, readiness, ownership moves and reloads (PROTOCOL.md 5.2 to 5.5),
on an in-process cluster of real nodes (L{tests._cluster}).
"""

import os
import re

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import distro

from distro.cluster import digest, records, sending
from distro import config, wire
from distro.cluster.service import ClusterSettings
from distro.interfaces import ICluster, IClusterHost
from distro.wire import NOT_READY
from tests._cluster import DROP, HOLD, FakeCluster, digestProblems, peerAddress
from tests._factories import instance


ORDERS = "orders"
IID = "10.1.0.1#8080#DEFAULT"


def ops(frames, src=None, dst=None):
    """
    The ops of C{frames} from C{src} to C{dst} (C{None}: any).
    """
    return [
        m.get("op")
        for s, d, m in frames
        if (src is None or s == src) and (dst is None or d == dst)
    ]


def mentions(message, clientId):
    """
    Whether a peer frame carries data of C{clientId}.
    """
    if message.get("client_id") == clientId:
        return True
    if clientId in (message.get("client_ids") or ()):
        return True
    return any(entry[0] == clientId for entry in message.get("clients") or ())


def dropOnce(matches):
    """
    An interceptor that drops the first frame that C{matches}.
    """
    done = []

    def decide(src, dst, message):
        if not done and matches(src, dst, message):
            done.append(message)
            return DROP
        return None

    return decide


class ClusterTestCase(SynchronousTestCase):
    size = 3
    overrides = {}

    def setUp(self):
        self.cluster = FakeCluster(self.size, **self.overrides)
        self.addCleanup(self.cluster.close)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def assertConverged(self, name=ORDERS, expected=None, nodes=None):
        """
        Every (given) live node's view of C{name} holds the same instances
        (C{expected} if given) and the same checksum.
        """
        cluster = self.cluster
        nodes = cluster.live() if nodes is None else nodes
        views = {i: cluster.hosts(i, name) for i in nodes}
        if expected is not None:
            expected = sorted(expected)
            for i, hosts in views.items():
                self.assertEqual(hosts, expected, f"n{i}'s view of {name}: {views}")
        self.assertEqual(len({tuple(v) for v in views.values()}), 1, f"views differ: {views}")
        checksums = {cluster.view(i, name).checksum for i in nodes}
        self.assertEqual(len(checksums), 1, f"checksums differ: {checksums}")


class SnapshotTests(ClusterTestCase):
    """
    5.2 rule 1: a link (re)established starts with a snapshot, and the
    receiver reconciles the sender's clients against it.
    """

    def test_snapshotOnLinkUp(self):
        """
        A link that comes back starts with C{snapshot_begin}, a
        C{client_state} of each client the sender owns and C{snapshot_end}
        with their count; what changed while it was down arrives that way.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1", 8080)
        b = cluster.client(0)
        cluster.cut(0, 1)
        b.register(ORDERS, "10.1.0.2", 8080)
        self.assertEqual(cluster.hosts(1, ORDERS), [IID])
        self.assertEqual(cluster.hosts(2, ORDERS), [IID, "10.1.0.2#8080#DEFAULT"])
        frames = cluster.record()
        cluster.restore(0, 1)
        cluster.advance(1)
        # What n0's new outbound link to n1 carried (the challenge and the
        # welcome are n0's inbound link's, from n1):
        sent = [m for s, d, m in frames
                if (s, d) == (0, 1) and m["op"] not in ("ping", "pong", "challenge", "peer_welcome")]
        self.assertEqual(sent[0]["op"], "peer_hello")
        self.assertEqual([m["op"] for m in sent[1:5]],
                         ["snapshot_begin", "client_state", "client_state", "snapshot_end"])
        self.assertEqual(sent[4]["count"], 2)
        self.assertEqual({m["client_id"] for m in sent[2:4]}, {a.clientId, b.clientId})
        self.assertConverged(expected=[IID, "10.1.0.2#8080#DEFAULT"])

    def test_snapshotEndDropsUnnamed(self):
        """
        At C{snapshot_end} the receiver drops the sender's clients the
        snapshot did not name (here: one that said bye while the link was
        down), before any orphan or digest rule could.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        keep = cluster.client(0)
        keep.register(ORDERS, "10.1.0.2")
        cluster.cut(0, 1)
        a.bye()
        self.assertIsNotNone(cluster.held(1, a.clientId))
        self.assertIsNone(cluster.held(2, a.clientId))
        frames = cluster.record()
        release = cluster.intercept(
            lambda s, d, m: HOLD if (s, d) == (0, 1) and m["op"] == "snapshot_end" else None
        )
        cluster.advance(0.3)
        cluster.restore(0, 1)
        cluster.advance(0.5)
        self.assertIn("snapshot_begin", ops(frames, 0, 1))
        self.assertIsNotNone(cluster.held(1, a.clientId), "dropped before snapshot_end")
        release()
        self.assertIsNone(cluster.held(1, a.clientId))
        self.assertIsNotNone(cluster.held(1, keep.clientId))
        self.assertNotIn("client_remove", ops(frames, 0, 1))
        self.assertLess(cluster.clock.seconds(), 2.0)  # sooner than orphan_grace_ms
        self.assertConverged(expected=["10.1.0.2#8080#DEFAULT"])


class DeltaTests(ClusterTestCase):
    """
    5.2: deltas, resends and removals.
    """

    def test_deltaCarriesIdentity(self):
        """
        A new client goes to every peer at once as a whole C{client_state}
        (a peer cannot hold a base for a delta, nor could a delta carry its
        resume token hash); each further change as a C{delta} with the
        client's id, owner and epoch, its base and new revision, applied on
        top of that base. Nothing needs a C{resend}.
        """
        cluster = self.cluster
        frames = cluster.record()
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1", 8080)
        a.register(ORDERS, "10.1.0.1", 8080, weight=5.0)
        a.deregister(ORDERS, "10.1.0.1", 8080)
        for peer in (1, 2):
            sent = [m for s, d, m in frames if (s, d) == (0, peer) and m["op"] not in ("ping", "pong")]
            self.assertEqual([m["op"] for m in sent], ["client_state", "delta", "delta"])
            state = sent[0]
            self.assertEqual(
                (state["client_id"], state["owner"], state["epoch"], state["revision"]),
                (a.clientId, "n0", 1, 1),
            )
            self.assertEqual(state["resume_token_hash"], cluster.held(0, a.clientId).resumeTokenHash)
            self.assertEqual(
                [(m["client_id"], m["owner"], m["epoch"], m["base_revision"], m["revision"])
                 for m in sent[1:]],
                [(a.clientId, "n0", 1, 1, 2), (a.clientId, "n0", 1, 2, 3)],
            )
            ((service, (record,)),) = sent[1]["put"]
            self.assertEqual(service["name"], ORDERS)
            self.assertEqual(record[:7], ["10.1.0.1", 8080, "DEFAULT", 5.0, True, True, {}])
            self.assertIsInstance(record[7], int)  # write_ts
            self.assertEqual(sent[2]["remove"], [[service, [IID]]])
            held = cluster.held(peer, a.clientId)
            self.assertFalse(held.native)
            self.assertEqual((held.owner, held.epoch, held.revision), ("n0", 1, 3))
        self.assertNotIn("resend", ops(frames))

    def test_changesReachPeersWithoutWaiting(self):
        """
        A change reaches every peer without any time passing (never held
        back by a timer).
        """
        cluster = self.cluster
        a = cluster.client(0)
        now = cluster.clock.seconds()
        for port in range(8000, 8010):
            a.register(ORDERS, "10.1.0.1", port)
            self.assertConverged()
        self.assertEqual(cluster.clock.seconds(), now)
        self.assertEqual(len(cluster.hosts(2, ORDERS)), 10)

    def test_changesOfOneTurnGoAsOneDelta(self):
        """
        The changes one client makes in one reactor turn reach each peer as
        one C{delta} from the revision before the first to the revision after
        the last, carrying their net effect: an instance put and then
        removed is only removed, one put twice is put once as it ended.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1", 8080)
        frames = cluster.record()
        service = {"name": ORDERS}
        a.send("register", service=service, instance=instance("10.1.0.2", weight=2.0))
        a.send("register", service=service, instance=instance("10.1.0.2", weight=3.0))
        a.send("register", service=service, instance=instance("10.1.0.3"))
        a.send("deregister", service=service, instance={"ip": "10.1.0.1", "port": 8080})
        a.send("deregister", service=service, instance={"ip": "10.1.0.3", "port": 8080})
        cluster.flush()
        self.assertEqual(
            [r["op"] for r in a.protocol.replies.values()], ["ok"] * 5
        )
        for peer in (1, 2):
            sent = [m for s, d, m in frames if (s, d) == (0, peer) and m["op"] not in ("ping", "pong")]
            self.assertEqual([m["op"] for m in sent], ["delta"])
            (delta,) = sent
            self.assertEqual((delta["base_revision"], delta["revision"]), (1, 6))
            self.assertEqual(
                [(r[0], r[3]) for _, records in delta["put"] for r in records],
                [("10.1.0.2", 3.0)],
            )
            self.assertEqual(
                sorted(iid for _, ids in delta["remove"] for iid in ids),
                ["10.1.0.1#8080#DEFAULT", "10.1.0.3#8080#DEFAULT"],
            )
            self.assertEqual(cluster.held(peer, a.clientId).revision, 6)
        self.assertConverged(expected=["10.1.0.2#8080#DEFAULT"])
        self.assertEqual(cluster.view(1, ORDERS).hosts[0].weight, 3.0)

    def test_newClientsFirstTurnGoesWhole(self):
        """
        A new client's first turn, however many changes it made, reaches
        each peer as one C{client_state} at the revision the turn ended on.
        """
        cluster = self.cluster
        frames = cluster.record()
        a = cluster.client(0)
        a.send("register", service={"name": ORDERS}, instance=instance("10.1.0.1"))
        a.send("register", service={"name": ORDERS}, instance=instance("10.1.0.2"))
        cluster.flush()
        for peer in (1, 2):
            sent = [m for s, d, m in frames if (s, d) == (0, peer) and m["op"] not in ("ping", "pong")]
            self.assertEqual([(m["op"], m["revision"]) for m in sent], [("client_state", 2)])
        self.assertConverged(expected=[IID, "10.1.0.2#8080#DEFAULT"])

    def test_resendOnBaseMismatch(self):
        """
        A delta whose base revision the receiver does not hold is answered
        with C{resend}, and the sender sends the whole C{client_state}.
        """
        cluster = self.cluster
        a = cluster.client(0)
        cluster.intercept(
            lambda s, d, m: DROP if (s, d) == (0, 1) and m.get("base_revision") == 1 else None
        )
        frames = cluster.record()
        a.register(ORDERS, "10.1.0.1", 8080)
        a.register(ORDERS, "10.1.0.2", 8080)
        self.assertEqual(cluster.held(1, a.clientId).revision, 1)
        a.register(ORDERS, "10.1.0.3", 8080)
        resends = [m for s, d, m in frames if (s, d) == (1, 0) and m["op"] == "resend"]
        self.assertEqual(resends, [{"op": "resend", "client_ids": [a.clientId]}])
        states = [m for s, d, m in frames if (s, d) == (0, 1) and m["op"] == "client_state"]
        # The first, when the client was new; the second, resent.
        self.assertEqual([(m["client_id"], m["revision"]) for m in states],
                         [(a.clientId, 1), (a.clientId, 3)])
        self.assertEqual(cluster.held(1, a.clientId).revision, 3)
        self.assertConverged(
            expected=["10.1.0.1#8080#DEFAULT", "10.1.0.2#8080#DEFAULT", "10.1.0.3#8080#DEFAULT"]
        )

    def test_clientRemove(self):
        """
        A client that said bye is gone everywhere at once with a
        C{client_remove} naming it, its owner and epoch; one whose connection
        broke goes the same way after C{disconnect_grace_ms}.
        """
        cluster = self.cluster
        frames = cluster.record()
        a = cluster.client(0)
        a.register(ORDERS)
        b = cluster.client(1)
        b.register(ORDERS, "10.1.0.2")
        a.bye()
        for peer in (1, 2):
            removes = [m for s, d, m in frames if (s, d) == (0, peer) and m["op"] == "client_remove"]
            self.assertEqual(
                removes, [{"op": "client_remove", "client_id": a.clientId, "owner": "n0", "epoch": 1}]
            )
            self.assertIsNone(cluster.held(peer, a.clientId))
        self.assertConverged(expected=["10.1.0.2#8080#DEFAULT"])
        b.drop()
        cluster.advance(0.45)
        self.assertConverged(expected=["10.1.0.2#8080#DEFAULT"])
        cluster.advance(0.1)
        self.assertConverged(expected=[])
        for i in range(3):
            self.assertIsNone(cluster.held(i, b.clientId))


class DigestTests(ClusterTestCase):
    """
    5.2 rule 4: digests repair what deltas missed, both ways.
    """

    def test_lackingClientResent(self):
        """
        A receiver that lacks a client the sender's digest names asks for it
        with C{resend}, and gets it.
        """
        cluster = self.cluster
        a = cluster.client(0)
        cluster.intercept(dropOnce(lambda s, d, m: (s, d) == (0, 1) and m["op"] == "client_state"))
        frames = cluster.record()
        a.register(ORDERS)
        self.assertIsNone(cluster.held(1, a.clientId))
        cluster.advance(1.05)  # one verify_interval_ms
        digests = [m for s, d, m in frames if (s, d) == (0, 1) and m["op"] == "digest"]
        self.assertDigestNamed(digests, frames, a.clientId)
        self.assertIn({"op": "resend", "client_ids": [a.clientId]},
                      [m for s, d, m in frames if (s, d) == (1, 0)])
        self.assertEqual(cluster.held(1, a.clientId).revision, 1)
        self.assertConverged(expected=[IID])

    def assertDigestNamed(self, digests, frames, clientId):
        """
        n0's digest listed its one client.
        """
        self.assertEqual(digests[0]["clients"], [[clientId, 1]])

    def test_staleRevisionResent(self):
        """
        A receiver holding a client at another revision than the digest's
        asks for it again.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        drop = cluster.intercept(
            lambda s, d, m: DROP if (s, d) == (0, 2) and m["op"] == "delta" else None
        )
        a.register(ORDERS, weight=3.0)
        drop()
        self.assertEqual(cluster.held(2, a.clientId).revision, 1)
        cluster.advance(1.05)
        self.assertEqual(cluster.held(2, a.clientId).revision, 2)
        self.assertEqual(cluster.view(2, ORDERS).hosts[0].weight, 3.0)
        self.assertConverged()

    def test_ghostDroppedAfterDigestAndSync(self):
        """
        A client the receiver holds for the sender but that the sender's
        digest no longer names (its C{client_remove} was lost) is dropped
        once a sync round shows that no other member took it over.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        cluster.intercept(
            lambda s, d, m: DROP if (s, d) == (0, 1) and m["op"] == "client_remove" else None
        )
        frames = cluster.record()
        a.bye()
        self.assertIsNotNone(cluster.held(1, a.clientId))
        cluster.advance(1.05 - cluster.clock.seconds())
        self.assertOneDigestRound(frames)
        self.assertIn("sync", ops(frames, 1))
        self.assertIsNone(cluster.held(1, a.clientId))
        self.assertConverged(expected=[])

    def assertOneDigestRound(self, frames):
        """
        n0 told n1 what it owns once: one listing digest.
        """
        self.assertEqual(ops(frames, 0, 1).count("digest"), 1)

class BucketedDigestTests(DigestTests):
    """
    The same repairs with digests of bucket hashes (what a member owning
    more than C{LIST_AT_MOST} clients sends): the receiver asks for the
    listing of the buckets that differ, and only those.
    """

    def setUp(self):
        self.patch(sending, "LIST_AT_MOST", -1)  # hashes, even of no client
        super().setUp()

    def assertDigestNamed(self, digests, frames, clientId):
        """
        n0's digest gave its bucket hashes; n1 asked for the bucket that
        differs (the client's), and n0 listed it.
        """
        self.assertEqual(len(digests[0]["hashes"]), 8 * digest.BUCKETS)
        bucket = digest.bucketOf(clientId)
        self.assertIn({"op": "digest_ask", "buckets": [bucket]},
                      [m for s, d, m in frames if (s, d) == (1, 0)])
        self.assertEqual(digests[1], {"op": "digest", "clients": [[clientId, 1]],
                                      "buckets": [bucket]})

    def assertOneDigestRound(self, frames):
        """
        n0 sent its hashes, n1 asked for the bucket that differs, n0 listed
        it: the listing did not name the client.
        """
        self.assertEqual(ops(frames, 0, 1).count("digest"), 2)
        self.assertEqual(ops(frames, 1, 0).count("digest_ask"), 1)

    def test_inSyncDigestIsSmall(self):
        """
        In sync, a digest is one frame of the bucket hashes per peer per
        interval, however many clients there are, and nobody asks for more.
        """
        cluster = self.cluster
        for n in range(40):
            cluster.client(n % 3).register(ORDERS, f"10.1.0.{n + 1}")
        frames = cluster.record()
        cluster.advance(2.05)
        sent = [(s, d, m) for s, d, m in frames if m["op"].startswith("digest")]
        self.assertEqual(sorted(m["op"] for _, _, m in sent), ["digest"] * 12)
        for _, _, m in sent:
            self.assertLess(len(wire.encode(m)), 8 * digest.BUCKETS + 64)
        self.assertEqual(digestProblems(cluster.slots[0].cluster, "n0"), [])


class MoveInFlightTests(ClusterTestCase):
    """
    5.2 rule 4 and 5.4: a client its old owner no longer names is kept while
    its new owner's record may be on its way.
    """

    # Longer than the test holds n2's frames: a member presumed dead is no
    # longer waited for.
    overrides = {"orphan_grace_ms": 10_000}

    def test_moveInFlightNotDropped(self):
        """
        A client moved from n0 to n2, and n2's record to n1 is slow: n0's
        digests no longer name it, but n1 keeps it, however many digests
        pass, since the sync round waits for n2's answer, which comes after
        n2's record.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        watcher = cluster.client(1)
        watcher.subscribe(ORDERS)
        release = cluster.intercept(lambda s, d, m: HOLD if (s, d) == (2, 1) else None)
        a.drop()
        moved = cluster.client(2, resume=a.identity)
        moved.redo({ORDERS: [instance()]})
        frames = cluster.record()
        cluster.advance(2.5)
        self.assertGreaterEqual(ops(frames, 0, 1).count("digest"), 2)
        self.assertEqual(cluster.held(1, a.clientId).owner, "n0")
        release()
        cluster.advance(1.0)
        self.assertEqual(cluster.held(1, a.clientId).owner, "n2")
        self.assertEqual(watcher.takePushes(), [])
        self.assertConverged(expected=[IID])


class OwnershipTests(ClusterTestCase):
    """
    5.2 rules 2 and 3: who may send what, and which record wins.
    """

    def test_syncedDataNeverForwarded(self):
        """
        A node never sends data of a client it does not own: n1 holds n0's
        client but never sends it to n2, even when n2 cannot hear from n0.
        """
        cluster = self.cluster
        frames = cluster.record()
        cluster.cut(0, 2)
        a = cluster.client(0)
        a.register(ORDERS)
        a.register(ORDERS, "10.1.0.2")
        cluster.advance(2.5)
        self.assertIsNotNone(cluster.held(1, a.clientId))
        self.assertIsNone(cluster.held(2, a.clientId))
        forwarded = [
            (s, d, m) for s, d, m in frames if s in (1, 2) and d != 0 and mentions(m, a.clientId)
        ]
        self.assertEqual(forwarded, [])
        cluster.restore(0, 2)
        cluster.advance(4)
        self.assertConverged(expected=[IID, "10.1.0.2#8080#DEFAULT"])

    def _inject(self, src, dst, message):
        """
        Send C{message} over node C{src}'s real link to node C{dst}.
        """
        self.cluster.feed(src, dst).link.sendMessage(message)
        self.cluster.flush()

    def test_lowerEpochOwnerIgnored(self):
        """
        Records with a lower C{(epoch, owner)} than the one held are
        ignored: C{client_state}, C{delta} and C{client_remove} alike.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        moved = cluster.client(1, resume=(a.clientId, a.resumeToken))
        self.assertTrue(moved.helloReply["resumed"])
        moved.redo({ORDERS: [instance()]})
        held = cluster.held(2, a.clientId)
        self.assertEqual((held.owner, held.epoch), ("n1", 2))
        service = {"namespace": "public", "group": "DEFAULT_GROUP", "name": ORDERS}
        # n0 (epoch 1, and equal epoch with a lower owner) says otherwise:
        for epoch in (1, 2):
            self._inject(0, 2, {
                "op": "client_state", "client_id": a.clientId, "owner": "n0",
                "epoch": epoch, "revision": 50, "resume_token_hash": "", "services": [],
            })
            self._inject(0, 2, {
                "op": "delta", "client_id": a.clientId, "owner": "n0", "epoch": epoch,
                "base_revision": held.revision, "revision": held.revision + 1,
                "put": [[service, [["10.9.9.9", 1, "DEFAULT", 1.0, True, True, {}, 1]]]],
                "remove": [],
            })
            self._inject(0, 2, {
                "op": "client_remove", "client_id": a.clientId, "owner": "n0", "epoch": epoch,
            })
        held = cluster.held(2, a.clientId)
        self.assertEqual((held.owner, held.epoch), ("n1", 2))
        self.assertEqual(cluster.hosts(2, ORDERS), [IID])
        self.assertConverged(expected=[IID])

    def test_nativeNotOverwrittenByPeer(self):
        """
        Peer data at a lower epoch never overwrites a native client, nor
        removes it.
        """
        cluster = self.cluster
        a = cluster.client(1)
        a.register(ORDERS)
        first = cluster.client(0, resume=(a.clientId, a.resumeToken))  # now n0's, epoch 2
        self.assertTrue(first.helloReply["resumed"])
        first.redo({ORDERS: [instance()]})
        self.assertTrue(a.lost)
        # n1 (the owner at epoch 1) replays the old client:
        self._inject(1, 0, {
            "op": "client_state", "client_id": a.clientId, "owner": "n1", "epoch": 1,
            "revision": 9, "resume_token_hash": "", "services": [],
        })
        self._inject(1, 0, {"op": "client_remove", "client_id": a.clientId, "owner": "n1", "epoch": 1})
        held = cluster.held(0, a.clientId)
        self.assertTrue(held.native)
        self.assertEqual((held.owner, held.epoch, held.instanceCount), ("n0", 2, 1))
        self.assertTrue(first.connected)
        self.assertConverged(expected=[IID])

    def test_higherEpochClosesNativeSession(self):
        """
        A C{client_state} at a higher epoch takes a native client over: the
        native session is closed, the instances stay (no subscriber sees
        them go), and the client is synced from then on.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        watcher = cluster.client(0)
        watcher.subscribe(ORDERS)
        state = records.clientState(cluster.held(0, a.clientId))
        state.update(owner="n1", epoch=2)
        self._inject(1, 0, state)
        self.assertTrue(a.lost)
        held = cluster.held(0, a.clientId)
        self.assertFalse(held.native)
        self.assertEqual((held.owner, held.epoch), ("n1", 2))
        self.assertEqual(cluster.hosts(0, ORDERS), [IID])
        self.assertEqual(watcher.takePushes(), [])
        cluster.advance(0.8)  # past disconnect_grace_ms: nothing expires
        self.assertEqual(cluster.hosts(0, ORDERS), [IID])
        self.assertEqual(watcher.takePushes(), [])


class SubscriptionTests(ClusterTestCase):
    def test_subscriptionsNotReplicated(self):
        """
        Subscriptions stay on their node; a change made on another node
        reaches the subscriber as a push carrying the whole view.
        """
        cluster = self.cluster
        frames = cluster.record()
        watcher = cluster.client(1)
        self.assertEqual(watcher.subscribe(ORDERS)["hosts"], [])
        watcher.register("other", "10.2.0.1")
        a = cluster.client(0)
        a.register(ORDERS)
        pushes = watcher.takePushes()
        self.assertEqual([[h["instance_id"] for h in p["hosts"]] for p in pushes], [[IID]])
        self.assertEqual(pushes[0]["checksum"], cluster.view(0, ORDERS).checksum)
        a.register(ORDERS, "10.1.0.2")
        cluster.advance(0.05)  # push_delay_ms
        self.assertEqual(
            [h["instance_id"] for h in watcher.takePushes()[-1]["hosts"]],
            [IID, "10.1.0.2#8080#DEFAULT"],
        )
        self.assertEqual(cluster.held(0, watcher.clientId).subscriptions, set())
        self.assertFalse([m for _, _, m in frames if "subscribe" in str(m) or "subscriptions" in m])


class IsolationTests(ClusterTestCase):
    """
    5.2 rule 5: a stalled peer never delays the others, and what waits for
    it is bounded.
    """

    overrides = {"bufferSize": 4096}

    def test_stalledPeer(self):
        """
        While n2 reads nothing, n1 gets every change of n0's clients at
        once; n0's feed to n2 holds at most one entry per dirty client and
        its send buffer stays near the limit; n2 catches up when it runs
        again.
        """
        cluster = self.cluster
        clients = [cluster.client(0) for _ in range(3)]
        for c in clients:
            c.register(ORDERS, "10.1.0.%d" % clients.index(c))
        cluster.stall(2)
        feed = cluster.feed(0, 2)
        transport = feed.link.transport
        for n in range(600):
            c = clients[n % 3]
            c.register(ORDERS, "10.1.0.%d" % clients.index(c), weight=float(n % 100),
                       metadata={"n": str(n)})
            self.assertEqual(cluster.view(1, ORDERS).checksum, cluster.view(0, ORDERS).checksum)
            self.assertLessEqual(len(feed.dirty), 3)
            if n % 100 == 99:
                cluster.advance(0.05)  # pings keep being written, the rest waits
        self.assertTrue(feed.paused)
        self.assertEqual(set(feed.dirty), {c.clientId for c in clients})
        self.assertLessEqual(transport.maxSize, 4096 + 1024)
        self.assertNotEqual(cluster.view(2, ORDERS).checksum, cluster.view(0, ORDERS).checksum)
        cluster.unstall(2)
        self.assertEqual(feed.dirty, {})
        self.assertFalse(feed.paused)
        self.assertConverged()

    def test_longStallDropsLink(self):
        """
        A peer stalled longer than C{down_after_ms} loses its link: what
        waited for it is dropped, not kept; it gets a snapshot when it runs
        again.
        """
        cluster = self.cluster
        a = cluster.client(0)
        cluster.stall(2)
        feed = cluster.feed(0, 2)
        for port in range(1000, 1400):
            a.register(ORDERS, "10.1.0.1", port)
        self.assertTrue(feed.paused)
        cluster.advance(0.8)
        self.assertIsNone(feed.link)
        self.assertEqual(feed.dirty, {})
        self.assertEqual(len(cluster.hosts(1, ORDERS)), 400)
        cluster.unstall(2)
        cluster.advance(4)
        self.assertConverged()
        self.assertEqual(len(cluster.hosts(2, ORDERS)), 400)


class LinkLogTests(ClusterTestCase):
    """
    A node says when its link to a member goes down (why, once, not at
    each reconnect attempt) and when it comes back.
    """

    size = 2

    def lines(self, logged, state):
        member = peerAddress(1)
        return [formatEvent(e) for e in logged
                if e.get("log_namespace") == "distro.cluster.service.Cluster"
                and formatEvent(e).startswith(f"link to member {member} {state}")]

    def test_downOnceUpOnce(self):
        """
        A member crashed: one line saying the link is down and why, however
        many attempts fail; back: one line saying it is up.
        """
        cluster = self.cluster
        with capturedLogs() as logged:
            cluster.crash(1)
            for _ in range(20):
                cluster.advance(0.5)
            [down] = self.lines(logged, "down")
            self.assertIn("down: ", down)
            self.assertEqual(self.lines(logged, "up"), [])
            cluster.restart(1)
            cluster.advance(4)
            self.assertEqual(len(self.lines(logged, "up")), 1)
            self.assertEqual(len(self.lines(logged, "down")), 1)

    def test_handshakesFailingOnce(self):
        """
        A member that takes connections but answers nothing (stopped): one
        line, however many of our connections end before their handshake.
        """
        cluster = self.cluster
        with capturedLogs() as logged:
            cluster.stall(1)
            for _ in range(120):
                cluster.advance(0.5)
            ended = [formatEvent(e) for e in logged if "ended before its handshake" in formatEvent(e)]
            [down] = self.lines(logged, "down")
        self.assertEqual(ended, [down] if "ended before its handshake" in down else [])


class MembershipTests(ClusterTestCase):
    def states(self, client):
        return {m["node"]: m["state"] for m in client.members()}

    def test_states(self):
        """
        A member that goes silent is C{UP}, then C{SUSPICIOUS} after
        C{peer_timeout_ms}, then C{DOWN} after C{down_after_ms}, and C{UP}
        again when heard from; the C{members} op shows it.
        """
        cluster = self.cluster
        observer = cluster.client(0)
        self.assertEqual(self.states(observer), {"n0": "UP", "n1": "UP", "n2": "UP"})
        members = observer.members()
        self.assertEqual(
            sorted((m["node"], m["address"], m["self"]) for m in members),
            [("n0", "127.0.0.1:8101", True), ("n1", "127.0.0.1:8102", False),
             ("n2", "127.0.0.1:8103", False)],
        )
        cluster.crash(2, silent=True)
        cluster.advance(0.15)
        self.assertEqual(self.states(observer)["n2"], "UP")
        cluster.advance(0.25)
        self.assertEqual(self.states(observer)["n2"], "SUSPICIOUS")
        cluster.advance(0.35)
        self.assertEqual(self.states(observer), {"n0": "UP", "n1": "UP", "n2": "DOWN"})
        cluster.advance(10)
        self.assertEqual(self.states(observer)["n2"], "DOWN")  # never dropped
        cluster.restart(2)
        cluster.advance(4)
        self.assertEqual(self.states(observer), {"n0": "UP", "n1": "UP", "n2": "UP"})

    def test_refusedIsNotUp(self):
        """
        A member that refuses this node (here: n2, with another cluster
        secret) is never shown C{UP} for sending its challenge or its
        refusal; nothing either side sends is applied by the other.
        """
        cluster = FakeCluster(3)
        self.addCleanup(cluster.close)
        cluster.slot(2).secret = b"another secret"
        cluster.start()
        cluster.client(0).register(ORDERS, "10.1.0.1")
        outsider = cluster.client(2)
        outsider.register(ORDERS, "10.1.0.2")
        for _ in range(20):
            cluster.advance(0.25)
            states = self.states(cluster.client(0))
            # n2 never proved the secret: n0 does not even take its word
            # for its node id, and lists it under its address.
            (n2,) = set(states) - {"n0", "n1"}
            self.assertNotEqual(n2, "n2")
            self.assertNotEqual(states[n2], "UP")
            outside = self.states(outsider)
            self.assertEqual(outside["n2"], "UP")
            self.assertEqual(set(outside.values()) - {"SUSPICIOUS", "DOWN"}, {"UP"})
        self.assertEqual(states, {"n0": "UP", "n1": "UP", n2: "DOWN"})
        self.assertEqual(sorted(self.states(outsider).values()), ["DOWN", "DOWN", "UP"])
        self.assertEqual(cluster.hosts(0, ORDERS), [IID])
        self.assertEqual(cluster.hosts(2, ORDERS), ["10.1.0.2#8080#DEFAULT"])
        self.assertTrue(cluster.node(2).ready)  # nobody to wait for

    def test_orphanGrace(self):
        """
        The clients of a C{DOWN} member are kept for C{orphan_grace_ms},
        then removed, except one that resumed on another node meanwhile.
        """
        cluster = self.cluster
        kept = cluster.client(2)
        kept.register(ORDERS, "10.1.0.1")
        lost = cluster.client(2)
        lost.register(ORDERS, "10.1.0.2")
        cluster.crash(2)
        down = None
        while down is None:
            cluster.advance(0.01)
            if cluster.node(0).cluster.membership.state("n2") == "DOWN":
                down = cluster.clock.seconds()
        resumed = cluster.client(0, resume=(kept.clientId, kept.resumeToken))
        self.assertTrue(resumed.helloReply["resumed"])
        resumed.redo({ORDERS: [instance("10.1.0.1")]})
        both = [IID, "10.1.0.2#8080#DEFAULT"]
        cluster.advance(down + 1.9 - cluster.clock.seconds())
        self.assertConverged(expected=both)
        cluster.advance(0.2)
        self.assertConverged(expected=[IID])
        for i in (0, 1):
            self.assertIsNone(cluster.held(i, lost.clientId))
        self.assertTrue(cluster.held(0, kept.clientId).native)
        self.assertEqual(cluster.held(1, kept.clientId).owner, "n0")


class ReadinessTests(ClusterTestCase):
    """
    5.5: a starting node serves no reads until loaded.
    """

    def test_notReadyUntilEverySnapshotEnded(self):
        """
        A restarted node answers C{NOT_READY} to C{query} and C{subscribe},
        and accepts writes, until every reachable member's snapshot ended.
        """
        cluster = self.cluster
        cluster.client(0).register(ORDERS, "10.1.0.1")
        cluster.client(1).register(ORDERS, "10.1.0.2")
        release = cluster.intercept(
            lambda s, d, m: HOLD if (s, d) == (0, 2) and m["op"] == "snapshot_end" else None
        )
        cluster.restart(2)
        cluster.advance(0.4)  # held longer than down_after_ms, the link would drop
        c = cluster.client(2)
        self.assertIs(c.helloReply["ready"], False)
        self.assertEqual(c.query(ORDERS)["code"], NOT_READY)
        self.assertEqual(c.request("subscribe", service={"name": ORDERS})["code"], NOT_READY)
        c.register(ORDERS, "10.1.0.3")
        self.assertFalse(cluster.node(2).ready)
        release()
        self.assertTrue(cluster.node(2).ready)
        self.assertEqual(
            [h["instance_id"] for h in c.query(ORDERS)["service_info"]["hosts"]],
            ["10.1.0.1#8080#DEFAULT", "10.1.0.2#8080#DEFAULT", "10.1.0.3#8080#DEFAULT"],
        )
        self.assertConverged()

    def test_loadTimeout(self):
        """
        A member that never authenticates a link to the starting node (here
        its C{peer_hello}s are lost) is waited for at most
        C{load_timeout_ms}.
        """
        cluster = self.cluster
        cluster.intercept(
            lambda s, d, m: DROP if (s, d) == (0, 2) and m["op"] == "peer_hello" else None
        )
        start = cluster.clock.seconds()
        cluster.restart(2)
        cluster.advance(1.9)
        self.assertFalse(cluster.node(2).ready)
        cluster.advance(0.2)
        self.assertTrue(cluster.node(2).ready)
        self.assertAlmostEqual(cluster.clock.seconds() - start, 2.1, places=5)

    def test_connectedMemberWaitedFor(self):
        """
        A member that connected is waited for past C{load_timeout_ms} until
        its snapshot ends (here its C{snapshot_end}s are lost): serving
        reads meanwhile would answer with its data missing. When it goes
        C{DOWN} it is waited for no longer.
        """
        cluster = self.cluster
        cluster.client(0).register(ORDERS, "10.1.0.1")
        cluster.intercept(
            lambda s, d, m: DROP if (s, d) == (0, 2) and m["op"] == "snapshot_end" else None
        )
        cluster.restart(2)
        cluster.advance(5)
        self.assertFalse(cluster.node(2).ready)
        cluster.crash(0)
        cluster.advance(1)
        self.assertTrue(cluster.node(2).ready)

    def test_unreachableNotWaitedFor(self):
        """
        A member that cannot be reached is not waited for.
        """
        cluster = FakeCluster(3)
        self.addCleanup(cluster.close)
        cluster.start(0)
        self.assertTrue(cluster.node(0).ready)
        self.assertEqual(cluster.clock.seconds(), 0)


    def test_connectedMemberNotWaitedForOnceItsLinkIsGone(self):
        """
        Past C{load_timeout_ms}, a member that connected is waited for only
        while its link to the starting node is up: one whose frames stop
        getting through (here: after its C{snapshot_begin}), though it
        answers the node's pings and so is never C{DOWN}, is given up when
        that link drops.
        """
        cluster = self.cluster
        cluster.client(0).register(ORDERS, "10.1.0.1")
        begun = []

        def oneWay(s, d, m):
            if (s, d) != (0, 2) or m["op"] in ("challenge", "peer_welcome", "pong"):
                return None  # n2's own link to n0 goes on working
            if m["op"] == "snapshot_begin" and not begun:
                begun.append(m)
                return None
            return DROP if begun else None

        cluster.intercept(oneWay)
        cluster.restart(2, settle=False)
        cluster.advance(1.9)
        self.assertTrue(begun)
        self.assertFalse(cluster.node(2).ready)
        cluster.advance(2)
        self.assertEqual(cluster.node(2).cluster.membership.state("n0"), "UP")
        self.assertTrue(cluster.node(2).ready)


class MoveTests(ClusterTestCase):
    """
    5.4 and 4.1: resuming at another node moves the client there.
    """

    def test_resumeElsewhere(self):
        """
        A client that resumes at n1 keeps its id and instances; n1 owns it
        at the next epoch; n0, still alive, gives it up without removing
        its instances and closes the old session; a subscriber on n2 never
        sees the instances go.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1")
        a.register(ORDERS, "10.1.0.2")
        watcher = cluster.client(2)
        watcher.subscribe(ORDERS)
        both = [IID, "10.1.0.2#8080#DEFAULT"]
        moved = cluster.client(1, resume=(a.clientId, a.resumeToken))
        self.assertTrue(moved.helloReply["resumed"])
        self.assertEqual(moved.helloReply["epoch"], 2)
        self.assertEqual(moved.clientId, a.clientId)
        moved.redo({ORDERS: [instance("10.1.0.1"), instance("10.1.0.2")]})
        self.assertTrue(a.lost)
        native = cluster.held(1, a.clientId)
        self.assertTrue(native.native)
        self.assertEqual((native.owner, native.epoch), ("n1", 2))
        for i in (0, 2):
            held = cluster.held(i, a.clientId)
            self.assertFalse(held.native)
            self.assertEqual((held.owner, held.epoch), ("n1", 2))
        self.assertConverged(expected=both)
        cluster.advance(3)  # disconnect grace, digests: nothing removes it
        self.assertConverged(expected=both)
        self.assertEqual(watcher.takePushes(), [])
        moved.deregister(ORDERS, "10.1.0.2")
        self.assertConverged(expected=[IID])
        moved.bye()
        self.assertConverged(expected=[])

    def test_resumeAfterDrop(self):
        """
        A client whose connection broke resumes elsewhere within
        C{disconnect_grace_ms}: its old node's expiry is cancelled, and no
        subscriber, on the old node or a third one, sees its instances go.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        watchers = [cluster.client(0), cluster.client(2)]
        for watcher in watchers:
            watcher.subscribe(ORDERS)
        a.drop()
        cluster.advance(0.3)
        moved = cluster.client(1, resume=(a.clientId, a.resumeToken))
        self.assertTrue(moved.helloReply["resumed"])
        moved.redo({ORDERS: [instance()]})
        for _ in range(30):  # past the old expiry and a few digests
            cluster.advance(0.1)
            self.assertConverged(expected=[IID])
        for watcher in watchers:
            self.assertEqual(watcher.takePushes(), [])
        self.assertFalse(cluster.held(0, a.clientId).native)

    def test_wrongTokenDoesNotMove(self):
        """
        A resume with the wrong token gets a new client; nothing moves.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        other = cluster.client(1, resume=(a.clientId, "not-the-token"))
        self.assertFalse(other.helloReply["resumed"])
        self.assertNotEqual(other.clientId, a.clientId)
        self.assertTrue(a.connected)
        self.assertEqual(cluster.held(1, a.clientId).owner, "n0")

    def test_restartedNodeCatchesUp(self):
        """
        A node that crashed and restarted (a new boot) gets everything
        from the others; its old clients are orphans: the others keep them
        for C{disconnect_grace_ms} (time for their sessions to resume
        elsewhere), then drop those not resumed; its new clients have new
        ids.
        """
        cluster = self.cluster
        other = cluster.client(0)
        other.register(ORDERS, "10.1.0.1")
        old = cluster.client(2)
        old.register(ORDERS, "10.1.0.2")
        resumed = cluster.client(2)
        resumed.register(ORDERS, "10.1.0.3")
        cluster.crash(2)
        again = cluster.client(1, resume=(resumed.clientId, resumed.resumeToken))
        self.assertTrue(again.helloReply["resumed"])
        again.redo({ORDERS: [instance("10.1.0.3")]})
        cluster.restart(2)
        cluster.advance(0.3)
        expected = [IID, "10.1.0.3#8080#DEFAULT"]
        self.assertConverged(expected=expected + ["10.1.0.2#8080#DEFAULT"], nodes=[0, 1])
        self.assertConverged(expected=expected, nodes=[2])
        cluster.advance(1.0)  # disconnect_grace_ms, and a sync round
        self.assertConverged(expected=expected)
        for i in range(3):
            self.assertIsNone(cluster.held(i, old.clientId))
        self.assertTrue(cluster.node(2).ready)
        fresh = cluster.client(2)
        self.assertNotEqual(fresh.clientId.split("#")[1], old.clientId.split("#")[1])
        fresh.register(ORDERS, "10.1.0.4")
        self.assertConverged(expected=expected + ["10.1.0.4#8080#DEFAULT"])


    def test_restartedNodeNotKeptWaiting(self):
        """
        A member that restarts and dials in while this node's attempt to it
        (started while it was down) is still pending gets this node's
        snapshot as soon as that attempt fails, not a backoff delay later.
        """
        cluster = self.cluster
        cluster.refusalDelay = 0.3
        cluster.client(0).register(ORDERS, "10.1.0.1")
        cluster.crash(2)
        cluster.advance(10)  # n0's reconnect backoff is at its longest
        attempts = len(cluster.connects)
        for _ in range(400):  # the longest backoff, 3.2 s, in steps
            if any(c[:2] == (0, 2) for c in cluster.connects[attempts:]):
                break
            cluster.advance(0.01)
        else:
            self.fail("n0 did not try n2 again")
        cluster.advance(0.05)
        cluster.restart(2, settle=False)
        cluster.advance(0.3)
        self.assertEqual(cluster.hosts(2, ORDERS), [IID])
        self.assertTrue(cluster.node(2).ready)


class LargeClientTests(ClusterTestCase):
    """
    5.2 rule 7: a client larger than C{peer_max_frame} (within every client
    limit) is replicated in pieces, never as one frame the receiver refuses.
    """

    overrides = {"peer_max_frame": 16384, "max_frame": 65536, "max_metadata_bytes": 1024}

    def large(self, count=60, first=0):
        return [
            instance(f"10.2.{(first + n) // 250}.{(first + n) % 250 + 1}", 8080,
                     metadata={"blob": "x" * 900})
            for n in range(count)
        ]

    def ids(self, instances):
        return sorted(f"{i['ip']}#8080#DEFAULT" for i in instances)

    def test_batchTooLargeForOneFrame(self):
        """
        A batch whose delta would exceed C{peer_max_frame} reaches every
        node whole, and the links stay up.
        """
        cluster = self.cluster
        instances = self.large()
        cluster.client(0).batch(ORDERS, instances)
        cluster.advance(0.1)
        self.assertConverged(expected=self.ids(instances))
        upBefore = len(cluster.connects)
        cluster.advance(3)
        self.assertEqual(len(cluster.connects), upBefore)  # no link broke

    def test_grownClientInSnapshot(self):
        """
        A client grown past C{peer_max_frame} one instance at a time is sent
        in pieces in the snapshot of a restarted node, which is ready only
        once it has all of it.
        """
        cluster = self.cluster
        publisher = cluster.client(0)
        instances = self.large()
        for one in instances:
            publisher.register(ORDERS, one["ip"], 8080, metadata=one["metadata"])
        cluster.advance(0.1)
        self.assertConverged(expected=self.ids(instances))
        cluster.restart(2, settle=False)
        for _ in range(100):
            cluster.advance(0.01)
            if cluster.node(2).ready:
                break
        self.assertTrue(cluster.node(2).ready)
        self.assertConverged(expected=self.ids(instances))

    def test_piecesOnTheWire(self):
        """
        Every peer frame stays within C{peer_max_frame}; the large client
        went as C{more} pieces closed by one without.
        """
        cluster = self.cluster
        frames = cluster.record()
        cluster.client(0).batch(ORDERS, self.large())
        cluster.advance(0.1)
        states = [m for s, d, m in frames if (s, d) == (0, 1) and m["op"] == "client_state"]
        self.assertGreater(len(states), 2)
        self.assertEqual([m.get("more", False) for m in states],
                         [True] * (len(states) - 1) + [False])
        sizes = [len(wire.encode(m)) for s, d, m in frames]
        self.assertLessEqual(max(sizes), 16384)


class ReloadTests(ClusterTestCase):
    """
    5.3: the member set changes only with the file (SIGHUP).
    """

    size = 2

    def test_addMember(self):
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS)
        new = cluster.addNode()
        cluster.start(new.index)
        cluster.advance(1)
        # Not a member of n0's and n1's cluster yet: refused.
        self.assertEqual(cluster.hosts(2, ORDERS), [])
        everyone = [peerAddress(i) for i in range(3)]
        for i in (0, 1):
            cluster.setMembers(i, everyone)
            cluster.reload(i)
        cluster.advance(4)
        self.assertConverged(expected=[IID])
        states = {m["node"]: m["state"] for m in a.members()}
        self.assertEqual(states, {"n0": "UP", "n1": "UP", "n2": "UP"})
        self.assertEqual(len(cluster.links(0, 2)), 2)
        cluster.client(2).register(ORDERS, "10.1.0.2")
        self.assertConverged(expected=[IID, "10.1.0.2#8080#DEFAULT"])

    def test_removeMember(self):
        """
        A member removed from the file loses its links both ways (nothing
        more it sends is applied) and, after C{orphan_grace_ms}, its
        clients; n0 connects to it no more. n1, whose file still lists n0,
        is refused, so it finds n0 C{DOWN} and drops n0's clients too.
        """
        cluster = self.cluster
        b = cluster.client(1)
        b.register(ORDERS, "10.1.0.2")
        a = cluster.client(0)
        a.register(ORDERS)
        cluster.setMembers(0, [peerAddress(0)])
        cluster.reload(0)
        self.assertEqual([m["node"] for m in a.members()], ["n0"])
        self.assertEqual(cluster.links(0, 1), [])
        cluster.advance(1.9)
        self.assertEqual(cluster.hosts(0, ORDERS), [IID, "10.1.0.2#8080#DEFAULT"])
        attempts = len(cluster.connects)
        cluster.advance(5)
        self.assertEqual([c for c in cluster.connects[attempts:] if c[0] == 0], [])
        self.assertEqual(cluster.hosts(0, ORDERS), [IID])
        b.register(ORDERS, "10.1.0.3")
        cluster.advance(2)  # digests: nothing comes back
        self.assertEqual(cluster.hosts(0, ORDERS), [IID])
        self.assertIsNone(cluster.held(0, b.clientId))
        states = {m["node"]: m["state"] for m in b.members()}
        self.assertEqual(states, {"n0": "DOWN", "n1": "UP"})
        self.assertEqual(cluster.hosts(1, ORDERS), ["10.1.0.2#8080#DEFAULT", "10.1.0.3#8080#DEFAULT"])

    def test_badFileChangesNothing(self):
        cluster = self.cluster
        cluster.setMembers(0, OSError("cannot read cluster.conf"))
        cluster.reload(0)
        self.assertEqual(len(cluster.slot(0).cluster.membership.members), 2)
        self.assertEqual(len(cluster.links(0, 1)), 2)


class ClusterSettingsTests(SynchronousTestCase):
    """
    L{ClusterSettings}: the cluster side's slice of the node configuration.
    """

    def test_fromConfig(self):
        """
        Each setting is the configuration key of its name, as configured.
        """
        values = {"peer_timeout_ms": 700, "down_after_ms": 1400, "orphan_grace_ms": 9000}
        settings = ClusterSettings.fromConfig(config.build(overrides=values))
        self.assertEqual(
            (settings.peer_timeout_ms, settings.down_after_ms, settings.orphan_grace_ms),
            (700, 1400, 9000),
        )
        defaults = config.Config()
        for name, value in vars(settings).items():
            self.assertIn(name, config.KEYS)
            if name not in values:
                self.assertEqual(value, getattr(defaults, name))

    def test_frozen(self):
        """
        The settings do not change once made.
        """
        settings = ClusterSettings.fromConfig(config.Config())
        with self.assertRaises(AttributeError):
            settings.down_after_ms = 1


class SeamTests(ClusterTestCase):
    """
    The cluster side and its node meet at two written interfaces.
    """

    def test_interfaces(self):
        slot = self.cluster.slot(0)
        self.assertTrue(verifyObject(IClusterHost, slot.node))
        self.assertTrue(verifyObject(ICluster, slot.cluster))

    def test_clusterAsksOnlyIClusterHost(self):
        """
        The cluster side asks its node only what L{IClusterHost} names, and
        no code but the node's own assigns the node's attributes.
        """
        root = os.path.dirname(distro.__file__)
        allowed = set(IClusterHost.names(all=True))
        directory = os.path.join(root, "cluster")
        for name in sorted(os.listdir(directory)):
            if name.endswith(".py"):
                with open(os.path.join(directory, name)) as f:
                    used = set(re.findall(r"\bnode\.([a-z_][A-Za-z_]*)", f.read()))
                self.assertEqual(used - allowed, set(), name)
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                if not name.endswith(".py") or path == os.path.join(root, "node.py"):
                    continue
                with open(path) as f:
                    assigned = re.findall(r"\bnode\.([A-Za-z_]+)\s*=[^=]", f.read())
                self.assertEqual(assigned, [], path)

    def test_joinedClusterOfOneReady(self):
        """
        A cluster of one does not make its node wait for members.
        """
        cluster = FakeCluster(1)
        self.addCleanup(cluster.close)
        cluster.start()
        self.addCleanup(cluster.stop)
        self.assertTrue(cluster.node(0).ready)
        self.assertIs(cluster.node(0).cluster, cluster.slot(0).cluster)
        self.assertEqual([m["node"] for m in cluster.node(0).members()], ["n0"])
