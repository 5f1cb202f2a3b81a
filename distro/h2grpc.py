# -*- test-case-name: tests.test_h2grpc -*-
"""
gRPC's wire over HTTP/2 on Twisted: unary and bi-directional streaming
methods, which is all the Nacos port serves, with every edge bounded.

A gRPC call is an HTTP/2 stream: request HEADERS (C{:method POST},
C{:path /Service/Method}, C{content-type application/grpc}), messages in
DATA frames each prefixed by a compressed flag and a 4-byte length, and the
server's answer: response HEADERS, messages, and trailers carrying
C{grpc-status} and C{grpc-message}. L{distro.http2} keeps the HTTP/2
state; this module frames the messages, keeps the bounds, and calls the
methods of a L{Service}. The server's header blocks are made once
(L{distro.hpackcodec}'s literals): a reply's HEADERS, DATA and trailers
cost a few bytes' packing.

Bounds, per TCP connection (L{GrpcConnection}):
 - at most C{maxStreams} streams at once (C{SETTINGS_MAX_CONCURRENT_STREAMS});
 - an inbound message of at most what the service's C{messageLimit} says
   for the connection (small until the client said who it is), refused
   from its length prefix, before its bytes are kept; the bytes of messages
   not yet whole, over all streams, at most twice the largest message;
 - the bytes waiting to be sent (the peer's flow-control window shut, or
   the socket full) at most C{maxUnsent}: past it a unary reply is refused
   with C{RESOURCE_EXHAUSTED}; past C{holdWritersAt} (less) the streams'
   writers are told to hold their messages (L{IGrpcService.pauseWriters}),
   so that a stream never queues a message behind another not yet sent;
 - a peer that answers no PING within C{keepaliveTimeout} is dropped, and
   one that resets more than L{MAX_RESETS} streams in L{RESET_WINDOW} s (or
   has the server reset them, breaking a rule on each);
 - a connection the server ends goes at once: trailers, C{GOAWAY}, and
   the TCP connection once the peer closes it, or L{GOAWAY_GRACE} later
   (one that broke a rule: at once);
   one the peer ends (C{GOAWAY}) goes once its calls in flight are over.

Reading and answering take their share of the node's turns (an
L{distro.interfaces.ITurns}): past the turn's budget a connection's bytes
wait, unread, for a later turn, and its unary calls are answered in the
turns after they arrive, a few connections' at a time. A unary reply may
come later (a L{Deferred}): the connection's next calls wait for it, in
order.
"""

import collections
import struct

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from distro import http2
from distro.admission import PortConnections
from distro.hpackcodec import indexed, literal, literalOfIndexedName

# gRPC status codes (grpc/status.h).
OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14

_PREFIX = struct.Struct(">BI")
# A reply's headers, HPACK: ":status: 200" (static entry 8), content-type
# (entry 31's name) and grpc-accept-encoding, never indexed.
_RESPONSE_HEADERS = (indexed(8) + literalOfIndexedName(31, b"application/grpc")
                     + literal(b"grpc-accept-encoding", b"identity"))
_OK_TRAILERS = literal(b"grpc-status", b"0")
# Past these bytes waiting for a connection, its streams' writers hold their
# messages: a subscriber that reads nothing holds about one push (the
# newest view goes when it drains), not a queue of them.
HOLD_WRITERS_AT = 1024 * 1024

# Streams a peer may reset per RESET_WINDOW seconds before it is dropped,
# and its address refused for as long; at most MAX_COOLING addresses kept.
MAX_RESETS = 200
RESET_WINDOW = 10.0
MAX_COOLING = 10000

# How long a connection the server ended (GOAWAY NO_ERROR) waits for the
# peer to close it, in seconds; a peer breaking a rule is cut at once.
GOAWAY_GRACE = 1.0

# The bytes a connection may have read and waiting for a turn (past a
# turn's budget) before its reading is paused: most requests wait without
# a pause and resume of the socket.
READ_AHEAD = 256 * 1024

