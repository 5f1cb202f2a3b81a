# -*- test-case-name: tests.test_nacos_service -*-
"""
The Nacos gRPC port of a node: a grpc.aio server running on the node's
reactor (Twisted's asyncio reactor), serving C{/Request/request} and
C{/BiRequestStream/requestBiStream} (docs/nacos.md) with
L{distro.nacos.connection.NacosConnection}s.

A gRPC channel is one TCP connection, which gRPC names by its peer address:
a connection's unary calls and its stream have the same peer, so the peer
keys the connection. It becomes a client of the node when its stream
carries C{ConnectionSetupRequest}, and stops being one when the stream
ends. A stream that does not set up within C{handshake_timeout_ms} is ended.
"""

import asyncio
import sys
import time

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
    @ivar connections: peer -> the L{NacosConnection} of each open stream.
    """

    log = Logger()
    name = "nacos"

    def __init__(self, node, bindAddress):
        self.node = node
        self.bindAddress = bindAddress
        self.address = None
        self.connections = {}
        self._server = None

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

    def _connectionId(self, peer):
        return f"{int(time.time() * 1000)}_{_peerIp(peer)}_{peer.rsplit(':', 1)[-1]}"

    async def _request(self, data, context):
        peer = context.peer()
        connection = self.connections.get(peer)
        if connection is None:
            # No stream yet: a server check, or a request that must wait
            # for the set up (UN_REGISTER).
            connection = NacosConnection(self.node, self._connectionId(peer), _peerIp(peer))
        try:
            payload = decode(data)
        except PayloadError as e:
            return encode(Payload("ErrorResponse", {}, "", naming.encodeBody(
                naming.errorResponse(naming.BAD_GATEWAY, f"payload: {e}"))))
        return encode(connection.request(payload))

    async def _stream(self, requests, context):
        peer = context.peer()
        ip = _peerIp(peer)
        previous = self.connections.get(peer)
        if previous is not None:
            previous.closeConnection()
        limit = self.node.config.max_connections_per_ip
        if limit and sum(1 for p, c in self.connections.items() if c.peerIp == ip and p != peer) >= limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"max_connections_per_ip: {limit} connections from this IP",
            )
        connection = NacosConnection(self.node, self._connectionId(peer), ip)
        self.connections[peer] = connection
        outgoing = asyncio.Queue()
        ended = asyncio.Event()
        why = []  # what ended the stream first: "client", "node" or "setup"
        connection.send = outgoing.put_nowait
        connection.close = lambda: (why.append("node"), ended.set())

        async def write():
            # Apart from the loop that waits for the end: a write the client
            # does not read blocks, and must not keep the node from ending it.
            while True:
                await context.write(encode(await outgoing.get()))

        def setupDue():
            if connection.client is None:
                why.append("setup")
                ended.set()

        reader = asyncio.ensure_future(self._read(requests, connection, ended, why))
        writer = asyncio.ensure_future(write())
        stop = asyncio.ensure_future(ended.wait())
        deadline = asyncio.get_running_loop().call_later(
            self.node.config.handshake_timeout_ms / 1000.0, setupDue
        )
        try:
            await asyncio.wait({writer, stop}, return_when=asyncio.FIRST_COMPLETED)
            if writer.done() and writer.exception() is not None:
                why.append("client")  # the call is gone
        finally:
            deadline.cancel()
            for task in (reader, writer, stop):
                task.cancel()
            if self.connections.get(peer) is connection:
                del self.connections[peer]
            connection.ended()
        if why and why[0] == "setup":
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
                try:
                    payload = decode(data)
                except PayloadError as e:
                    self.log.warn("Nacos connection {id}: bad payload ({error})",
                                  id=connection.connectionId, error=str(e))
                    continue
                try:
                    connection.streamReceived(payload)
                except Exception:
                    self.log.failure("Nacos connection {id}: {type} failed",
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
