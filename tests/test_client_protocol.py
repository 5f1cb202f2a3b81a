# -*- test-case-name: tests.test_client_protocol -*-
"""
Tests for L{distro.client._protocol.ClientConnection}: one connection to a
node, driven through a L{StringTransport} and a L{Clock}.
"""

import struct

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from distro.client import DistroError, NotConnected, RequestTimeout
from distro.client._protocol import ClientConnection, IConnectionObserver
from distro.wire import decode, encode


def sentMessages(transport):
    """
    Decode and return the frames written to C{transport} since the last call.
    """
    data = transport.value()
    transport.clear()
    messages = []
    while data:
        (length,) = struct.unpack("!I", data[:4])
        messages.append(decode(data[4 : 4 + length]))
        data = data[4 + length :]
    return messages


@implementer(IConnectionObserver)
class RecordingObserver:
    """
    An L{IConnectionObserver} that records what it is told.
    """

    def __init__(self):
        self.pushes = []
        self.timeouts = []
        self.lost = []

    def pushReceived(self, connection, message):
        """
        Record a push.
        """
        self.pushes.append(message)

    def requestTimedOut(self, connection, op):
        """
        Record the op of a timed out request.
        """
        self.timeouts.append(op)

    def connectionLost(self, connection, reason):
        """
        Record the reason of the loss.
        """
        self.lost.append(reason)


class ClientConnectionTestsMixin:
    """
    A connected L{ClientConnection} with a recording observer.
    """

    def setUp(self):
        self.clock = Clock()
        self.observer = RecordingObserver()
        self.connection = ClientConnection(self.clock, observer=self.observer, timeout=10.0)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)

    def receive(self, message):
        """
        Deliver C{message} to the connection as a frame from the node.
        """
        self.connection.dataReceived(encode(message))

    def results(self, deferred):
        """
        Collect what C{deferred} fires with into a list (a L{Failure} if it
        fails).
        """
        results = []
        deferred.addBoth(results.append)
        return results


class RequestTests(ClientConnectionTestsMixin, SynchronousTestCase):
    """
    Requests and their replies.
    """

    def test_observerInterface(self):
        """
        The observer used in these tests provides L{IConnectionObserver}.
        """
        self.assertTrue(verifyObject(IConnectionObserver, self.observer))

    def test_idsIncreaseFromOne(self):
        """
        Requests are numbered from 1 and carry their op and fields.
        """
        self.connection.request("ping")
        self.connection.request("query", service={"name": "a"})
        self.assertEqual(
            sentMessages(self.transport),
            [
                {"op": "ping", "id": 1},
                {"op": "query", "id": 2, "service": {"name": "a"}},
            ],
        )

    def test_repliesOutOfOrder(self):
        """
        Replies are matched to requests by C{re}, whatever their order.
        """
        first = self.results(self.connection.request("ping"))
        second = self.results(self.connection.request("members"))
        self.receive({"op": "ok", "re": 2, "members": ["m"]})
        self.assertEqual(first, [])
        self.assertEqual(second, [{"op": "ok", "re": 2, "members": ["m"]}])
        self.receive({"op": "ok", "re": 1})
        self.assertEqual(first, [{"op": "ok", "re": 1}])

    def test_errorReply(self):
        """
        An C{error} reply fails the request with a L{DistroError} carrying the
        node's code and message.
        """
        d = self.connection.request("register", service={}, instance={})
        self.receive({"op": "error", "re": 1, "code": "BAD_REQUEST", "message": "port: missing"})
        error = self.failureResultOf(d, DistroError).value
        self.assertEqual((error.code, error.message), ("BAD_REQUEST", "port: missing"))
        self.assertEqual(str(error), "BAD_REQUEST: port: missing")

    def test_errorWithoutRequest(self):
        """
        An C{error} frame with C{re} nil fails no request and is not answered.
        """
        d = self.connection.request("ping")
        sentMessages(self.transport)
        self.receive({"op": "error", "re": None, "code": "BAD_FRAME", "message": "x"})
        self.assertNoResult(d)
        self.assertEqual(sentMessages(self.transport), [])

    def test_unknownReplyIgnored(self):
        """
        A reply to no outstanding request, or a frame with an unknown op, is
        ignored.
        """
        d = self.connection.request("ping")
        self.receive({"op": "ok", "re": 7})
        self.receive({"op": "future-op", "x": 1})
        self.assertNoResult(d)
        self.receive({"op": "ok", "re": 1, "extra": True})
        self.assertEqual(self.successResultOf(d), {"op": "ok", "re": 1, "extra": True})

    def test_badFrameFromNode(self):
        """
        An undecodable frame from the node is skipped without an answer; the
        stream stays usable.
        """
        d = self.connection.request("ping")
        sentMessages(self.transport)
        self.connection.dataReceived(struct.pack("!I", 2) + b"\xc1\xc1")
        self.receive({"op": "ok", "re": 1})
        self.assertEqual(self.successResultOf(d)["re"], 1)
        self.assertEqual(sentMessages(self.transport), [])
        self.assertTrue(self.transport.connected)

    def test_repliesSplitAcrossSegments(self):
        """
        A reply arriving one byte at a time is put together again.
        """
        d = self.connection.request("ping")
        for byte in encode({"op": "ok", "re": 1}):
            self.connection.dataReceived(bytes([byte]))
        self.assertEqual(self.successResultOf(d), {"op": "ok", "re": 1})


