# -*- test-case-name: tests.test_http_udppush -*-
"""
Nacos' UDP push (docs/nacos.md): a v1 client that lists a service's
instances with a C{udpPort} is sent each change of that view, to
C{clientIP:udpPort} only, from one UDP socket of the HTTP port.

What Nacos sends, and how (its UdpPushService and UdpConnector): a
datagram of C{{"type": "dom", "data": <the ServiceInfo JSON, as text>,
"lastRefTime": <nanoseconds>}}, gzipped when it is 1 KiB or more; the
client answers C{{"type": "push-ack", "lastRefTime": ...}} from the
address pushed to. A push not acknowledged within 10 s is sent once more;
one still not acknowledged 10 s later failed (counted as the node's other
failed pushes). A newer push of the same view replaces one waiting for
its ack.

A push target is an address and a view it lists: each is this node's
alone, like every subscription, followed through the node's pusher (the
changes of a turn are one push, counted with the node's pushes). One not
listed again within C{udp_push_expiry_ms} is forgotten; at most
C{udp_push_max_targets} are held, and a list past it is answered but
pushes nothing.
"""

import gzip
import json
from dataclasses import dataclass

from twisted.internet.address import IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from distro.http.naming import serviceBody
from distro.ratelog import RateLimitedLog

# Nacos' ACK_TIMEOUT_NANOS and UDP_MAX_RETRY_TIMES: a push is sent again
# once, 10 s after it went unacknowledged, and failed 10 s after that.
ACK_TIMEOUT = 10.0
MAX_RETRIES = 1
# Nacos gzips a datagram of this many bytes or more.
COMPRESS_FROM = 1024
# The largest UDP payload over IPv4: a view larger than this, gzipped,
# cannot be pushed (its push fails).
MAX_DATAGRAM = 65507


class _Target:
    """
    One address pushed to and one view it follows: its push channel (a
    channel per target, so that one expires by closing it), the cluster
    filter as the client listed it, and its expiry timer.
    """

    __slots__ = ("channel", "clusters", "expiry")

    def __init__(self, channel, clusters, expiry):
        self.channel = channel
        self.clusters = clusters
        self.expiry = expiry


@dataclass(slots=True, eq=False)
class _Push:
    """
    A datagram sent to C{address}, of the view C{view}, waiting for its
    ack: how many times it was sent, and the timer of its next try.
    """

    address: tuple
    view: tuple
    lastRefTime: int
    datagram: bytes
    sends: int = 0
    timer: object = None


