"""
Tests for L{distro.collector}: timing the collector's pauses and freezing
what survives a collection of generation 1 or 2; and that a closed client
connection leaves nothing for the collector (what makes freezing safe).
"""

import gc
import json
import os
import types
import weakref

from twisted.internet import ssl
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from distro.collector import CollectorWatch
from distro.nacos.connection import NacosConnection
from distro.nacos.payload import Payload, encode
from distro.nacos.service import NacosService
from distro.native.session import ClientPortFactory
from tests._factories import instance
from tests._gc import Clock, CollectorOff, FakeCollector
from tests._h2client import H2Client, framed
from tests._node import NodeHarness, service
from tests._tempfiles import TempPathMixin
from tests._tls import Authority


class CollectorWatchTests(SynchronousTestCase):
    def setUp(self):
        self.collector = FakeCollector()
        self.clock = Clock()

    def watch(self, freeze=True):
        watch = CollectorWatch(freeze=freeze, collector=self.collector, now=self.clock)
        watch.start()
        return watch

    def test_freezeAfterOlderCollections(self):
        """
        What exists when it starts is frozen; then what survives each
        collection of generation 1 or 2 (so that what lasts is walked in
        generations 0 and 1 only); a collection of generation 0 freezes
        nothing.
        """
        self.watch()
        self.assertEqual(self.collector.freezes, 1)
        self.collector.collect(0, 0.001, self.clock)
        self.assertEqual(self.collector.freezes, 1)
        self.collector.collect(1, 0.002, self.clock)
        self.assertEqual(self.collector.freezes, 2)
        self.collector.collect(0, 0.001, self.clock)
        self.collector.collect(2, 0.003, self.clock)
        self.assertEqual(self.collector.freezes, 3)

    def test_thresholdsKept(self):
        """
        Python's thresholds are kept: freezing, not a change of them, keeps
        each collection short.
        """
        self.collector.threshold = (900, 12, 10)
        self.watch()
        self.assertEqual(self.collector.threshold, (900, 12, 10))

    def test_stopKeepsWhatIsFrozen(self):
        """
        Stopping leaves what is frozen frozen (a stopping node still serves
        while it drains, and a full collection of all it unfroze would
        pause it), and freezes no more.
        """
        watch = self.watch()
        watch.stop()
        self.collector.collect(1, 0.002, self.clock)
        self.assertEqual(self.collector.freezes, 1)
        self.assertEqual(self.collector.callbacks, [])

    def test_noFreezeWhenOff(self):
        self.watch(freeze=False)
        self.collector.collect(2, 0.003, self.clock)
        self.assertEqual((self.collector.freezes, self.collector.threshold), (0, (700, 10, 10)))

    def test_pausesCounted(self):
        """
        Each pause is counted in its generation's buckets, with their sum;
        the cumulative counts are what a histogram shows.
        """
        watch = self.watch()
        self.collector.collect(0, 0.0004, self.clock)
        self.collector.collect(0, 0.003, self.clock)
        self.collector.collect(2, 2.5, self.clock)
        young, full = watch.pauses[0], watch.pauses[2]
        self.assertAlmostEqual(young.total, 0.0034)
        cumulative = dict(young.cumulative())
        self.assertEqual((cumulative[0.0005], cumulative[0.002], cumulative[0.005]), (1, 1, 2))
        self.assertEqual(cumulative[float("inf")], 2)
        self.assertEqual(full.cumulative()[-2:], [(1.0, 0), (float("inf"), 1)])
        self.assertNotIn(1, watch.pauses)

    def test_pausesTimedAndSlowOnesLogged(self):
        """
        Every pause is timed; those of 20 ms or more are logged with their
        generation; stopping logs the longest and removes the callback.
        """
        watch = self.watch()
        with capturedLogs() as events:
            self.collector.collect(0, 0.004, self.clock)
            self.collector.collect(2, 0.035, self.clock)
            watch.stop()
        self.assertEqual(watch.collections, 2)
        self.assertAlmostEqual(watch.longest, 0.035)
        slow = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual([(e["generation"], round(e["pause"])) for e in slow], [(2, 35)])
        self.assertEqual(self.collector.callbacks, [])
        self.assertAlmostEqual(events[-1]["longest"], 35.0)


