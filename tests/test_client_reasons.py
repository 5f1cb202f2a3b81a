# -*- test-case-name: tests.test_client_reasons -*-
"""
Tests for L{distro.client._reasons}: why a connection attempt failed, said
from the attempt's failure and what its connection saw.
"""

from twisted.internet import error
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from distro.client import DistroError
from distro.client._protocol import ClientConnection
from distro.client._reasons import NOT_TLS, REFUSED, SILENT_CLOSE, SPEAKS_TLS, TIMED_OUT, describe
from distro.wire import encode


class DescribeTests(SynchronousTestCase):
    """
    L{describe} of the ways an attempt fails.
    """

    def helloLost(self, received=b"", reason=None):
        """
        A connection whose hello is outstanding when the node sends
        C{received} and the connection ends with C{reason} (a clean close
        by default).

        @return: C{(failure of hello, connection)}.
        """
        connection = ClientConnection(Clock())
        connection.makeConnection(StringTransport())
        d = connection.hello("tests/1")
        if received:
            connection.dataReceived(received)
        connection.connectionLost(Failure(reason or error.ConnectionDone()))
        return self.failureResultOf(d), connection

    def test_endpointFailures(self):
        """
        A refused connection, a timeout, an unknown host, a node refusing
        the session: each in its words.
        """
        self.assertEqual(describe(Failure(error.ConnectionRefusedError())), REFUSED)
        self.assertEqual(describe(Failure(error.TimeoutError())), TIMED_OUT)
        self.assertEqual(describe(Failure(CancelledError())), TIMED_OUT)
        self.assertEqual(describe(Failure(error.DNSLookupError("x"))),
                         "cannot resolve the host name")
        self.assertEqual(describe(Failure(DistroError("UNAUTHORIZED", "a token is required"))),
                         "refused the session: UNAUTHORIZED: a token is required")

    def test_silentClose(self):
        """
        A connection closed before any byte came (what a TLS port does to a
        plain hello) says so.
        """
        self.assertEqual(describe(*self.helloLost()), SILENT_CLOSE)

    def test_answeredInTLS(self):
        """
        A first answer that is a TLS record (an alert) tells a TLS port.
        """
        self.assertEqual(describe(*self.helloLost(b"\x15\x03\x03\x00\x02\x02\x46")), SPEAKS_TLS)

    def test_refusedConnection(self):
        """
        An error frame answering no request (the node refused the
        connection itself) is the reason.
        """
        frame = encode({"op": "error", "re": None, "code": "LIMIT_EXCEEDED",
                        "message": "max_connections_per_ip: 1"})
        self.assertEqual(describe(*self.helloLost(frame)),
                         "refused the connection: LIMIT_EXCEEDED: max_connections_per_ip: 1")

    def test_tlsFailures(self):
        """
        A TLS handshake failure names OpenSSL's reason; a first answer that
        is not TLS says the port does not speak it.
        """
        from OpenSSL.SSL import Error

        verify = Error([("SSL routines", "", "certificate verify failed")])
        self.assertEqual(describe(*self.helloLost(reason=verify)),
                         "TLS handshake failed: certificate verify failed")
        plain = Error([("SSL routines", "", "wrong version number")])
        self.assertEqual(describe(*self.helloLost(reason=plain)), NOT_TLS)
