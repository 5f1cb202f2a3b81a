"""
Failover nobody sees: each way a move of a client between nodes used to make
its instances vanish for a subscriber, replayed deterministically on the
in-process cluster (PROTOCOL.md 4.1, 5.2 to 5.4 and 6).

Each test watches subscribers and fails on the first push that lacks an
instance whose client still holds it.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro.wire import NOT_READY
from tests._cluster import HOLD, FakeCluster
from tests._factories import instance

ORDERS = "orders"
ONE = "10.1.0.1#8080#DEFAULT"
TWO = "10.1.0.2#8080#DEFAULT"
THREE = "10.1.0.3#8080#DEFAULT"


class FailoverTestCase(SynchronousTestCase):
    overrides = {}

    def setUp(self):
        self.cluster = FakeCluster(3, **self.overrides)
        self.addCleanup(self.cluster.close)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def watch(self, index):
        """
        A subscriber to C{orders} on node C{index}.
        """
        watcher = self.cluster.client(index)
        watcher.subscribe(ORDERS)
        return watcher

    def assertNeverLacked(self, watcher, instanceIds):
        """
        No push to C{watcher} so far lacked any of C{instanceIds}.
        """
        for info in watcher.takePushes():
            shown = {h["instance_id"] for h in info["hosts"]}
            missing = set(instanceIds) - shown
            self.assertFalse(missing, f"a push lacked {sorted(missing)}: {sorted(shown)}")

    def assertEverywhere(self, instanceIds):
        for i in self.cluster.live():
            self.assertEqual(self.cluster.hosts(i, ORDERS), sorted(instanceIds), f"n{i}")
        checksums = {self.cluster.view(i, ORDERS).checksum for i in self.cluster.live()}
        self.assertEqual(len(checksums), 1)


class StaleTakeoverTests(FailoverTestCase):
    """
    Mechanism 1: a client that resumes at a node whose copy of it lags must
    not make anyone forget its newer instances.
    """

    # Links that take a second each way need patient watchdogs.
    overrides = {"disconnect_grace_ms": 5000, "peer_timeout_ms": 2000, "down_after_ms": 5000}

    def test_takeoverAtLaggingNodeIsExact(self):
        """
        n2 hears everything a second late; a client registers a second
        instance at n0 and at once moves to n2, which still holds only its
        first. The new owner's first record is what the client re-sent:
        nobody is ever shown the client without its second instance.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1")
        watchers = [self.watch(0), self.watch(1)]
        cluster.delay(0, 2, 1.0)
        cluster.delay(1, 2, 1.0)
        a.register(ORDERS, "10.1.0.2")
        cluster.advance(0.1)
        self.assertEqual(cluster.hosts(2, ORDERS), [ONE])
        a.drop()
        moved = cluster.client(2, resume=a.identity)
        self.assertTrue(moved.helloReply["resumed"])
        moved.redo({ORDERS: [instance("10.1.0.1"), instance("10.1.0.2")]})
        cluster.advance(3)
        for watcher in watchers:
            self.assertNeverLacked(watcher, [ONE, TWO])
        self.assertEverywhere([ONE, TWO])
        for i in range(3):
            self.assertEqual(cluster.held(i, a.clientId).owner, "n2")


class ReturnTests(FailoverTestCase):
    """
    Mechanism 2: a client that comes back to a node that still holds it
    (in its disconnect grace) is taken over there at a new epoch, like
    anywhere else.
    """

    def test_returnToNodeInGraceRaisesEpoch(self):
        """
        A client goes n0 -> n1 -> n0 while n0 and n1 cannot talk. Back at
        n0 it is owned at an epoch above n1's, so n2 takes n0's writes,
        n1's expiry of its old session removes nothing, and after the heal
        the live session at n0 keeps the client everywhere.
        """
        cluster = self.cluster
        x = cluster.client(0)
        x.register(ORDERS, "10.1.0.1")
        watcher = self.watch(2)
        cluster.cut(0, 1)
        x.drop()
        y = cluster.client(1, resume=x.identity)
        self.assertTrue(y.helloReply["resumed"])
        y.redo({ORDERS: [instance("10.1.0.1")]})
        y.register(ORDERS, "10.1.0.2")
        y.drop()
        back = cluster.client(0, resume=y.identity)
        self.assertTrue(back.helloReply["resumed"])
        back.redo({ORDERS: [instance("10.1.0.1"), instance("10.1.0.2")]})
        back.register(ORDERS, "10.1.0.3")
        self.assertGreater(cluster.held(0, x.clientId).epoch, cluster.held(1, x.clientId).epoch)
        self.assertEqual(cluster.hosts(2, ORDERS), [ONE, TWO, THREE])
        cluster.advance(2)
        cluster.restore(0, 1)
        cluster.advance(5)
        self.assertTrue(back.connected)
        self.assertNeverLacked(watcher, [ONE, TWO])
        self.assertEverywhere([ONE, TWO, THREE])
        for i in range(3):
            self.assertEqual(cluster.held(i, x.clientId).owner, "n0")


