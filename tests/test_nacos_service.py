"""
Tests for L{distro.nacos.service}: the Nacos gRPC port's addresses, and its
service in memory, a real node spoken to by an h2 client. (The port of a
real C{twistd distro-node} process, driven with grpcio's own client:
L{tests.process.test_nacos_service}.)
"""

import json

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from zope.interface.verify import verifyObject

from distro import h2grpc
from distro.interfaces import IFrontEnd
from distro.native.service import ClientPortService
from distro.nacos.service import NacosService
from distro.nacos.listen import NacosListenError, parseListen
from distro.nacos.payload import Payload, decode, encode

from ._h2client import EndedAssertions, H2Client, framed
from ._node import NodeHarness


class ListenTests(SynchronousTestCase):
    def test_addresses(self):
        self.assertIsNone(parseListen(""))
        self.assertEqual(parseListen("tcp:9848"), "0.0.0.0:9848")
        self.assertEqual(parseListen("tcp:0:interface=127.0.0.1"), "127.0.0.1:0")
        self.assertEqual(parseListen("tcp6:9848"), "[::]:9848")
        self.assertEqual(parseListen("tcp:9848:interface=::1"), "[::1]:9848")

    def test_refused(self):
        for bad in ("9848", "ssl:9848", "tcp:x", "tcp:70000", "tcp:1:backlog=5", "unix:/a"):
            self.assertRaises(NacosListenError, parseListen, bad)

    def test_frontEnds(self):
        """
        Both client ports are L{IFrontEnd}s.
        """
        from tests._node import NodeHarness

        node = NodeHarness().node
        for frontEnd in (ClientPortService(node, MemoryReactorClock()),
                         NacosService(node, "tcp:0", MemoryReactorClock())):
            verifyObject(IFrontEnd, frontEnd)
            self.assertEqual(frontEnd.connectionCount(), 0)
            self.assertIsNone(frontEnd.address)