class FrameSizeTests(ClientConnectionTestsMixin, SynchronousTestCase):
    """
    Frames above the size limits.
    """

    def test_requestTooLarge(self):
        """
        A request whose frame would exceed C{maxRequestFrame} fails with
        C{FRAME_TOO_LARGE} unsent, and uses up no id.
        """
        self.connection.maxRequestFrame = 100
        d = self.connection.request("batch_register", instances=["x" * 100])
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "FRAME_TOO_LARGE")
        self.assertEqual(self.transport.value(), b"")
        self.connection.request("ping")
        self.assertEqual(sentMessages(self.transport), [{"op": "ping", "id": 1}])

    def test_replyTooLarge(self):
        """
        A frame from the node above C{maxFrame} drops the connection without
        an answer; no more requests are accepted.
        """
        self.connection.maxFrame = 10
        d = self.connection.request("query")
        sentMessages(self.transport)
        self.connection.dataReceived(struct.pack("!I", 11))
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(sentMessages(self.transport), [])
        self.failureResultOf(self.connection.request("ping"), NotConnected)
        self.connection.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, NotConnected)


class TimeoutTests(ClientConnectionTestsMixin, SynchronousTestCase):
    """
    Requests that get no answer.
    """

    def test_defaultTimeout(self):
        """
        A request unanswered after the connection's timeout fails with
        L{RequestTimeout}, and the observer hears of it.
        """
        d = self.connection.request("query")
        self.clock.advance(9.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        error = self.failureResultOf(d, RequestTimeout).value
        self.assertEqual((error.op, error.timeout), ("query", 10.0))
        self.assertEqual(self.observer.timeouts, ["query"])

    def test_requestTimeout(self):
        """
        A request's own C{timeout} replaces the default, and is not sent as a
        field.
        """
        d = self.connection.request("ping", timeout=2)
        self.assertEqual(sentMessages(self.transport), [{"op": "ping", "id": 1}])
        self.clock.advance(2)
        self.failureResultOf(d, RequestTimeout)

    def test_lateReplyIgnored(self):
        """
        A reply arriving after its request timed out changes nothing.
        """
        d = self.connection.request("ping")
        self.clock.advance(10)
        self.failureResultOf(d, RequestTimeout)
        self.receive({"op": "ok", "re": 1})
        self.assertEqual(self.observer.timeouts, ["ping"])

    def test_replyCancelsTimeout(self):
        """
        Once answered, a request leaves no timer behind.
        """
        self.connection.request("ping")
        self.receive({"op": "ok", "re": 1})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self):
        """
        Cancelling a request forgets it: its timer goes, a late reply is
        ignored.
        """
        d = self.connection.request("ping")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.receive({"op": "ok", "re": 1})
        self.assertEqual(self.observer.timeouts, [])


class ConnectionLostTests(ClientConnectionTestsMixin, SynchronousTestCase):
    """
    The end of the connection.
    """

    def test_outstandingRequestsFail(self):
        """
        When the connection is lost, every outstanding request fails with
        L{NotConnected}, and the observer hears of it.
        """
        first = self.connection.request("ping")
        second = self.connection.request("query")
        reason = Failure(ConnectionDone())
        self.connection.connectionLost(reason)
        self.failureResultOf(first, NotConnected)
        self.failureResultOf(second, NotConnected)
        self.assertEqual(self.observer.lost, [reason])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_requestAfterLoss(self):
        """
        A request made on a lost connection fails at once, sending nothing.
        """
        self.connection.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(self.connection.request("ping"), NotConnected)
        self.assertEqual(self.transport.value(), b"")

    def test_requestNotConnected(self):
        """
        A connection that was never made refuses requests.
        """
        connection = ClientConnection(self.clock)
        self.failureResultOf(connection.request("ping"), NotConnected)