# The bytes of a read handed to HTTP/2 at once, between checks of the
# turn's budget (about a hundred tiny frames).
HANDLE_SLICE = 8 * 1024

# What the receive windows are opened to: a large request flows without
# waiting for WINDOW_UPDATEs, the bytes it may hold are still bounded below.
RECEIVE_WINDOW = 4 * 1024 * 1024


class GrpcError(Exception):
    """
    A call ends with C{status} and C{message}.
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _trailers(status, message):
    """
    The trailers' block of a call ended with C{status} and C{message}.
    """
    if status == OK and not message:
        return _OK_TRAILERS
    block = literal(b"grpc-status", str(status).encode())
    if message:
        block += literal(b"grpc-message", _percentEncoded(message))
    return block


def _percentEncoded(message):
    # grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2).
    out = bytearray()
    for byte in message.encode("utf-8", "backslashreplace")[:1024]:
        out += bytes([byte]) if 0x20 <= byte < 0x7F and byte != 0x25 else b"%%%02X" % byte
    return bytes(out)


class Call:
    """
    One gRPC call: a stream of a L{GrpcConnection}.

    @ivar method: its C{:path}, as text.
    @ivar connection: the L{GrpcConnection} it came on.
    """

    __slots__ = ("connection", "streamId", "method", "unary", "listener", "ended", "_inbound", "_outbound",
                 "_outboundBytes", "_trailers", "_headersSent")

    def __init__(self, connection, streamId, method, unary):
        self.connection = connection
        self.streamId = streamId
        self.method = method
        self.unary = unary
        self.listener = None
        self.ended = False
        self._inbound = bytearray()
        self._outbound = []  # framed messages (or what is left of the first)
        self._outboundBytes = 0
        self._trailers = None
        self._headersSent = False

    def send(self, message):
        """
        Send one message on this call (a stream's; a unary call's reply).
        """
        if self.ended or self._trailers is not None:
            return
        data = _PREFIX.pack(0, len(message)) + message
        self._outbound.append(data)
        self._outboundBytes += len(data)
        self.connection._queued(self, len(data))

    def finish(self, status=OK, message=""):
        """
        End the call with C{status}: its trailers follow what it sent.
        """
        if self.ended or self._trailers is not None:
            return
        self._trailers = _trailers(status, message)
        self.connection._queued(self, 0)



class IGrpcService(Interface):
    """
    What a port serves over gRPC (the Nacos port's service).
    """

    methods = Attribute("C{{path: 'unary' or 'stream'}} of the methods served.")

    def connectionMade(connection):
        """
        A L{GrpcConnection} opened.
        """

    def connectionLost(connection):
        """
        It closed; its calls have ended.
        """

    def messageLimit(connection):
        """
        The largest inbound message C{connection} may send now.
        """

    def unary(call, request):
        """
        Answer a unary call's C{request} (bytes) with the reply's bytes, or
        raise L{GrpcError}.
        """

    def streamStarted(call):
        """
        A streaming call opened: return its listener, with
        C{messageReceived(bytes)} and C{ended()}; the service sends with
        C{call.send} and ends it with C{call.finish}.
        """

    def pauseWriters(connection):
        """
        More than C{holdWritersAt} bytes wait to be sent on C{connection}:
        its streams' writers hold what they can.
        """

    def resumeWriters(connection):
        """
        The bytes waiting went down to half of C{holdWritersAt}.
        """


@implementer(IPushProducer, http2.IStreamHandler)
class GrpcConnection(Protocol):
    """
    One HTTP/2 connection of gRPC calls.

    @ivar connectionId: a name of this TCP connection, set by the service
        (L{Service.connectionMade}).
    @ivar peer: the peer's C{(ip, port)}.
    """

    log = Logger()
    connectionId = None
    state = None  # whatever the service keeps per connection
    frames = None  # its HTTP/2 side, once made

    def __init__(self, factory):
        self.factory = factory
        self.service = factory.service
        self.clock = factory.clock
        self.calls = {}
        self._sending = {}  # the calls with something to send (a dict: in order)
        self.peer = ("", 0)
        self._unsent = 0
        self._partial = 0
        self._paused = False  # the transport's buffer is full
        self._holding = False  # writers were told to hold
        self._closing = False
        self._pingTimer = None
        self._pingDeadline = None
        self._lastHeard = 0.0
        self._ready = collections.deque()  # unary calls whole, to answer
        self._serving = False  # waiting for a turn to answer them
        self._awaiting = None  # the call whose reply comes later
        self._held = []  # bytes read past a turn's budget, not yet handled
        self._heldBytes = 0
        self._readHeld = False  # reading paused until they are
        self._batching = False
        self._resetWindow = 0.0
        self._resets = 0
        self._routed = self._route = None  # the last request's headers, and where they go
        self._peerGone = False  # the peer said GOAWAY: the connection ends with its last call

    # Connection

    def connectionMade(self):
        address = self.transport.getPeer()
        self.peer = (getattr(address, "host", ""), getattr(address, "port", 0))
        if hasattr(self.transport, "setTcpNoDelay"):
            # Replies and pushes go out when written (as gRPC's own servers
            # do), not after the peer's delayed ack.
            self.transport.setTcpNoDelay(True)
        self.frames = http2.ServerConnection(self, maxStreams=self.factory.maxStreams,
                                             receiveWindow=RECEIVE_WINDOW, maxHeaderListSize=16384)
        self.frames.initiate()
        self.transport.registerProducer(self, True)
        self._lastHeard = self.clock.seconds()
        self._schedulePing()
        self.factory.opened(self)
        self.service.connectionMade(self)
        self._flush()

    def dataReceived(self, data):
        if self._closing:
            return
        self._lastHeard = self.clock.seconds()
        if self._held or not self.factory.turns.available():
            # This turn's budget is spent: the bytes wait for a later turn.
            self._hold(data)
            return
        self._handle(data)

    def _hold(self, data):
        """
        Keep C{data} for a later turn; past READ_AHEAD kept, read no more
        meanwhile.
        """
        if not self._held:
            self.factory.turns.later(self._handleHeld)
        self._held.append(data)
        self._heldBytes += len(data)
        if self._heldBytes >= READ_AHEAD and not self._readHeld:
            self._readHeld = True
            self.transport.pauseProducing()

    def _handleHeld(self):
        held, self._held, self._heldBytes = b"".join(self._held), [], 0
        if self._closing:
            return
        if self._readHeld:
            self._readHeld = False
            if not self._paused:
                self.transport.resumeProducing()
        try:
            self._handle(held)
        except Exception:
            # As a failure in dataReceived would: the connection goes (its
            # HTTP/2 state is not to be trusted past a lost read).
            self.factory.notices.failure("read failed", "gRPC peer {ip}: handling a read failed",
                                         ip=self.peer[0])
            self._closing = True
            self.transport.abortConnection()

    def _handle(self, data):
        """
        Handle C{data} a slice (L{HANDLE_SLICE}) at a time, while the turn's
        budget lasts: a read of a thousand tiny frames is not parsed at
        once (500 streams opened and reset in one read held the reactor 30
        ms).
        """
        for start in range(0, len(data), HANDLE_SLICE):
            if start and self.factory.turns.spent():
                self._hold(data[start:])
                break
            if not self._handleSlice(data[start:start + HANDLE_SLICE]):
                return
        self._flush()

    def _handleSlice(self, data):
        try:
            self.frames.receive(data)
        except http2.ConnectionError as e:
            self._goAway(e.code)
            return False
        return not self._closing

    def connectionLost(self, reason):
        self._closing = True
        self._ready.clear()
        self._held = []
        for timer in (self._pingTimer, self._pingDeadline):
            if timer is not None and timer.active():
                timer.cancel()
        # What refers back to this connection lets go of it (its HTTP/2
        # side, a timer of its own that fired): it is freed by reference
        # counting alone, never left to the collector (L{distro.collector}
        # freezes what lives long enough, garbage or not).
        self._pingTimer = self._pingDeadline = None
        if self.frames is not None:
            self.frames.handler = None
        calls, self.calls = self.calls, {}
        for call in calls.values():
            self._endCall(call)
        self.factory.closed(self)
        self.service.connectionLost(self)

    def close(self, status=UNAVAILABLE, message="the server closed the connection"):
        """
        End every call with C{status} and say C{GOAWAY} at once; the TCP
        connection, with what it held, goes when the peer closes it or
        L{GOAWAY_GRACE} later.
        """
        if self._closing or self.transport is None:
            return
        trailers = _trailers(status, message)
        for call in list(self.calls.values()):
            if self.frames.isOpen(call.streamId):
                block = trailers if call._headersSent else _RESPONSE_HEADERS + trailers
                self.frames.sendHeaders(call.streamId, block, end=True)
        self._goAway(http2.NO_ERROR)

    def _goAway(self, code):
        if self._closing:
            return
        self.frames.goAway(code)
        self.transport.write(self.frames.dataToSend())
        self._closing = True
        if code == http2.NO_ERROR:
            # The calls ended with their trailers: the peer closes the
            # connection once it has read them and the GOAWAY, or it is
            # closed after GOAWAY_GRACE (closed at once, grpcio at times
            # told its calls the transport's end instead of their status).
            self._deadline(GOAWAY_GRACE, self._lose)
        else:
            self._lose()

    def _lose(self):
        # What waits for the peer's window is dropped with the connection.
        self.transport.loseConnection()
        self._deadline(self.factory.keepaliveTimeout, self._abort)

    def _deadline(self, delay, f):
        """
        Call C{f} in C{delay} seconds, in place of the deadline set before
        (the one timer C{connectionLost} cancels).
        """
        if self._deadlinePending():
            self._pingDeadline.cancel()
        self._pingDeadline = self.clock.callLater(delay, f)

    def _deadlinePending(self):
        return self._pingDeadline is not None and self._pingDeadline.active()

    def _abort(self):
        if self.transport is not None:
            self.transport.abortConnection()

    # Keepalive

    def _schedulePing(self):
        self._pingTimer = self.clock.callLater(self.factory.keepaliveInterval, self._ping)

    def _ping(self):
        self._pingTimer = None
        if self._closing:
            return
        if self.clock.seconds() - self._lastHeard >= self.factory.keepaliveInterval and not self._deadlinePending():
            # (One ping at a time: a new one would put off the deadline of
            # the one not answered yet.)
            self.frames.ping(b"distro\0\0")
            self._flush()
            self._deadline(self.factory.keepaliveTimeout, self._noPong)
        self._schedulePing()

    def _noPong(self):
        self._pingDeadline = None
        if self.clock.seconds() - self._lastHeard >= self.factory.keepaliveTimeout:
            self.log.info("gRPC peer {ip}:{port} answers no ping; closing", ip=self.peer[0], port=self.peer[1])
            self._abort()

    # Inbound

    def requestReceived(self, streamId, headers, ended):
        # A client sends the same headers call after call: the same tuple
        # (distro.hpackcodec), routed once.
        if headers is not self._routed:
            self._routed, self._route = headers, self._routeOf(headers)
        method, kind, refusal = self._route
        if refusal is not None:
            self._refuse(streamId, UNIMPLEMENTED, refusal)
            return
        # A stream's call starts with its first message: one opened and
        # reset at once (a rapid reset) costs no more than this.
        self.calls[streamId] = Call(self, streamId, method, kind == "unary")
        if ended:
            self.streamEnded(streamId)

    def _routeOf(self, headers):
        """
        C{(method, kind, refusal)} of a request's C{headers}: its method,
        whether it is unary or a stream, and why it is refused (or None).
        """
        headers = dict(headers)
        method = headers.get(b":path", b"").decode("ascii", "replace")
        kind = self.service.methods.get(method)
        if headers.get(b":method") != b"POST" or not headers.get(b"content-type", b"").startswith(b"application/grpc"):
            return method, kind, "not a gRPC request"
        if kind is None:
            return method, kind, f"no method {method[:100]}"
        if headers.get(b"grpc-encoding", b"identity") != b"identity":
            return method, kind, "compression is not supported (identity only)"
        return method, kind, None

    def _refuse(self, streamId, status, message):
        self.frames.sendHeaders(streamId, _RESPONSE_HEADERS + _trailers(status, message), end=True)

    def streamData(self, streamId, data):
        # The windows stay open (distro.http2): the bytes kept are bounded
        # here.
        call = self.calls.get(streamId)
        if call is None or call.ended or call._trailers is not None:
            return
        buffer = call._inbound
        limit = self.service.messageLimit(self)
        if not buffer and len(data) >= 5:
            # The usual: one whole message in one frame, taken as it is.
            compressed, length = _PREFIX.unpack_from(data)
            if not compressed and length <= limit and len(data) == 5 + length:
                self._message(call, data[5:])
                return
        buffer += data
        # Counted as they come and as they go: a call failed or ended
        # below drops (L{_dropPartial}) only what was counted.
        self._partial += len(data)
        while len(buffer) >= 5:
            compressed, length = _PREFIX.unpack_from(buffer)
            if compressed:
                self._failCall(call, UNIMPLEMENTED, "compressed messages are not supported")
                return
            if length > limit:
                self._failCall(call, RESOURCE_EXHAUSTED, f"a message of {length} bytes; at most {limit} here")
                return
            if len(buffer) < 5 + length:
                break
            message = bytes(buffer[5:5 + length])
            del buffer[:5 + length]
            self._partial -= 5 + length
            self._message(call, message)
            if call.ended or call._trailers is not None:
                break
        if self._partial > 2 * self.factory.maxMessage:
            self.log.info("gRPC peer {ip} holds too many partial messages; closing", ip=self.peer[0])
            self.close(RESOURCE_EXHAUSTED, "too many partial messages")

    def _message(self, call, message):
        if call.unary:
            if call.listener is not None:
                self._failCall(call, INTERNAL, "a unary call takes one message")
                return
            call.listener = message
            return
        try:
            if call.listener is None:
                call.listener = self.service.streamStarted(call)
            call.listener.messageReceived(message)
        except GrpcError as e:
            call.finish(e.status, e.message)
        except Exception:
            self.factory.notices.failure("stream message failed", "gRPC {method} message failed",
                                         method=call.method)

    def _failCall(self, call, status, message):
        self._dropPartial(call)
        self._dropOutbound(call)
        call.finish(status, message)

    def _dropOutbound(self, call):
        self._unsent -= call._outboundBytes
        call._outboundBytes = 0
        call._outbound.clear()

    def _dropPartial(self, call):
        self._partial -= len(call._inbound)
        call._inbound.clear()

    def streamEnded(self, streamId):
        call = self.calls.get(streamId)
        if call is None:
            return
        if call.unary:
            if call._trailers is not None:
                return
            if call.listener is None:
                call.finish(INTERNAL, "a unary call needs its message")
                return
            # Served in a coming turn, with the other calls ready: their
            # replies go out together, and a burst of costly calls is
            # spread over turns, never holding the reactor.
            self._ready.append(call)
            self._serveLater()
        else:
            # The client half-closed its stream: the call is over.
            call.finish(OK)

    def _serveLater(self):
        if not self._serving and self._awaiting is None and self._ready and not self._closing:
            self._serving = True
            self.factory.turns.later(self._serve)

    def _serve(self):
        self._serving = False
        self._batching = True  # the replies of this turn are written together
        try:
            while self._ready and not self._closing and self._awaiting is None:
                call = self._ready.popleft()
                if not call.ended and call._trailers is None:
                    self._answer(call)
                if self.factory.turns.spent():
                    break
        finally:
            self._batching = False
        self._flush()
        self._serveLater()

    def _answer(self, call):
        if self._unsent > self.factory.maxUnsent:
            call.finish(RESOURCE_EXHAUSTED, "replies wait for this connection past max_unsent_bytes")
            return
        try:
            reply = self.service.unary(call, call.listener)
        except GrpcError as e:
            call.finish(e.status, e.message)
            return
        except Exception:
            self.factory.notices.failure("unary call failed", "gRPC {method} failed", method=call.method)
            call.finish(INTERNAL, "internal error")
            return
        # (Deferred's metaclass is ABCMeta: isinstance costs 0.4 us, so a
        # reply's bytes are told first.)
        if type(reply) is not bytes and isinstance(reply, Deferred):
            # Answered later: the calls after it wait.
            self._awaiting = call
            reply.addCallbacks(self._answered, self._notAnswered, (call,), None, (call,))
            return
        self._reply(call, reply)

    def _answered(self, reply, call):
        self._awaiting = None
        try:
            if not (self._closing or call.ended or call._trailers is not None):
                self._reply(call, reply)
                self._flush()
        finally:
            # The calls that waited behind it go on, whatever became of it.
            self._serveLater()

    def _notAnswered(self, failure, call):
        self._awaiting = None
        try:
            self.factory.notices.failure("unary call failed", "gRPC {method} failed", method=call.method,
                                         failure=failure)
            call.finish(INTERNAL, "internal error")
            self._flush()
        finally:
            self._serveLater()

    def _reply(self, call, reply):
        if self._unsent + len(reply) > self.factory.maxUnsent:
            call.finish(RESOURCE_EXHAUSTED, "the reply would wait past max_unsent_bytes")
            return
        call.send(reply)
        call.finish(OK)

    def streamReset(self, streamId, remote):
        call = self.calls.pop(streamId, None)
        if call is not None:
            self._endCall(call)
        # A peer that opens and resets streams as fast as it can (HTTP/2's
        # "rapid reset"), or has this side reset them for a rule it breaks
        # on each ("MadeYouReset"), costs work per stream and is never over
        # the stream limit: past MAX_RESETS in RESET_WINDOW seconds, it goes.
        now = self.clock.seconds()
        if now - self._resetWindow >= RESET_WINDOW:
            self._resetWindow, self._resets = now, 0
        self._resets += 1
        if self._resets > MAX_RESETS:
            self.factory.notices.info("rapid reset", "gRPC peer {ip} resets streams too fast; closing",
                                      ip=self.peer[0])
            # Its address is refused for a while: it cannot start over at once.
            self.factory.coolDown(self.remoteIp)
            self._goAway(http2.ENHANCE_YOUR_CALM)

    def _endCall(self, call):
        if call.ended:
            return
        call.ended = True
        self._sending.pop(call, None)
        self._dropPartial(call)
        self._dropOutbound(call)
        if not call.unary and call.listener is not None:
            listener, call.listener = call.listener, None
            try:
                listener.ended()
            except Exception:
                self.factory.notices.failure("stream end failed", "gRPC {method} end failed",
                                             method=call.method)
        self._maybeResume()
        if self._peerGone and not self.calls and not self._closing:
            self._goAway(http2.NO_ERROR)

    def pingAcknowledged(self):
        if self._deadlinePending() and not self._closing:
            self._pingDeadline.cancel()
            self._pingDeadline = None

    def goneAway(self, code):
        # The peer opens no more streams; those open are answered (RFC 9113
        # 6.8: grpc-java's graceful shutdown of a transport waits for them).
        self._peerGone = True
        if not self.calls:
            self._goAway(http2.NO_ERROR)

    # Outbound

    def _sendHeaders(self, call):
        if not call._headersSent:
            self.frames.sendHeaders(call.streamId, _RESPONSE_HEADERS)
            call._headersSent = True

    def _queued(self, call, size):
        self._sending[call] = None
        self._unsent += size
        if self._unsent > self.factory.holdWritersAt and not self._holding:
            self._holding = True
            self.service.pauseWriters(self)
        if not self._paused and not self._batching:
            self._flush()

    def _flush(self):
        """
        Move what the calls have to send into HTTP/2 as far as the peer's
        windows allow, and write it.
        """
        if self._closing or self.transport is None:
            return
        if not self._paused and self._sending:
            # Only the calls with something to send: a connection of many
            # calls waiting for their replies costs nothing per write.
            for call in list(self._sending):
                if not call.ended:
                    self._sendCall(call)
        data = self.frames.dataToSend()
        if data:
            self.transport.write(data)
        self._maybeResume()

    def _sendCall(self, call):
        streamId = call.streamId
        frames = self.frames
        if not frames.isOpen(streamId):
            self.calls.pop(streamId, None)
            self._endCall(call)
            return
        outbound = call._outbound
        while outbound:
            window = frames.sendWindow(streamId)
            if window <= 0:
                return
            self._sendHeaders(call)
            chunk = outbound[0]
            if len(chunk) > window:
                outbound[0] = chunk[window:]
                chunk = chunk[:window]
            else:
                outbound.pop(0)
            frames.sendData(streamId, chunk)
            call._outboundBytes -= len(chunk)
            self._unsent -= len(chunk)
        if call._trailers is None:
            self._sending.pop(call, None)
        else:
            trailers, call._trailers = call._trailers, None
            # The stream's last frame (and, when the client still sends,
            # its reset: it is told to stop).
            frames.sendHeaders(streamId, trailers if call._headersSent else _RESPONSE_HEADERS + trailers,
                               end=True)
            call._headersSent = True
            self.calls.pop(streamId, None)
            self._endCall(call)

    def _maybeResume(self):
        if self._holding and self._unsent <= self.factory.holdWritersAt // 2:
            self._holding = False
            self.service.resumeWriters(self)

    # IPushProducer: the transport's buffer

    def pauseProducing(self):
        self._paused = True
        self.transport.pauseProducing()

    def resumeProducing(self):
        self._paused = False
        if self.transport is not None:
            if not self._readHeld:
                self.transport.resumeProducing()
            self._flush()

    def stopProducing(self):
        self._closing = True


class GrpcFactory(Factory):
    """
    Makes the L{GrpcConnection}s of a port for C{service} (an
    L{IGrpcService}), as C{admission} (L{distro.admission.Admission})
    allows.
    """

    def __init__(self, service, clock, *, admission, maxStreams=100, maxMessage=8 * 1024 * 1024,
                 maxUnsent=16 * 1024 * 1024, keepaliveInterval=30.0, keepaliveTimeout=10.0,
                 turns, notices=None, holdWritersAt=HOLD_WRITERS_AT):
        self.service = service
        self.clock = clock
        self.maxStreams = maxStreams
        self.maxMessage = maxMessage
        self.maxUnsent = maxUnsent
        self.holdWritersAt = min(holdWritersAt, maxUnsent)
        self.turns = turns
        self.keepaliveInterval = keepaliveInterval
        self.keepaliveTimeout = keepaliveTimeout
        self.notices = notices
        self.connections = PortConnections(admission)
        self._cooling = {}

    def coolDown(self, ip):
        """
        Refuse connections from C{ip} for L{RESET_WINDOW} seconds (a peer
        dropped for abuse); at most L{MAX_COOLING} addresses are kept.
        """
        now = self.clock.seconds()
        if len(self._cooling) >= MAX_COOLING:
            self._cooling = {a: t for a, t in self._cooling.items() if t > now}
            if len(self._cooling) >= MAX_COOLING:
                self._cooling.pop(next(iter(self._cooling)))
        self._cooling[ip] = now + RESET_WINDOW

    def buildProtocol(self, addr):
        ip = getattr(addr, "host", None)
        until = self._cooling.get(ip)
        if until is not None:
            if self.clock.seconds() < until:
                return None
            del self._cooling[ip]
        return self.connections.accept(addr, lambda: GrpcConnection(self))

    def opened(self, connection):
        self.connections.opened(connection)

    def closed(self, connection):
        self.connections.closed(connection)
