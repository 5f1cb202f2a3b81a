# -*- test-case-name: tests.test_nacos_service -*-
"""
The Nacos gRPC port of a node: a grpc.aio server running on the node's
reactor (Twisted's asyncio reactor), serving C{/Request/request} and
C{/BiRequestStream/requestBiStream} (docs/nacos.md) with
L{distro.nacos.connection.NacosConnection}s.

A Nacos connection is one bi-directional stream, keyed by its connection
id, and a client of the node from its C{ConnectionSetupRequest} to the
stream's end. The SDK learns that id from its C{ServerCheckResponse}, a
unary call on the same gRPC channel (one TCP connection, which gRPC names by
its peer address): the id given to a peer without a stream is the id its
next stream takes; on a channel with a stream, that stream's. A unary
request carries no id, so it is served by the newest stream of its peer: a
second stream on a channel does not end the first, but two SDKs that a
proxy multiplexes over one HTTP/2 connection cannot be told apart (Nacos,
which keys by transport, cannot either). A stream that does not set up
within C{handshake_timeout_ms} is ended. Ids and deadlines come from the
node's clock.
"""

import asyncio
import sys

import grpc
from grpc import aio
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from distro.interfaces import IFrontEnd
from distro.nacos import naming
from distro.nacos.connection import NacosConnection
from distro.nacos.listen import NacosListenError
from distro.nacos.payload import Payload, PayloadError, decode, encode
from distro.ratelog import RateLimitedLog


# The largest message of a connection not set up yet (a server check, the
# set up itself), as before distro's hello: no more is decoded or kept for
# a client that has not said who it is.
PRE_SETUP_MAX = 64 * 1024

# Peers whose server check named the id of a stream they have not opened
# yet, at most.
MAX_CHECKED_PEERS = 10000


def _peerIp(peer):
    # "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"
    address = peer.split(":", 1)[-1]
    return address.rsplit(":", 1)[0].strip("[]")


def _identity(data):
    return data


