"""
Tests for L{distro.cluster.senders}: what a receiving node keeps about each
sender, one object at a time, without links or nodes.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from distro.cluster.senders import Orphans, OwnerIndex, Pieces, Rejected, Snapshots, Suspects
from tests.test_clients import Barrier


class _Synced:
    """
    A synced client as L{OwnerIndex} sees it.
    """

    def __init__(self, clientId, owner, revision):
        self.clientId = clientId
        self.owner = owner
        self.revision = revision


class OwnerIndexTests(SynchronousTestCase):
    """
    L{OwnerIndex}: synced clients by the member owning them.
    """

    def setUp(self):
        self.owners = OwnerIndex()

    def test_index(self):
        """
        A client is held under its owner, at its revision, in the owner's
        digest index.
        """
        self.owners.index(_Synced("c1", "node-b", 3))
        self.assertEqual(self.owners.senderOf("c1"), "node-b")
        self.assertEqual(set(self.owners.clientsOf("node-b")), {"c1"})
        self.assertEqual(self.owners.digestOf("node-b").revisions(), {"c1": 3})
        self.owners.index(_Synced("c1", "node-b", 4))
        self.assertEqual(self.owners.digestOf("node-b").revisions(), {"c1": 4})

    def test_ownerChanges(self):
        """
        A client taken over by another member moves to it; a member owning
        nothing any more leaves nothing behind.
        """
        self.owners.index(_Synced("c1", "node-b", 3))
        self.owners.index(_Synced("c1", "node-c", 1))
        self.assertEqual(self.owners.senderOf("c1"), "node-c")
        self.assertEqual(self.owners.clientsOf("node-b"), ())
        self.assertIsNone(self.owners.digestOf("node-b"))
        self.assertEqual(self.owners.bySender, {"node-c": {"c1"}})

    def test_unindex(self):
        """
        A client no longer held is forgotten; one never held changes
        nothing.
        """
        self.owners.index(_Synced("c1", "node-b", 3))
        self.owners.index(_Synced("c2", "node-b", 5))
        self.owners.unindex("c1")
        self.owners.unindex("unknown")
        self.assertIsNone(self.owners.senderOf("c1"))
        self.assertEqual(self.owners.digestOf("node-b").revisions(), {"c2": 5})
        self.owners.unindex("c2")
        self.assertEqual(self.owners.bySender, {})
        self.assertIsNone(self.owners.digestOf("node-b"))


class SnapshotsTests(SynchronousTestCase):
    """
    L{Snapshots}: what a sender's snapshot named, and whether it restarted.
    """

    def setUp(self):
        self.snapshots = Snapshots()

    def test_named(self):
        """
        A snapshot that ends says what it named; outside a snapshot, nothing
        is collected and nothing ends.
        """
        self.snapshots.name("node-b", "c0")
        self.assertIsNone(self.snapshots.end("node-b"))
        self.snapshots.begin("node-b", "boot1")
        self.snapshots.name("node-b", "c1")
        self.snapshots.name("node-c", "c2")
        self.assertEqual(self.snapshots.end("node-b"), ({"c1"}, False))
        self.assertIsNone(self.snapshots.end("node-b"))

    def test_restarted(self):
        """
        A snapshot of another life than the sender's last one follows a
        restart; the next one of the same life does not.
        """
        self.snapshots.begin("node-b", "boot1")
        self.assertEqual(self.snapshots.end("node-b"), (set(), False))
        self.snapshots.begin("node-b", "boot1")
        self.assertEqual(self.snapshots.end("node-b"), (set(), False))
        self.snapshots.begin("node-b", "boot2")
        self.assertEqual(self.snapshots.end("node-b"), (set(), True))
        self.snapshots.begin("node-b", "boot2")
        self.assertEqual(self.snapshots.end("node-b"), (set(), False))

    def test_abandonedKeepsRestart(self):
        """
        A snapshot abandoned (its link dropped) does not end; the restart it
        told is still told by the next snapshot's end, of the same life.
        """
        self.snapshots.begin("node-b", "boot1")
        self.snapshots.end("node-b")
        self.snapshots.begin("node-b", "boot2")
        self.snapshots.name("node-b", "c1")
        self.snapshots.abandon("node-b")
        self.assertIsNone(self.snapshots.end("node-b"))
        self.snapshots.begin("node-b", "boot2")
        self.assertEqual(self.snapshots.end("node-b"), (set(), True))


class SuspectsTests(SynchronousTestCase):
    """
    L{Suspects}: clients their sender stopped naming go after a sync round,
    unless named again.
    """

    def setUp(self):
        self.barrier = Barrier()
        self.dropped = []
        self.suspects = Suspects(self.barrier, lambda *args: self.dropped.append(args))

    def test_droppedAfterRound(self):
        """
        Suspects are handed over once a round is over, with the round's
        restoring ids and why they were suspected; not before.
        """
        self.suspects.add("node-b", ["c1", "c2"], "not in its digest")
        self.assertEqual(self.dropped, [])
        self.barrier.answer({"c2"})
        self.assertEqual(self.dropped, [("node-b", ["c1", "c2"], frozenset({"c2"}), "not in its digest")])

    def test_clearedBeforeRound(self):
        """
        A suspect its sender names again before the round is over is not
        handed over; if none is left, nothing is.
        """
        self.suspects.add("node-b", ["c1", "c2"], "not in its snapshot")
        self.suspects.clear("node-b", "c1")
        self.suspects.clear("node-c", "c2")  # another sender's: no effect
        self.barrier.answer()
        self.assertEqual(self.dropped, [("node-b", ["c2"], frozenset(), "not in its snapshot")])
        self.suspects.add("node-b", ["c3"], "presumed dead")
        self.suspects.clear("node-b", "c3")
        self.barrier.answer()
        self.assertEqual(len(self.dropped), 1)

    def test_suspectedOnce(self):
        """
        A client suspected again while it waits for a round asks for no
        other round; once handed over, it can be suspected anew.
        """
        self.suspects.add("node-b", ["c1"], "not in its digest")
        self.suspects.add("node-b", ["c1"], "not in its digest")
        self.assertEqual(len(self.barrier.waiting), 1)
        self.suspects.add("node-b", ["c1", "c2"], "presumed dead")
        self.assertEqual(len(self.barrier.waiting), 2)
        self.barrier.answer()
        self.assertEqual(
            self.dropped,
            [
                ("node-b", ["c1"], frozenset(), "not in its digest"),
                ("node-b", ["c2"], frozenset(), "presumed dead"),
            ],
        )
        self.suspects.add("node-b", ["c1"], "not in its digest")
        self.assertEqual(len(self.barrier.waiting), 1)

    def test_sendersApart(self):
        """
        The same id suspected of two senders is two suspects: clearing one
        leaves the other.
        """
        self.suspects.add("node-b", ["c1"], "not in its digest")
        self.suspects.add("node-c", ["c1"], "not in its digest")
        self.suspects.clear("node-b", "c1")
        self.barrier.answer()
        self.assertEqual(self.dropped, [("node-c", ["c1"], frozenset(), "not in its digest")])


class OrphansTests(SynchronousTestCase):
    """
    L{Orphans}: the clients of a sender's previous life, kept for a grace.
    """

    def setUp(self):
        self.clock = Clock()
        self.due = []
        self.orphans = Orphans(self.clock, 2.0, lambda *args: self.due.append(args))

    def test_dueAfterGrace(self):
        """
        Orphans are handed over when their grace is over, not before; they
        are kept out of a digest's judgement until then.
        """
        self.orphans.schedule("node-b", ["c1", "c2"])
        self.assertEqual(self.orphans.excluding("node-b", ["c0", "c1", "c2", "c3"]), ["c0", "c3"])
        self.assertEqual(self.orphans.excluding("node-c", ["c1"]), ["c1"])
        self.clock.advance(1.999)
        self.assertEqual(self.due, [])
        self.clock.advance(0.001)
        self.assertEqual(self.due, [("node-b", ["c1", "c2"])])
        self.assertEqual(self.orphans.excluding("node-b", ["c1", "c2"]), ["c1", "c2"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_forgotten(self):
        """
        An orphan its sender's new life names (taken back there) is no
        orphan: it is not handed over; nor is anything when none is left.
        """
        self.orphans.schedule("node-b", ["c1", "c2"])
        self.orphans.forget("node-b", "c1")
        self.orphans.forget("node-c", "c2")
        self.assertEqual(self.orphans.excluding("node-b", ["c1", "c2"]), ["c1"])
        self.clock.advance(2.0)
        self.assertEqual(self.due, [("node-b", ["c2"])])
        self.orphans.schedule("node-b", ["c3"])
        self.orphans.forget("node-b", "c3")
        self.clock.advance(2.0)
        self.assertEqual(self.due, [("node-b", ["c2"])])

    def test_graceNotRestarted(self):
        """
        An orphan scheduled again during its grace keeps its first grace;
        only the new ones get one of their own.
        """
        self.orphans.schedule("node-b", ["c1"])
        self.clock.advance(1.5)
        self.orphans.schedule("node-b", ["c1"])
        self.orphans.schedule("node-b", ["c1", "c2"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.clock.advance(0.5)
        self.assertEqual(self.due, [("node-b", ["c1"])])
        self.assertEqual(self.orphans.excluding("node-b", ["c1", "c2"]), ["c1"])
        self.clock.advance(1.5)
        self.assertEqual(self.due, [("node-b", ["c1"]), ("node-b", ["c2"])])

    def test_stopCancels(self):
        """
        Stopping cancels every grace: nothing is handed over afterwards, and
        no timer is left behind.
        """
        self.orphans.schedule("node-b", ["c1"])
        self.orphans.schedule("node-c", ["c2"])
        self.orphans.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.due, [])
        self.orphans.stop()  # twice: nothing left to cancel


class RejectedTests(SynchronousTestCase):
    """
    L{Rejected}: refused revisions, not asked for again.
    """

    def setUp(self):
        self.rejected = Rejected()

    def test_rememberedAtItsRevision(self):
        """
        A refused record is remembered at its revision only, for its
        sender only.
        """
        self.rejected.remember("node-b", "c1", 7)
        self.assertTrue(self.rejected.isRejected("node-b", "c1", 7))
        self.assertFalse(self.rejected.isRejected("node-b", "c1", 8))
        self.assertFalse(self.rejected.isRejected("node-c", "c1", 7))
        self.assertFalse(self.rejected.isRejected("node-b", "c2", 7))
        self.rejected.remember("node-b", "c1", 8)
        self.assertEqual(self.rejected.count(), 1)
        self.assertTrue(self.rejected.isRejected("node-b", "c1", 8))

    def test_forgottenWhenRemoved(self):
        """
        A client its sender removed (or sent again, applied) is forgotten;
        forgetting one never remembered changes nothing.
        """
        self.rejected.remember("node-b", "c1", 7)
        self.rejected.remember("node-b", "c2", 7)
        self.rejected.forget("node-b", "c1")
        self.rejected.forget("node-b", "unknown")
        self.rejected.forget("node-c", "c2")
        self.assertFalse(self.rejected.isRejected("node-b", "c1", 7))
        self.assertEqual(self.rejected.count(), 1)
        self.rejected.forget("node-b", "c2")
        self.assertEqual(self.rejected.count(), 0)

    def test_forgottenWhenUnnamed(self):
        """
        A digest forgets the clients it covers and does not name; those it
        names, or does not cover, stay.
        """
        for clientId in ("a1", "a2", "b1", "b2"):
            self.rejected.remember("node-b", clientId, 7)
        self.rejected.forgetUnnamed("node-b", {"a1": 7}, lambda c: c.startswith("a"))
        self.assertEqual(
            [c for c in ("a1", "a2", "b1", "b2") if self.rejected.isRejected("node-b", c, 7)],
            ["a1", "b1", "b2"],
        )
        self.rejected.forgetUnnamed("node-b", {}, lambda c: True)
        self.assertEqual(self.rejected.count(), 0)
        self.rejected.forgetUnnamed("node-c", {}, lambda c: True)  # never rejected any

    def test_forgetSender(self):
        """
        A sender presumed dead (or gone) leaves nothing behind; the others'
        stay.
        """
        self.rejected.remember("node-b", "c1", 7)
        self.rejected.remember("node-b", "c2", 7)
        self.rejected.remember("node-c", "c3", 1)
        self.assertEqual(self.rejected.count(), 3)
        self.rejected.forgetSender("node-b")
        self.rejected.forgetSender("node-d")
        self.assertEqual(self.rejected.count(), 1)
        self.assertTrue(self.rejected.isRejected("node-c", "c3", 1))


class PiecesTests(SynchronousTestCase):
    """
    L{Pieces}: a client in consecutive pieces, put back together.
    """

    KEY = ("c1", "node-b", 1, 5)

    def setUp(self):
        self.dropped = []
        self.pieces = Pieces(lambda *args: self.dropped.append(args))

    def test_whole(self):
        """
        A client in one piece is whole at once.
        """
        services = {"s": {"i1": 1}}
        self.assertIs(self.pieces.add("node-b", self.KEY, 0, services, False), services)

    def test_inPieces(self):
        """
        Pieces in order are merged; the last one gives the whole client.
        """
        add = self.pieces.add
        self.assertIs(add("node-b", self.KEY, 0, {"s": {"i1": 1}}, True), Pieces.INCOMPLETE)
        self.assertIs(add("node-b", self.KEY, 1, {"s": {"i2": 2}, "t": {"i3": 3}}, True), Pieces.INCOMPLETE)
        self.assertEqual(
            add("node-b", self.KEY, 2, {"t": {"i4": 4}}, False),
            {"s": {"i1": 1, "i2": 2}, "t": {"i3": 3, "i4": 4}},
        )
        self.assertIs(add("node-b", self.KEY, 1, {}, False), Pieces.MISSING)
        self.assertEqual(self.dropped, [])

    def test_startMissing(self):
        """
        A piece whose predecessors are not here is missing its start, and is
        not kept.
        """
        self.assertIs(self.pieces.add("node-b", self.KEY, 1, {"s": {}}, True), Pieces.MISSING)
        self.assertIs(self.pieces.add("node-b", self.KEY, 2, {"s": {}}, False), Pieces.MISSING)

    def test_outOfOrder(self):
        """
        A piece that does not follow the last one (a skipped part, another
        revision, another client) gives up the unfinished client, saying so.
        """
        add = self.pieces.add
        add("node-b", self.KEY, 0, {"s": {"i1": 1}}, True)
        self.assertIs(add("node-b", self.KEY, 2, {"s": {"i3": 3}}, False), Pieces.MISSING)
        self.assertEqual(self.dropped, [("node-b", "c1", "another client_state")])
        add("node-b", self.KEY, 0, {"s": {"i1": 1}}, True)
        other = ("c2", "node-b", 1, 1)
        self.assertEqual(add("node-b", other, 0, {"s": {"i9": 9}}, False), {"s": {"i9": 9}})
        self.assertEqual(len(self.dropped), 2)
        self.assertIs(add("node-b", self.KEY, 1, {"s": {"i2": 2}}, False), Pieces.MISSING)

    def test_interrupted(self):
        """
        Another op from the sender gives up its unfinished client, saying
        which op; other senders' are kept; without one, nothing is said.
        """
        add = self.pieces.add
        add("node-b", self.KEY, 0, {"s": {"i1": 1}}, True)
        add("node-c", self.KEY, 0, {"s": {"i1": 1}}, True)
        self.pieces.interrupt("node-b", "delta")
        self.pieces.interrupt("node-b", "digest")
        self.assertEqual(self.dropped, [("node-b", "c1", "delta")])
        self.assertIs(add("node-b", self.KEY, 1, {"s": {"i2": 2}}, False), Pieces.MISSING)
        self.assertEqual(add("node-c", self.KEY, 1, {"s": {"i2": 2}}, False), {"s": {"i1": 1, "i2": 2}})

    def test_forget(self):
        """
        A sender's link dropped: its unfinished client is given up without
        a word, and its next piece is missing its start.
        """
        self.pieces.add("node-b", self.KEY, 0, {"s": {"i1": 1}}, True)
        self.pieces.forget("node-b")
        self.pieces.forget("node-c")
        self.assertEqual(self.dropped, [])
        self.assertIs(self.pieces.add("node-b", self.KEY, 1, {"s": {}}, False), Pieces.MISSING)
