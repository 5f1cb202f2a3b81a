"""
Tests for L{distro.cluster.peer}: the peer port's challenge (PROTOCOL.md
5.1), what an unauthenticated or wrong peer can do (nothing), the outbound
answer, and the silence watchdog.
"""

import msgpack
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro import wire
from distro.cluster import peer
from distro.cluster.service import Cluster
from distro.config import Config
from distro.interfaces import IReplicaSink
from distro.model import ServiceKey
from distro.node import Node

SECRET = b"s3cret"
SERVICE = {"namespace": "public", "group": "DEFAULT_GROUP", "name": "orders"}


def frames(data):
    """
    Decode every frame in C{data}.
    """
    out = []
    while data:
        length = int.from_bytes(data[:4], "big")
        out.append(msgpack.unpackb(data[4 : 4 + length], raw=False))
        data = data[4 + length :]
    return out


def clientState(owner="node-b", clientId="node-b#x#1", epoch=1, revision=1):
    return {
        "op": "client_state",
        "client_id": clientId,
        "owner": owner,
        "epoch": epoch,
        "revision": revision,
        "resume_token_hash": "",
        "services": [[SERVICE, [{"ip": "10.0.0.1", "port": 80, "write_ts": 5}]]],
    }


def makeCluster(secret=SECRET, clock=None):
    clock = clock or Clock()
    config = Config(
        node_id="node-a", cluster="cluster.conf", peer_timeout_ms=300, down_after_ms=600
    ).validate()
    node = Node(config, clock, bootId="boot")
    cluster = Cluster(
        node,
        "a:1",
        ["a:1", "b:1"],
        secret,
        listen=lambda factory: succeed(None),
        connector=lambda address: None,
    )
    node.cluster = cluster
    return node, cluster


