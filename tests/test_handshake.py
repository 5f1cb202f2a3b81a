"""
Tests for L{distro.handshake}: the frame limit and deadline before a
connection's handshake, and a producer's registration with its transport.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from distro.handshake import HandshakeDeadline, ProducerRegistration
from distro.wire import HANDSHAKE_MAX_FRAME, FrameProtocol


class HandshakeDeadlineTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.connection = FrameProtocol()
        self.connection.maxFrame = 10 * HANDSHAKE_MAX_FRAME
        self.timedOut = []
        self.deadline = HandshakeDeadline(
            self.connection, self.clock, 5.0, lambda: self.timedOut.append(self.clock.seconds())
        )

    def test_smallFramesUntilDone(self):
        self.assertEqual(self.connection.maxFrame, HANDSHAKE_MAX_FRAME)
        self.deadline.done()
        self.assertEqual(self.connection.maxFrame, 10 * HANDSHAKE_MAX_FRAME)
        self.clock.advance(10)
        self.assertEqual(self.timedOut, [])

    def test_smallerOwnLimitKept(self):
        connection = FrameProtocol()
        connection.maxFrame = 100
        HandshakeDeadline(connection, self.clock, 5.0, lambda: None).done()
        self.assertEqual(connection.maxFrame, 100)

    def test_timedOut(self):
        self.clock.advance(4.9)
        self.assertEqual(self.timedOut, [])
        self.clock.advance(0.1)
        self.assertEqual(self.timedOut, [5.0])
        self.assertFalse(self.deadline.cancel())

    def test_cancel(self):
        """
        L{HandshakeDeadline.cancel} says whether the handshake was still
        under way; twice is harmless.
        """
        self.assertTrue(self.deadline.cancel())
        self.assertFalse(self.deadline.cancel())
        self.clock.advance(10)
        self.assertEqual(self.timedOut, [])


class ProducerRegistrationTests(SynchronousTestCase):
    def test_registeredUntilEnd(self):
        transport = StringTransport()
        producer = object()
        registration = ProducerRegistration(transport, producer)
        self.assertIs(transport.producer, producer)
        self.assertTrue(transport.streaming)
        registration.end()
        self.assertIsNone(transport.producer)
        registration.end()  # twice is harmless
