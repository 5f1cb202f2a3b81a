# -*- test-case-name: tests.test_client_protocol -*-
"""
One connection from the client library to a node's client port: requests
matched to their replies by id, per-request timeouts, pushes handed to an
observer, and the heartbeat that keeps the node from closing an idle
connection (PROTOCOL.md sections 2, 4.1 and 4.4).

A L{ClientConnection} knows nothing of failover or of what the client has
registered: that is L{distro.client._session}'s job.
"""

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from zope.interface import Interface, implementer

from distro.wire import FRAME_TOO_LARGE, PROTOCOL_VERSION, FrameProtocol, encode, noDelay

from ._errors import DistroError, NotConnected, RequestTimeout

__all__ = ["DEFAULT_TIMEOUT", "IConnectionObserver", "ClientConnection"]

DEFAULT_TIMEOUT = 10.0


class IConnectionObserver(Interface):
    """
    What a L{ClientConnection} reports to the code that uses it.
    """

    def pushReceived(connection, message):
        """
        The node sent a C{push} frame (a map with C{op} C{"push"}).
        """

    def requestTimedOut(connection, op):
        """
        A request on C{connection} got no answer in time: the node may be gone
        without the connection noticing.
        """

    def connectionLost(connection, reason):
        """
        C{connection} is closed; its outstanding requests have failed.
        """


@implementer(IConnectionObserver)
class _NullObserver:
    def pushReceived(self, connection, message):
        pass

    def requestTimedOut(self, connection, op):
        pass

    def connectionLost(self, connection, reason):
        pass


class _Outstanding:
    """
    A request waiting for its reply.
    """

    def __init__(self, op, deferred, timeoutCall):
        self.op = op
        self.deferred = deferred
        self.timeoutCall = timeoutCall