class InboundTests(SynchronousTestCase):
    """
    L{peer.InboundLink}: the accepting end.
    """

    def setUp(self):
        self.node, self.cluster = makeCluster()

    def connect(self, host="127.0.0.1"):
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 4000))
        link = peer.PeerPortFactory(self.cluster).buildProtocol(transport.getPeer())
        link.makeConnection(transport)
        self.addCleanup(link.connectionLost, None)
        return link, transport

    def hello(self, link, secret=SECRET, node="node-b", address="b:1", **extra):
        challenge = frames(link.transport.value())[0]
        message = {
            "op": "peer_hello",
            "node": node,
            "address": address,
            "client_address": "b:9848",
            "proto": 1,
            "mac": peer.mac(secret, challenge["nonce"], node),
        }
        message.update(extra)
        link.transport.clear()
        link.dataReceived(wire.encode(message))

    def held(self):
        return self.node.registry.serviceInfo(ServiceKey("public", "DEFAULT_GROUP", "orders")).hosts

    def test_interface(self):
        self.assertTrue(verifyObject(IReplicaSink, self.cluster.receiver))

    def test_challenge(self):
        """
        On accept the node sends a challenge with a fresh 32-byte nonce.
        """
        link, transport = self.connect()
        (challenge,) = frames(transport.value())
        self.assertEqual(challenge["op"], "challenge")
        self.assertEqual(challenge["node"], "node-a")
        self.assertEqual(challenge["proto"], 1)
        self.assertEqual(len(challenge["nonce"]), 32)
        other, _ = self.connect()
        self.assertNotEqual(frames(other.transport.value())[0]["nonce"], challenge["nonce"])

    def test_rightSecretApplies(self):
        """
        A peer that answers with the right MAC is identified, and what it
        replicates is applied.
        """
        link, transport = self.connect()
        self.hello(link)
        self.assertEqual(link.nodeId, "node-b")
        self.assertFalse(transport.disconnecting)
        link.dataReceived(wire.encode(clientState()))
        self.assertEqual([h.instanceId for h in self.held()], ["10.0.0.1#80#DEFAULT"])
        self.assertEqual(self.cluster.membership.member("node-b").clientAddress, "b:9848")

    def test_wrongSecretInjectsNothing(self):
        """
        A wrong MAC gets C{UNAUTHORIZED}, the link is closed, and nothing
        sent with or after the hello is applied.
        """
        link, transport = self.connect()
        challenge = frames(transport.value())[0]
        bad = {
            "op": "peer_hello",
            "node": "node-b",
            "address": "b:1",
            "proto": 1,
            "mac": peer.mac(b"wrong", challenge["nonce"], "node-b"),
        }
        transport.clear()
        link.dataReceived(wire.encode(bad) + wire.encode(clientState()))
        (error,) = frames(transport.value())
        self.assertEqual(error["code"], wire.UNAUTHORIZED)
        self.assertIn("mac", error["message"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.held(), [])
        self.assertNotIn("node-b#x#1", self.node.manager.clients)

    def test_missingMac(self):
        link, transport = self.connect()
        transport.clear()
        link.dataReceived(
            wire.encode({"op": "peer_hello", "node": "node-b", "address": "b:1", "proto": 1})
        )
        self.assertEqual(frames(transport.value())[0]["code"], wire.UNAUTHORIZED)
        self.assertTrue(transport.disconnecting)

    def test_dataBeforeHello(self):
        """
        Replication data before the handshake is refused and not applied.
        """
        link, transport = self.connect()
        transport.clear()
        link.dataReceived(wire.encode(clientState()))
        self.assertEqual(frames(transport.value())[0]["code"], wire.UNAUTHORIZED)
        self.assertEqual(self.held(), [])

    def test_notAMember(self):
        """
        A peer with the secret but not in C{cluster.conf} is C{FORBIDDEN}.
        """
        link, transport = self.connect()
        self.hello(link, node="node-z", address="z:1")
        self.assertEqual(frames(transport.value())[0]["code"], wire.FORBIDDEN)
        self.assertTrue(transport.disconnecting)

    def test_ownId(self):
        link, transport = self.connect()
        self.hello(link, node="node-a", address="b:1")
        self.assertEqual(frames(transport.value())[0]["code"], wire.FORBIDDEN)

    def test_wrongProto(self):
        link, transport = self.connect()
        self.hello(link, proto=2)
        self.assertEqual(frames(transport.value())[0]["code"], wire.UNSUPPORTED_VERSION)
        self.assertTrue(transport.disconnecting)

    def test_ownerMustBeSender(self):
        """
        A member may only replicate the clients it owns: a record naming
        another owner is rejected with C{BAD_REQUEST} naming C{owner}.
        """
        link, transport = self.connect()
        self.hello(link)
        link.dataReceived(wire.encode(clientState(owner="node-c", clientId="node-c#x#1")))
        (error,) = frames(transport.value())
        self.assertEqual(error["code"], wire.BAD_REQUEST)
        self.assertTrue(error["message"].startswith("owner"))
        self.assertEqual(self.held(), [])
        self.assertFalse(transport.disconnecting)

    def test_badRecordNamesField(self):
        """
        A malformed record is answered with C{BAD_REQUEST} naming the field;
        the link stays up and later good records apply.
        """
        link, transport = self.connect()
        self.hello(link)
        bad = clientState()
        bad["services"][0][1][0]["port"] = 0
        link.dataReceived(wire.encode(bad))
        (error,) = frames(transport.value())
        self.assertEqual(error["code"], wire.BAD_REQUEST)
        self.assertTrue(error["message"].startswith("services[0].instances[0].port"), error)
        transport.clear()
        link.dataReceived(wire.encode(clientState(revision=2)))
        self.assertEqual(len(self.held()), 1)

    def test_rejectedRevisionNotAskedAgain(self):
        """
        Bad data is not retried: a digest naming the revision that was
        rejected asks no C{resend} for it (no verify storm), a newer one
        does.
        """
        link, transport = self.connect()
        self.hello(link)
        bad = clientState(revision=7)
        bad["services"][0][1][0]["port"] = 0
        link.dataReceived(wire.encode(bad))
        transport.clear()
        link.dataReceived(wire.encode({"op": "digest", "clients": [["node-b#x#1", 7]]}))
        self.assertEqual(transport.value(), b"")
        link.dataReceived(wire.encode({"op": "digest", "clients": [["node-b#x#1", 8]]}))
        self.assertEqual(
            frames(transport.value()), [{"op": "resend", "client_ids": ["node-b#x#1"]}]
        )

    def test_unexpectedFailureKeepsLink(self):
        """
        A record whose application fails unexpectedly (a bug, not bad data)
        is answered with C{INTERNAL}, logged, and not asked for again at that
        revision; the link stays, and later records apply.
        """
        node = self.node

        class Failing:
            fail = True

            def clientChanged(self, change):
                if self.fail:
                    self.fail = False
                    raise RuntimeError("observer bug")

            def clientRemoved(self, client):
                pass

            def clientMoved(self, client):
                pass

        node.manager.addObserver(Failing())
        link, transport = self.connect()
        self.hello(link)
        link.dataReceived(wire.encode(clientState(revision=3)))
        (error,) = frames(transport.value())
        self.assertEqual(error["code"], wire.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(transport.disconnecting)
        transport.clear()
        link.dataReceived(wire.encode({"op": "digest", "clients": [["node-b#x#2", 3]]}))
        link.dataReceived(wire.encode({"op": "client_remove", "client_id": "node-b#x#1",
                                       "owner": "node-b", "epoch": 1}))
        link.dataReceived(wire.encode(clientState(clientId="node-b#x#2", revision=3)))
        self.assertEqual(frames(transport.value()), [{"op": "resend", "client_ids": ["node-b#x#2"]}])
        self.assertEqual(len(self.held()), 1)

    def test_rejectedForgottenWhenSenderForgets(self):
        """
        The record of rejected revisions holds only clients the sender
        still owns: its next digest not naming one, or its C{client_remove},
        forgets it; a member presumed dead (or gone) leaves none behind.
        """
        link, transport = self.connect()
        self.hello(link)
        for n in range(3):
            bad = clientState(clientId=f"node-b#x#{n}", revision=7)
            bad["services"][0][1][0]["port"] = 0
            link.dataReceived(wire.encode(bad))
        self.assertEqual(self.cluster.receiver.rejectedCount(), 3)
        link.dataReceived(wire.encode({"op": "client_remove", "client_id": "node-b#x#0",
                                       "owner": "node-b", "epoch": 1}))
        self.assertEqual(self.cluster.receiver.rejectedCount(), 2)
        link.dataReceived(wire.encode({"op": "digest", "clients": [["node-b#x#1", 7]]}))
        self.assertEqual(self.cluster.receiver.rejectedCount(), 1)
        self.cluster.receiver.dropClientsOf("node-b")  # presumed dead, or left
        self.assertEqual(self.cluster.receiver.rejectedCount(), 0)

    def test_unknownOp(self):
        link, transport = self.connect()
        self.hello(link)
        link.dataReceived(wire.encode({"op": "nonsense"}))
        self.assertEqual(frames(transport.value())[0]["code"], wire.UNKNOWN_OP)

    def test_badSync(self):
        """
        C{snapshot_begin}, C{sync} and C{synced} with a wrong field are
        refused naming it.
        """
        link, transport = self.connect()
        self.hello(link)
        for message in (
            {"op": "snapshot_begin"},
            {"op": "snapshot_begin", "boot": 7},
            {"op": "sync", "n": "1"},
            {"op": "synced", "n": 0},
            {"op": "synced", "n": 1, "restoring": "x"},
            {"op": "synced", "n": 1, "restoring": [1]},
        ):
            transport.clear()
            link.dataReceived(wire.encode(message))
            (error,) = frames(transport.value())
            self.assertEqual(error["code"], wire.BAD_REQUEST)
            field = "restoring" if "restoring" in message else "n"
            if message["op"] == "snapshot_begin":
                field = "boot"
            self.assertTrue(error["message"].startswith(field + ":"), error)

    def test_ping(self):
        link, transport = self.connect()
        self.hello(link)
        link.dataReceived(wire.encode({"op": "ping"}))
        self.assertEqual(frames(transport.value()), [{"op": "pong"}])

    def test_newerLinkReplacesOlder(self):
        """
        A second authenticated link from the same member closes the first.
        """
        first, firstTransport = self.connect()
        self.hello(first)
        second, _ = self.connect()
        self.hello(second)
        self.assertTrue(firstTransport.disconnecting)
        self.assertIs(self.cluster.inbound["node-b"], second)


class LoopbackOnlyTests(SynchronousTestCase):
    """
    Without a secret, the peer port accepts loopback connections only.
    """

    def setUp(self):
        self.node, self.cluster = makeCluster(secret=b"")

    def connect(self, host):
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 4000))
        link = peer.PeerPortFactory(self.cluster).buildProtocol(transport.getPeer())
        link.makeConnection(transport)
        self.addCleanup(link.connectionLost, None)
        return link, transport

    def test_remoteRefused(self):
        link, transport = self.connect("192.0.2.7")
        (error,) = frames(transport.value())
        self.assertEqual(error["code"], wire.UNAUTHORIZED)
        self.assertTrue(transport.disconnecting)

    def test_loopbackAccepted(self):
        link, transport = self.connect("127.0.0.5")
        (challenge,) = frames(transport.value())
        self.assertEqual(challenge["op"], "challenge")
        self.assertTrue(peer.isLoopback("::1"))
        self.assertFalse(peer.isLoopback("10.0.0.1"))


