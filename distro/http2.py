# -*- test-case-name: tests.test_http2 -*-
"""
The server side of an HTTP/2 connection (RFC 9113), for what gRPC uses:
streams a client opens with HEADERS, DATA both ways, trailers, flow
control, SETTINGS, PING, RST_STREAM, WINDOW_UPDATE and GOAWAY. No server
push, no priorities (read and ignored), no upgrade from HTTP/1.1.

L{ServerConnection} parses what the peer sends and tells its handler (an
L{IStreamHandler}) about streams; the handler answers with
L{ServerConnection.sendHeaders}, L{ServerConnection.sendData} and
L{ServerConnection.resetStream}, and whatever is to be written is taken
with L{ServerConnection.dataToSend}. Header blocks go out as given: the
handler makes them once (L{distro.hpackcodec}).

Every rule a peer can break ends the connection or the stream as RFC 9113
says (L{ConnectionError} carries the error code for the GOAWAY), and
nothing a peer sends is kept past its bound: a frame longer than
SETTINGS_MAX_FRAME_SIZE is refused from its header, a header block past
L{MAX_HEADER_BLOCK} bytes or a header list past C{maxHeaderListSize}, data
past the receive windows, streams past C{maxStreams} (refused, as
C{REFUSED_STREAM}, for the client to retry).
"""

import struct

from zope.interface import Interface

from distro.hpackcodec import Decoder, HeaderListTooLarge, HPACKError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# Settings.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65535
DEFAULT_FRAME_SIZE = 16384
MAX_WINDOW = 2 ** 31 - 1
# The bytes of one header block (HEADERS and its CONTINUATIONs) kept at
# most: a block is decoded once whole.
MAX_HEADER_BLOCK = 64 * 1024

_FRAME = struct.Struct(">HBBBI")  # length (24 bits), type, flags, stream id
_SETTING = struct.Struct(">HI")
_U32 = struct.Struct(">I")
_GOAWAY = struct.Struct(">II")

# A request's pseudo-headers, and the fields HTTP/2 does not allow.
_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority"))
_REQUIRED = frozenset((b":method", b":scheme", b":path"))
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade"))


def frame(kind, flags, streamId, payload=b""):
    """
    One frame's bytes.
    """
    length = len(payload)
    return _FRAME.pack(length >> 8, length & 0xFF, kind, flags, streamId) + payload


