# -*- test-case-name: tests.test_nacos_service -*-
"""
The Nacos gRPC port of a node: gRPC over HTTP/2 on the node's own reactor
(L{distro.h2grpc}), serving C{/Request/request} and
C{/BiRequestStream/requestBiStream} (docs/nacos.md) with
L{distro.nacos.connection.NacosConnection}s.

A Nacos connection is one TCP connection, as in Nacos: it gets its id when
it opens (Nacos' C{millis_ip_port}, from the node's clock), its
C{ServerCheckResponse} tells the SDK that id, and its bi-directional stream
is the node's client from its C{ConnectionSetupRequest} to the stream's
end. Its unary requests are served by that stream's client (a second
stream on the same connection replaces the first as the one that serves
them, and gets an id of its own).

Until a stream of the connection has set up, its messages are at most
L{PRE_SETUP_MAX} bytes (as before distro's hello), and a connection with no
stream set up within C{handshake_timeout_ms} is closed, whatever it sends.
C{max_connections_per_ip} counts TCP connections. A connection the node
ends (its client moved elsewhere, the node stops) is closed at once, with
C{UNAVAILABLE} on its calls, which every SDK takes as "reconnect".
"""

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import implementer

from distro import h2grpc
from distro.h2grpc import GrpcFactory, IGrpcService
from distro.interfaces import IFrontEnd
from distro.listening import listenNow
from distro.nacos import naming
from distro.nacos.connection import OPS, PORT, NacosConnection, errorPayload
from distro.nacos.payload import Payload, PayloadError, decode, encode
from distro.ratelog import RateLimitedLog
from distro.requeststats import UNKNOWN

# The largest message of a connection not set up yet (a server check, the
# set up itself), as before distro's hello: no more is decoded or kept for
# a client that has not said who it is.
PRE_SETUP_MAX = 64 * 1024

# gRPC keepalive: a connection silent this long is pinged, and closed if
# the ping is not answered in time (a peer that vanished).
KEEPALIVE_INTERVAL = 30.0
KEEPALIVE_TIMEOUT = 10.0

# Calls open at once on one connection (an SDK has its stream and a few
# unary calls in flight).
MAX_STREAMS = 128


class _NacosState:
    """
    What the port keeps of one TCP connection: its streams' Nacos
    connections, the newest last, and its idle timer.
    """

    __slots__ = ("streams", "idleTimer")

    def __init__(self):
        self.streams = []
        self.idleTimer = None

    def servingStream(self):
        for connection in reversed(self.streams):
            if connection.client is not None:
                return connection
        return None


class _StreamListener:
    """
    The messages of one Nacos stream, to its L{NacosConnection}.
    """

    def __init__(self, port, grpcConnection, call, connection):
        self.port = port
        self.grpcConnection = grpcConnection
        self.call = call
        self.connection = connection
        self.deadline = port.node.clock.callLater(
            port.node.config.handshake_timeout_ms / 1000.0, self.setUpDue
        )

    def setUpDue(self):
        self.deadline = None
        if self.connection.client is None:
            self.call.finish(h2grpc.DEADLINE_EXCEEDED, "no ConnectionSetupRequest within handshake_timeout_ms")

    def messageReceived(self, data):
        try:
            payload = decode(data)
        except PayloadError as e:
            self.port.notices.warn("bad payload", "Nacos connection {id}: bad payload ({error})",
                                   id=self.connection.connectionId, error=str(e))
            return
        self.connection.streamReceived(payload)

    def ended(self):
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.deadline = None
        state = self.grpcConnection.state
        if self.connection in state.streams:
            state.streams.remove(self.connection)
        self.port.connections.pop(self.connection.connectionId, None)
        self.connection.ended()
        self.port._watchIdle(self.grpcConnection)


