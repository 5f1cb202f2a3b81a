# -*- test-case-name: tests.test_peer -*-
"""
Peer links (PROTOCOL.md 5.1): the peer port's protocol, which authenticates
a connecting member, proves the secret in turn and hands what the member
sends to the L{Receiver}; and the outbound link, which answers the challenge,
sends nothing more until the member proved the secret, then carries a
L{PeerFeed}. Until then both ends take small frames only, for at most
C{handshake_timeout_ms}.

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

from distro.address import describeAddress
from distro.cluster import records
from distro.cluster.dialect import NoCommonVersion
from distro.cluster.digest import BUCKETS
from distro.cluster.members import Traffic
from distro.handshake import HandshakeDeadline, ProducerRegistration
from distro.watchdog import Watchdog
from distro.wire import (
    BAD_REQUEST,
    FORBIDDEN,
    UNAUTHORIZED,
    UNSUPPORTED_VERSION,
    FrameProtocol,
    RequestError,
    encode,
    noDelay,
)

NONCE_BYTES = 32


def _field(text):
    raw = text.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def transcript(acceptor, connector, acceptorNonce, connectorNonce):
    """
    What both MACs of a handshake cover: both node ids (each as a 2-byte
    big-endian length and its UTF-8 bytes) and both nonces, so that an
    answer is good for this one connection between these two nodes only.
    """
    return _field(acceptor) + _field(connector) + acceptorNonce + connectorNonce


def helloMac(secret, transcript):
    """
    The connector's proof: C{HMAC-SHA256(secret, "peer_hello" 0x00 transcript)}.
    """
    return hmac.new(secret, b"peer_hello\x00" + transcript, hashlib.sha256).digest()


def welcomeMac(secret, transcript):
    """
    The acceptor's proof: C{HMAC-SHA256(secret, "peer_welcome" 0x00 transcript)}.
    Its own label keeps it from being reflected as a connector's answer.
    """
    return hmac.new(secret, b"peer_welcome\x00" + transcript, hashlib.sha256).digest()


def isLoopback(host):
    """
    Whether C{host} (an address literal) is a loopback address.
    """
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


# Where a link counts its traffic until it knows its member (an inbound
# link's handshake): nobody reads it.
_UNCOUNTED = Traffic()


class _Link(FrameProtocol):
    """
    What both ends of a link share: framing at the peer limit, a
    L{Watchdog} that drops the link after C{down_after_ms} of silence, and
    the count of what it writes and reads (its member's L{Traffic}).
    """

    log = Logger()
    nodeId = None
    traffic = _UNCOUNTED
    # What the link speaks (a Dialect), once its handshake is done.
    dialect = None
    handshake = None

    def __init__(self, cluster):
        super().__init__()
        self.cluster = cluster
        self.clock = cluster.clock
        self.maxFrame = cluster.config.peer_max_frame
        self.watchdog = Watchdog(
            self.clock, cluster.config.down_after_ms / 1000.0, self._silent
        )

    def connectionMade(self):
        noDelay(self.transport)
        self.watchdog.start()
        self.handshake = HandshakeDeadline(
            self, self.clock, self.cluster.config.handshake_timeout_ms / 1000.0,
            self._handshakeTimedOut,
        )

    def sendMessage(self, message):
        """
        Send one map as a frame, unless it exceeds C{peer_max_frame}, which
        the member would refuse by dropping the link: then it is logged and
        not sent (records too large for a frame go in pieces before this).
        """
        frame = encode(message)
        limit = self.cluster.config.peer_max_frame
        if len(frame) - 4 > limit:
            self.log.error(
                "not sent to {peer}: a {op} frame of {size} bytes exceeds peer_max_frame {limit}",
                peer=self.nodeId or describeAddress(self.transport.getPeer()),
                op=message.get("op"),
                size=len(frame) - 4,
                limit=limit,
            )
            return
        self.write(frame)

    def write(self, frame):
        """
        Write one encoded frame.
        """
        traffic = self.traffic
        traffic.sentBytes += len(frame)
        traffic.sentFrames += 1
        self.transport.write(frame)

    def writeSequence(self, frames):
        """
        Write encoded frames in one go.
        """
        traffic = self.traffic
        traffic.sentBytes += sum(map(len, frames))
        traffic.sentFrames += len(frames)
        self.transport.writeSequence(frames)

    def _handshakeTimedOut(self):
        self.log.info(
            "dropping peer connection {peer}: no handshake within handshake_timeout_ms",
            peer=describeAddress(self.transport.getPeer()),
        )
        self.transport.abortConnection()

    def _silent(self, silent):
        self.log.info(
            "dropping the link with {peer}: silent for {silent:.1f}s",
            peer=self.nodeId or describeAddress(self.transport.getPeer()),
            silent=silent,
        )
        self.transport.abortConnection()

    def dataReceived(self, data):
        self.traffic.receivedBytes += len(data)
        super().dataReceived(data)

    def frameReceived(self, body):
        self.watchdog.heard()
        self.traffic.receivedFrames += 1
        super().frameReceived(body)

    def connectionLost(self, reason):
        self.watchdog.end()
        if self.handshake is not None and self.handshake.cancel():
            # Say why a link never came up (a TLS handshake that failed, a
            # peer that went away): nothing else will.
            self._endedBeforeHandshake(reason.getErrorMessage() if reason is not None else "unknown")

    def _endedBeforeHandshake(self, why):
        self.log.info(
            "peer connection {peer} ended before its handshake: {reason}",
            peer=describeAddress(self.transport.getPeer()), reason=why,
        )

    def refuse(self, code, message):
        self.log.warn(
            "refusing peer {peer}: {message}", peer=describeAddress(self.transport.getPeer()), message=message
        )
        self.sendError(None, code, message)
        self.closeConnection()


class InboundLink(_Link):
    """
    The accepting end: challenge, check the answer, prove the secret in
    turn, then apply.
    """

    def connectionMade(self):
        super().connectionMade()
        peer = self.transport.getPeer()
        if not self.cluster.secret and not isLoopback(getattr(peer, "host", "")):
            self.refuse(UNAUTHORIZED, "without a cluster_secret only loopback peers are accepted")
            return
        self.nonce = os.urandom(NONCE_BYTES)
        self.sendMessage(
            dict(
                {"op": "challenge", "nonce": self.nonce, "node": self.cluster.nodeId},
                **self.cluster.offer.challenge(),
            )
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
        try:
            dialect = self.cluster.offer.accept(message)
        except NoCommonVersion as e:
            self.refuse(UNSUPPORTED_VERSION, str(e))
            return
        except RequestError as e:
            self.refuse(BAD_REQUEST, e.message)
            return
        node = message.get("node")
        address = message.get("address")
        clientAddress = message.get("client_address")
        nonce = message.get("nonce")
        answer = message.get("mac")
        if type(node) is not str or not node or type(address) is not str:
            self.refuse(UNAUTHORIZED, "node, address: must be strings")
            return
        if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
            self.refuse(UNAUTHORIZED, f"nonce: must be {NONCE_BYTES} bytes")
            return
        secret = self.cluster.secret
        proof = transcript(self.cluster.nodeId, node, self.nonce, nonce)
        if type(answer) is not bytes or not hmac.compare_digest(answer, helloMac(secret, proof)):
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
        self.traffic = member.traffic
        self.sendMessage({"op": "peer_welcome", "mac": welcomeMac(secret, proof)})
        self.nodeId = node
        self.dialect = dialect
        self.member = member
        self.handshake.done()
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
    _producing = None

    _proof = None
    _challenger = None
    _dialect = None

    def __init__(self, cluster, feed):
        super().__init__(cluster)
        self.feed = feed
        self.traffic = feed.member.traffic
        self.authenticated = False

    def connectionMade(self):
        super().connectionMade()
        self.feed.connected = True
        self._producing = ProducerRegistration(self.transport, self)

    def _endedBeforeHandshake(self, why):
        # Once per failure of the link, not at each reconnect attempt.
        self.cluster.outboundDown(self.feed, f"ended before its handshake: {why}")

    def messageReceived(self, message):
        op = message.get("op")
        if not self.authenticated:
            if op == "challenge" and self._proof is None:
                self._answer(message)
            elif op == "peer_welcome" and self._proof is not None:
                self._welcome(message)
            elif op == "error":
                self._error(message)
                self.closeConnection()
            else:
                self.log.warn(
                    "member {member} sent {op!r} before proving the secret",
                    member=self.feed.member.address,
                    op=op,
                )
                self.closeConnection()
            return
        if op in ("pong", "resend", "digest_ask", "forwarded", "override_ask"):
            # Only answers prove that the member hears us (5.3: UP while
            # its link answers pings).
            self.cluster.membership.heard(self.nodeId)
        if op == "resend":
            clientIds = message.get("client_ids")
            if type(clientIds) is list:
                for clientId in clientIds:
                    if type(clientId) is str:
                        self.feed.touched(clientId)
        elif op == "digest_ask":
            try:
                buckets = records.parseBuckets(message.get("buckets"), BUCKETS)
            except RequestError as e:
                self.log.warn("member {member} sent a bad digest_ask: {error}",
                              member=self.feed.member.address, error=e.message)
                return
            if buckets:
                self.feed.digestAsked(sorted(buckets))
        elif op == "forwarded":
            self.cluster.forwarding.answered(message)
        elif op == "override_ask":
            self.cluster.overrideSync.sendAll(self)
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
        try:
            fields, self._dialect = self.cluster.offer.answer(challenge)
        except (NoCommonVersion, RequestError) as e:
            self.log.warn(
                "member {member} speaks no version of the peer protocol this node does: {why}",
                member=self.feed.member.address,
                why=e.message if isinstance(e, RequestError) else str(e),
            )
            self.closeConnection()
            return
        nonce = challenge.get("nonce")
        node = challenge.get("node")
        if (
            type(nonce) is not bytes
            or len(nonce) != NONCE_BYTES
            or type(node) is not str
            or not node
        ):
            self.log.warn("member {member} sent a bad challenge", member=self.feed.member.address)
            self.closeConnection()
            return
        cluster = self.cluster
        ownNonce = os.urandom(NONCE_BYTES)
        self._challenger = node
        self._proof = transcript(node, cluster.nodeId, nonce, ownNonce)
        self.sendMessage(
            dict(
                {
                    "op": "peer_hello",
                    "node": cluster.nodeId,
                    "address": cluster.membership.self.address,
                    "client_address": cluster.membership.self.clientAddress or "",
                    "nonce": ownNonce,
                    "mac": helloMac(cluster.secret, self._proof),
                },
                **fields,
            )
        )

    def _welcome(self, message):
        # Nothing is sent to the member, nor is anything it says believed,
        # until it proved the secret for this very handshake.
        answer = message.get("mac")
        if type(answer) is not bytes or not hmac.compare_digest(
            answer, welcomeMac(self.cluster.secret, self._proof)
        ):
            self.log.warn(
                "member {member} did not prove the cluster secret; dropping the link",
                member=self.feed.member.address,
            )
            self.closeConnection()
            return
        cluster = self.cluster
        member = cluster.membership.identify(self.feed.member.address, self._challenger, None)
        if member is None:
            self.closeConnection()
            return
        self.nodeId = self._challenger
        self.dialect = self._dialect
        self.authenticated = True
        self.handshake.done()
        cluster.membership.heard(self.nodeId)
        self.feed.linkUp(self)
        cluster.outboundUp(self.feed)
        self._ping()

    def _ping(self):
        # On this link the member only answers: its silence counts from our
        # first unanswered ping, not from before a pause of ours in which
        # we sent nothing to answer.
        self.watchdog.expecting()
        self.sendMessage({"op": "ping"})
        interval = self.cluster.config.peer_timeout_ms / 3000.0
        self._pinger = self.clock.callLater(interval, self._ping)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self._producing is not None:
            self._producing.end()
        if self._pinger is not None and self._pinger.active():
            self._pinger.cancel()
        self._pinger = None
        self.feed.connected = False
        self.feed.linkDown(self)
        self.cluster.forwarding.linkDown(self)
        if self.authenticated:
            self.cluster.outboundDown(
                self.feed, reason.getErrorMessage() if reason is not None else "closed")

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