class ConnectionError(Exception):
    """
    The peer broke a rule of the connection: it ends with GOAWAY C{code}.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class IStreamHandler(Interface):
    """
    What a L{ServerConnection} tells of its streams.
    """

    def requestReceived(streamId, headers, ended):
        """
        A client opened stream C{streamId} with C{headers} (C{[(name,
        value)]}, bytes, checked: lower-case names, the request's
        pseudo-headers first and present); C{ended}: it sends nothing more.
        """

    def streamData(streamId, data):
        """
        Bytes on an open stream (flow control is handled).
        """

    def streamEnded(streamId):
        """
        The client sends nothing more on the stream (END_STREAM).
        """

    def streamReset(streamId, remote):
        """
        The stream is over, reset: by the client (C{remote}), or by this
        side for a rule the client broke on it.
        """

    def pingAcknowledged():
        """
        The peer answered this side's PING.
        """

    def goneAway(code):
        """
        The peer says GOAWAY.
        """


class _Stream:
    """
    A stream's state: its send window, whether the client still sends,
    and the bytes received since its window was last opened.
    """

    __slots__ = ("sendWindow", "remoteOpen", "unacknowledged")

    def __init__(self, sendWindow, remoteOpen):
        self.sendWindow = sendWindow
        self.remoteOpen = remoteOpen
        self.unacknowledged = 0


class ServerConnection:
    """
    One HTTP/2 connection, server side.

    @param handler: its L{IStreamHandler}.
    @param maxStreams: SETTINGS_MAX_CONCURRENT_STREAMS: streams the client
        may have open at once (one more is refused with C{REFUSED_STREAM}).
    @param receiveWindow: each stream's and the connection's receive window,
        at least HTTP/2's default (65,535): this side opens a window again
        once half of it is received, so that a client never waits for it
        (bounding what is received is the handler's: L{distro.h2grpc}). As
        a frame is at most 16 KiB, no client can pass a window: none is
        enforced.
    @param maxHeaderListSize: SETTINGS_MAX_HEADER_LIST_SIZE.
    """

    def __init__(self, handler, *, maxStreams=100, receiveWindow=DEFAULT_WINDOW, maxHeaderListSize=16384):
        if receiveWindow < DEFAULT_WINDOW:
            raise ValueError(f"a receive window of {receiveWindow} bytes, less than {DEFAULT_WINDOW}")
        self.handler = handler
        self.maxStreams = maxStreams
        self.receiveWindow = receiveWindow
        self.maxHeaderListSize = maxHeaderListSize
        self.closed = False
        self._decoder = Decoder(maxListSize=maxHeaderListSize)
        self._streams = {}
        self._highest = 0  # the highest stream id the client opened
        self._out = []
        self._buffer = b""
        self._preface = True
        self._block = None  # (stream id, flags, bytes) of a header block not yet whole
        self._sendWindow = DEFAULT_WINDOW  # the connection's
        self._initialSendWindow = DEFAULT_WINDOW  # a new stream's (the peer's setting)
        self.maxOutboundFrame = DEFAULT_FRAME_SIZE
        self._unacknowledged = 0  # the connection's bytes received since its window was opened
        self._checked = None  # the last request headers found well-formed (the decoder repeats them)
        # The HPACK encoder's table (never used, RFC 7541's 4,096 until the
        # client lowers it: then 0), and whether the next block says so.
        self._encoderTableSize = 4096
        self._tableSizeUpdate = False

    # What this side sends

    def initiate(self):
        """
        The server's preface: its SETTINGS, and the connection's window
        opened to C{receiveWindow}.
        """
        settings = b"".join(_SETTING.pack(code, value) for code, value in (
            (SETTINGS_MAX_CONCURRENT_STREAMS, self.maxStreams),
            (SETTINGS_INITIAL_WINDOW_SIZE, self.receiveWindow),
            (SETTINGS_MAX_HEADER_LIST_SIZE, self.maxHeaderListSize),
        ))
        self._out.append(frame(SETTINGS, 0, 0, settings))
        if self.receiveWindow > DEFAULT_WINDOW:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.receiveWindow - DEFAULT_WINDOW)))

    def dataToSend(self):
        """
        The bytes to write, taken.
        """
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def sendHeaders(self, streamId, block, end=False):
        """
        Send header block C{block} (HPACK, one frame: blocks are small);
        with C{end}, the stream's last frame: this side forgets it, and the
        client that still sends is told to stop (C{RST_STREAM NO_ERROR}).
        The first block after the client lowered SETTINGS_HEADER_TABLE_SIZE
        starts with a dynamic table size update to 0.
        """
        if self._tableSizeUpdate:
            self._tableSizeUpdate = False
            block = b"\x20" + block
        self._out.append(frame(HEADERS, END_HEADERS | END_STREAM if end else END_HEADERS, streamId, block))
        if end:
            self._ended(streamId)

    def sendWindow(self, streamId):
        """
        The bytes stream C{streamId} may send in its next DATA frame.
        """
        stream = self._streams.get(streamId)
        if stream is None:
            return 0
        return max(0, min(stream.sendWindow, self._sendWindow, self.maxOutboundFrame))

    def sendData(self, streamId, data):
        """
        Send C{data} on C{streamId}: at most L{sendWindow} bytes.
        """
        stream = self._streams[streamId]
        size = len(data)
        stream.sendWindow -= size
        self._sendWindow -= size
        self._out.append(frame(DATA, 0, streamId, data))

    def resetStream(self, streamId, code):
        """
        End stream C{streamId} with C{RST_STREAM code}.
        """
        self._streams.pop(streamId, None)
        self._out.append(frame(RST_STREAM, 0, streamId, _U32.pack(code)))

    def isOpen(self, streamId):
        """
        Whether stream C{streamId} is open (this side has not ended it).
        """
        return streamId in self._streams

    def ping(self, opaque):
        """
        Send PING with C{opaque} (8 bytes).
        """
        self._out.append(frame(PING, 0, 0, opaque))

    def goAway(self, code, message=b""):
        """
        Send GOAWAY C{code}: nothing more is read.
        """
        self._out.append(frame(GOAWAY, 0, 0, _GOAWAY.pack(self._highest, code) + message[:256]))
        self.closed = True

    def _streamError(self, streamId, code):
        """
        The client broke a rule on open stream C{streamId}: it is reset
        with C{code}, and the handler told.
        """
        self.resetStream(streamId, code)
        self.handler.streamReset(streamId, False)

    def _ended(self, streamId):
        stream = self._streams.pop(streamId, None)
        if stream is not None and stream.remoteOpen:
            self._out.append(frame(RST_STREAM, 0, streamId, _U32.pack(NO_ERROR)))

    # What the peer sends

    def receive(self, data):
        """
        Handle C{data}, read from the peer, telling the handler what
        happens; stops once the connection is closed.

        @raise ConnectionError: the peer broke a rule of the connection
            (the caller ends it with L{goAway}).
        """
        buffer = self._buffer + data if self._buffer else data
        at = 0
        if self._preface:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(buffer):
                    raise ConnectionError(PROTOCOL_ERROR, "not HTTP/2's client preface")
                self._buffer = buffer
                return
            if not buffer.startswith(PREFACE):
                raise ConnectionError(PROTOCOL_ERROR, "not HTTP/2's client preface")
            self._preface = False
            at = len(PREFACE)
        end = len(buffer)
        unpack = _FRAME.unpack_from
        while end - at >= 9 and not self.closed:
            high, low, kind, flags, streamId = unpack(buffer, at)
            length = (high << 8) | low
            if length > DEFAULT_FRAME_SIZE:
                raise ConnectionError(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            if end - at - 9 < length:
                break
            payload = buffer[at + 9:at + 9 + length]
            at += 9 + length
            streamId &= 0x7FFFFFFF
            if self._block is not None and kind != CONTINUATION:
                raise ConnectionError(PROTOCOL_ERROR, "a frame inside a header block")
            handler = self._frames.get(kind)
            if handler is not None:
                handler(self, flags, streamId, payload)
        self._buffer = buffer[at:] if at < end else b""

    def _padded(self, flags, payload):
        if flags & PADDED:
            if not payload:
                raise ConnectionError(PROTOCOL_ERROR, "a padded frame without its pad length")
            pad = payload[0]
            if pad >= len(payload):
                raise ConnectionError(PROTOCOL_ERROR, "padding longer than its frame")
            return payload[1:len(payload) - pad]
        return payload

    def _data(self, flags, streamId, payload):
        if streamId == 0:
            raise ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        if streamId > self._highest:
            raise ConnectionError(PROTOCOL_ERROR, f"DATA on idle stream {streamId}")
        size = len(payload)
        self._unacknowledged += size
        if self._unacknowledged >= self.receiveWindow // 2:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._unacknowledged)))
            self._unacknowledged = 0
        data = self._padded(flags, payload)
        stream = self._streams.get(streamId)
        if stream is None:
            # A stream this side ended (or reset): what was in flight is
            # dropped (RFC 9113 5.1, closed).
            return
        if not stream.remoteOpen:
            # After the client's END_STREAM (5.1, half-closed (remote)).
            self._streamError(streamId, STREAM_CLOSED)
            return
        stream.unacknowledged += size
        ended = flags & END_STREAM
        if ended:
            stream.remoteOpen = False
        elif stream.unacknowledged >= self.receiveWindow // 2:
            self._out.append(frame(WINDOW_UPDATE, 0, streamId, _U32.pack(stream.unacknowledged)))
            stream.unacknowledged = 0
        if data:
            self.handler.streamData(streamId, data)
        if ended and streamId in self._streams:
            self.handler.streamEnded(streamId)

    def _headers(self, flags, streamId, payload):
        if streamId == 0 or not streamId & 1:
            raise ConnectionError(PROTOCOL_ERROR, f"HEADERS on stream {streamId}")
        block = self._padded(flags, payload)
        if flags & PRIORITY_FLAG:
            if len(block) < 5:
                raise ConnectionError(FRAME_SIZE_ERROR, "HEADERS shorter than its priority")
            block = block[5:]
        if flags & END_HEADERS:
            self._headerBlock(streamId, flags, block)
        else:
            self._block = (streamId, flags, block)

    def _continuation(self, flags, streamId, payload):
        if self._block is None or self._block[0] != streamId:
            raise ConnectionError(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        _, headerFlags, block = self._block
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise ConnectionError(ENHANCE_YOUR_CALM, f"a header block past {MAX_HEADER_BLOCK} bytes")
        if flags & END_HEADERS:
            self._block = None
            self._headerBlock(streamId, headerFlags, block)
        else:
            self._block = (streamId, headerFlags, block)

    def _headerBlock(self, streamId, flags, block):
        # Decoded whatever becomes of the stream: the table is the peer's.
        try:
            headers = self._decoder.decode(block)
        except HPACKError as e:
            raise ConnectionError(COMPRESSION_ERROR, str(e))
        except HeaderListTooLarge:
            headers = None
        ended = bool(flags & END_STREAM)
        if streamId <= self._highest:
            stream = self._streams.get(streamId)
            if stream is None:
                return  # a stream this side ended: dropped
            if not stream.remoteOpen:
                self._streamError(streamId, STREAM_CLOSED)
                return
            # Trailers: they end what the client sends.
            if not ended or headers is None or any(name[:1] == b":" for name, _ in headers):
                self._streamError(streamId, PROTOCOL_ERROR)
                return
            stream.remoteOpen = False
            self.handler.streamEnded(streamId)
            return
        self._highest = streamId
        # Refused streams are never opened: the handler is told nothing.
        if headers is None or (headers is not self._checked and not _isRequest(headers)):
            self.resetStream(streamId, PROTOCOL_ERROR)
            return
        self._checked = headers
        if len(self._streams) >= self.maxStreams:
            self.resetStream(streamId, REFUSED_STREAM)
            return
        self._streams[streamId] = _Stream(self._initialSendWindow, not ended)
        self.handler.requestReceived(streamId, headers, ended)

    def _priority(self, flags, streamId, payload):
        if streamId == 0:
            raise ConnectionError(PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise ConnectionError(FRAME_SIZE_ERROR, "PRIORITY not of 5 bytes")

    def _rstStream(self, flags, streamId, payload):
        if len(payload) != 4:
            raise ConnectionError(FRAME_SIZE_ERROR, "RST_STREAM not of 4 bytes")
        if streamId == 0 or streamId > self._highest:
            raise ConnectionError(PROTOCOL_ERROR, f"RST_STREAM on idle stream {streamId}")
        if self._streams.pop(streamId, None) is not None:
            self.handler.streamReset(streamId, True)

    def _settings(self, flags, streamId, payload):
        if streamId != 0:
            raise ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ConnectionError(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ConnectionError(FRAME_SIZE_ERROR, "SETTINGS not of 6-byte entries")
        window = highest = None
        for offset in range(0, len(payload), 6):
            code, value = _SETTING.unpack_from(payload, offset)
            if code == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1")
                window = value
                highest = value if highest is None else max(highest, value)
            elif code == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= 2 ** 24 - 1:
                    raise ConnectionError(PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value}")
                self.maxOutboundFrame = value
            elif code == SETTINGS_ENABLE_PUSH:
                if value > 1:
                    raise ConnectionError(PROTOCOL_ERROR, f"SETTINGS_ENABLE_PUSH {value}")
            elif code == SETTINGS_HEADER_TABLE_SIZE:
                # The encoder's table must shrink to fit, and the next
                # block say so (RFC 7541 4.2; decoders such as nghttp2's
                # and Netty's require it): it becomes 0, as it is unused.
                if value < self._encoderTableSize:
                    self._encoderTableSize = 0
                    self._tableSizeUpdate = True
            # The others concern what this side does not do (push) or are
            # advisory.
        if window is not None:
            self._initialWindowChanged(window, highest)
        self._out.append(frame(SETTINGS, ACK, 0))

    def _initialWindowChanged(self, value, highest):
        """
        Move every stream's window by the new initial window C{value}: once
        per SETTINGS frame, however many times it says so (a window past
        2^31-1 at its C{highest} value would have been past it then).
        """
        if highest - self._initialSendWindow > 0:
            largest = max((stream.sendWindow for stream in self._streams.values()), default=0)
            if largest + highest - self._initialSendWindow > MAX_WINDOW:
                raise ConnectionError(FLOW_CONTROL_ERROR, "a stream's window past 2^31-1")
        delta = value - self._initialSendWindow
        self._initialSendWindow = value
        if delta:
            for stream in self._streams.values():
                stream.sendWindow += delta

    def _pushPromise(self, flags, streamId, payload):
        raise ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")

    def _ping(self, flags, streamId, payload):
        if streamId != 0:
            raise ConnectionError(PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ConnectionError(FRAME_SIZE_ERROR, "PING not of 8 bytes")
        if flags & ACK:
            self.handler.pingAcknowledged()
        else:
            self._out.append(frame(PING, ACK, 0, payload))

    def _goAway(self, flags, streamId, payload):
        if streamId != 0:
            raise ConnectionError(PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise ConnectionError(FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
        self.handler.goneAway(_GOAWAY.unpack_from(payload)[1])

    def _windowUpdate(self, flags, streamId, payload):
        if len(payload) != 4:
            raise ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE not of 4 bytes")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if streamId == 0:
            if increment == 0:
                raise ConnectionError(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self._sendWindow += increment
            if self._sendWindow > MAX_WINDOW:
                raise ConnectionError(FLOW_CONTROL_ERROR, "the connection's window past 2^31-1")
            return
        if streamId > self._highest:
            raise ConnectionError(PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {streamId}")
        stream = self._streams.get(streamId)
        if stream is None:
            return
        if increment == 0 or stream.sendWindow + increment > MAX_WINDOW:
            self._streamError(streamId, PROTOCOL_ERROR if increment == 0 else FLOW_CONTROL_ERROR)
            return
        stream.sendWindow += increment

    _frames = {
        DATA: _data,
        HEADERS: _headers,
        PRIORITY: _priority,
        RST_STREAM: _rstStream,
        SETTINGS: _settings,
        PUSH_PROMISE: _pushPromise,
        PING: _ping,
        GOAWAY: _goAway,
        WINDOW_UPDATE: _windowUpdate,
        CONTINUATION: _continuation,
    }


def _isRequest(headers):
    """
    Whether C{headers} are a well-formed request's (RFC 9113 8.3): names
    lower-case, pseudo-headers known, once each and first, C{:method},
    C{:scheme} and C{:path} present, no connection-specific field.
    """
    pseudo = set()
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular or name not in _PSEUDO or name in pseudo:
                return False
            pseudo.add(name)
            continue
        regular = True
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            return False
        if not name.islower() and name.lower() != name:
            return False
    return _REQUIRED <= pseudo