@implementer(IFrontEnd, IGrpcService)
class NacosService(Service):
    """
    The Nacos gRPC port.

    @ivar address: the C{host:port} it is bound to, once started.
    @ivar connections: connection id -> the L{NacosConnection} of each open
        stream.
    """

    log = Logger()
    name = "nacos"
    methods = {"/Request/request": "unary", "/BiRequestStream/requestBiStream": "stream"}

    def __init__(self, node, bindAddress, reactor):
        self.node = node
        self.bindAddress = bindAddress
        self.reactor = reactor
        self.address = None
        self.connections = {}
        self.notices = RateLimitedLog(node.clock)
        config = node.config
        self.factory = GrpcFactory(
            self, node.clock, admission=node.admission, maxStreams=MAX_STREAMS,
            maxMessage=config.max_frame, maxUnsent=config.max_unsent_bytes,
            keepaliveInterval=KEEPALIVE_INTERVAL, keepaliveTimeout=KEEPALIVE_TIMEOUT,
            turns=node.turns, notices=self.notices,
        )
        self._port = None

    # IFrontEnd

    def connectionCount(self):
        return len(self.connections)

    def startService(self):
        super().startService()
        self._port, self.address = listenNow(
            self.reactor, self.bindAddress, self.factory, key="nacos_listen",
            value=self.node.config.nacos_listen,
        )
        self.node.portOpened(self)
        self.log.info("distro node {node} serving Nacos gRPC on {address}",
                      node=self.node.nodeId, address=self.address)

    def stopService(self):
        super().stopService()
        self.node.portClosed(self)
        for connection in list(self.factory.connections):
            connection.close()
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()

    # IGrpcService

    def connectionMade(self, grpcConnection):
        ip, port = grpcConnection.peer
        millis = int(self.node.clock.seconds() * 1000)
        grpcConnection.connectionId = f"{millis}_{ip}_{port}"
        grpcConnection.state = _NacosState()
        self._watchIdle(grpcConnection)

    def connectionLost(self, grpcConnection):
        state = grpcConnection.state
        if state is not None and state.idleTimer is not None and state.idleTimer.active():
            state.idleTimer.cancel()

    def _watchIdle(self, grpcConnection):
        """
        A connection without a stream set up is closed after
        C{handshake_timeout_ms}: it holds a descriptor and serves nobody.
        """
        state = grpcConnection.state
        if state.idleTimer is not None and state.idleTimer.active():
            state.idleTimer.cancel()

        def idle():
            state.idleTimer = None
            if state.streams:
                # A stream is open: set up, or ended by its own deadline
                # (then this is watched again).
                return
            # Its calls (a stream that sent nothing, unary calls) end.
            grpcConnection.close(h2grpc.DEADLINE_EXCEEDED, "no ConnectionSetupRequest within handshake_timeout_ms")

        state.idleTimer = self.node.clock.callLater(self.node.config.handshake_timeout_ms / 1000.0, idle)

    def messageLimit(self, grpcConnection):
        if grpcConnection.state.servingStream() is None:
            return PRE_SETUP_MAX
        return self.node.config.max_frame

    def unary(self, call, data):
        try:
            payload = decode(data)
        except PayloadError as e:
            # Not a request anyone can name: counted as an unknown type.
            self.node.requests.port(PORT, OPS, naming.SUCCESS).record(UNKNOWN, naming.BAD_GATEWAY, 0.0)
            return encode(errorPayload(naming.BAD_GATEWAY, f"payload: {e}"))
        grpcConnection = call.connection
        connection = grpcConnection.state.servingStream()
        if connection is None:
            # No stream set up yet: a server check, or a request that must
            # wait for the set up (UN_REGISTER).
            connection = NacosConnection(self.node, grpcConnection.connectionId,
                                         grpcConnection.peer[0], self.notices)
        response = connection.request(payload)
        if type(response) is Payload:
            return encode(response)
        return response.addCallback(encode)  # a Deferred: a batch answered over turns

    def streamStarted(self, call):
        grpcConnection = call.connection
        state = grpcConnection.state
        connectionId = grpcConnection.connectionId
        if state.streams:
            connectionId = f"{connectionId}_{len(state.streams) + 1}"
        while connectionId in self.connections:
            connectionId += "_"
        connection = NacosConnection(self.node, connectionId, grpcConnection.peer[0], self.notices)
        connection.send = lambda payload: call.send(encode(payload))
        connection.close = lambda: grpcConnection.close(h2grpc.UNAVAILABLE, "this node closed the connection")
        state.streams.append(connection)
        self.connections[connectionId] = connection
        return _StreamListener(self, grpcConnection, call, connection)

    def pauseWriters(self, grpcConnection):
        for connection in grpcConnection.state.streams:
            connection.pauseProducing()

    def resumeWriters(self, grpcConnection):
        for connection in grpcConnection.state.streams:
            connection.resumeProducing()

