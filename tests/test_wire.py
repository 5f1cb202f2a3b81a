# -*- test-case-name: tests.test_wire -*-
"""
Tests for L{distro.wire}: framing, decoding and the frame limit.
"""

import struct

import msgpack
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from distro import wire


class Recorder(wire.FrameProtocol):
    """
    A frame protocol that records what it receives.
    """

    def __init__(self):
        super().__init__()
        self.messages = []

    def messageReceived(self, message):
        self.messages.append(message)


def frames(data):
    """
    Split bytes written by a frame protocol into decoded maps.
    """
    out = []
    while data:
        (n,) = struct.unpack("!I", data[:4])
        out.append(msgpack.unpackb(data[4 : 4 + n]))
        data = data[4 + n :]
    return out


class CodecTests(SynchronousTestCase):
    """
    L{wire.encode} and L{wire.decode}.
    """

    def test_roundTrip(self):
        """
        A map survives encode/decode, with the length prefix in front.
        """
        frame = wire.encode({"op": "ping", "id": 7, "blob": b"\x00"})
        (n,) = struct.unpack("!I", frame[:4])
        self.assertEqual(n, len(frame) - 4)
        self.assertEqual(wire.decode(frame[4:]), {"op": "ping", "id": 7, "blob": b"\x00"})

    def assertBadFrame(self, body):
        e = self.assertRaises(wire.RequestError, wire.decode, body)
        self.assertEqual(e.code, wire.BAD_FRAME)
        return e

    def test_notMsgpack(self):
        """
        Bytes that are not msgpack are C{BAD_FRAME}.
        """
        self.assertBadFrame(b"\xc1")

    def test_notAMap(self):
        """
        A value other than a map is C{BAD_FRAME}.
        """
        self.assertBadFrame(msgpack.packb([1, 2]))

    def test_trailingBytes(self):
        """
        Bytes after the value are C{BAD_FRAME}.
        """
        e = self.assertBadFrame(msgpack.packb({"op": "x"}) + b"\x01")
        self.assertIn("trailing", e.message)

    def test_nonStringKeys(self):
        """
        A map with a non-string key is C{BAD_FRAME}.
        """
        self.assertBadFrame(msgpack.packb({b"op": "x"}, use_bin_type=True))
        self.assertBadFrame(b"\x81\x01\xa1x")

    def test_invalidUtf8(self):
        """
        A C{str} that is not UTF-8 is C{BAD_FRAME}.
        """
        self.assertBadFrame(b"\x81\xa2op\xa2\xff\xfe")

    def test_errorsCarryCodes(self):
        """
        L{wire.BadRequest} names the field, L{wire.LimitExceeded} the limit.
        """
        e = wire.BadRequest("instance.port", "must be an integer")
        self.assertEqual((e.code, e.field), (wire.BAD_REQUEST, "instance.port"))
        self.assertTrue(e.message.startswith("instance.port:"))
        e = wire.LimitExceeded("max_frame", "too big")
        self.assertEqual(e.code, wire.LIMIT_EXCEEDED)
        self.assertTrue(e.message.startswith("max_frame:"))


class FrameProtocolTests(SynchronousTestCase):
    """
    L{wire.FrameProtocol} over a L{StringTransport}.
    """

    def setUp(self):
        self.protocol = Recorder()
        self.protocol.maxFrame = 1024
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_byteByByte(self):
        """
        Frames delivered one byte at a time are reassembled.
        """
        data = wire.encode({"op": "a"}) + wire.encode({"op": "b"})
        for i in range(len(data)):
            self.protocol.dataReceived(data[i : i + 1])
        self.assertEqual(self.protocol.messages, [{"op": "a"}, {"op": "b"}])

    def test_manyInOneSegment(self):
        """
        Several frames in one segment are all delivered, in order.
        """
        self.protocol.dataReceived(b"".join(wire.encode({"n": i}) for i in range(50)))
        self.assertEqual([m["n"] for m in self.protocol.messages], list(range(50)))

    def test_badFrameKeepsConnection(self):
        """
        An undecodable frame is answered with C{BAD_FRAME} and the frames after
        it are still read.
        """
        self.protocol.dataReceived(b"\x00\x00\x00\x01\xc1" + wire.encode({"op": "after"}))
        (error,) = frames(self.transport.value())
        self.assertEqual((error["op"], error["re"], error["code"]), ("error", None, "BAD_FRAME"))
        self.assertEqual(self.protocol.messages, [{"op": "after"}])
        self.assertFalse(self.transport.disconnecting)

    def test_frameTooLarge(self):
        """
        A length over C{maxFrame} gets C{FRAME_TOO_LARGE}, closes the connection
        and nothing after it is read.
        """
        self.protocol.dataReceived(struct.pack("!I", 1025) + b"x" * 10 + wire.encode({"op": "a"}))
        (error,) = frames(self.transport.value())
        self.assertEqual(error["code"], "FRAME_TOO_LARGE")
        self.assertIn("1025", error["message"])
        self.assertTrue(self.transport.disconnecting)
        self.protocol.dataReceived(wire.encode({"op": "late"}))
        self.assertEqual(self.protocol.messages, [])

    def test_frameAtLimit(self):
        """
        A frame of exactly C{maxFrame} bytes is accepted.
        """
        body = msgpack.packb({"pad": "x" * 1000})
        body = msgpack.packb({"pad": "x" * (1000 + 1024 - len(body))})
        self.assertEqual(len(body), 1024)
        self.protocol.dataReceived(struct.pack("!I", len(body)) + body)
        self.assertEqual(len(self.protocol.messages), 1)

    def test_closeConnectionStopsReading(self):
        """
        After L{wire.FrameProtocol.closeConnection} buffered frames are dropped.
        """

        class Closer(Recorder):
            def messageReceived(self, message):
                super().messageReceived(message)
                self.closeConnection()

        protocol = Closer()
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(wire.encode({"n": 1}) + wire.encode({"n": 2}))
        self.assertEqual(protocol.messages, [{"n": 1}])


class NoDelayTests(SynchronousTestCase):
    """
    L{wire.noDelay} turns Nagle off where the transport can.
    """

    def test_tcp(self):
        class Transport:
            noDelay = None

            def setTcpNoDelay(self, enabled):
                self.noDelay = enabled

        transport = Transport()
        wire.noDelay(transport)
        self.assertIs(transport.noDelay, True)

    def test_without(self):
        """
        Transports without the option, or refusing it, are left alone.
        """

        class Refusing:
            def setTcpNoDelay(self, enabled):
                raise OSError("not a TCP socket")

        wire.noDelay(StringTransport())
        wire.noDelay(Refusing())
