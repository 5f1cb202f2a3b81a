# -*- test-case-name: tests.test_peer -*-
"""
Peer links (PROTOCOL.md 5.1): the peer port's protocol, which authenticates
a connecting member and hands what it sends to the L{Receiver}, and the
outbound link, which answers the challenge and carries a L{PeerFeed}.

Each member keeps one outbound link to every other member and sends only on
it; the accepting side answers only with C{resend}, C{pong} and C{error}.
Either side drops a link silent for C{down_after_ms} (a half-open link would
otherwise look alive forever).
"""

import hashlib
import hmac
import ipaddress
import os

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from distro.wire import (
    FORBIDDEN,
    PROTOCOL_VERSION,
    UNAUTHORIZED,
    UNSUPPORTED_VERSION,
    FrameProtocol,
    noDelay,
)

NONCE_BYTES = 32


def mac(secret, nonce, nodeId):
    """
    The answer to a challenge: C{HMAC-SHA256(secret, nonce || node)}.
    """
    return hmac.new(secret, nonce + nodeId.encode("utf-8"), hashlib.sha256).digest()


def isLoopback(host):
    """
    Whether C{host} (an address literal) is a loopback address.
    """
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class _Link(FrameProtocol):
    """
    What both ends of a link share: framing at the peer limit and a
    watchdog that drops the link after C{down_after_ms} of silence.

    Silence is judged after reading what has arrived: when the watchdog
    finds the link silent it looks again one reactor turn later, after the
    reactor read its sockets. A node woken from a stop (or a long pause)
    runs its overdue timers before it reads, and would otherwise drop links
    whose data was waiting all along.
    """

    log = Logger()
    nodeId = None
    _watchdog = None
    _confirming = False

    def __init__(self, cluster):
        super().__init__()
        self.cluster = cluster
        self.clock = cluster.clock
        self.maxFrame = cluster.config.peer_max_frame
        self._lastSeen = 0.0

    def connectionMade(self):
        noDelay(self.transport)
        self._lastSeen = self.clock.seconds()
        self._armWatchdog(self.cluster.config.down_after_ms / 1000.0)

    def _armWatchdog(self, delay):
        self._watchdog = self.clock.callLater(delay, self._checkSilence)

    def silentSince(self):
        """
        Since when the link has been silent in a way that counts against
        the peer.
        """
        return self._lastSeen

    def _checkSilence(self):
        limit = self.cluster.config.down_after_ms / 1000.0
        silent = self.clock.seconds() - self.silentSince()
        if silent >= limit:
            if not self._confirming:
                self._confirming = True
                self._armWatchdog(0)
                return
            self._watchdog = None
            self.log.info(
                "dropping the link with {peer}: silent for {silent:.1f}s",
                peer=self.nodeId or str(self.transport.getPeer()),
                silent=silent,
            )
            self.transport.abortConnection()
            return
        self._confirming = False
        # Never less than a millisecond: a remainder below the clock's
        # resolution would fire at the same instant forever.
        self._armWatchdog(max(limit - silent, 0.001))

    def frameReceived(self, body):
        self._lastSeen = self.clock.seconds()
        super().frameReceived(body)

    def connectionLost(self, reason):
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def refuse(self, code, message):
        self.log.warn(
            "refusing peer {peer}: {message}", peer=str(self.transport.getPeer()), message=message
        )
        self.sendError(None, code, message)
        self.closeConnection()


class InboundLink(_Link):
    """
    The accepting end: challenge, check the answer, then apply.
    """

    def connectionMade(self):
        super().connectionMade()
        peer = self.transport.getPeer()
        if not self.cluster.secret and not isLoopback(getattr(peer, "host", "")):
            self.refuse(UNAUTHORIZED, "without a cluster_secret only loopback peers are accepted")
            return
        self.nonce = os.urandom(NONCE_BYTES)
        self.sendMessage(
            {
                "op": "challenge",
                "nonce": self.nonce,
                "node": self.cluster.nodeId,
                "proto": PROTOCOL_VERSION,
            }
        )

    def messageReceived(self, message):
        if self.nodeId is None:
            self._hello(message)
            return
        self.cluster.membership.heard(self.nodeId)
        reply = self.cluster.receiver.received(self, message)
        if reply is not None:
            self.sendMessage(reply)

    def _hello(self, message):
        if message.get("op") != "peer_hello":
            self.refuse(UNAUTHORIZED, "the first frame must be peer_hello")
            return
        if message.get("proto") != PROTOCOL_VERSION:
            self.refuse(UNSUPPORTED_VERSION, f"proto: this node speaks {PROTOCOL_VERSION}")
            return
        node = message.get("node")
        address = message.get("address")
        clientAddress = message.get("client_address")
        answer = message.get("mac")
        if type(node) is not str or not node or type(address) is not str:
            self.refuse(UNAUTHORIZED, "node, address: must be strings")
            return
        if type(answer) is not bytes or not hmac.compare_digest(
            answer, mac(self.cluster.secret, self.nonce, node)
        ):
            self.refuse(UNAUTHORIZED, "mac: wrong cluster secret")
            return
        if node == self.cluster.nodeId:
            self.refuse(FORBIDDEN, "node: that is this node's own id")
            return
        member = self.cluster.membership.identify(
            address, node, clientAddress if type(clientAddress) is str else None
        )
        if member is None:
            self.refuse(FORBIDDEN, f"address: {address} is not a member of this cluster"[:200])
            return
        self.nodeId = node
        self.member = member
        self.cluster.inboundUp(self)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.nodeId is not None:
            self.cluster.inboundDown(self)


