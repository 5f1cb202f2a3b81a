# -*- test-case-name: tests.test_sync -*-
"""
Tests for L{distro.cluster.sync.SyncBarrier}: sync rounds with the other
members (PROTOCOL.md 5.4), and a feed's answers to a member's C{sync}.
"""

import struct

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro import wire
from distro.clients import Alone, Client, ClientChange
from distro.cluster.members import Member
from distro.model import Instance, ServiceKey
from distro.cluster.sending import PeerFeed, Replicator
from distro.cluster.sync import SyncBarrier
from distro.interfaces import ISyncBarrier


class Members:
    """
    Members "a:1" .. and the links the barrier asks on.
    """

    def __init__(self, *addresses):
        self.members = [Member(address) for address in addresses]
        self.up = set(addresses)
        self.asked = []

    def __call__(self):
        return list(self.members)

    def ask(self, member, message):
        if member.address not in self.up:
            return False
        self.asked.append((member.address, message["n"]))
        return True

    def member(self, address):
        return next(m for m in self.members if m.address == address)


class SyncBarrierTests(SynchronousTestCase):
    def setUp(self):
        self.members = Members("b:1", "c:1")
        self.barrier = SyncBarrier(self.members, self.members.ask)
        self.b = self.members.member("b:1")
        self.c = self.members.member("c:1")

    def test_interface(self):
        verifyObject(ISyncBarrier, self.barrier)
        verifyObject(ISyncBarrier, Alone())

    def test_alone(self):
        """
        A node alone is always in sync, with nobody restoring anything.
        """
        self.assertEqual(self.successResultOf(Alone().whenSynced()), frozenset())

    def test_roundWaitsForEveryMember(self):
        """
        A round asks every member and fires once all answered it.
        """
        d = self.barrier.whenSynced()
        self.assertEqual(sorted(self.members.asked), [("b:1", 1), ("c:1", 1)])
        self.barrier.answered(self.b, 1)
        self.assertNoResult(d)
        self.barrier.answered(self.c, 1)
        self.assertEqual(self.successResultOf(d), frozenset())

    def test_staleAnswerIgnored(self):
        """
        An answer to an earlier round says nothing about this one.
        """
        first = self.barrier.whenSynced()
        second = self.barrier.whenSynced()  # waits for round 2
        self.barrier.answered(self.b, 1)
        self.barrier.answered(self.c, 1)
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(self.barrier.round, 2)
        self.barrier.answered(self.b, 1)
        self.barrier.answered(self.c, 1)
        self.assertNoResult(second)
        self.barrier.answered(self.b, 2)
        self.barrier.answered(self.c, 2)
        self.successResultOf(second)

    def test_requestDuringRoundWaitsForNext(self):
        """
        A request made while a round runs is covered only by a round that
        started after it.
        """
        first = self.barrier.whenSynced()
        self.barrier.answered(self.b, 1)
        later = self.barrier.whenSynced()
        self.barrier.answered(self.c, 1)
        self.successResultOf(first)
        self.assertNoResult(later)
        self.assertIn(("b:1", 2), self.members.asked)

    def test_askedWhenLinkComesUp(self):
        """
        A member without a link is asked once a link to or from it is up.
        """
        self.members.up.discard("c:1")
        d = self.barrier.whenSynced()
        self.assertEqual(self.members.asked, [("b:1", 1)])
        self.members.up.add("c:1")
        self.barrier.linkUp(self.c)
        self.assertIn(("c:1", 1), self.members.asked)
        self.barrier.answered(self.b, 1)
        self.barrier.answered(self.c, 1)
        self.successResultOf(d)

    def test_presumedDeadNotWaitedFor(self):
        """
        A member presumed dead is not waited for (in this round or the
        next), until it is heard from again.
        """
        d = self.barrier.whenSynced()
        self.barrier.answered(self.b, 1)
        self.barrier.presumedDead(self.c)
        self.successResultOf(d)
        self.successResultOf(self._round(["b:1"]))
        self.barrier.alive(self.c)
        self.barrier.whenSynced()
        self.assertEqual(self.barrier.waitingFor(), {"b:1", "c:1"})

    def _round(self, answering):
        d = self.barrier.whenSynced()
        for address in answering:
            self.barrier.answered(self.members.member(address), self.barrier.round)
        return d

    def test_restoringReported(self):
        """
        The round's result is the union of the clients the members said
        they are restoring.
        """
        d = self.barrier.whenSynced()
        self.barrier.answered(self.b, 1, ["x"])
        self.barrier.answered(self.c, 1, ["y"])
        self.assertEqual(self.successResultOf(d), frozenset({"x", "y"}))
        d = self._round(["b:1", "c:1"])
        self.assertEqual(self.successResultOf(d), frozenset())

    def test_noOtherMembers(self):
        """
        With no other member, a round ends at once.
        """
        barrier = SyncBarrier(lambda: [], lambda member, message: True)
        self.successResultOf(barrier.whenSynced())


