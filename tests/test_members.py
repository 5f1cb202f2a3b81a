"""
Tests for L{distro.cluster.members}: reading C{cluster.conf}, finding this
node in it, and member states from liveness.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.cluster import members
from distro.cluster.members import DOWN, SUSPICIOUS, UP, Membership
from distro.config import Config, ConfigError
from distro.interfaces import IMembership

from ._tempfiles import TempPathMixin


class ClusterFileTests(TempPathMixin, SynchronousTestCase):
    """
    L{members.readClusterFile}.
    """

    def write(self, text):
        path = self.tempPath()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_linesCommentsAndDuplicates(self):
        """
        One C{host:port} per line; comments, blank lines and repeats are
        ignored; order is kept; IPv6 literals are bracketed.
        """
        path = self.write(
            "# members\n10.0.0.1:9849\n\n  10.0.0.2:9849  # second\n10.0.0.1:9849\n[::1]:9849\n"
        )
        self.assertEqual(
            members.readClusterFile(path), ["10.0.0.1:9849", "10.0.0.2:9849", "[::1]:9849"]
        )

    def test_badLineNamesFileAndLine(self):
        """
        A line that is not C{host:port} fails naming the key, file and line.
        """
        path = self.write("10.0.0.1:9849\n10.0.0.2\n")
        error = self.assertRaises(ConfigError, members.readClusterFile, path)
        self.assertEqual(error.key, "cluster")
        self.assertIn("line 2", str(error))

    def test_portOutOfRange(self):
        path = self.write("10.0.0.1:70000\n")
        self.assertRaises(ConfigError, members.readClusterFile, path)

    def test_empty(self):
        """
        A file without members is wrong.
        """
        error = self.assertRaises(ConfigError, members.readClusterFile, self.write("# none\n"))
        self.assertIn("no members", str(error))

    def test_missing(self):
        error = self.assertRaises(ConfigError, members.readClusterFile, self.tempPath())
        self.assertEqual(error.key, "cluster")


class FindSelfTests(SynchronousTestCase):
    """
    L{members.findSelf}.
    """

    def config(self, **values):
        values.setdefault("cluster", "cluster.conf")
        return Config(**values).validate()

    def test_byPortOnLoopback(self):
        """
        The line with the peer port's number and a local host is this node.
        """
        lines = ["127.0.0.1:9849", "127.0.0.1:9859"]
        config = self.config(peer_listen="tcp:9859:interface=127.0.0.1")
        self.assertEqual(members.findSelf(lines, config), "127.0.0.1:9859")

    def test_remoteHostsAreNotSelf(self):
        """
        A line on another machine with the same port is not this node.
        """
        lines = ["192.0.2.10:9849", "127.0.0.1:9849"]
        self.assertEqual(members.findSelf(lines, self.config()), "127.0.0.1:9849")

    def test_ambiguous(self):
        """
        Two local lines with the peer port: the error says to set
        C{peer_advertise}.
        """
        lines = ["127.0.0.1:9849", "localhost:9849"]
        error = self.assertRaises(ConfigError, members.findSelf, lines, self.config())
        self.assertEqual(error.key, "peer_advertise")

    def test_none(self):
        lines = ["192.0.2.10:9849", "192.0.2.11:9849"]
        error = self.assertRaises(ConfigError, members.findSelf, lines, self.config())
        self.assertEqual(error.key, "peer_advertise")

    def test_advertised(self):
        """
        C{peer_advertise} names the line outright, and must be one.
        """
        lines = ["192.0.2.10:9849", "192.0.2.11:9849"]
        config = self.config(peer_advertise="192.0.2.11:9849")
        self.assertEqual(members.findSelf(lines, config), "192.0.2.11:9849")
        config = self.config(peer_advertise="192.0.2.12:9849")
        error = self.assertRaises(ConfigError, members.findSelf, lines, config)
        self.assertEqual(error.key, "peer_advertise")

    def test_listenPort(self):
        self.assertEqual(members.listenPort("tcp:9849"), 9849)
        self.assertEqual(members.listenPort("tcp:port=9849:interface=::1"), 9849)
        self.assertEqual(members.listenPort("ssl:9849:privateKey=k.pem"), 9849)
        self.assertIsNone(members.listenPort("unix:/tmp/s"))


class Recorder:
    """
    A membership observer that records transitions.
    """

    def __init__(self):
        self.events = []

    def memberUp(self, member):
        self.events.append(("up", member.address))

    def memberDown(self, member):
        self.events.append(("down", member.address))

    def memberRemoved(self, member):
        self.events.append(("removed", member.address))


class MembershipTests(SynchronousTestCase):
    """
    L{Membership}: states from liveness, changes from the file only.
    """

    def setUp(self):
        self.clock = Clock()
        self.membership = Membership(
            "a:1", "node-a", "a:9850", self.clock, peerTimeoutMs=3000, downAfterMs=6000
        )
        self.recorder = Recorder()
        self.membership.observers.append(self.recorder)
        self.membership.update(["a:1", "b:1", "c:1"])
        self.membership.start()
        self.addCleanup(self.membership.stop)

    def states(self):
        return {m["node"]: m["state"] for m in self.membership.describe()}

    def test_interface(self):
        self.assertTrue(verifyObject(IMembership, self.membership))

    def test_selfIsAlwaysUp(self):
        self.clock.advance(60)
        self.assertEqual(self.states()["node-a"], UP)

    def test_heardIsUp(self):
        """
        A member heard from is C{UP}; silent for C{peer_timeout_ms} it is
        C{SUSPICIOUS}; for C{down_after_ms}, C{DOWN}; heard again, C{UP}.
        """
        self.membership.identify("b:1", "node-b", "b:9850")
        self.membership.heard("node-b")
        self.assertEqual(self.membership.state("node-b"), UP)
        self.clock.advance(3.5)
        self.assertEqual(self.membership.state("node-b"), SUSPICIOUS)
        self.clock.advance(3)
        self.assertEqual(self.membership.state("node-b"), DOWN)
        self.membership.heard("node-b")
        self.assertEqual(self.membership.state("node-b"), UP)
        self.assertEqual(
            [e for e in self.recorder.events if e[1] == "b:1"],
            [("up", "b:1"), ("down", "b:1"), ("up", "b:1")],
        )

    def test_neverHeardGoesDown(self):
        """
        A member never heard from since start is C{DOWN} after
        C{down_after_ms}, and stays a member.
        """
        self.assertEqual(self.states()["c:1"], SUSPICIOUS)
        self.clock.advance(6.5)
        self.assertEqual(self.states()["c:1"], DOWN)
        self.clock.advance(600)
        self.assertIn("c:1", self.membership.members)

    def test_describe(self):
        """
        C{describe} gives node id, client address, state and self for each
        member; a member's id and client address come from its handshake.
        """
        self.membership.identify("b:1", "node-b", "b:9850")
        self.membership.heard("node-b")
        described = {m["node"]: m for m in self.membership.describe()}
        self.assertEqual(
            described["node-a"], {"node": "node-a", "address": "a:9850", "state": UP, "self": True}
        )
        self.assertEqual(
            described["node-b"], {"node": "node-b", "address": "b:9850", "state": UP, "self": False}
        )
        self.assertEqual(described["c:1"]["address"], None)

    def test_identifyUnknown(self):
        """
        Only members can be identified, and never as this node.
        """
        self.assertIsNone(self.membership.identify("z:1", "node-z", None))
        self.assertIsNone(self.membership.identify("a:1", "node-x", None))

    def test_update(self):
        """
        C{update} adds and removes members to match the file, keeps this
        node, and tells observers of removals.
        """
        added, removed = self.membership.update(["b:1", "d:1"])
        self.assertEqual([m.address for m in added], ["d:1"])
        self.assertEqual([m.address for m in removed], ["c:1"])
        self.assertEqual(sorted(self.membership.members), ["a:1", "b:1", "d:1"])
        self.assertIn(("removed", "c:1"), self.recorder.events)
