"""
Tests for L{distro.nacos.service}: the Nacos gRPC port of a real
C{twistd distro-node} process on 127.0.0.1, driven with grpcio's own client
(the wire of the Nacos SDKs: docs/nacos.md), and seen from distro's own
protocol too.
"""

import asyncio
import json
import queue
import re

import grpc
from grpc import aio
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from zope.interface.verify import verifyObject

from distro import tap
from distro.interfaces import IFrontEnd
from distro.nacos.service import NacosService
from distro.nacos.listen import NacosListenError, parseListen
from distro.nacos.payload import Payload, decode, encode

from ._node import NodeHarness
from .test_process import START_TIMEOUT, ProcessTestCase, waitFor

WAIT = 10.0  # seconds any one gRPC call or stream read may take


def _identity(data):
    return data


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
        for frontEnd in (tap.ClientPortService(node, MemoryReactorClock()),
                         NacosService(node, "127.0.0.1:0")):
            verifyObject(IFrontEnd, frontEnd)
            self.assertEqual(frontEnd.connectionCount(), 0)
            self.assertIsNone(frontEnd.address)

    def test_needsAsyncio(self):
        """
        A node whose reactor is not asyncio's cannot serve the Nacos port:
        refused at start, naming the key.
        """
        options = tap.Options()
        options.parseOptions(["--nacos-listen", "tcp:0:interface=127.0.0.1"])
        error = self.assertRaises(usage.UsageError, tap.makeService, options, MemoryReactorClock())
        self.assertIn("nacos_listen", str(error))