class HelloTests(ClientConnectionTestsMixin, SynchronousTestCase):
    """
    The handshake.
    """

    helloReply = {
        "op": "ok",
        "re": 1,
        "proto": 1,
        "node": "n1",
        "client_id": "c1",
        "resume_token": "t1",
        "resumed": False,
        "ready": True,
        "heartbeat_ms": 3000,
        "idle_timeout_ms": 10000,
        "members": ["127.0.0.1:9850"],
    }

    def test_helloFirst(self):
        """
        C{hello} is request 1 and carries the protocol version and agent;
        optional fields are left out.
        """
        self.connection.hello("test/1.0")
        self.assertEqual(
            sentMessages(self.transport),
            [{"op": "hello", "id": 1, "proto": 1, "agent": "test/1.0"}],
        )

    def test_helloResume(self):
        """
        C{token} and C{resume} are sent when given.
        """
        resume = {"client_id": "c0", "resume_token": "t0"}
        self.connection.hello("test/1.0", token="secret", resume=resume)
        [hello] = sentMessages(self.transport)
        self.assertEqual((hello["token"], hello["resume"]), ("secret", resume))

    def test_helloReply(self):
        """
        The hello reply is the Deferred's result and is kept.
        """
        d = self.connection.hello("test/1.0")
        self.receive(self.helloReply)
        self.assertEqual(self.successResultOf(d), self.helloReply)
        self.assertEqual(self.connection.helloReply["client_id"], "c1")

    def test_helloRefused(self):
        """
        An error answer to C{hello} fails with its code.
        """
        d = self.connection.hello("test/1.0")
        self.receive({"op": "error", "re": 1, "code": "UNAUTHORIZED", "message": "bad token"})
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "UNAUTHORIZED")
        self.assertIsNone(self.connection.helloReply)


class HeartbeatTests(ClientConnectionTestsMixin, SynchronousTestCase):
    """
    Pings sent when the connection is otherwise quiet.
    """

    def setUp(self):
        super().setUp()
        self.connection.hello("test/1.0")
        self.receive(HelloTests.helloReply)
        sentMessages(self.transport)

    def test_pingWhenQuiet(self):
        """
        After C{heartbeat_ms} without sending, a C{ping} goes out.
        """
        self.clock.advance(2.9)
        self.assertEqual(sentMessages(self.transport), [])
        self.clock.advance(0.1)
        self.assertEqual(sentMessages(self.transport), [{"op": "ping", "id": 2}])

    def test_trafficPostponesPing(self):
        """
        Anything sent counts: the ping comes C{heartbeat_ms} after the last
        frame sent.
        """
        self.clock.advance(2)
        self.connection.request("query")
        sentMessages(self.transport)
        self.clock.advance(1)
        self.assertEqual(sentMessages(self.transport), [])
        self.clock.advance(2)
        self.assertEqual(sentMessages(self.transport), [{"op": "ping", "id": 3}])

    def test_pingsRepeat(self):
        """
        A quiet connection pings every C{heartbeat_ms}.
        """
        for expectedId in (2, 3, 4):
            self.clock.advance(3)
            [ping] = sentMessages(self.transport)
            self.receive({"op": "ok", "re": ping["id"]})
            self.assertEqual(ping, {"op": "ping", "id": expectedId})

    def test_unansweredPing(self):
        """
        A ping without an answer is reported to the observer as a timeout.
        """
        self.clock.advance(3)
        sentMessages(self.transport)
        self.clock.advance(10)
        self.assertEqual(self.observer.timeouts, ["ping"])

    def test_heartbeatStopsOnLoss(self):
        """
        A lost connection sends no more pings and leaves no timer.
        """
        self.connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(30)
        self.assertEqual(sentMessages(self.transport), [])


class PushTests(ClientConnectionTestsMixin, SynchronousTestCase):
    """
    Frames the node sends unasked.
    """

    def test_pushDelivered(self):
        """
        A C{push} frame goes to the observer whole, and matches no request.
        """
        d = self.connection.request("ping")
        push = {"op": "push", "seq": 1, "service_info": {"checksum": "x"}}
        self.receive(push)
        self.assertEqual(self.observer.pushes, [push])
        self.assertNoResult(d)

    def test_pushesInOrder(self):
        """
        Pushes reach the observer in the order they arrive.
        """
        for seq in (1, 2, 3):
            self.receive({"op": "push", "seq": seq})
        self.assertEqual([push["seq"] for push in self.observer.pushes], [1, 2, 3])
