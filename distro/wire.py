# -*- test-case-name: tests.test_wire -*-
"""
The wire layer shared by the client port, the peer port and the client library:
length-prefixed msgpack frames (PROTOCOL.md section 1), the request/reply envelope
and the error codes (section 2): the domain's (L{distro.errors}) and the
framing's own.
"""

import struct

import msgpack
from twisted.logger import Logger
from twisted.internet.protocol import Protocol

from distro.errors import (
    BAD_REQUEST,
    DOMAIN_CODES,
    FORBIDDEN,
    INTERNAL,
    LIMIT_EXCEEDED,
    NOT_READY,
    UNAUTHORIZED,
    BadRequest,
    LimitExceeded,
    RequestError,
)

__all__ = [
    "BAD_FRAME",
    "FRAME_TOO_LARGE",
    "BAD_REQUEST",
    "UNKNOWN_OP",
    "HELLO_REQUIRED",
    "UNSUPPORTED_VERSION",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "LIMIT_EXCEEDED",
    "NOT_READY",
    "INTERNAL",
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "HANDSHAKE_MAX_FRAME",
    "RequestError",
    "BadRequest",
    "LimitExceeded",
    "encode",
    "decode",
    "errorMessage",
    "FrameProtocol",
]

PROTOCOL_VERSION = 1

BAD_FRAME = "BAD_FRAME"
FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
UNKNOWN_OP = "UNKNOWN_OP"
HELLO_REQUIRED = "HELLO_REQUIRED"
UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"

ERROR_CODES = DOMAIN_CODES | frozenset(
    [BAD_FRAME, FRAME_TOO_LARGE, UNKNOWN_OP, HELLO_REQUIRED, UNSUPPORTED_VERSION]
)

_PREFIX = struct.Struct("!I")

# The largest frame either port accepts before its handshake is done
# (PROTOCOL.md 1): an unauthenticated connection buffers no more than this.
HANDSHAKE_MAX_FRAME = 64 * 1024


def encode(message):
    """
    Encode one message (a map) as a complete frame, length prefix included.
    """
    body = msgpack.packb(message, use_bin_type=True)
    return _PREFIX.pack(len(body)) + body


def decode(body):
    """
    Decode the body of one frame.

    @raise RequestError: C{BAD_FRAME} if the body is not exactly one msgpack map
        with string keys.
    """
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except msgpack.ExtraData:
        raise RequestError(BAD_FRAME, "trailing bytes after the msgpack value")
    except Exception as e:
        raise RequestError(BAD_FRAME, f"not valid msgpack: {e.__class__.__name__}")
    if type(value) is not dict:
        raise RequestError(BAD_FRAME, "a frame must hold a map")
    for key in value:
        if type(key) is not str:
            raise RequestError(BAD_FRAME, "map keys must be strings")
    return value


def noDelay(transport):
    """
    Send small frames at once (no Nagle): a push or delta written while the
    previous one is unacknowledged would otherwise wait for a delayed ACK,
    some 40 ms. Transports without the option (UNIX sockets, test doubles)
    are left as they are.
    """
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):
        pass


def errorMessage(re, code, message):
    """
    Build an C{error} reply.
    """
    return {"op": "error", "re": re, "code": code, "message": message}


class FrameProtocol(Protocol):
    """
    One msgpack map per length-prefixed frame (PROTOCOL.md section 1).

    Subclasses implement L{messageReceived} and may override L{badFrame}. A frame
    longer than C{maxFrame} (set per instance, so each port has its own limit) is
    a framing violation: an error frame is sent and only this connection is
    closed. After L{closeConnection} nothing more that arrives is read.

    Unlike L{twisted.protocols.basic.Int32StringReceiver}, the receive buffer is
    a C{bytearray}: a large frame arriving in many segments costs linear, not
    quadratic, copying.

    Between L{pauseHandling} and L{resumeHandling} frames already received are
    kept, not handled (as Twisted's C{_PauseableMixin} does for its string
    receivers): a connection whose replies cannot be sent must not go on
    producing them from what it has buffered.
    """

    log = Logger()
    maxFrame = 8 * 1024 * 1024
    closing = False
    handlingPaused = False
    _handling = False

    def __init__(self):
        self._buffer = bytearray()

    def dataReceived(self, data):
        if self.closing:
            return
        buffer = self._buffer
        buffer += data
        if self._handling:
            # Called again from inside a handler (resumeHandling): the loop
            # below is already running and will get to it.
            return
        self._handling = True
        try:
            self._handleFrames(buffer)
        finally:
            self._handling = False

    def _handleFrames(self, buffer):
        unpackFrom = _PREFIX.unpack_from
        while len(buffer) >= 4 and not self.closing and not self.handlingPaused:
            (length,) = unpackFrom(buffer)
            if length > self.maxFrame:
                self.lengthLimitExceeded(length)
                return
            end = 4 + length
            if len(buffer) < end:
                return
            body = bytes(buffer[4:end])
            del buffer[:end]
            self.frameReceived(body)

    def pauseHandling(self):
        """
        Keep frames that arrive (or have arrived) without handling them.
        """
        self.handlingPaused = True

    def resumeHandling(self):
        """
        Handle what was kept, then frames as they arrive.
        """
        self.handlingPaused = False
        self.dataReceived(b"")

    def frameReceived(self, body):
        """
        One complete frame body arrived: decode it.
        """
        try:
            message = decode(body)
        except RequestError as e:
            self.badFrame(e)
            return
        self.messageReceived(message)

    def sendMessage(self, message):
        """
        Send one map as a frame.
        """
        self.transport.write(encode(message))

    def sendError(self, re, code, message):
        """
        Send an C{error} frame.
        """
        self.sendMessage(errorMessage(re, code, message))

    def closeConnection(self):
        """
        Close this connection once what was written is sent; read nothing more.
        """
        self.closing = True
        self._buffer.clear()
        self.transport.loseConnection()

    def badFrame(self, error):
        """
        A frame could not be decoded; the stream is still in sync.
        """
        self.sendError(None, error.code, error.message)

    def lengthLimitExceeded(self, length):
        """
        A length prefix above C{maxFrame} arrived: a framing violation.
        """
        self.sendError(
            None,
            FRAME_TOO_LARGE,
            f"frame of {length} bytes exceeds max_frame {self.maxFrame}",
        )
        self.closeConnection()

    def messageReceived(self, message):
        """
        Handle one decoded map. Subclasses override this.
        """
        raise NotImplementedError()