class Link:
    """
    An outbound link keeping what is sent on it, messages and frames alike,
    in order.
    """

    def __init__(self):
        self.sent = []
        self.transport = self

    def sendMessage(self, message):
        self.sent.append(message)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def write(self, data):
        while data:
            (size,) = struct.unpack("!I", data[:4])
            self.sent.append(wire.decode(data[4 : 4 + size]))
            data = data[4 + size :]


class FeedSyncTests(SynchronousTestCase):
    """
    L{PeerFeed.owe}: a feed answers a member's C{sync} after whatever it
    still had to send.
    """

    def setUp(self):
        self.clock = Clock()
        self.replicator = Replicator(self.clock, restoring=lambda: ["r"])
        self.feed = PeerFeed(self.replicator, Member("b:1"))

    def test_answerAfterSnapshot(self):
        link = Link()
        self.feed.owe(4)  # before any link: waits for one
        self.feed.linkUp(link)
        self.assertEqual([m["op"] for m in link.sent], ["snapshot_begin", "snapshot_end", "synced"])
        self.assertEqual(link.sent[-1], {"op": "synced", "n": 4, "restoring": ["r"]})

    def test_answerWaitsWhilePaused(self):
        link = Link()
        self.feed.linkUp(link)
        self.feed.pause()
        self.feed.owe(2)
        self.assertNotIn("synced", [m["op"] for m in link.sent])
        self.feed.resume()
        self.assertEqual(link.sent[-1]["op"], "synced")

    def test_answeredAgainOnNextLink(self):
        """
        An answer may have been lost with its link: the next link's snapshot
        is followed by it again.
        """
        first = Link()
        self.feed.linkUp(first)
        self.feed.owe(3)
        self.feed.linkDown(first)
        second = Link()
        self.feed.linkUp(second)
        self.assertEqual(second.sent[-1]["n"], 3)

    def test_answerAfterThisTurnsChanges(self):
        """
        A change made in this reactor turn, whose delta would go at the end
        of the turn, goes before an answer given meanwhile: the answer
        promises it.
        """
        link = Link()
        feed = self.replicator.addMember(Member("c:1"))
        feed.linkUp(link)
        client = Client("n0#boot#1", True, "n0", revision=1)
        self.replicator.clientChanged(ClientChange(client, 0, [], []))
        self.clock.advance(0)
        client.revision = 2
        self.replicator.clientChanged(ClientChange(client, 1, [], []))
        feed.owe(7)
        self.assertEqual(
            [(m["op"], m.get("revision")) for m in link.sent],
            [("snapshot_begin", None), ("snapshot_end", None), ("client_state", 1),
             ("delta", 2), ("synced", None)],
        )
        self.clock.advance(0)
        self.assertEqual(len(link.sent), 5)  # nothing sent twice

    def _bigChange(self, client, count):
        """
        A change of C{client} putting C{count} instances with 100 bytes of
        metadata each.
        """
        service = ServiceKey("public", "DEFAULT_GROUP", "orders")
        held = client.services.setdefault(service, {})
        put = []
        for k in range(count):
            instance = Instance(f"10.0.0.{k + 1}", 8080, "DEFAULT", 1.0, True, True,
                                {"k": "v" * 100}, 1)
            held[instance.instanceId] = instance
            put.append((service, instance))
        base, client.revision = client.revision, client.revision + 1
        return ClientChange(client, base, put, [])

    def test_snapshotBeforeThisTurnsChanges(self):
        """
        A link coming up while changes of this turn wait starts with its
        snapshot, which carries them: nothing goes ahead of C{snapshot_begin}
        on it, neither their delta nor, when that delta is too large for a
        frame, the answer to a C{sync} owed from before (found in review).
        """
        for count, frameLimit in ((1, 64 * 1024), (40, 2048)):
            clock = Clock()
            replicator = Replicator(clock, maxFrame=frameLimit)
            feed = replicator.addMember(Member("b:1"))
            client = Client("n0#boot#1", True, "n0", revision=1)
            replicator.clientChanged(ClientChange(client, 0, [], []))
            clock.advance(0)
            feed.owe(5)  # no link yet: owed
            replicator.clientChanged(self._bigChange(client, count))
            link = Link()
            feed.linkUp(link)
            ops = [m["op"] for m in link.sent]
            self.assertEqual(ops[0], "snapshot_begin", ops)
            self.assertNotIn("delta", ops)
            self.assertLess(ops.index("snapshot_end"), ops.index("synced"), ops)
            states = [m for m in link.sent if m["op"] == "client_state"]
            self.assertEqual({m["revision"] for m in states}, {2})