class OutboundTests(SynchronousTestCase):
    """
    L{peer.OutboundLink}: answering the challenge, then snapshot and pings.
    """

    def setUp(self):
        self.clock = Clock()
        self.node, self.cluster = makeCluster(clock=self.clock)
        self.feed = self.cluster.replicator.feeds["b:1"]
        self.transport = StringTransport()
        self.link = peer.OutboundFactory(self.cluster, self.feed).buildProtocol(None)
        self.link.makeConnection(self.transport)
        self.addCleanup(self.link.connectionLost, None)

    def test_answer(self):
        """
        The link answers a challenge with C{peer_hello} carrying the MAC of
        the nonce and its node id, then streams its snapshot and pings.
        """
        nonce = b"n" * 32
        self.link.dataReceived(
            wire.encode({"op": "challenge", "nonce": nonce, "node": "node-b", "proto": 1})
        )
        sent = frames(self.transport.value())
        self.assertEqual(sent[0]["op"], "peer_hello")
        self.assertEqual(sent[0]["node"], "node-a")
        self.assertEqual(sent[0]["address"], "a:1")
        self.assertEqual(sent[0]["mac"], peer.mac(SECRET, nonce, "node-a"))
        self.assertEqual([m["op"] for m in sent[1:]], ["ping"])
        self.assertIsNone(self.feed.link)
        # The first pong says our answer was taken: the snapshot follows.
        self.transport.clear()
        self.link.dataReceived(wire.encode({"op": "pong"}))
        ops = [m["op"] for m in frames(self.transport.value())]
        self.assertEqual(ops, ["snapshot_begin", "snapshot_end"])
        self.assertIs(self.feed.link, self.link)

    def test_refusedGetsNoSnapshot(self):
        """
        A member that refuses our answer gets no snapshot.
        """
        self.link.dataReceived(
            wire.encode({"op": "challenge", "nonce": b"n" * 32, "node": "node-b", "proto": 1})
        )
        self.transport.clear()
        self.link.dataReceived(
            wire.encode({"op": "error", "re": None, "code": "UNAUTHORIZED", "message": "mac"})
        )
        self.assertEqual(self.transport.value(), b"")
        self.assertIsNone(self.feed.link)
        self.assertEqual(self.cluster.membership.state("node-b"), "SUSPICIOUS")

    def test_badChallenge(self):
        self.link.dataReceived(wire.encode({"op": "challenge", "nonce": "text", "proto": 1}))
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.feed.link)

    def test_silentLinkDropped(self):
        """
        A link that hears nothing for C{down_after_ms} is aborted (a
        half-open link would otherwise look alive forever).
        """
        self.clock.advance(0.5)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnected)
