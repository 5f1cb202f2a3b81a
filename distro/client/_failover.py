# -*- test-case-name: tests.test_client_session -*-
"""
L{Failover}: keeps a client session connected to one server of a list
(PROTOCOL.md section 6).

Connection attempts go round robin from a random place in the list. Each
connection starts with C{hello}, resuming the identity the previous one was
given, with the last epoch the cluster gave it (so that the new owner ranks
above every earlier one). On a failed attempt, or a node that answers
C{NOT_READY} (still loading, it cannot tell whether the cluster knows this
client), the next server is tried after a bounded backoff; on the loss of a
working connection, at once. A request left unanswered is taken as a sign of
a dead node: the connection is dropped and the next server tried.

What to re-send on a new connection is not this module's business: it calls
its C{onConnected} hook before anyone waiting for the connection, then, on a
resumed session, ends the redo with C{redo_done}, which makes the node take
the client over (PROTOCOL.md 4.1 and 6).
"""

import random

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from distro.wire import NOT_READY

from ._address import formatAddress, parseAddress, parseServers
from ._errors import DistroError, NotConnected, RequestTimeout
from ._events import SessionEvent
from ._protocol import ClientConnection, IConnectionObserver
from ._reasons import TIMED_OUT, describe

__all__ = ["defaultRetryPolicy", "Failover"]


def defaultRetryPolicy():
    """
    The delay before a connection attempt that follows C{failures + 1} failed
    attempts in a row: from 0.1 s, doubling, at most 2 s (a cluster that
    was down, its nodes restarted, is found within about that), with a
    little jitter so that many clients do not reconnect in step.
    """
    return backoffPolicy(
        initialDelay=0.1, maxDelay=2.0, factor=2.0, jitter=lambda: random.random() * 0.1
    )


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, failover):
        self.failover = failover

    def buildProtocol(self, addr):
        return ClientConnection(
            self.failover.clock, observer=self.failover, timeout=self.failover.timeout
        )