class UdpPush(DatagramProtocol):
    """
    The UDP push targets of a node's HTTP port, and its UDP socket (this
    protocol, once listening; without one, nothing is a target).

    @param node: the L{distro.interfaces.INode}.
    """

    log = Logger()
    noisy = False  # no "Starting protocol" line of its own

    def __init__(self, node):
        self.node = node
        self.clock = node.clock
        self.maxTargets = node.config.udp_push_max_targets
        self.expiry = node.config.udp_push_expiry_ms / 1000.0
        self.notices = RateLimitedLog(self.clock)
        # (address, (service, clusters)) -> _Target
        self._targets = {}
        # (ip, port, lastRefTime) -> _Push, and (address, view) -> its newest
        self._waiting = {}
        self._newest = {}
        self._lastMillis = 0
        self._lastNanos = 0

    def refTime(self):
        """
        A C{lastRefTime} (milliseconds) above every one this port gave:
        what the port lists and pushes is always newer than before.
        """
        self._lastMillis = max(self._lastMillis + 1, int(self.clock.seconds() * 1000))
        return self._lastMillis

    def _nanos(self):
        self._lastNanos = max(self._lastNanos + 1, int(self.clock.seconds() * 1e9))
        return self._lastNanos

    # Targets

    def listed(self, address, info, clusters):
        """
        The client at C{address} (C{(ip, port)}) listed the view C{info}
        (of a service and a cluster filter, the latter as it gave it:
        C{clusters}): it is pushed that view's changes from now on, until
        it does not list it for C{udp_push_expiry_ms}.

        @return: whether it is a target (not: no socket, one of the
            other address family, or too many).
        """
        if self.transport is None or not self.maxTargets:
            return False
        if (":" in address[0]) != isinstance(self.transport.getHost(), IPv6Address):
            return False  # an address the socket cannot send to
        target = (address, (info.service, info.clusters))
        held = self._targets.get(target)
        if held is None:
            if len(self._targets) >= self.maxTargets:
                self.notices.warn(
                    "udp push targets",
                    "UDP push: {address} not pushed to: the node holds udp_push_max_targets ({limit}) targets",
                    address=f"{address[0]}:{address[1]}", limit=self.maxTargets)
                return False
            held = self._targets[target] = _Target(
                self.node.pushChannel(lambda info: self._push(target, info)), clusters,
                self.clock.callLater(self.expiry, self._expire, target))
        else:
            held.clusters = clusters
            held.expiry.reset(self.expiry)
        self.node.watch(held.channel, info.service, info.clusters, info)
        return True

    def _expire(self, target):
        """
        C{target} (an address and a view) did not list its view again.
        """
        self._targets.pop(target).channel.close()
        self._forget(self._newest.get(target))

    def targets(self):
        """
        The addresses pushed to, each with the views it follows:
        C{{(ip, port): {(service, clusters), ...}}}.
        """
        addresses = {}
        for address, view in self._targets:
            addresses.setdefault(address, set()).add(view)
        return addresses

    # Pushes

    def _push(self, target, info):
        """
        The pusher's send for C{target}: push C{info}.
        """
        held = self._targets.get(target)
        if held is None or self.transport is None:
            return
        address, key = target
        lastRefTime = self._nanos()
        datagram = json.dumps(
            {"type": "dom", "data": serviceBody(info, held.clusters, self.refTime()), "lastRefTime": lastRefTime},
            separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(datagram) >= COMPRESS_FROM:
            datagram = gzip.compress(datagram, compresslevel=6, mtime=0)
        self._forget(self._newest.get(target))
        if len(datagram) > MAX_DATAGRAM:
            self.node.pushFailed()
            self.notices.warn(
                "udp push too large",
                "UDP push of {service} to {address} not sent: {size} bytes gzipped, more than a datagram holds",
                service=str(info.service), address=f"{address[0]}:{address[1]}", size=len(datagram))
            return
        push = _Push(address, key, lastRefTime, datagram)
        self._waiting[(address[0], address[1], lastRefTime)] = push
        self._newest[(address, key)] = push
        self._send(push)

    def _send(self, push):
        push.sends += 1
        push.timer = self.clock.callLater(ACK_TIMEOUT, self._unacknowledged, push)
        try:
            self.transport.write(push.datagram, push.address)
        except (OSError, ValueError) as e:
            # Not sent (the kernel refused it): it goes again, or fails,
            # as one the client did not acknowledge.
            self.notices.warn("udp push not sent", "UDP push to {address} not sent: {error}",
                              address=f"{push.address[0]}:{push.address[1]}", error=e)

    def _unacknowledged(self, push):
        push.timer = None
        if push.sends <= MAX_RETRIES:
            self._send(push)
            return
        self._forget(push)
        self.node.pushFailed()

    def _forget(self, push):
        """
        Stop waiting for C{push}'s ack (if any).
        """
        if push is None:
            return
        self._waiting.pop((push.address[0], push.address[1], push.lastRefTime), None)
        if self._newest.get((push.address, push.view)) is push:
            del self._newest[(push.address, push.view)]
        if push.timer is not None and push.timer.active():
            push.timer.cancel()
        push.timer = None

    def waiting(self):
        """
        How many pushes wait for their ack.
        """
        return len(self._waiting)

    def datagramReceived(self, data, address):
        """
        A client's ack, C{{"type": "push-ack", "lastRefTime": N}} (N a
        number, or its digits as text as the Java client sends it), from
        the address pushed to; anything else is ignored.
        """
        try:
            ack = json.loads(data.decode("utf-8").strip())
            lastRefTime = int(ack["lastRefTime"]) if ack.get("type") == "push-ack" else None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            lastRefTime = None
        push = None if lastRefTime is None else self._waiting.get((address[0], address[1], lastRefTime))
        if push is None:
            self.notices.info("udp push stray", "UDP push: ignored a datagram from {address} that acks no push",
                              address=f"{address[0]}:{address[1]}")
            return
        self._forget(push)

    def stop(self):
        """
        The port stops: forget every target and push.
        """
        for push in list(self._waiting.values()):
            self._forget(push)
        self._newest.clear()
        for held in self._targets.values():
            if held.expiry.active():
                held.expiry.cancel()
            held.channel.close()
        self._targets.clear()