@implementer(IFrontEnd)
class NacosService(Service):
    """
    The Nacos gRPC port.

    @ivar address: the C{host:port} it is bound to, once started.
    @ivar connections: connection id -> the L{NacosConnection} of each open
        stream.
    """

    log = Logger()
    name = "nacos"

    def __init__(self, node, bindAddress):
        self.node = node
        self.bindAddress = bindAddress
        self.address = None
        self.connections = {}
        # peer -> the ids of its open streams, oldest first
        self._streams = {}
        # peer -> the id its server check was given, for its next stream
        self._checked = {}
        self._server = None
        self.notices = RateLimitedLog(node.clock)

    # IFrontEnd

    def connectionCount(self):
        return len(self.connections)

    def startService(self):
        super().startService()
        config = self.node.config
        self._server = aio.server(options=[
            # One process per port: a second node given the same port must
            # fail to start, not share it (gRPC sets SO_REUSEPORT otherwise).
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", config.max_frame),
            ("grpc.max_send_message_length", -1),
            # Nacos SDKs ping every 60 s, some with no call open: never
            # answer them with too_many_pings.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            # A peer that vanished without closing: found by pings.
            ("grpc.keepalive_time_ms", 30000),
            ("grpc.keepalive_timeout_ms", 10000),
        ])
        self._server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler("Request", {
                "request": grpc.unary_unary_rpc_method_handler(
                    self._request, request_deserializer=_identity, response_serializer=_identity
                ),
            }),
            grpc.method_handlers_generic_handler("BiRequestStream", {
                "requestBiStream": grpc.stream_stream_rpc_method_handler(
                    self._stream, request_deserializer=_identity, response_serializer=_identity
                ),
            }),
        ])
        try:
            port = self._server.add_insecure_port(self.bindAddress)
        except RuntimeError:
            port = 0
        if not port:
            raise NacosListenError(f"nacos_listen: cannot bind {self.bindAddress} (in use?)")
        host = self.bindAddress.rsplit(":", 1)[0]
        self.address = f"{host}:{port}"
        d = Deferred.fromFuture(asyncio.ensure_future(self._server.start()))
        d.addCallback(lambda _: self.log.info(
            "distro node {node} serving Nacos gRPC on {address}",
            node=self.node.nodeId, address=self.address,
        ))
        return d

    def stopService(self):
        super().stopService()
        for connection in list(self.connections.values()):
            connection.closeConnection()
        if self._server is not None:
            server, self._server = self._server, None
            return Deferred.fromFuture(asyncio.ensure_future(server.stop(0)))

    # gRPC

    def _newConnectionId(self, peer):
        # Nacos' form: milliseconds_ip_port, with the node's clock.
        millis = int(self.node.clock.seconds() * 1000)
        return f"{millis}_{_peerIp(peer)}_{peer.rsplit(':', 1)[-1]}"

    def _checkedId(self, peer):
        """
        The id a server check from C{peer} is told: the one its next
        stream will take.
        """
        connectionId = self._checked.get(peer)
        if connectionId is None or connectionId in self.connections:
            connectionId = self._newConnectionId(peer)
            if len(self._checked) >= MAX_CHECKED_PEERS:
                # Peers that checked and never opened a stream: the oldest go.
                del self._checked[next(iter(self._checked))]
            self._checked[peer] = connectionId
        return connectionId

    def _streamId(self, peer):
        connectionId = self._checked.pop(peer, None)
        if connectionId is None or connectionId in self.connections:
            connectionId = self._newConnectionId(peer)
            while connectionId in self.connections:  # two streams in one millisecond
                connectionId += "_"
        return connectionId

    def _servedBy(self, peer):
        ids = self._streams.get(peer)
        return self.connections[ids[-1]] if ids else None

    async def _request(self, data, context):
        peer = context.peer()
        connection = self._servedBy(peer)
        if (connection is None or connection.client is None) and len(data) > PRE_SETUP_MAX:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a message before the set up is at most {PRE_SETUP_MAX} bytes",
            )
        try:
            payload = decode(data)
        except PayloadError as e:
            return encode(Payload("ErrorResponse", {}, "", naming.encodeBody(
                naming.errorResponse(naming.BAD_GATEWAY, f"payload: {e}"))))
        if connection is None:
            # No stream yet: a server check, or a request that must wait
            # for the set up (UN_REGISTER).
            connection = NacosConnection(self.node, self._checkedId(peer), _peerIp(peer), self.notices)
        return encode(connection.request(payload))

    async def _stream(self, requests, context):
        peer = context.peer()
        ip = _peerIp(peer)
        limit = self.node.config.max_connections_per_ip
        if limit and sum(1 for c in self.connections.values() if c.peerIp == ip) >= limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"max_connections_per_ip: {limit} connections from this IP",
            )
        connection = NacosConnection(self.node, self._streamId(peer), ip, self.notices)
        connectionId = connection.connectionId
        self.connections[connectionId] = connection
        self._streams.setdefault(peer, []).append(connectionId)
        outgoing = asyncio.Queue()
        ended = asyncio.Event()
        why = []  # what ended the stream first: "client", "node" or "setup"
        # Bytes waiting for the stream: past max_unsent_bytes, pushes wait.
        limit = self.node.config.max_unsent_bytes
        unsent = [0]

        def send(payload):
            data = encode(payload)
            outgoing.put_nowait(data)
            unsent[0] += len(data)
            if unsent[0] > limit:
                connection.pauseProducing()

        connection.send = send
        connection.close = lambda: (why.append("node"), ended.set())

        async def write():
            # Apart from the loop that waits for the end: a write the client
            # does not read blocks, and must not keep the node from ending it.
            while True:
                data = await outgoing.get()
                await context.write(data)
                unsent[0] -= len(data)
                if unsent[0] <= limit // 2:
                    connection.resumeProducing()

        def setupDue():
            if connection.client is None:
                why.append("setup")
                ended.set()

        reader = asyncio.ensure_future(self._read(requests, connection, ended, why))
        writer = asyncio.ensure_future(write())
        stop = asyncio.ensure_future(ended.wait())
        deadline = self.node.clock.callLater(
            self.node.config.handshake_timeout_ms / 1000.0, setupDue
        )
        try:
            await asyncio.wait({writer, stop}, return_when=asyncio.FIRST_COMPLETED)
            if writer.done() and writer.exception() is not None:
                why.append("client")  # the call is gone
        finally:
            if deadline.active():
                deadline.cancel()
            for task in (reader, writer, stop):
                task.cancel()
            del self.connections[connectionId]
            ids = self._streams[peer]
            ids.remove(connectionId)
            if not ids:
                del self._streams[peer]
            connection.ended()
        if why and why[0] == "too large":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a message before the set up is at most {PRE_SETUP_MAX} bytes",
            )
        elif why and why[0] == "setup":
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "no ConnectionSetupRequest within handshake_timeout_ms",
            )
        elif why and why[0] == "node":
            # The client moved elsewhere, or the node stops: an error status,
            # which every SDK takes as "reconnect" (not all heed
            # ConnectResetRequest).
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this node closed the connection")

    async def _read(self, requests, connection, ended, why):
        try:
            async for data in requests:
                if connection.client is None and len(data) > PRE_SETUP_MAX:
                    why.append("too large")
                    break
                try:
                    payload = decode(data)
                except PayloadError as e:
                    self.notices.warn("bad payload", "Nacos connection {id}: bad payload ({error})",
                                      id=connection.connectionId, error=str(e))
                    continue
                try:
                    connection.streamReceived(payload)
                except Exception:
                    self.notices.failure("stream message failed", "Nacos connection {id}: {type} failed",
                                         id=connection.connectionId, type=payload.type[:100])
        except (asyncio.CancelledError, aio.AioRpcError):
            pass
        finally:
            why.append("client")
            ended.set()


def installReactor():
    """
    Install Twisted's asyncio reactor, which gRPC needs, unless a reactor is
    installed already.
    """
    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install()


def isAsyncio(reactor):
    """
    Whether C{reactor} runs on an asyncio loop (gRPC's).
    """
    from twisted.internet import asyncioreactor

    return isinstance(reactor, asyncioreactor.AsyncioSelectorReactor)