class InMemoryTests(EndedAssertions, SynchronousTestCase):
    """
    The port's service in memory: a real node on a clock, spoken to by an
    h2 client over a L{StringTransport} (tests/_h2client.py).
    """

    def setUp(self):
        self.start()

    def start(self, **config):
        self.harness = NodeHarness(**config)
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.service = NacosService(self.node, "tcp:0:interface=127.0.0.1", None)

    def client(self, **options):
        return H2Client(self.service.factory, **options)

    def unary(self, client, type_, **body):
        response = client.unary("/Request/request", encode(Payload(type_, {}, "", json.dumps(body).encode())))
        if not response.messages():
            return response.status, None
        reply = decode(response.messages()[0])
        return reply.type, json.loads(reply.body)

    def openStream(self, client, setUp=True, **body):
        streamId = client.open("/BiRequestStream/requestBiStream")
        if setUp:
            body.setdefault("labels", {"module": "naming"})
            self.streamSend(client, streamId, "ConnectionSetupRequest", **body)
        else:
            client.pump()
        return streamId

    def streamSend(self, client, streamId, type_, **body):
        client.send(streamId, framed(encode(Payload(type_, {}, "", json.dumps(body).encode()))))

    def streamMessages(self, client, streamId):
        return [decode(m) for m in client.responses[streamId].messages()]

    def test_oneConnectionId(self):
        """
        The id a server check gives is the id of the connection's stream,
        in Nacos' form from the node's clock; its unary requests are
        served by that stream's client.
        """
        self.clock.advance(1234.5)
        client = self.client()
        kind, checked = self.unary(client, "ServerCheckRequest")
        self.openStream(client)
        (connectionId, connection), = self.service.connections.items()
        self.assertEqual((checked["connectionId"], connection.connectionId), (connectionId, connectionId))
        self.assertEqual(connectionId, "1234500_10.0.0.7_40000")
        kind, reply = self.unary(client, "InstanceRequest", serviceName="orders", type="registerInstance",
                                 instance={"ip": "10.0.0.1", "port": 80, "ephemeral": True})
        self.assertEqual((kind, reply["resultCode"]), ("InstanceResponse", 200))
        publishers = [c.clientId for c in self.node.manager.clients.values() if c.services]
        self.assertEqual(publishers, [connection.client.clientId])

    def test_registeredAnswerEncodedOnce(self):
        """
        Every registration is answered with the same bytes, encoded once,
        not again per request.
        """
        client = self.client()
        self.openStream(client)
        requests = [encode(Payload("InstanceRequest", {}, "", json.dumps(
            {"serviceName": f"s{n}", "type": "registerInstance", "instance": {"ip": "10.0.0.1", "port": 80}}
        ).encode())) for n in range(2)]
        answers = [self.service.unary(h2grpc.Call(client.server, 101 + 2 * n, "/Request/request", True), request)
                   for n, request in enumerate(requests)]
        self.assertIs(answers[0], answers[1])
        self.assertEqual(decode(answers[0]).type, "InstanceResponse")
        self.assertEqual(self.node.counts()["services"], 2)

    def test_batchAnsweredOverTurns(self):
        """
        A batch of thousands is answered over turns (a Deferred through the
        port), its answer encoded like any other.
        """
        client = self.client()
        self.openStream(client)
        instances = [{"ip": f"10.0.{n // 250}.{n % 250 + 1}", "port": 80} for n in range(2000)]
        response = client.unary("/Request/request", encode(Payload("BatchInstanceRequest", {}, "", json.dumps(
            {"serviceName": "orders", "type": "batchRegisterInstance", "instances": instances}).encode())))
        for _ in range(100):
            self.clock.advance(0)
            client.pump()
        reply = decode(response.messages()[0])
        self.assertEqual((reply.type, json.loads(reply.body)["resultCode"]), ("BatchInstanceResponse", 200))
        self.assertEqual(self.node.counts()["instances"], 2000)

    def test_twoStreamsOnOneConnection(self):
        """
        A second stream on a connection is a client of its own and does
        not end the first.
        """
        client = self.client()
        first, second = self.openStream(client), self.openStream(client)
        self.assertEqual(len({c.client.clientId for c in self.service.connections.values()}), 2)
        self.assertFalse(client.responses[first].ended or client.responses[second].ended)

    def test_setUpDeadline(self):
        """
        A stream that does not set up within C{handshake_timeout_ms} (the
        node's clock) ends with C{DEADLINE_EXCEEDED}, whether it sent
        nothing (then the connection, serving nobody, is closed) or
        something else than its set up.
        """
        client = self.client()
        streamId = self.openStream(client, setUp=False)
        self.clock.advance(self.node.config.handshake_timeout_ms / 1000.0)
        client.pump()
        self.assertEqual(client.responses[streamId].status, h2grpc.DEADLINE_EXCEEDED)
        self.assertEnded(client)
        other = self.client(ip="10.0.0.8")
        streamId = self.openStream(other, setUp=False)
        self.streamSend(other, streamId, "HealthCheckRequest")
        self.clock.advance(self.node.config.handshake_timeout_ms / 1000.0)
        other.pump()
        self.assertEqual(other.responses[streamId].status, h2grpc.DEADLINE_EXCEEDED)

    def test_idleConnectionClosed(self):
        """
        A connection that never opens a stream (unary calls only) is closed
        after C{handshake_timeout_ms}, whatever it sends (found from
        outside: 1,004 such connections ran the node out of descriptors).
        """
        client = self.client()
        for _ in range(5):
            self.unary(client, "ServerCheckRequest")
            self.clock.advance(self.node.config.handshake_timeout_ms / 5000.0)
        self.assertEnded(client)
        other = self.client(ip="10.0.0.8")
        self.openStream(other)
        self.clock.advance(self.node.config.handshake_timeout_ms / 1000.0 * 3)
        self.assertFalse(other.closed)

    def test_connectionsPerIp(self):
        """
        C{max_connections_per_ip} counts TCP connections on the Nacos port.
        """
        self.start(max_connections_per_ip=1)
        self.client()
        self.assertIsNone(self.client().server)

    def test_smallBeforeSetUp(self):
        """
        Before its set up, a connection's messages are at most
        C{PRE_SETUP_MAX} bytes, unary or on the stream (found from outside:
        8 MB messages were decoded before any set up); after it, up to
        C{max_frame}.
        """
        from distro.nacos.service import PRE_SETUP_MAX

        big = b'{"x": "' + b"y" * PRE_SETUP_MAX + b'"}'
        client = self.client()
        response = client.unary("/Request/request", encode(Payload("ServerCheckRequest", {}, "", big)))
        self.assertEqual(response.status, h2grpc.RESOURCE_EXHAUSTED)
        streamId = client.open("/BiRequestStream/requestBiStream")
        client.send(streamId, framed(encode(Payload("ConnectionSetupRequest", {}, "", big))))
        self.assertEqual(client.responses[streamId].status, h2grpc.RESOURCE_EXHAUSTED)
        other = self.client(ip="10.0.0.8")
        self.openStream(other)
        response = other.unary("/Request/request", encode(Payload("HealthCheckRequest", {}, "", big)))
        self.assertEqual(decode(response.messages()[0]).type, "HealthCheckResponse")

    def test_nodeEndsAConnection(self):
        """
        The node ends a connection (its client moved, the node stops),
        whatever it holds for a client that reads nothing: C{UNAVAILABLE},
        C{GOAWAY}, the TCP connection closed, the session gone (found from
        outside: the data stayed inside gRPC behind the abort).
        """
        client = self.client(window=0)
        streamId = self.openStream(client)
        connection, = self.service.connections.values()
        for _ in range(10):
            connection.send(Payload("NotifySubscriberRequest", {}, "", b"x" * 100_000))
        clientId = connection.client.clientId
        connection.closeConnection()
        client.pump()
        self.assertEqual(client.responses[streamId].status, h2grpc.UNAVAILABLE)
        self.assertEnded(client)
        client.server.connectionLost(None)
        self.assertEqual((self.service.connections, clientId in self.node.sessions), ({}, False))

    def test_pushesWaitForAFullStream(self):
        """
        Past C{max_unsent_bytes} waiting for a stream whose SDK grants no
        window, pushes wait: the node holds no more views for it.
        """
        self.start(max_unsent_bytes=1_000_000)
        client = self.client(window=0)
        self.openStream(client)
        connection, = self.service.connections.values()
        for _ in range(20):
            connection.send(Payload("NotifySubscriberRequest", {}, "", b"x" * 100_000))
        self.assertTrue(connection.channel.paused)
        client.openWindow(1 << 24)
        self.assertFalse(connection.channel.paused)

    def test_resetStreamEndsItsClient(self):
        client = self.client()
        streamId = self.openStream(client)
        clientId, = [c.client.clientId for c in self.service.connections.values()]
        client.h2.reset_stream(streamId)
        client.pump()
        self.assertEqual(self.service.connections, {})
        self.assertNotIn(clientId, self.node.sessions)
