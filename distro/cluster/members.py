# -*- test-case-name: tests.test_members -*-
"""
The members of a cluster (PROTOCOL.md 5.3): read from C{cluster.conf}, each
with a liveness state worked out from when it was last heard from.
"""

import ipaddress
import socket

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from distro.address import formatAddress
from distro.address import parseAddress as _parseAddress
from distro.keys import ConfigError
from distro.interfaces import IMembership

UP = "UP"
SUSPICIOUS = "SUSPICIOUS"
DOWN = "DOWN"


def parseAddress(text, where):
    """
    C{host:port} or C{[v6]:port} as C{(host, port)} (L{distro.address}).

    @raise ValueError: naming C{where}.
    """
    try:
        return _parseAddress(text)
    except ValueError as e:
        raise ValueError(f"{where}: {text!r} is not host:port ({e})")


def readClusterFile(path):
    """
    The member addresses listed in a C{cluster.conf}, in file order, each
    as C{host:port}: one per line, C{#} starts a comment, blank lines and
    duplicates ignored.

    @raise ConfigError: for key C{cluster}, naming the file and line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("cluster", f"cannot read {path}: {getattr(e, 'strerror', e)}")
    members = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            address = formatAddress(*parseAddress(text, f"{path} line {number}"))
        except ValueError as e:
            raise ConfigError("cluster", str(e))
        if address not in members:
            members.append(address)
    if not members:
        raise ConfigError("cluster", f"{path} lists no members")
    return members


def _localHosts(interface):
    hosts = {"localhost", socket.gethostname(), socket.getfqdn()}
    if interface:
        hosts.add(interface)
    try:
        hosts.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return hosts


def _isLocal(host, localHosts):
    if host in localHosts:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listenPort(endpoint):
    """
    The port number of a C{tcp:} / C{ssl:} server endpoint string, or
    C{None}.
    """
    parts = endpoint.split(":")
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep and key.isdigit():
            return int(key)
        if key == "port" and value.isdigit():
            return int(value)
    return None


def findSelf(members, config):
    """
    This node's line in C{members}: C{peer_advertise} if set, else the one
    line whose port is the peer port's and whose host is this machine.

    @raise ConfigError: naming the key to set when that is not one line.
    """
    if config.peer_advertise:
        try:
            address = formatAddress(*parseAddress(config.peer_advertise, "peer_advertise"))
        except ValueError as e:
            raise ConfigError("peer_advertise", str(e))
        if address not in members:
            raise ConfigError("peer_advertise", f"{address} is not listed in {config.cluster}")
        return address
    port = listenPort(config.peer_listen)
    interface = None
    for part in config.peer_listen.split(":"):
        if part.startswith("interface="):
            interface = part[len("interface=") :].replace("\\", "")
    local = _localHosts(interface)
    candidates = [
        m for m in members if parseAddress(m, "member")[1] == port and _isLocal(parseAddress(m, "")[0], local)
    ]
    if len(candidates) != 1:
        raise ConfigError(
            "peer_advertise",
            f"cannot tell which line of {config.cluster} is this node "
            f"({len(candidates)} match peer_listen); set peer_advertise",
        )
    return candidates[0]


class Traffic:
    """
    What went between this node and one member over their links (both
    directions of both links), counted as it is written and read.
    """

    __slots__ = ("sentBytes", "sentFrames", "receivedBytes", "receivedFrames")

    def __init__(self):
        self.sentBytes = self.sentFrames = 0
        self.receivedBytes = self.receivedFrames = 0


class Member:
    """
    One member of the cluster.

    @ivar address: its line in C{cluster.conf} (its peer address).
    @ivar nodeId: its node id, learned when it connects (until then, its
        address: the default node id of a clustered node).
    @ivar clientAddress: its client-port address, learned when it connects.
    @ivar lastHeard: when something last arrived from it, or C{None}.
    @ivar state: L{UP}, L{SUSPICIOUS} or L{DOWN}.
    @ivar traffic: the L{Traffic} of its links (kept across links).
    """

    def __init__(self, address, isSelf=False):
        self.address = address
        self.traffic = Traffic()
        self.nodeId = address
        self.clientAddress = None
        self.isSelf = isSelf
        self.lastHeard = None
        self.state = UP if isSelf else SUSPICIOUS

    def __repr__(self):
        return f"<Member {self.address} node={self.nodeId} {self.state}>"


@implementer(IMembership)
class Membership:
    """
    The members of the cluster and their states: C{UP} while heard from
    within C{peer_timeout_ms}, C{SUSPICIOUS} after that, C{DOWN} after
    C{down_after_ms} (also when never heard from since this node started).
    Members are only added or removed by L{update} (the file), never for
    being down.

    @param peerTimeoutMs: C{peer_timeout_ms}.
    @param downAfterMs: C{down_after_ms}.
    @ivar observers: objects with C{memberUp(member)},
        C{memberDown(member)} and C{memberRemoved(member)}, told of each
        transition.
    """

    log = Logger()

    def __init__(self, selfAddress, nodeId, clientAddress, clock, *, peerTimeoutMs, downAfterMs):
        self.clock = clock
        self.peerTimeoutMs = peerTimeoutMs
        self.downAfterMs = downAfterMs
        self.self = Member(selfAddress, isSelf=True)
        self.self.nodeId = nodeId
        self.self.clientAddress = clientAddress
        self.members = {selfAddress: self.self}
        self.byNode = {nodeId: self.self}
        self.observers = []
        self._started = clock.seconds()
        self._check = LoopingCall(self.check)
        self._check.clock = clock

    def start(self):
        """
        Start watching liveness.
        """
        self._started = self.clock.seconds()
        interval = min(self.peerTimeoutMs, self.downAfterMs) / 6000.0
        self._check.start(interval, now=False)

    def stop(self):
        if self._check.running:
            self._check.stop()

    def others(self):
        """
        Every member but this node.
        """
        return [m for m in self.members.values() if not m.isSelf]

    def update(self, addresses):
        """
        Make the members exactly C{addresses} (this node's own line is
        kept whatever the file says). Return C{(added, removed)} members.
        """
        added = []
        for address in addresses:
            if address not in self.members:
                member = self.members[address] = Member(address)
                self.byNode.setdefault(member.nodeId, member)
                added.append(member)
        removed = [
            m for a, m in self.members.items() if a not in addresses and not m.isSelf
        ]
        for member in removed:
            del self.members[member.address]
            if self.byNode.get(member.nodeId) is member:
                del self.byNode[member.nodeId]
            for observer in self.observers:
                observer.memberRemoved(member)
        return added, removed

    def identify(self, address, nodeId, clientAddress):
        """
        A peer proved to be C{nodeId} at member C{address}; return the
        L{Member}, or C{None} if C{address} is not a member.
        """
        member = self.members.get(address)
        if member is None or member.isSelf:
            return None
        if member.nodeId != nodeId:
            if self.byNode.get(member.nodeId) is member:
                del self.byNode[member.nodeId]
            member.nodeId = nodeId
        self.byNode[nodeId] = member
        if clientAddress:
            member.clientAddress = clientAddress
        return member

    def member(self, nodeId):
        """
        The member with node id C{nodeId}, or C{None}.
        """
        return self.byNode.get(nodeId)

    def heard(self, nodeId):
        member = self.byNode.get(nodeId)
        if member is None or member.isSelf:
            return
        member.lastHeard = self.clock.seconds()
        if member.state != UP:
            self._transition(member, UP)

    def state(self, nodeId):
        member = self.byNode.get(nodeId)
        return member.state if member is not None else DOWN

    def check(self):
        """
        Work out each member's state from how long it has been silent.
        """
        now = self.clock.seconds()
        for member in self.others():
            since = member.lastHeard if member.lastHeard is not None else self._started
            silent = (now - since) * 1000
            if silent >= self.downAfterMs:
                state = DOWN
            elif silent >= self.peerTimeoutMs or member.lastHeard is None:
                # Never heard from: not UP, however recent the start.
                state = SUSPICIOUS
            else:
                state = UP
            if state != member.state:
                self._transition(member, state)

    def _transition(self, member, state):
        previous, member.state = member.state, state
        self.log.info(
            "member {member} is {state} (was {previous})",
            member=member.address,
            state=state,
            previous=previous,
        )
        for observer in self.observers:
            if state == UP:
                observer.memberUp(member)
            elif state == DOWN:
                observer.memberDown(member)

    def describe(self):
        return [
            {
                "node": m.nodeId,
                "address": m.clientAddress,
                "state": m.state,
                "self": m.isSelf,
            }
            for m in self.members.values()
        ]
