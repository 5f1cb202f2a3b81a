# -*- test-case-name: tests.test_handshake -*-
"""
What a connection of the node has besides its framing until its handshake
is done (PROTOCOL.md 1: small frames only, within a deadline), and its
registration as its transport's producer.
"""

from distro.wire import HANDSHAKE_MAX_FRAME


class HandshakeDeadline:
    """
    Until L{done}: the connection takes frames of at most
    L{HANDSHAKE_MAX_FRAME} (or its own C{maxFrame} if smaller), and
    C{timedOut()} is called if the handshake is not done within C{timeout}
    seconds.

    @param connection: a L{distro.wire.FrameProtocol}: its C{maxFrame} is
        lowered now and given back by L{done}.
    """

    def __init__(self, connection, clock, timeout, timedOut):
        self._connection = connection
        self._fullMaxFrame = connection.maxFrame
        connection.maxFrame = min(HANDSHAKE_MAX_FRAME, connection.maxFrame)
        self._timer = clock.callLater(timeout, self._expired, timedOut)

    def _expired(self, timedOut):
        self._timer = None
        timedOut()

    def done(self):
        """
        The handshake is done: the connection's own frame limit applies, and
        the deadline is gone.
        """
        if self._connection is not None:
            self._connection.maxFrame = self._fullMaxFrame
        self.cancel()

    def cancel(self):
        """
        Cancel the deadline (the connection ended), letting go of the
        connection; return whether it was still running (the handshake was
        not done).
        """
        self._connection = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
            return True
        return False


class ProducerRegistration:
    """
    C{producer} registered (streaming) with C{transport}: told when the
    transport's send buffer fills and drains, until L{end}.
    """

    def __init__(self, transport, producer):
        self._transport = transport
        transport.registerProducer(producer, True)

    def end(self):
        """
        Let go of the transport at the end of the connection: not every
        transport forgets its producer when it closes (TLS does not), and a
        closed connection would otherwise be a reference cycle. Safe to
        call twice.
        """
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.unregisterProducer()