@implementer(IConnectionObserver)
class Failover:
    """
    One live connection at a time to one server of a list.

    @ivar clientId: the session's id, from the last C{hello} reply.
    @ivar node: the id of the node of the last C{hello} reply.
    @ivar closed: whether L{close} was called.
    """

    log = Logger()

    def __init__(
        self,
        servers,
        clock,
        endpointFactory,
        agent,
        onConnected,
        onPush,
        token=None,
        timeout=10.0,
        retryPolicy=None,
        start=None,
    ):
        """
        @param servers: C{"host:port"} addresses, see
            L{distro.client.parseServers}.
        @param clock: an L{IReactorTime} provider.
        @param endpointFactory: C{(host, port) -> IStreamClientEndpoint}.
        @param agent: C{"name/version"}, sent in C{hello}.
        @param onConnected: called with each new L{ClientConnection} once a
            node accepted the session on it.
        @param onPush: called with each C{push} message of the current
            connection.
        @param timeout: seconds for each connection attempt and request.
        @param retryPolicy: C{failures -> seconds}, the delay before the next
            attempt after failed ones.
        @param start: the index in C{servers} to connect to first; random when
            L{None}.
        """
        self._servers = parseServers(servers)
        self.clock = clock
        self._endpointFactory = endpointFactory
        self._agent = agent
        self._onConnected = onConnected
        self._onPush = onPush
        self._token = token
        self.timeout = timeout
        self._retryPolicy = retryPolicy or defaultRetryPolicy()
        if start is None:
            start = random.randrange(len(self._servers))
        self._next = start % len(self._servers)
        self.clientId = None
        self.node = None
        self.epoch = None
        self.closed = False
        self._listeners = []
        self._resumeToken = None
        self._connection = None
        self._attempt = None
        self._retryCall = None
        self._failures = 0
        # Why each server failed since the last session a node accepted.
        self._reasons = {}
        self._attemptReason = None
        self._attemptAddress = None
        self._startup = None
        self._waiters = []
        self._declined = set()

    @property
    def servers(self):
        """
        The server list as C{"host:port"} strings; it grows with the members
        the nodes announce.
        """
        return [formatAddress(host, port) for host, port in self._servers]

    def start(self, keepTrying=False):
        """
        Start connecting.

        @param keepTrying: when no node accepted the session within the
            timeout, fail the returned L{Deferred} but go on trying, as after
            the loss of a connection, instead of closing.
        @return: a L{Deferred} firing once a node accepted the session, or
            failing (and closing this) when no node did within the timeout,
            or at once when every server was tried and none could be
            reached (refused, not TLS...) (L{NotConnected}, with the
            C{reasons}), or a node refused it (L{DistroError}, for example
            C{UNAUTHORIZED}).
        """
        self._reasons = {}
        startup = self._startup = Deferred()
        startup.addTimeout(self.timeout, self.clock, self._startupTimedOut)
        startup.addErrback(self._startupFailed, keepTrying)
        self._scheduleConnect()
        return startup

    def _startupTimedOut(self, result, timeout):
        reasons = {
            address: self._reasons.get(
                address, TIMED_OUT if address == self._attemptAddress else "not tried"
            )
            for address in self.servers
        }
        raise NotConnected(
            f"no node answered within {timeout:g} s: {_listReasons(reasons)}", reasons=reasons
        )

    def _unreachable(self):
        """
        During the start, once every server failed, fail the start now
        rather than at its timeout (the attempts go on if the start said to
        keep trying).
        """
        servers = self.servers
        if not all(address in self._reasons for address in servers):
            return
        reasons = {address: self._reasons[address] for address in servers}
        startup, self._startup = self._startup, None
        startup.errback(
            NotConnected(f"no node could be reached: {_listReasons(reasons)}", reasons=reasons)
        )

    def _startupFailed(self, failure, keepTrying=False):
        self._startup = None
        if not (keepTrying and failure.check(NotConnected)):
            self.close()
        return failure

    def current(self):
        """
        The live connection, or L{None}.
        """
        connection = self._connection
        if connection is not None and connection.connected and not connection.closing:
            return connection
        return None

    def whenConnected(self):
        """
        A L{Deferred} firing with the live connection, at once or when there
        is one again; it fails with L{NotConnected} if this is closed first.
        Cancel it to stop waiting.
        """
        if self.closed:
            return fail(NotConnected("the client is closed"))
        connection = self.current()
        if connection is not None:
            return succeed(connection)
        waiter = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def _scheduleConnect(self):
        if self.closed or self._attempt or self._retryCall or self._connection:
            return
        if self._failures == 0 or self._firstRound():
            self._connectNext()
        else:
            delay = self._retryPolicy(self._failures - 1)
            self._retryCall = self.clock.callLater(delay, self._connectNext)

    def _firstRound(self):
        """
        Whether the start waits for a server not tried yet: the first round
        goes without backoff, so that a cluster that refuses everything is
        known in a moment.
        """
        if self._startup is None:
            return False
        host, port = self._servers[self._next]
        return formatAddress(host, port) not in self._reasons

    def _connectNext(self):
        """
        Connect to the next server of the list and say hello there.
        """
        self._retryCall = None
        host, port = self._servers[self._next]
        self._next = (self._next + 1) % len(self._servers)
        address = formatAddress(host, port)
        self.log.debug("connecting to {address}", address=address)
        self._attemptReason = None
        self._attemptAddress = address
        attempt = maybeDeferred(
            lambda: self._endpointFactory(host, port).connect(_ConnectionFactory(self))
        )
        # Set before the callbacks run: a synchronous failure clears it.
        self._attempt = attempt
        attempt.addCallback(self._greet)
        attempt.addTimeout(self.timeout, self.clock)
        attempt.addCallbacks(
            self._connected, self._attemptFailed, callbackArgs=(address,), errbackArgs=(address,)
        )

    def addListener(self, listener):
        """
        Call C{listener(event)} at each change of the session, with an event
        of L{distro.client.SessionEvent}.
        """
        self._listeners.append(listener)

    def tell(self, event):
        """
        Tell the listeners of an event the session's user saw (it serves
        views while offline).
        """
        self._tell(event)

    def _tell(self, event):
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.failure("session listener {listener!r} failed", listener=listener)

    def _greet(self, connection):
        resume = None
        if self.clientId is not None:
            resume = {"client_id": self.clientId, "resume_token": self._resumeToken}
            if self.epoch is not None:
                resume["epoch"] = self.epoch

        def failed(failure):
            self._attemptReason = describe(failure, connection)
            connection.transport.abortConnection()
            return failure

        d = connection.hello(self._agent, token=self._token, resume=resume)
        return d.addCallbacks(lambda reply: (connection, reply), failed)

    def _connected(self, result, address):
        connection, reply = result
        self._attempt = None
        if self.closed:
            connection.transport.loseConnection()
            return
        if self.clientId is not None and not reply.get("resumed"):
            # This node does not know the session; another one may (it may
            # lag behind, or be cut off from the node that knew it): go
            # round the list before taking a new identity. The new client
            # this node made has no instances, and goes with the connection.
            if address not in self._declined:
                self.log.info(
                    "client {clientId}: {address} cannot resume it; trying the others",
                    clientId=self.clientId,
                    address=address,
                )
                self._declined.add(address)
                connection.transport.loseConnection()
                # A node answered: the next is tried at once, not after
                # the backoff of the failures before (after a restart of
                # the whole cluster, each node declines in turn).
                self._failures = 0
                self._scheduleConnect()
                return
            # Round the list once: none resumes it.
        self._declined = set()
        self._failures = 0
        self._reasons = {}
        self._connection = connection
        previous = self.clientId
        self.clientId = reply.get("client_id")
        self._resumeToken = reply.get("resume_token")
        self.node = reply.get("node")
        epoch = reply.get("epoch")
        self.epoch = epoch if isinstance(epoch, int) else None
        resumed = bool(reply.get("resumed"))
        self.log.info(
            "connected to node {node} as {clientId} (resumed: {resumed})",
            node=self.node,
            clientId=self.clientId,
            resumed=resumed,
        )
        self._learnMembers(reply.get("members") or ())
        self._onConnected(connection)
        if resumed:
            d = connection.request("redo_done")
            d.addCallbacks(self._redone, self._redoFailed, callbackArgs=(connection,))
        if previous is None:
            self._tell(SessionEvent.CONNECTED)
        elif resumed:
            self._tell(SessionEvent.RESUMED)
        else:
            self._tell(SessionEvent.LOST)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(connection)
        if self._startup is not None:
            startup, self._startup = self._startup, None
            startup.callback(None)

    def _redone(self, reply, connection):
        epoch = reply.get("epoch")
        if connection is self._connection and isinstance(epoch, int):
            self.epoch = epoch

    def _redoFailed(self, failure):
        # The connection is gone (the next one redoes everything), or the
        # node refused: it keeps the client as it held it.
        if failure.check(DistroError):
            self.log.error("node refused redo_done: {error}", error=failure.value)

    def _attemptFailed(self, failure, address):
        self._attempt = None
        if self.closed:
            return
        error = failure.value
        if failure.check(CancelledError):
            error = RequestTimeout("connect", self.timeout)
        self._reasons[address] = self._attemptReason or describe(failure)
        self._attemptReason = None
        self.log.info(
            "client {clientId}: cannot use {address}: {error}",
            clientId=self.clientId,
            address=address,
            error=error,
        )
        if (
            self._startup is not None
            and failure.check(DistroError)
            and failure.value.code != NOT_READY
        ):
            startup, self._startup = self._startup, None
            startup.errback(failure)
            return
        self._failures += 1
        if self._startup is not None:
            self._unreachable()
        self._scheduleConnect()

    def _learnMembers(self, addresses):
        for text in addresses:
            try:
                address = parseAddress(text)
            except (ValueError, AttributeError):
                self.log.warn("ignoring member address {text!r}", text=text)
                continue
            if address not in self._servers:
                self._servers.append(address)

    def pushReceived(self, connection, message):
        """
        Pass on the pushes of the live connection; a C{move} push moves the
        session.
        """
        if connection is not self._connection:
            return
        if "move" in message:
            self._move(connection, message["move"])
        else:
            self._onPush(message)

    def _move(self, connection, move):
        """
        The node asks this session to move (it drains before stopping, or
        holds more than its share, PROTOCOL.md 4.5): leave it without
        C{bye}, and resume at once at the first member it names; the node
        keeps the client's instances until the new node took the client
        over.
        """
        members = move.get("members") if isinstance(move, dict) else None
        if not isinstance(members, list):
            self.log.warn("ignoring a malformed move push: {move!r}", move=move)
            return
        self._learnMembers(members)
        for text in members:
            try:
                address = parseAddress(text)
            except (ValueError, AttributeError):
                continue
            if address in self._servers:
                self._next = self._servers.index(address)
                break
        self.log.info(
            "client {clientId}: node {node} asks it to move ({reason}); resuming at {address}",
            clientId=self.clientId, node=self.node, reason=move.get("reason"),
            address=formatAddress(*self._servers[self._next]),
        )
        self._failures = 0
        connection.transport.loseConnection()

    def requestTimedOut(self, connection, op):
        """
        The node did not answer in time: give it up and move to the next.
        """
        if connection is self._connection and connection.connected:
            self.log.info(
                "client {clientId}: node {node} did not answer {op!r}; reconnecting",
                clientId=self.clientId,
                node=self.node,
                op=op,
            )
            connection.transport.abortConnection()

    def connectionLost(self, connection, reason):
        """
        The connection ended: unless this is closed, reconnect.
        """
        if connection is not self._connection:
            return
        self._connection = None
        if not self.closed:
            self.log.info(
                "client {clientId}: lost node {node}: {reason}",
                clientId=self.clientId,
                node=self.node,
                reason=reason.value,
            )
            self._tell(SessionEvent.SUSPENDED)
            self._scheduleConnect()

    def close(self):
        """
        Stop reconnecting, fail the waiters, and send C{bye} on the live
        connection, then close it.

        @return: a L{Deferred} firing with L{None} once the node acknowledged
            C{bye} (or did not within the timeout).
        """
        if self.closed:
            return succeed(None)
        self.closed = True
        if self._retryCall is not None and self._retryCall.active():
            self._retryCall.cancel()
        self._retryCall = None
        if self._attempt is not None:
            self._attempt.cancel()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(NotConnected("the client is closed"))
        if self._startup is not None:
            self._startup.errback(NotConnected("the client was closed while connecting"))
        connection = self.current()
        if connection is None:
            return succeed(None)
        d = connection.request("bye")
        d.addErrback(
            lambda failure: self.log.info("no answer to bye: {error}", error=failure.value)
        )
        d.addCallback(lambda _: connection.closeConnection())
        return d


def _listReasons(reasons):
    """
    C{{address: reason}} as one line: C{"a:1: connection refused; b:2: timed out"}.
    """
    return "; ".join(f"{address}: {reason}" for address, reason in reasons.items())