class NoCyclesTests(CollectorOff, TempPathMixin, SynchronousTestCase):
    """
    A closed client connection is freed by reference counting alone: the
    node's steady state makes no cyclic garbage, so freezing what survives
    a collection of generation 1 loses nothing to it.
    """

    def test_closedSessionFreed(self):
        harness = NodeHarness()
        connection = harness.client()
        connection.ok("register", service=service(), instance=instance())
        connection.ok("subscribe", service=service())
        connection.ok("subscribe", service=service(), clusters=["A"])
        publisher = harness.client()
        publisher.ok("register", service=service(), instance=instance(port=2))
        harness.clock.advance(1)
        session = weakref.ref(connection.session)
        channel = weakref.ref(connection.session.channel)
        connection.ok("bye")
        connection.lose(orderly=True)
        del connection
        self.assertIsNone(session())
        self.assertIsNone(channel())

    def test_unsetNacosConnectionFreed(self):
        """
        A Nacos connection made to answer a request before the stream is
        set up (every SDK's server check) is freed once answered.
        """
        harness = NodeHarness()
        connection = NacosConnection(harness.node, "c-1", "10.0.0.7")
        reply = connection.request(Payload("ServerCheckRequest", {}, "", b"{}"))
        self.assertEqual(reply.type, "ServerCheckResponse")
        freed = weakref.ref(connection)
        del connection
        self.assertIsNone(freed())

    def test_closedNacosGrpcConnectionFreed(self):
        """
        A Nacos SDK's gRPC connection, set up, subscribed and pushed to, is
        freed by reference counting once closed (its HTTP/2 side referred
        back to it).
        """
        harness = NodeHarness()
        nacos = NacosService(harness.node, "tcp:0:interface=127.0.0.1", None)
        freed = weakref.ref(self.nacosSession(nacos))
        self.assertIsNone(freed())

    def nacosSession(self, nacos):
        """
        What an SDK does on a connection to the port C{nacos}: its server
        check, its stream's set up, a registration, a subscription, a batch
        (answered over turns), then a change pushed to it; then the
        connection closes. Return the port's side of it, let go by all else.
        """
        client = H2Client(nacos.factory)
        def unary(type_, **body):
            client.unary("/Request/request", encode(Payload(type_, {}, "", json.dumps(body).encode())))

        unary("ServerCheckRequest")
        streamId = client.open("/BiRequestStream/requestBiStream")
        client.send(streamId, framed(encode(Payload("ConnectionSetupRequest", {}, "", json.dumps(
            {"labels": {"module": "naming"}}).encode()))))
        unary("InstanceRequest", serviceName="orders", type="registerInstance",
              instance={"ip": "10.0.0.1", "port": 80})
        unary("SubscribeServiceRequest", serviceName="orders", subscribe=True)
        unary("BatchInstanceRequest", serviceName="orders", type="batchRegisterInstance",
              instances=[{"ip": f"10.0.{n // 250}.{n % 250 + 1}", "port": 80} for n in range(1000)])
        client.pump()
        server, client.server = client.server, None
        server.connectionLost(Failure(ConnectionDone()))
        server.transport.unregisterProducer()  # as a closing tcp.Server does
        return server

    def test_workloadLeavesNoCyclicGarbage(self):
        """
        What the node does for its clients (the native port's sessions, a
        Nacos SDK's connection and its pushes, work spread over turns, a
        client's removal in slices) leaves nothing of the node's for the
        collector alone: it would be frozen, never reclaimed.
        """
        gc.collect()
        harness = NodeHarness()
        nacos = NacosService(harness.node, "tcp:0:interface=127.0.0.1", None)
        gc.set_debug(gc.DEBUG_SAVEALL)
        self.addCleanup(gc.set_debug, 0)
        for round in range(2):
            connection = harness.client()
            for n in range(40):
                connection.ok("register", service=service(f"s{n}"), instance=instance())
            connection.ok("subscribe", service=service("s0"))
            publisher = harness.client()
            publisher.ok("register", service=service("s0"), instance=instance(port=2))
            harness.clock.advance(1)
            connection.ok("bye")
            connection.lose(orderly=True)
            publisher.lose(orderly=False)
            self.nacosSession(nacos)
            del connection, publisher
            for _ in range(200):
                harness.clock.advance(1)
        gc.collect()
        left = sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                       if type(o).__module__.startswith("distro")}
                      | {f"function {o.__module__}.{o.__qualname__}" for o in gc.garbage
                         if isinstance(o, types.FunctionType) and o.__module__.startswith("distro")})
        del gc.garbage[:]
        self.assertEqual(left, [])

    def test_closedTLSSessionFreed(self):
        """
        Behind TLS too (whose transport does not forget its producer when
        it closes), a closed session is freed by reference counting.
        """
        path = self.tempPath()
        os.makedirs(path)
        authority = Authority(path)
        certPath, keyPath = authority.server()
        with open(certPath) as cert, open(keyPath) as key:
            credentials = ssl.PrivateCertificate.loadPEM(cert.read() + key.read())
        harness = NodeHarness()
        factory = TLSMemoryBIOFactory(
            credentials.options(), False, ClientPortFactory(harness.node)
        )
        tls = factory.buildProtocol(None)
        tls.makeConnection(StringTransport())
        session = weakref.ref(tls.wrappedProtocol)
        tls.connectionLost(Failure(ConnectionDone()))
        del tls, factory
        self.assertIsNone(session())