class ClientConnection(FrameProtocol):
    """
    The client side of one client-port connection.

    Request ids count up from 1, so the C{hello} sent by L{hello} as the first
    request has id 1. Time is read only from the injected C{clock}.

    @ivar helloReply: the node's answer to L{hello}, once it came.
    @ivar connected: whether the transport is up.
    @ivar received: whether any byte came from the node.
    @ivar refusal: the text of an C{error} frame answering no request (the
        node refused the connection itself, e.g. at a connection limit), or
        L{None}.
    @ivar answeredTLS: whether the node's first bytes were a TLS record (a
        plain client dialed a TLS port).
    @ivar maxRequestFrame: the largest frame body sent: the client port's
        default C{max_frame}. A larger request fails here, unsent.
    @ivar maxFrame: the largest frame body accepted from the node. It is
        generous, since a node's view of a big service can be large; a larger
        frame drops the connection.
    """

    log = Logger()
    maxRequestFrame = 8 * 1024 * 1024
    maxFrame = 64 * 1024 * 1024

    def __init__(self, clock, observer=None, timeout=DEFAULT_TIMEOUT):
        """
        @param clock: an L{IReactorTime} provider.
        @param observer: an L{IConnectionObserver} provider.
        @param timeout: the default request timeout, in seconds.
        """
        super().__init__()
        self.clock = clock
        self.observer = observer if observer is not None else _NullObserver()
        self.timeout = timeout
        self.connected = False
        self.helloReply = None
        self.received = False
        self.refusal = None
        self.answeredTLS = False
        self._nextId = 1
        self._outstanding = {}
        self._lastSent = None
        self._heartbeatInterval = None
        self._heartbeatCall = None

    def connectionMade(self):
        """
        Start counting the heartbeat from now.
        """
        self.connected = True
        noDelay(self.transport)
        self._lastSent = self.clock.seconds()

    def dataReceived(self, data):
        """
        Note that the node sent something, then read the frames.
        """
        if not self.received:
            self.received = True
            # A TLS record starts with its type (0x14..0x17) and major version 3.
            self.answeredTLS = len(data) >= 2 and 0x14 <= data[0] <= 0x17 and data[1] == 3
        super().dataReceived(data)

    def sendMessage(self, message):
        """
        Send one frame and note the time, for the heartbeat.
        """
        self._lastSent = self.clock.seconds()
        super().sendMessage(message)

    def request(self, op, *, timeout=None, **fields):
        """
        Send a request and wait for its reply.

        @param op: the request's C{op}.
        @param timeout: seconds to wait for the reply; the connection's
            default when L{None}. (No request of the protocol has a field
            named C{timeout}.)
        @param fields: the request's fields.
        @return: a L{Deferred} firing with the reply map, or failing with
            L{DistroError} for an C{error} reply, L{RequestTimeout}, or
            L{NotConnected} if the connection is or gets closed first.
            Cancelling it forgets the request (a late reply is ignored).
        """
        if not self.connected or self.closing:
            return fail(NotConnected(f"cannot send {op!r}: not connected"))
        if timeout is None:
            timeout = self.timeout
        requestId = self._nextId
        message = dict(fields)
        message["op"] = op
        message["id"] = requestId
        frame = encode(message)
        if len(frame) - 4 > self.maxRequestFrame:
            return fail(
                DistroError(
                    FRAME_TOO_LARGE,
                    f"{op} request of {len(frame) - 4} bytes exceeds max_frame "
                    f"{self.maxRequestFrame}",
                )
            )
        self._nextId += 1
        deferred = Deferred(lambda d: self._forget(requestId))
        timeoutCall = self.clock.callLater(timeout, self._timedOut, requestId, timeout)
        self._outstanding[requestId] = _Outstanding(op, deferred, timeoutCall)
        self._lastSent = self.clock.seconds()
        self.transport.write(frame)
        return deferred

    def hello(self, agent, token=None, resume=None, timeout=None):
        """
        Send C{hello}; when the node answers, start the heartbeat at the
        node's C{heartbeat_ms}.

        @param agent: C{"name/version"} of the program using the library.
        @param token: an authentication token, if the cluster wants one.
        @param resume: C{{"client_id", "resume_token"}} of an earlier session.
        @return: a L{Deferred} firing with the hello reply.
        """
        fields = {"proto": PROTOCOL_VERSION, "agent": agent}
        if token is not None:
            fields["token"] = token
        if resume is not None:
            fields["resume"] = resume
        return self.request("hello", timeout=timeout, **fields).addCallback(self._greeted)

    def _greeted(self, reply):
        self.helloReply = reply
        heartbeatMs = reply.get("heartbeat_ms")
        if isinstance(heartbeatMs, int) and heartbeatMs > 0:
            self.startHeartbeat(heartbeatMs / 1000.0)
        return reply

    def startHeartbeat(self, interval):
        """
        Send a C{ping} whenever nothing was sent for C{interval} seconds.
        """
        self._heartbeatInterval = interval
        self._scheduleHeartbeat()

    def _scheduleHeartbeat(self):
        if self._heartbeatCall is not None and self._heartbeatCall.active():
            self._heartbeatCall.cancel()
        delay = self._lastSent + self._heartbeatInterval - self.clock.seconds()
        self._heartbeatCall = self.clock.callLater(max(delay, 0), self._heartbeat)

    def _heartbeat(self):
        self._heartbeatCall = None
        if not self.connected or self.closing:
            return
        # The tolerance keeps float rounding from postponing a due ping.
        if self.clock.seconds() - self._lastSent >= self._heartbeatInterval - 1e-6:
            # Its failures need no handling here: a timeout is reported to the
            # observer, and a lost connection is reported by connectionLost.
            self.request("ping").addErrback(lambda f: None)
        self._scheduleHeartbeat()

    def messageReceived(self, message):
        """
        Route a reply to its request, a push to the observer.
        """
        op = message.get("op")
        if op == "push":
            self.observer.pushReceived(self, message)
        elif op in ("ok", "error"):
            self._replyReceived(op, message)
        else:
            # Unknown ops are ignored, for forward compatibility.
            self.log.debug("ignoring a frame with op {op!r}", op=op)

    def _replyReceived(self, op, message):
        requestId = message.get("re")
        outstanding = self._outstanding.pop(requestId, None) if requestId else None
        if outstanding is None:
            if op == "error":
                if requestId is None:
                    self.refusal = f"{message.get('code')}: {message.get('message')}"
                self.log.warn(
                    "node reported {code}: {message}",
                    code=message.get("code"),
                    message=message.get("message"),
                )
            else:
                self.log.debug("ignoring a reply to no outstanding request")
            return
        outstanding.timeoutCall.cancel()
        if op == "ok":
            outstanding.deferred.callback(message)
        else:
            error = DistroError(str(message.get("code")), str(message.get("message", "")))
            outstanding.deferred.errback(error)

    def lengthLimitExceeded(self, length):
        """
        The node announced a frame above L{maxFrame}: the stream cannot be
        trusted any more, drop the connection (a node is not sent error
        frames).
        """
        self.log.warn(
            "node sent a frame of {length} bytes, above {maxFrame}; disconnecting",
            length=length,
            maxFrame=self.maxFrame,
        )
        self.closing = True
        self.transport.abortConnection()

    def badFrame(self, error):
        """
        A frame from the node could not be decoded: log it and go on, the
        stream is still in sync. (A node is not answered with an error frame.)
        """
        self.log.warn("undecodable frame from the node: {error}", error=error)

    def _timedOut(self, requestId, timeout):
        outstanding = self._outstanding.pop(requestId)
        outstanding.deferred.errback(RequestTimeout(outstanding.op, timeout))
        self.observer.requestTimedOut(self, outstanding.op)

    def _forget(self, requestId):
        outstanding = self._outstanding.pop(requestId, None)
        if outstanding is not None:
            outstanding.timeoutCall.cancel()

    def connectionLost(self, reason):
        """
        Fail every outstanding request with L{NotConnected} and stop the
        heartbeat.
        """
        self.connected = False
        if self._heartbeatCall is not None and self._heartbeatCall.active():
            self._heartbeatCall.cancel()
        self._heartbeatCall = None
        outstanding, self._outstanding = self._outstanding, {}
        for request in outstanding.values():
            request.timeoutCall.cancel()
            # The reason says why, e.g. a TLS certificate that failed verification.
            lost = NotConnected(
                f"connection lost before the reply to {request.op!r}: "
                f"{reason.getErrorMessage()}"
            )
            lost.__cause__ = reason.value
            request.deferred.errback(lost)
        self.observer.connectionLost(self, reason)