class InProcessTests(SynchronousTestCase):
    """
    The service's gRPC side in this process: a grpc.aio server and client on
    one asyncio loop of their own, the node on a clock (found in review).
    """

    def serve(self, test, **config):
        async def main():
            harness = NodeHarness(**config)
            service = NacosService(harness.node, "127.0.0.1:0")
            await Deferred.asFuture(service.startService(), asyncio.get_running_loop())
            channels = []

            def channel():
                channels.append(aio.insecure_channel(
                    service.address, options=[("grpc.use_local_subchannel_pool", 1)]))
                return channels[-1]

            try:
                return await test(harness, service, channel)
            finally:
                for c in channels:
                    await c.close()
                await Deferred.asFuture(service.stopService(), asyncio.get_running_loop())

        return asyncio.run(asyncio.wait_for(main(), 30))

    async def setUpStream(self, channel):
        call = channel.stream_stream("/BiRequestStream/requestBiStream",
                                     request_serializer=_identity, response_deserializer=_identity)()
        await call.write(encode(Payload("ConnectionSetupRequest", {}, "",
                                        b'{"labels": {"module": "naming"}}')))
        await asyncio.sleep(0.1)
        return call

    async def until(self, predicate):
        for _ in range(100):
            if predicate():
                return True
            await asyncio.sleep(0.05)
        return False

    def test_closeWhileWriteBlocked(self):
        """
        The node ends a connection whose SDK reads nothing (its writes
        block on a full window): the call and the node's session end.
        """
        async def test(harness, service, channel):
            c = channel()
            await self.setUpStream(c)  # never read
            (connection,) = service.connections.values()
            for n in range(40):  # ~40 MB of pushes it never reads
                connection.send(Payload("NotifySubscriberRequest", {}, "", b"x" * 1_000_000))
            await asyncio.sleep(0.2)
            clientId = connection.client.clientId
            connection.closeConnection()
            return await self.until(lambda: not service.connections and clientId not in harness.node.sessions)

        self.assertTrue(self.serve(test))

    def test_cancelledStreamLeavesNoTask(self):
        async def test(harness, service, channel):
            call = await self.setUpStream(channel())
            call.cancel()
            await self.until(lambda: not service.connections)
            await asyncio.sleep(0.2)
            return [t.get_coro().__qualname__ for t in asyncio.all_tasks()
                    if t.get_coro().__qualname__ in ("Queue.get", "Event.wait")]

        self.assertEqual(self.serve(test), [])

    def test_maxConnectionsPerIp(self):
        """
        C{max_connections_per_ip} holds on the Nacos port as on distro's
        own: a stream past it is refused with C{RESOURCE_EXHAUSTED}.
        """
        async def test(harness, service, channel):
            first = await self.setUpStream(channel())
            second = await self.setUpStream(channel())
            try:
                await second.read()
            except aio.AioRpcError as e:
                refused = (e.code(), e.details())
            return len(service.connections), first.done(), refused

        count, firstDone, (code, details) = self.serve(test, max_connections_per_ip=1)
        self.assertEqual((count, firstDone), (1, False))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("max_connections_per_ip", details)


    async def unary(self, channel, payload):
        call = channel.unary_unary("/Request/request", request_serializer=_identity,
                                   response_deserializer=_identity)
        return decode(await call(encode(payload)))

    def test_oneConnectionId(self):
        """
        The id a server check gives is the id of the stream the SDK opens
        next on that channel, keyed by it, from the node's clock; its unary
        requests are served by that stream's client.
        """
        async def test(harness, service, channel):
            harness.clock.advance(1234.5)
            c = channel()
            checked = await self.unary(c, Payload("ServerCheckRequest", {}, "", b"{}"))
            await self.setUpStream(c)
            (connectionId, connection), = service.connections.items()
            answer = await self.unary(c, Payload("InstanceRequest", {}, "", json.dumps({
                "serviceName": "orders", "type": "registerInstance",
                "instance": {"ip": "10.0.0.1", "port": 80, "ephemeral": True}}).encode()))
            publishers = [client.clientId for client in harness.node.manager.clients.values()
                          if client.services]
            return json.loads(checked.body)["connectionId"], connectionId, connection, answer, publishers

        checkedId, connectionId, connection, answer, publishers = self.serve(test)
        self.assertEqual(checkedId, connectionId)
        self.assertEqual(connection.connectionId, connectionId)
        self.assertTrue(connectionId.startswith("1234500_127.0.0.1_"), connectionId)
        self.assertEqual(answer.type, "InstanceResponse")
        self.assertEqual(publishers, [connection.client.clientId])

    def test_twoStreamsOnOneChannel(self):
        """
        Two streams on one gRPC channel (two SDKs behind one proxy
        connection) are two connections, two clients: the second does not
        end the first.
        """
        async def test(harness, service, channel):
            c = channel()
            first = await self.setUpStream(c)
            second = await self.setUpStream(c)
            ids = sorted(service.connections)
            clients = {conn.client.clientId for conn in service.connections.values()}
            return ids, clients, first.done(), second.done()

        ids, clients, firstDone, secondDone = self.serve(test)
        self.assertEqual((len(ids), len(set(ids)), len(clients)), (2, 2, 2))
        self.assertEqual((firstDone, secondDone), (False, False))

    def test_setUpDeadlineOnNodeClock(self):
        """
        The set-up deadline is kept by the node's clock.
        """
        async def test(harness, service, channel):
            call = channel().stream_stream("/BiRequestStream/requestBiStream",
                                           request_serializer=_identity,
                                           response_deserializer=_identity)()
            await self.until(lambda: service.connections)
            harness.clock.advance(harness.node.config.handshake_timeout_ms / 1000.0)
            try:
                await asyncio.wait_for(call.read(), 2.0)  # not the loop's 10 s
            except aio.AioRpcError as e:
                return e.code()

        self.assertEqual(self.serve(test), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_pushesWaitForAFullStream(self):
        """
        Past C{max_unsent_bytes} waiting for a stream whose SDK reads
        nothing, pushes wait: the node holds no more views for it.
        """
        async def test(harness, service, channel):
            c = channel()
            await self.setUpStream(c)  # never read
            (connection,) = service.connections.values()
            for n in range(40):  # more than socket buffers and gRPC take
                connection.send(Payload("NotifySubscriberRequest", {}, "", b"x" * 1_000_000))
            await asyncio.sleep(0.5)
            return connection.channel.paused

        self.assertTrue(self.serve(test, max_unsent_bytes=4_000_000))


    def test_smallBeforeSetUp(self):
        """
        Before its set up, a connection's messages are at most
        C{PRE_SETUP_MAX} bytes, unary or on the stream (found from outside:
        8 MB messages were decoded before any set up); after it, up to
        C{max_frame}.
        """
        from distro.nacos.service import PRE_SETUP_MAX

        big = Payload("ServerCheckRequest", {}, "", b'{"x": "' + b"y" * PRE_SETUP_MAX + b'"}')

        async def test(harness, service, channel):
            c = channel()
            codes = []
            try:
                await self.unary(c, big)
            except aio.AioRpcError as e:
                codes.append(e.code())
            call = c.stream_stream("/BiRequestStream/requestBiStream", request_serializer=_identity,
                                   response_deserializer=_identity)()
            await call.write(encode(big._replace(type="ConnectionSetupRequest")))
            try:
                await asyncio.wait_for(call.read(), 5)
            except aio.AioRpcError as e:
                codes.append(e.code())
            other = channel()
            await self.setUpStream(other)
            answer = await self.unary(other, big._replace(type="HealthCheckRequest"))
            return codes, answer.type, len(service.connections)

        codes, answerType, count = self.serve(test)
        self.assertEqual(codes, [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2)
        self.assertEqual((answerType, count), ("HealthCheckResponse", 1))


class NacosClient:
    """
    A blocking Nacos gRPC client: one channel, its stream, payloads in and
    out. Used from a thread.
    """

    def __init__(self, address):
        # A connection of its own, as a Nacos SDK's (grpc shares one between
        # channels to the same address otherwise; the server keys a Nacos
        # connection by its transport).
        self.channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        self._unary = self.channel.unary_unary(
            "/Request/request", request_serializer=_identity, response_deserializer=_identity
        )
        self._outgoing = queue.Queue()
        self._stream = None

    def request(self, type_, **body):
        """
        One unary request: C{(response type, body)}.
        """
        data = self._unary(encode(Payload(type_, {}, "", json.dumps(body).encode())), timeout=WAIT)
        payload = decode(data)
        return payload.type, json.loads(payload.body)

    def raw(self, data):
        return decode(self._unary(data, timeout=WAIT))

    def openStream(self, setUp=True):
        def outgoing():
            while True:
                item = self._outgoing.get()
                if item is None:
                    return
                yield item

        self._stream = self.channel.stream_stream(
            "/BiRequestStream/requestBiStream",
            request_serializer=_identity, response_deserializer=_identity,
        )(outgoing(), timeout=60)
        if setUp:
            self.streamSend("ConnectionSetupRequest", clientVersion="tests", tenant="",
                            labels={"source": "sdk", "module": "naming"})

    def streamSend(self, type_, **body):
        self._outgoing.put(encode(Payload(type_, {}, "", json.dumps(body).encode())))

    def streamRead(self):
        """
        The next server request on the stream, C{(type, body)}.
        """
        payload = decode(next(self._stream))
        return payload.type, json.loads(payload.body)

    def close(self):
        self._outgoing.put(None)
        self.channel.close()


def instance(ip, port=8080, **fields):
    return dict({"ip": ip, "port": port, "ephemeral": True, "healthy": True, "enabled": True,
                 "weight": 1.0}, **fields)


class NacosPortTests(ProcessTestCase):
    """
    A node's Nacos gRPC port, in a real process.
    """

    @defer.inlineCallbacks
    def startNacosNode(self, *args):
        process, host, port = yield self.startNode(
            "--nacos-listen", "tcp:0:interface=127.0.0.1", *args
        )
        pattern = re.compile(rb"serving Nacos gRPC on (127\.0\.0\.1:\d+)")
        match = yield waitFor(lambda: pattern.search(process.output), START_TIMEOUT, "the Nacos port")
        return process, f"{host}:{port}", match.group(1).decode()

    def client(self, address):
        client = NacosClient(address)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def test_registerQuerySubscribe(self):
        """
        A Nacos client checks the server, sets up, registers, queries and
        is pushed a change made by another Nacos client; distro's own
        protocol sees the same instances.
        """
        _, distroAddress, nacosAddress = yield self.startNacosNode()
        subscriber = self.client(nacosAddress)
        publisher = self.client(nacosAddress)

        def scenario():
            kind, check = subscriber.request("ServerCheckRequest")
            subscriber.openStream()
            publisher.openStream()
            results = {"check": (kind, check)}
            # The set up is asynchronous to unary calls: retried while 301.
            for _ in range(100):
                kind, reply = subscriber.request("SubscribeServiceRequest", namespace="",
                                                 serviceName="orders", groupName="DEFAULT_GROUP",
                                                 clusters="", subscribe=True)
                if reply.get("errorCode") != 301:
                    break
            results["subscribe"] = (kind, reply)
            for _ in range(100):
                kind, reply = publisher.request(
                    "InstanceRequest", namespace="public", serviceName="orders",
                    groupName="DEFAULT_GROUP", type="registerInstance",
                    instance=instance("10.0.0.7", metadata={"v": "1"}),
                )
                if reply.get("errorCode") != 301:
                    break
            results["register"] = (kind, reply)
            push = subscriber.streamRead()
            results["push"] = push
            subscriber.streamSend("NotifySubscriberResponse", resultCode=200, errorCode=0,
                                  requestId=push[1]["requestId"])
            results["query"] = publisher.request("ServiceQueryRequest", serviceName="orders",
                                                 cluster="", healthyOnly=False)
            return results

        results = yield threads.deferToThread(scenario)
        kind, check = results["check"]
        self.assertEqual(kind, "ServerCheckResponse")
        self.assertIn("127.0.0.1", check["connectionId"])
        kind, reply = results["subscribe"]
        self.assertEqual((kind, reply["resultCode"], reply["serviceInfo"]["hosts"]),
                         ("SubscribeServiceResponse", 200, []))
        kind, reply = results["register"]
        self.assertEqual((kind, reply["resultCode"], reply["success"]), ("InstanceResponse", 200, True))
        kind, push = results["push"]
        self.assertEqual(kind, "NotifySubscriberRequest")
        self.assertEqual([(h["ip"], h["serviceName"], h["metadata"]) for h in push["serviceInfo"]["hosts"]],
                         [("10.0.0.7", "DEFAULT_GROUP@@orders", {"v": "1"})])
        kind, reply = results["query"]
        self.assertEqual([h["ip"] for h in reply["serviceInfo"]["hosts"]], ["10.0.0.7"])
        # distro's own protocol sees it.
        host, port = distroAddress.rsplit(":", 1)
        raw = yield self.connect(host, int(port))
        yield raw.request("hello", proto=1)
        reply = yield raw.request("query", service={"name": "orders"})
        self.assertEqual([h["ip"] for h in reply["service_info"]["hosts"]], ["10.0.0.7"])

    @defer.inlineCallbacks
    def test_subscriberThatNeverAcks(self):
        """
        A subscriber whose SDK never acks keeps getting the newest view: a
        newer one at once, and the unacked one again after Nacos' 5 s push
        timeout and 1 s retry delay; its connection stays.
        """
        _, _, nacosAddress = yield self.startNacosNode()
        subscriber = self.client(nacosAddress)
        publisher = self.client(nacosAddress)

        def retried(client, type_, **body):
            for _ in range(100):  # the set up is asynchronous to unary calls
                kind, reply = client.request(type_, **body)
                if reply.get("errorCode") != 301:
                    return kind, reply

        def scenario():
            subscriber.openStream()
            publisher.openStream()
            retried(subscriber, "SubscribeServiceRequest", serviceName="orders", clusters="", subscribe=True)
            pushes = []
            for ip in ("10.0.0.1", "10.0.0.2"):
                retried(publisher, "InstanceRequest", serviceName="orders", type="registerInstance",
                        instance=instance(ip))
                pushes.append(subscriber.streamRead())
            pushes.append(subscriber.streamRead())  # sent again, unacked
            return pushes

        pushes = yield threads.deferToThread(scenario)
        views = [[h["ip"] for h in push["serviceInfo"]["hosts"]] for _, push in pushes]
        self.assertEqual(views, [["10.0.0.1"], ["10.0.0.2"], ["10.0.0.2"]])
        self.assertEqual({kind for kind, _ in pushes}, {"NotifySubscriberRequest"})
        # The node's times of the pushes (milliseconds): a newer view at
        # once, the unacked one again after the timeout and the delay.
        times = [push["serviceInfo"]["lastRefTime"] for _, push in pushes]
        self.assertLess(times[1] - times[0], 5000)  # not held behind the unacked one
        self.assertGreaterEqual(times[2] - times[1], 6000 - 100)

    @defer.inlineCallbacks
    def test_badInput(self):
        """
        A request before the set up, bad JSON, an unknown type, a payload
        that is not protobuf, an
        oversized message and a stream that never sets up each get a clear
        error; the node keeps serving.
        """
        _, _, nacosAddress = yield self.startNacosNode(
            "--max-frame", "65536", "--handshake-timeout-ms", "500"
        )
        client = self.client(nacosAddress)

        def scenario():
            results = {"early": client.raw(encode(Payload("InstanceRequest", {}, "", b"{oops")))}
            client.openStream()
            for _ in range(100):
                if client.request("HealthCheckRequest")[1]["errorCode"] != 301:
                    break
            results["json"] = client.raw(encode(Payload("InstanceRequest", {}, "", b"{oops")))
            results["unknown"] = client.request("FooRequest")
            results["notProtobuf"] = client.raw(b"\x12\x05ab")
            try:
                client.request("InstanceRequest", pad="x" * 100000)
            except grpc.RpcError as e:
                results["huge"] = e.code()
            silent = NacosClient(nacosAddress)
            silent.openStream(setUp=False)
            try:
                silent.streamRead()
            except grpc.RpcError as e:
                results["silent"] = (e.code(), e.details())
            finally:
                silent.close()
            results["after"] = client.request("ServerCheckRequest")
            return results

        results = yield threads.deferToThread(scenario)
        payload = results["early"]  # not set up yet: that comes first
        self.assertEqual((payload.type, json.loads(payload.body)["errorCode"]), ("ErrorResponse", 301))
        payload = results["json"]
        self.assertEqual((payload.type, json.loads(payload.body)["errorCode"]), ("ErrorResponse", 502))
        kind, reply = results["unknown"]
        self.assertEqual((kind, reply["errorCode"]), ("ErrorResponse", 302))
        self.assertIn("FooRequest", reply["message"])
        payload = results["notProtobuf"]
        self.assertEqual((payload.type, json.loads(payload.body)["errorCode"]), ("ErrorResponse", 502))
        self.assertEqual(results["huge"], grpc.StatusCode.RESOURCE_EXHAUSTED)
        code, details = results["silent"]
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertIn("ConnectionSetupRequest", details)
        self.assertEqual(results["after"][0], "ServerCheckResponse")

    @defer.inlineCallbacks
    def test_silentConnectionClosed(self):
        """
        A set-up connection that answers nothing is asked
        C{ClientDetectionRequest}, then closed with C{UNAVAILABLE}: the
        status every SDK takes as "reconnect" (the fallback of a reset).
        """
        _, _, nacosAddress = yield self.startNacosNode("--idle-timeout-ms", "1000", "--heartbeat-ms", "300")
        client = self.client(nacosAddress)

        def scenario():
            client.openStream()
            first = client.streamRead()
            try:
                while True:
                    client.streamRead()
            except grpc.RpcError as e:
                return first, e.code(), e.details()

        (kind, request), code, details = yield threads.deferToThread(scenario)
        self.assertEqual(kind, "ClientDetectionRequest")
        self.assertTrue(request["requestId"].isdigit())
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        self.assertIn("closed the connection", details)

    @defer.inlineCallbacks
    def test_portInUse(self):
        """
        A second node given a Nacos port already bound does not start,
        naming the key (gRPC would otherwise share the port between the two
        processes).
        """
        _, _, nacosAddress = yield self.startNacosNode()
        port = nacosAddress.rsplit(":", 1)[1]
        second = self.spawn("--listen", "tcp:0:interface=127.0.0.1",
                            "--nacos-listen", f"tcp:{port}:interface=127.0.0.1")
        yield second.whenEnded(START_TIMEOUT)
        self.assertNotEqual(second.exitCode, 0)
        self.assertIn(b"nacos_listen: cannot bind", second.output)
