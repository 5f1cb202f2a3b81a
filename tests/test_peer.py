"""
Tests for L{distro.cluster.peer}: the peer port's challenge (PROTOCOL.md
5.1), what an unauthenticated or wrong peer can do (nothing), the outbound
answer, and the silence watchdog.
"""

from functools import partial

import msgpack
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro import wire
from distro.cluster import dialect, peer
from distro.cluster.dialect import LOWEST as PROTO
from distro.cluster.service import Cluster, ClusterSettings
from distro.config import Config
from distro.interfaces import IReplicaSink
from distro.model import ServiceKey
from distro.node import Node
from tests import _factories

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


# An instance record (PROTOCOL.md 5.2) of 10.0.0.1:80, written at 5.
record = partial(_factories.record, ip="10.0.0.1", port=80, writeTs=5)


def clientState(owner="node-b", clientId="node-b#x#1", epoch=1, revision=1):
    return {
        "op": "client_state",
        "client_id": clientId,
        "owner": owner,
        "epoch": epoch,
        "revision": revision,
        "resume_token_hash": "",
        "services": [[SERVICE, [record()]]],
    }


def makeCluster(secret=SECRET, clock=None, offer=None, **settings):
    clock = clock or Clock()
    values = {"peer_timeout_ms": 300, "down_after_ms": 600}
    values.update(settings)
    config = Config(node_id="node-a", cluster="cluster.conf", **values).validate()
    node = Node(config, clock, bootId="boot")
    cluster = Cluster(
        node,
        "a:1",
        ["a:1", "b:1"],
        secret,
        listen=lambda factory: succeed(None),
        connector=lambda address: None,
        offer=offer,
        settings=ClusterSettings.fromConfig(config),
    )
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

    def hello(self, link, secret=SECRET, node="node-b", address="b:1", acceptor="node-a",
              **extra):
        """
        Answer C{link}'s challenge as C{node} would, believing it talks to
        C{acceptor}; return what the link sent back (cleared after a
        C{peer_welcome}, so that tests see only what follows).
        """
        challenge = frames(link.transport.value())[0]
        nonce = b"c" * 32
        proof = peer.transcript(acceptor, node, challenge["nonce"], nonce)
        message = {
            "op": "peer_hello",
            "node": node,
            "address": address,
            "client_address": "b:9850",
            "proto": PROTO,
            "nonce": nonce,
            "mac": peer.helloMac(secret, proof),
        }
        message.update(extra)
        link.transport.clear()
        link.dataReceived(wire.encode(message))
        sent = frames(link.transport.value())
        if sent and sent[0]["op"] == "peer_welcome":
            link.transport.clear()
        return sent

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
        self.assertEqual(challenge["proto"], PROTO)
        self.assertEqual(len(challenge["nonce"]), 32)
        other, _ = self.connect()
        self.assertNotEqual(frames(other.transport.value())[0]["nonce"], challenge["nonce"])

    def test_rightSecretApplies(self):
        """
        A peer that answers with the right MAC is identified, and what it
        replicates is applied.
        """
        link, transport = self.connect()
        challenge = frames(transport.value())[0]
        (welcome,) = self.hello(link)
        self.assertEqual(welcome["op"], "peer_welcome")
        proof = peer.transcript("node-a", "node-b", challenge["nonce"], b"c" * 32)
        self.assertEqual(welcome["mac"], peer.welcomeMac(SECRET, proof))
        self.assertNotEqual(welcome["mac"], peer.helloMac(SECRET, proof))
        self.assertEqual(link.nodeId, "node-b")
        self.assertFalse(transport.disconnecting)
        link.dataReceived(wire.encode(clientState()))
        self.assertEqual([h.instanceId for h in self.held()], ["10.0.0.1#80#DEFAULT"])
        self.assertEqual(self.cluster.membership.member("node-b").clientAddress, "b:9850")

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
            "proto": PROTO,
            "nonce": b"c" * 32,
            "mac": peer.helloMac(
                b"wrong", peer.transcript("node-a", "node-b", challenge["nonce"], b"c" * 32)
            ),
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
            wire.encode({"op": "peer_hello", "node": "node-b", "address": "b:1", "proto": PROTO,
                         "nonce": b"c" * 32})
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
        """
        A connector speaking an earlier peer protocol (1: a one-way MAC; 2:
        instances as maps) is refused with C{UNSUPPORTED_VERSION}.
        """
        for proto in (1, 2):
            link, transport = self.connect()
            self.hello(link, proto=proto)
            self.assertEqual(frames(transport.value())[0]["code"], wire.UNSUPPORTED_VERSION)
            self.assertTrue(transport.disconnecting)

    def test_versionsOffered(self):
        """
        The challenge names the lowest version this node speaks as C{proto}
        (what a member from before checks), the highest as C{proto_max} and
        the capabilities as C{caps} when there are some: this release's is
        what a member from before sends.
        """
        link, transport = self.connect()
        (challenge,) = frames(transport.value())
        self.assertEqual(challenge["proto"], dialect.LOWEST)
        self.assertEqual(challenge.get("proto_max", challenge["proto"]), dialect.HIGHEST)
        self.assertEqual(challenge.get("caps", []), sorted(dialect.CAPABILITIES))
        self.node, self.cluster = makeCluster(offer=dialect.Offer(3, 4, {"forward"}))
        link, transport = self.connect()
        (challenge,) = frames(transport.value())
        self.assertEqual((challenge["proto"], challenge["proto_max"], challenge["caps"]),
                         (3, 4, ["forward"]))

    def test_negotiated(self):
        """
        The link speaks the version the connector chose and the capabilities
        both ends have; a connector from before capabilities (no C{caps})
        gets a link that has none.
        """
        self.node, self.cluster = makeCluster(offer=dialect.Offer(3, 3, {"forward", "other"}))
        link, _ = self.connect()
        self.hello(link, caps=["forward", "from-the-future"])
        self.assertEqual(link.dialect.version, PROTO)
        self.assertEqual(link.dialect.capabilities, {"forward"})
        before, _ = self.connect()
        self.hello(before)
        self.assertEqual(before.dialect.capabilities, frozenset())

    def test_versionNotSpoken(self):
        """
        A connector that chose a version this node does not speak (a later
        one) is refused with C{UNSUPPORTED_VERSION}, naming both.
        """
        link, transport = self.connect()
        self.hello(link, proto=dialect.HIGHEST + 1)
        (error,) = frames(transport.value())
        self.assertEqual(error["code"], wire.UNSUPPORTED_VERSION)
        self.assertIn(f"not {dialect.HIGHEST + 1}", error["message"])
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(link.nodeId)

    def test_badCapabilities(self):
        """
        Capabilities that are not a short list of short strings are
        C{BAD_REQUEST} naming C{caps}; the link is not opened.
        """
        for caps in ("cluster_dots", [1], ["x" * 65], ["c"] * 65):
            link, transport = self.connect()
            self.hello(link, caps=caps)
            (error,) = frames(transport.value())
            self.assertEqual(error["code"], wire.BAD_REQUEST)
            self.assertIn("caps", error["message"])
            self.assertIsNone(link.nodeId)

    def test_relayedChallengeRefused(self):
        """
        An answer made for another acceptor (a challenge relayed to the
        connector by a man in the middle posing as node-c) does not open
        this node: the transcript binds the acceptor's id.
        """
        link, transport = self.connect()
        (error,) = self.hello(link, acceptor="node-c")
        self.assertEqual(error["code"], wire.UNAUTHORIZED)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(link.nodeId)

    def test_replayedAnswerRefused(self):
        """
        An answer recorded on an earlier connection (another challenge nonce)
        is refused.
        """
        first, firstTransport = self.connect()
        challenge = frames(firstTransport.value())[0]
        proof = peer.transcript("node-a", "node-b", challenge["nonce"], b"c" * 32)
        link, transport = self.connect()
        transport.clear()
        link.dataReceived(wire.encode({
            "op": "peer_hello", "node": "node-b", "address": "b:1", "proto": PROTO,
            "nonce": b"c" * 32, "mac": peer.helloMac(SECRET, proof),
        }))
        self.assertEqual(frames(transport.value())[0]["code"], wire.UNAUTHORIZED)
        self.assertIsNone(link.nodeId)

    def test_reflectedWelcomeRefused(self):
        """
        A C{peer_welcome} MAC reflected back as a C{peer_hello} answer (what
        this node would prove as an acceptor) does not authenticate: the two
        proofs have their own labels.
        """
        link, transport = self.connect()
        challenge = frames(transport.value())[0]
        proof = peer.transcript("node-a", "node-b", challenge["nonce"], b"c" * 32)
        (error,) = self.hello(link, mac=peer.welcomeMac(SECRET, proof))
        self.assertEqual(error["code"], wire.UNAUTHORIZED)

    def test_badNonce(self):
        link, transport = self.connect()
        (error,) = self.hello(link, nonce=b"short")
        self.assertEqual(error["code"], wire.UNAUTHORIZED)
        self.assertTrue(error["message"].startswith("nonce:"), error)

    def test_handshakeFrameLimit(self):
        """
        Before C{peer_hello} is accepted, a frame above 64 KiB is refused
        (not buffered up to the peer port's C{max_frame}); after it, the
        peer port's limit applies.
        """
        link, transport = self.connect()
        transport.clear()
        link.dataReceived((64 * 1024 + 1).to_bytes(4, "big") + b"x" * 1000)
        (error,) = frames(transport.value())
        self.assertEqual(error["code"], wire.FRAME_TOO_LARGE)
        self.assertTrue(transport.disconnecting)
        link, transport = self.connect()
        self.hello(link)
        link.dataReceived((64 * 1024 + 1).to_bytes(4, "big") + b"x" * 1000)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)

    def test_handshakeDeadline(self):
        """
        A connection that has not finished its handshake within
        C{handshake_timeout_ms} is aborted, however it trickles bytes.
        """
        clock = Clock()
        self.node, self.cluster = makeCluster(clock=clock, down_after_ms=60000,
                                              handshake_timeout_ms=1000)
        link, transport = self.connect()
        for _ in range(9):
            link.dataReceived(b"\x00")
            clock.advance(0.1)
        self.assertFalse(transport.disconnected)
        clock.advance(0.11)
        self.assertTrue(transport.disconnected)
        done, doneTransport = self.connect()
        self.hello(done)
        clock.advance(5)
        self.assertFalse(doneTransport.disconnected)

    def pieces(self, parts, clientId="node-b#x#1", revision=1):
        """
        C{client_state} pieces of one client: C{parts} lists, per piece, the
        ports of its instances (all in the one service).
        """
        out = []
        for n, ports in enumerate(parts):
            message = clientState(clientId=clientId, revision=revision)
            message["services"] = [
                [SERVICE, [record(port=p) for p in ports]]
            ]
            message["part"] = n
            if n < len(parts) - 1:
                message["more"] = True
            out.append(message)
        return out

    def ports(self):
        return sorted(h.port for h in self.held())

    def test_piecesAppliedWhole(self):
        """
        The pieces of a C{client_state} (5.2 rule 7) are applied together
        when the last arrives; before that nothing of the client shows. A
        C{ping} between pieces is answered and changes nothing.
        """
        link, transport = self.connect()
        self.hello(link)
        first, second, last = self.pieces([[1, 2], [3], [4, 5]])
        link.dataReceived(wire.encode(first) + wire.encode({"op": "ping"}))
        link.dataReceived(wire.encode(second))
        self.assertEqual(self.held(), [])
        self.assertNotIn("node-b#x#1", self.node.manager.clients)
        link.dataReceived(wire.encode(last))
        self.assertEqual(self.ports(), [1, 2, 3, 4, 5])
        self.assertEqual(frames(transport.value()), [{"op": "pong"}])
        self.assertFalse(transport.disconnecting)

    def test_piecesInterrupted(self):
        """
        Another record before the last piece discards the unfinished client;
        its later pieces are answered with C{resend} for it and not applied.
        """
        link, transport = self.connect()
        self.hello(link)
        first, second, last = self.pieces([[1, 2], [3], [4, 5]])
        other = clientState(clientId="node-b#x#2")
        link.dataReceived(wire.encode(first) + wire.encode(other))
        link.dataReceived(wire.encode(second) + wire.encode(last))
        self.assertEqual(
            frames(transport.value()),
            [{"op": "resend", "client_ids": ["node-b#x#1"]}] * 2,
        )
        self.assertNotIn("node-b#x#1", self.node.manager.clients)
        self.assertIn("node-b#x#2", self.node.manager.clients)

    def test_piecesOfAnotherRevision(self):
        """
        A piece of another revision than the one being assembled starts
        over: the unfinished one is dropped, the new one applies whole.
        """
        link, transport = self.connect()
        self.hello(link)
        old = self.pieces([[1], [2]], revision=1)
        new = self.pieces([[7], [8]], revision=2)
        for message in (old[0], new[0], new[1]):
            link.dataReceived(wire.encode(message))
        self.assertEqual(self.ports(), [7, 8])

    def test_piecesLostWithLink(self):
        """
        A link that breaks mid-client forgets the pieces it carried.
        """
        link, transport = self.connect()
        self.hello(link)
        first, last = self.pieces([[1], [2]])
        link.dataReceived(wire.encode(first))
        link.connectionLost(None)
        link, transport = self.connect()
        self.hello(link)
        link.dataReceived(wire.encode(last))
        self.assertEqual(frames(transport.value()), [{"op": "resend", "client_ids": ["node-b#x#1"]}])
        self.assertEqual(self.held(), [])

    def test_rejectedPiecesNotAskedAgain(self):
        """
        A client rejected at one of its pieces (here its metadata is above
        this node's C{max_metadata_bytes}) is not asked for again: its
        remaining pieces are dropped without a C{resend} (5.2 rules 6 and
        7), and a digest naming that revision asks nothing either.
        """
        self.node, self.cluster = makeCluster(max_metadata_bytes=100)
        link, transport = self.connect()
        self.hello(link)
        first, second, last = self.pieces([[1], [2], [3]])
        second["services"][0][1][0][6] = {"k": "v" * 200}  # the metadata
        for message in (first, second, last):
            link.dataReceived(wire.encode(message))
        sent = frames(transport.value())
        self.assertEqual([(m["op"], m["code"]) for m in sent], [("error", wire.LIMIT_EXCEEDED)])
        self.assertIn("services[0].instances[0].metadata", sent[0]["message"])
        transport.clear()
        link.dataReceived(wire.encode({"op": "digest", "clients": [["node-b#x#1", 1]]}))
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.held(), [])

    def test_badPart(self):
        link, transport = self.connect()
        self.hello(link)
        for bad in ({"part": -1}, {"part": "1"}, {"more": 1}):
            transport.clear()
            message = clientState()
            message.update(bad)
            link.dataReceived(wire.encode(message))
            (error,) = frames(transport.value())
            self.assertEqual(error["code"], wire.BAD_REQUEST)
            self.assertTrue(error["message"].startswith(next(iter(bad)) + ":"), error)

    def test_badDigest(self):
        """
        A digest with hashes of the wrong size, or a listing naming buckets
        that do not exist, is refused naming the field.
        """
        link, transport = self.connect()
        self.hello(link)
        for message, field in (
            ({"op": "digest", "hashes": b"x" * 100}, "hashes"),
            ({"op": "digest", "clients": [], "buckets": [1024]}, "buckets"),
            ({"op": "digest", "clients": [], "buckets": "all"}, "buckets"),
        ):
            transport.clear()
            link.dataReceived(wire.encode(message))
            (error,) = frames(transport.value())
            self.assertEqual(error["code"], wire.BAD_REQUEST)
            self.assertTrue(error["message"].startswith(field + ":"), error)

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
        bad["services"][0][1][0][1] = 0  # the port
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
        bad["services"][0][1][0][1] = 0  # the port
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
            bad["services"][0][1][0][1] = 0  # the port
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

    def challenge(self, nonce=b"n" * 32, node="node-b", **versions):
        """
        Send the link a challenge (C{proto} and C{caps} as a member from
        before capabilities would, unless C{versions} say otherwise); return
        its C{peer_hello}.
        """
        versions.setdefault("proto", PROTO)
        self.link.dataReceived(
            wire.encode(dict({"op": "challenge", "nonce": nonce, "node": node}, **versions))
        )
        (hello,) = frames(self.transport.value())
        self.transport.clear()
        return hello

    def test_answer(self):
        """
        The link answers a challenge with C{peer_hello} carrying its own
        nonce and the MAC of the transcript, and sends nothing more until
        the acceptor proved the secret with C{peer_welcome}; then it streams
        its snapshot and pings.
        """
        hello = self.challenge()
        self.assertEqual(hello["op"], "peer_hello")
        self.assertEqual(hello["node"], "node-a")
        self.assertEqual(hello["address"], "a:1")
        self.assertEqual(hello["proto"], PROTO)
        self.assertEqual(len(hello["nonce"]), 32)
        proof = peer.transcript("node-b", "node-a", b"n" * 32, hello["nonce"])
        self.assertEqual(hello["mac"], peer.helloMac(SECRET, proof))
        self.clock.advance(0.2)
        self.assertEqual(self.transport.value(), b"")
        self.assertIsNone(self.feed.link)
        self.link.dataReceived(
            wire.encode({"op": "peer_welcome", "mac": peer.welcomeMac(SECRET, proof)})
        )
        ops = [m["op"] for m in frames(self.transport.value())]
        self.assertEqual(ops, ["snapshot_begin", "snapshot_end", "ping"])
        self.assertIs(self.feed.link, self.link)
        self.assertEqual(self.cluster.membership.state("node-b"), "UP")

    def test_freshNonces(self):
        """
        Each answer carries a nonce of its own.
        """
        first = self.challenge()
        other = peer.OutboundFactory(self.cluster, self.feed).buildProtocol(None)
        transport = StringTransport()
        other.makeConnection(transport)
        self.addCleanup(other.connectionLost, None)
        other.dataReceived(
            wire.encode({"op": "challenge", "nonce": b"n" * 32, "node": "node-b", "proto": PROTO})
        )
        self.assertNotEqual(frames(transport.value())[0]["nonce"], first["nonce"])

    def test_unprovenAcceptorGetsNothing(self):
        """
        An acceptor that never proves the secret (it only answers a ping,
        as anybody could) gets no snapshot, is not taken as the member,
        and the link is closed.
        """
        self.challenge()
        self.link.dataReceived(wire.encode({"op": "pong"}))
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.feed.link)
        self.assertNotEqual(self.cluster.membership.state("node-b"), "UP")

    def test_reflectedProofRefused(self):
        """
        The connector's own MAC reflected back as the welcome, or a welcome
        made with another secret, is refused: nothing is sent.
        """
        for mac in ("reflect", "wrong"):
            hello = self.challenge()
            proof = peer.transcript("node-b", "node-a", b"n" * 32, hello["nonce"])
            forged = hello["mac"] if mac == "reflect" else peer.welcomeMac(b"wrong", proof)
            self.link.dataReceived(wire.encode({"op": "peer_welcome", "mac": forged}))
            self.assertEqual(self.transport.value(), b"")
            self.assertTrue(self.transport.disconnecting)
            self.assertIsNone(self.feed.link)
            self.setUp()

    def test_refusedGetsNoSnapshot(self):
        """
        A member that refuses our answer gets no snapshot; the link closes.
        """
        self.challenge()
        self.link.dataReceived(
            wire.encode({"op": "error", "re": None, "code": "UNAUTHORIZED", "message": "mac"})
        )
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.feed.link)
        self.assertIsNone(self.cluster.membership.member("node-b"))

    def test_highestCommonVersion(self):
        """
        Given a range, the connector answers with the highest version both
        speak and its capabilities; once welcomed, the link has those both
        ends have.
        """
        self.node, self.cluster = makeCluster(
            clock=self.clock, offer=dialect.Offer(3, 4, {"forward", "other"})
        )
        self.feed = self.cluster.replicator.feeds["b:1"]
        self.transport = StringTransport()
        self.link = peer.OutboundFactory(self.cluster, self.feed).buildProtocol(None)
        self.link.makeConnection(self.transport)
        self.addCleanup(self.link.connectionLost, None)
        hello = self.challenge(proto=3, proto_max=6, caps=["forward", "from-the-future"])
        self.assertEqual(hello["proto"], 4)
        self.assertEqual(hello["caps"], ["forward", "other"])
        proof = peer.transcript("node-b", "node-a", b"n" * 32, hello["nonce"])
        self.link.dataReceived(
            wire.encode({"op": "peer_welcome", "mac": peer.welcomeMac(SECRET, proof)})
        )
        self.assertEqual(self.link.dialect.version, 4)
        self.assertEqual(self.link.dialect.capabilities, {"forward"})

    def test_acceptorFromBefore(self):
        """
        An acceptor from before ranges and capabilities (only C{proto}) gets
        that version; the link has no capability.
        """
        hello = self.challenge()
        self.assertEqual(hello["proto"], PROTO)
        proof = peer.transcript("node-b", "node-a", b"n" * 32, hello["nonce"])
        self.link.dataReceived(
            wire.encode({"op": "peer_welcome", "mac": peer.welcomeMac(SECRET, proof)})
        )
        self.assertEqual(self.link.dialect.capabilities, frozenset())

    def test_noCommonVersion(self):
        """
        An acceptor whose versions are all later than this node's is not
        answered: the link closes, saying why.
        """
        with capturedLogs() as events:
            self.link.dataReceived(wire.encode({
                "op": "challenge", "nonce": b"n" * 32, "node": "node-b",
                "proto": dialect.HIGHEST + 1, "proto_max": dialect.HIGHEST + 3,
            }))
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(any("speaks no version" in e.get("log_format", "") for e in events))

    def test_badChallenge(self):
        for challenge in (
            {"op": "challenge", "nonce": "text", "node": "node-b", "proto": PROTO},
            {"op": "challenge", "nonce": b"short", "node": "node-b", "proto": PROTO},
            {"op": "challenge", "nonce": b"n" * 32, "node": "node-b", "proto": 1},
            {"op": "challenge", "nonce": b"n" * 32, "node": "node-b", "proto": 2},
            {"op": "challenge", "nonce": b"n" * 32, "node": "node-b", "proto": "3"},
            {"op": "challenge", "nonce": b"n" * 32, "node": "node-b", "proto": PROTO,
             "proto_max": PROTO - 1},
            {"op": "challenge", "nonce": b"n" * 32, "node": "node-b", "proto": PROTO,
             "caps": "cluster_dots"},
        ):
            self.link.dataReceived(wire.encode(challenge))
            self.assertEqual(self.transport.value(), b"")
            self.assertTrue(self.transport.disconnecting)
            self.assertIsNone(self.feed.link)
            self.setUp()

    def welcome(self):
        hello = self.challenge()
        proof = peer.transcript("node-b", "node-a", b"n" * 32, hello["nonce"])
        self.link.dataReceived(
            wire.encode({"op": "peer_welcome", "mac": peer.welcomeMac(SECRET, proof)})
        )
        self.transport.clear()

    def test_digestAsked(self):
        """
        A C{digest_ask} is answered with the listing of those buckets; a bad
        one is ignored.
        """
        self.welcome()
        self.link.dataReceived(wire.encode({"op": "digest_ask", "buckets": [3, 9]}))
        (listing,) = frames(self.transport.value())
        self.assertEqual(listing, {"op": "digest", "clients": [], "buckets": [3, 9]})
        self.transport.clear()
        for bad in ([-1], [1024], "3", None):
            self.link.dataReceived(wire.encode({"op": "digest_ask", "buckets": bad}))
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_oversizedFrameNotSent(self):
        """
        A frame above C{peer_max_frame} is never written (the member would
        drop the link for it): it is logged instead, and the link goes on.
        """
        self.welcome()
        limit = self.cluster.config.peer_max_frame
        with capturedLogs() as events:
            self.link.sendMessage({"op": "synced", "n": 1, "restoring": ["x" * limit]})
        self.assertEqual(self.transport.value(), b"")
        (event,) = [e for e in events if e.get("op") == "synced"]
        self.assertEqual(event["limit"], limit)
        self.link.sendMessage({"op": "ping"})
        self.assertEqual(frames(self.transport.value()), [{"op": "ping"}])

    def test_handshakeFrameLimit(self):
        """
        Before the welcome, the acceptor may not send frames above 64 KiB.
        """
        self.challenge()
        self.link.dataReceived((64 * 1024 + 1).to_bytes(4, "big"))
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.feed.link)

    def test_closedLinkLetsGoOfTransport(self):
        """
        A closed link is no longer its transport's producer (a TLS transport
        would otherwise keep a cycle alive).
        """
        self.assertIs(self.transport.producer, self.link)
        self.link.connectionLost(None)
        self.assertIsNone(self.transport.producer)

    def test_silentLinkDropped(self):
        """
        A link that hears nothing for C{down_after_ms} is aborted (a
        half-open link would otherwise look alive forever).
        """
        self.clock.advance(0.5)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnected)