class PeerPortFactory(Factory):
    """
    The peer port.
    """

    noisy = False

    def __init__(self, cluster):
        self.cluster = cluster

    def buildProtocol(self, addr):
        link = InboundLink(self.cluster)
        link.factory = self
        return link


@implementer(IPushProducer)
class OutboundLink(_Link):
    """
    The connecting end, to one member: answers the challenge, then carries
    that member's L{PeerFeed} and pings it.
    """

    _pinger = None
    _unanswered = None

    def __init__(self, cluster, feed):
        super().__init__(cluster)
        self.feed = feed
        self.authenticated = False
        self.accepted = False

    def silentSince(self):
        """
        On this link the member only answers: its silence counts from our
        first unanswered ping, not from before a pause of ours in which we
        sent nothing to answer.
        """
        if self._unanswered is None:
            return self._lastSeen
        return max(self._lastSeen, self._unanswered)

    def frameReceived(self, body):
        self._unanswered = None
        super().frameReceived(body)

    def connectionMade(self):
        super().connectionMade()
        self.feed.connected = True
        self.transport.registerProducer(self, True)

    def messageReceived(self, message):
        op = message.get("op")
        if not self.authenticated:
            if op == "challenge":
                self._answer(message)
            elif op == "error":
                self._error(message)
            return
        if op in ("pong", "resend"):
            # Only answers prove that the member accepted this node: its
            # challenge, or the error refusing us, do not (5.3: UP while
            # its link answers pings).
            self.cluster.membership.heard(self.nodeId)
            if not self.accepted:
                # The first pong: our answer to the challenge was taken, so
                # the snapshot will be read (a refusing member gets none).
                self.accepted = True
                self.feed.linkUp(self)
                self.cluster.outboundUp(self.feed)
        if op == "resend":
            clientIds = message.get("client_ids")
            if type(clientIds) is list:
                for clientId in clientIds:
                    if type(clientId) is str:
                        self.feed.touched(clientId)
        elif op == "error":
            self._error(message)

    def _error(self, message):
        self.log.warn(
            "member {member} refused: {code} {message}",
            member=self.feed.member.address,
            code=message.get("code"),
            message=message.get("message"),
        )

    def _answer(self, challenge):
        nonce = challenge.get("nonce")
        node = challenge.get("node")
        if challenge.get("proto") != PROTOCOL_VERSION or type(nonce) is not bytes or type(node) is not str:
            self.log.warn("member {member} sent a bad challenge", member=self.feed.member.address)
            self.closeConnection()
            return
        cluster = self.cluster
        self.sendMessage(
            {
                "op": "peer_hello",
                "node": cluster.nodeId,
                "address": cluster.membership.self.address,
                "client_address": cluster.membership.self.clientAddress or "",
                "proto": PROTOCOL_VERSION,
                "mac": mac(cluster.secret, nonce, cluster.nodeId),
            }
        )
        member = cluster.membership.identify(self.feed.member.address, node, None)
        if member is None:
            self.closeConnection()
            return
        self.nodeId = node
        self.authenticated = True
        self._ping()

    def _ping(self):
        if self._unanswered is None:
            self._unanswered = self.clock.seconds()
        self.sendMessage({"op": "ping"})
        interval = self.cluster.config.peer_timeout_ms / 3000.0
        self._pinger = self.clock.callLater(interval, self._ping)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self._pinger is not None and self._pinger.active():
            self._pinger.cancel()
        self._pinger = None
        self.feed.connected = False
        self.feed.linkDown(self)

    # IPushProducer: the transport tells us when the peer stops reading.

    def pauseProducing(self):
        self.feed.pause()

    def resumeProducing(self):
        self.feed.resume()

    def stopProducing(self):
        pass


class OutboundFactory(Factory):
    """
    Builds the outbound link to one member.
    """

    noisy = False

    def __init__(self, cluster, feed):
        self.cluster = cluster
        self.feed = feed

    def buildProtocol(self, addr):
        link = OutboundLink(self.cluster, self.feed)
        link.factory = self
        return link