class SnapshotOrderTests(FailoverTestCase):
    """
    Mechanism 3: a snapshot from a client's old owner, arriving before the
    new owner's, does not drop the client.
    """

    def test_snapshotEndKeepsMovedClient(self):
        """
        n2 is cut off while a client moves from n0 to n1. When the links
        come back, n0's snapshot (without the client) reaches n2 before
        n1's (with it): n2's subscriber never loses the client.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1")
        watcher = self.watch(2)
        cluster.isolate(2)
        a.drop()
        moved = cluster.client(1, resume=a.identity)
        moved.redo({ORDERS: [instance("10.1.0.1")]})
        oldOwnerDone = []

        def decide(src, dst, message):
            if (src, dst) == (0, 2) and message.get("op") == "snapshot_end":
                oldOwnerDone.append(message)
            if (src, dst) == (1, 2) and not oldOwnerDone:
                return HOLD
            return None

        release = cluster.intercept(decide)
        cluster.restore(2, 0)
        cluster.restore(2, 1)
        cluster.advance(5)
        release()
        cluster.advance(2)
        self.assertTrue(oldOwnerDone)
        self.assertNeverLacked(watcher, [ONE])
        self.assertEverywhere([ONE])


class EpochOrderTests(FailoverTestCase):
    """
    Mechanism 4: takeovers on both sides of a partition are ordered by the
    client's own history, not by node ids.
    """

    overrides = {"disconnect_grace_ms": 5000}

    def test_laterSessionWinsWhateverTheNodeIds(self):
        """
        A client moves n1 -> n2 (cut off) -> n0. n2's takeover is older,
        though its id sorts after n0's: after the heal n0 keeps the live
        session and owns the client everywhere.
        """
        cluster = self.cluster
        a = cluster.client(1)
        a.register(ORDERS, "10.1.0.1")
        watcher = self.watch(0)
        cluster.isolate(2)
        a.drop()
        stale = cluster.client(2, resume=a.identity)
        stale.redo({ORDERS: [instance("10.1.0.1")]})
        stale.drop()
        live = cluster.client(0, resume=stale.identity)
        self.assertTrue(live.helloReply["resumed"])
        live.redo({ORDERS: [instance("10.1.0.1")]})
        live.register(ORDERS, "10.1.0.2")
        cluster.restore(2, 0)
        cluster.restore(2, 1)
        cluster.advance(5)
        self.assertTrue(live.connected)
        self.assertNeverLacked(watcher, [ONE, TWO])
        self.assertEverywhere([ONE, TWO])
        for i in range(3):
            self.assertEqual(cluster.held(i, a.clientId).owner, "n0")


class ResumeInProgressTests(FailoverTestCase):
    """
    A client whose redo is still going on at its new node when its old
    node's disconnect grace ends is not removed: the new node's answer to
    the sync round says it is restoring it.
    """

    def test_slowRedo(self):
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1")
        watchers = [self.watch(0), self.watch(2)]
        a.drop()
        moved = cluster.client(1, resume=a.identity)
        self.assertEqual(cluster.node(1).restoring(), [a.clientId])
        cluster.advance(0.8)  # past disconnect_grace_ms at n0
        self.assertTrue(cluster.held(0, a.clientId).native)
        moved.redo({ORDERS: [instance("10.1.0.1")]})
        self.assertEqual(cluster.node(1).restoring(), [])
        cluster.advance(2)
        for watcher in watchers:
            self.assertNeverLacked(watcher, [ONE])
        self.assertEverywhere([ONE])
        self.assertEqual(cluster.held(0, a.clientId).owner, "n1")


class RestartTests(FailoverTestCase):
    """
    A node that crashes and restarts before its clients resumed elsewhere:
    its new life's snapshot does not make the others drop them at once; they
    have C{disconnect_grace_ms}, like any lost session, not the (much
    longer) C{orphan_grace_ms} of a member that may still be alive.
    """

    overrides = {"disconnect_grace_ms": 2000, "orphan_grace_ms": 10_000}

    def test_restartBeforeResume(self):
        """
        n2 crashes and is back at once; a client of its previous life takes
        a while to reach n0. Meanwhile nobody drops its instances; once
        resumed, it is n0's everywhere.
        """
        cluster = self.cluster
        a = cluster.client(2)
        a.register(ORDERS, "10.1.0.1")
        watchers = [self.watch(0), self.watch(1)]
        cluster.crash(2)
        cluster.restart(2)
        cluster.advance(1.5)  # snapshots of the new life, digests, sync rounds
        moved = cluster.client(0, resume=a.identity)
        self.assertTrue(moved.helloReply["resumed"])
        moved.redo({ORDERS: [instance("10.1.0.1")]})
        cluster.advance(3)  # past disconnect_grace_ms
        for watcher in watchers:
            self.assertNeverLacked(watcher, [ONE])
        self.assertEverywhere([ONE])

    def test_orphansOfPreviousLifeGo(self):
        """
        The clients of a restarted node's previous life that never resume
        are dropped after C{disconnect_grace_ms}, long before
        C{orphan_grace_ms}.
        """
        cluster = self.cluster
        a = cluster.client(2)
        a.register(ORDERS, "10.1.0.1")
        cluster.crash(2)
        cluster.restart(2)
        cluster.advance(1.5)
        self.assertEqual(cluster.hosts(0, ORDERS), [ONE])
        cluster.advance(1.0)  # past disconnect_grace_ms
        self.assertEverywhere([])


class WakeTests(FailoverTestCase):
    """
    Mechanism 5: a node woken from a stop (SIGSTOP, a long pause) reads what
    arrived meanwhile before it decides that a client expired or a link
    went silent.
    """

    overrides = {"disconnect_grace_ms": 300}

    def test_expiryAfterWakeReadsTakeoverFirst(self):
        """
        A client drops its connection to n0, n0 stops, the client resumes
        at n1, and n1's takeover record waits in n0's socket while n0's
        disconnect grace passes. Woken, n0 reads the record first: its
        subscriber never sees the client go.
        """
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1")
        watchers = [self.watch(0), self.watch(2)]
        a.drop()
        cluster.stall(0)
        moved = cluster.client(1, resume=a.identity)
        moved.redo({ORDERS: [instance("10.1.0.1")]})
        cluster.advance(0.5)
        cluster.unstall(0)
        cluster.advance(2)
        for watcher in watchers:
            self.assertNeverLacked(watcher, [ONE])
        self.assertEverywhere([ONE])

    def test_silenceAfterWakeReadsFirst(self):
        """
        n0 stops for longer than its C{down_after_ms} while the others,
        more patient, keep pinging it. Woken, n0 reads those pings before it
        judges its links: it drops none of them.
        """
        cluster = self.cluster
        for i in (1, 2):
            cluster.slots[i].overrides = {"down_after_ms": 10_000}
        cluster.restart(1)
        cluster.restart(2)
        cluster.advance(4)
        connects = len(cluster.connects)
        cluster.stall(0)
        cluster.advance(2)
        cluster.unstall(0)
        cluster.advance(1)
        self.assertEqual(cluster.connects[connects:], [])


class LoadingTests(FailoverTestCase):
    """
    A node still loading after a restart cannot tell whether the cluster
    knows a client: it sends a resuming client elsewhere instead of giving
    it a new identity.
    """

    def test_resumeWhileLoadingSentElsewhere(self):
        cluster = self.cluster
        a = cluster.client(0)
        a.register(ORDERS, "10.1.0.1")
        remove = cluster.intercept(lambda src, dst, m: HOLD if dst == 2 else None)
        self.addCleanup(remove)
        cluster.restart(2)
        self.assertFalse(cluster.node(2).ready)
        a.drop()
        refused = cluster.connect(2)
        reply = refused.hello(a.identity)
        self.assertEqual((reply["op"], reply["code"]), ("error", NOT_READY))
        self.assertTrue(refused.lost)
        moved = cluster.client(1, resume=a.identity)
        self.assertTrue(moved.helloReply["resumed"])
        self.assertEqual(moved.clientId, a.clientId)
