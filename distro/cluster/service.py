# -*- test-case-name: tests.test_cluster -*-
"""
L{Cluster}: the cluster side of a node, as a C{MultiService}: the peer port,
one outbound link per member (a C{ClientService} child each, reconnecting
with backoff and jitter), membership and its liveness, replication both ways,
readiness, and re-reading C{cluster.conf} on SIGHUP.
"""

import random
from dataclasses import dataclass, fields

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from distro.cluster.dialect import Offer
from distro.cluster.forwarding import FORWARD, Forwarding, responsible
from distro.cluster.members import DOWN, Membership, findSelf, parseAddress, readClusterFile
from distro.cluster.overridesync import OverrideSync
from distro.cluster.peer import OutboundFactory, PeerPortFactory
from distro.cluster.receiving import Receiver
from distro.cluster.sending import Replicator
from distro.cluster.stats import ReplicationStats
from distro.cluster.sync import SyncBarrier
from distro.interfaces import ICluster
from distro.listening import named
from distro.tls import hostEndpoint
from distro.tlslisten import MutualTLSReactor


class _Watched:
    """
    An endpoint that tells the cluster when a connection attempt to a
    member fails (an unreachable member is not waited for at start).

    @ivar retryNow: set when the member proved reachable while an attempt
        was pending: if that attempt fails, the next one starts at once
        instead of after the backoff delay.
    """

    def __init__(self, endpoint, failed, member):
        self.endpoint = endpoint
        self.failed = failed
        self.member = member
        self.connecting = False
        self.retryNow = False

    def connect(self, factory):
        self.connecting = True
        d = self.endpoint.connect(factory)
        d.addBoth(self._done)
        d.addCallbacks(self._connected, self._failed)
        return d

    def _done(self, result):
        self.connecting = False
        return result

    def _connected(self, protocol):
        self.retryNow = False
        return protocol

    def _failed(self, failure):
        self.failed(failure)
        return failure

    def __str__(self):
        # What Twisted's ClientService says it connects to (at debug).
        return f"member {self.member}"


def retryPolicy():
    """
    Reconnect delays: from 0.1 s, doubling, at most 3 s, with jitter so that
    the members of a restarted cluster do not reconnect in step.
    """
    return backoffPolicy(
        initialDelay=0.1, maxDelay=3.0, factor=2.0, jitter=lambda: random.random() * 0.2
    )


def _memberRetryPolicy(watched):
    """
    L{retryPolicy}, except no delay at all after an attempt that failed
    while the member proved reachable (C{watched.retryNow}).
    """
    backoff = retryPolicy()

    def policy(failedAttempts):
        if watched.retryNow:
            watched.retryNow = False
            return 0.0
        return backoff(failedAttempts)

    return policy


@dataclass(frozen=True)
class ClusterSettings:
    """
    The keys of the node's configuration that the cluster side reads (its
    links too), named as in L{distro.config}: not the whole configuration.
    """

    peer_max_frame: int
    peer_timeout_ms: int
    down_after_ms: int
    handshake_timeout_ms: int
    orphan_grace_ms: int
    verify_interval_ms: int
    load_timeout_ms: int
    disconnect_grace_ms: int
    max_metadata_bytes: int

    @classmethod
    def fromConfig(cls, config):
        """
        The settings of the node configuration C{config}.
        """
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


@implementer(ICluster)
class Cluster(MultiService):
    """
    The cluster side of one node.

    @param node: the L{distro.node.Node}.
    @param selfAddress: this node's line of C{cluster.conf}.
    @param addresses: every line of C{cluster.conf}.
    @param secret: the cluster secret (bytes; empty for none).
    @param listen: C{(factory) -> Deferred(IListeningPort)}, the peer port.
    @param connector: C{(address) -> IStreamClientEndpoint} for a member.
    @param reread: returns the lines of C{cluster.conf} anew (on SIGHUP).
    @param offer: the L{Offer} of versions and capabilities this node makes
        in handshakes (by default, all it speaks).
    @param settings: the L{ClusterSettings} of the node's configuration.
    @ivar config: C{settings} (which peer links read too).
    """

    log = Logger()

    def __init__(
        self,
        node,
        selfAddress,
        addresses,
        secret,
        listen,
        connector,
        reread=None,
        offer=None,
        *,
        settings,
    ):
        super().__init__()
        self.node = node
        # What this node speaks on its links (versions and capabilities).
        self.offer = offer if offer is not None else Offer()
        self.config = settings
        self.clock = node.clock
        self.nodeId = node.nodeId
        self.secret = secret
        self._listen = listen
        self._connector = connector
        self._reread = reread
        self.port = None
        self.membership = Membership(
            selfAddress,
            self.nodeId,
            node.clientAddress,
            self.clock,
            peerTimeoutMs=settings.peer_timeout_ms,
            downAfterMs=settings.down_after_ms,
        )
        self.membership.observers.append(self)
        # Snapshots and digest repairs, counted by both sides.
        self.stats = ReplicationStats()
        self.replicator = Replicator(
            self.clock, node.restoring, node.bootId, maxFrame=settings.peer_max_frame,
            stats=self.stats,
        )
        self.barrier = SyncBarrier(self.membership.others, self._askSync)
        self.receiver = Receiver(
            node.manager,
            self.clock,
            self.barrier,
            maxMetadataBytes=settings.max_metadata_bytes,
            disconnectGraceMs=settings.disconnect_grace_ms,
            loaded=self._loaded,
            syncAsked=self._syncAsked,
            syncAnswered=self._syncAnswered,
            stats=self.stats,
            applyForwarded=node.applyForwarded,
            orphaned=node.clientsOrphaned,
            overridesReceived=lambda link, message: self.overrideSync.received(link, message),
        )
        self.overrideSync = OverrideSync(node.overrides, self._linksUp, settings.peer_max_frame)
        self.forwarding = Forwarding(self.clock, settings.peer_timeout_ms / 1000.0)
        # Member address -> whether its links speak FORWARD, once known.
        self._forwards = {}
        # The members that may be responsible, as the node was last told.
        self._candidates = None
        self.inbound = {}
        self._links = {}
        # Member address -> whether our link to it is up (as last logged).
        self._linkStates = {}
        self._waiting = set()
        self._reached = set()
        self._loadTimePassed = False
        self._deathTimers = {}
        self._loadTimer = None
        self._digests = LoopingCall(self._sendDigests)
        self._digests.clock = self.clock
        # A node of a cluster of more than one loads what members hold first.
        self._loading = len(addresses) > 1
        node.joinCluster(self)
        self.update(addresses)
        if not secret:
            self.log.warn(
                "no cluster_secret: the peer port accepts loopback connections only"
            )

    # ICluster

    def clientObservers(self):
        return [self.replicator, self.receiver]

    def loading(self):
        return self._loading

    def describeMembers(self):
        return self.membership.describe()

    def links(self):
        now = self.clock.seconds()
        described = []
        for member in self.membership.others():
            feed = self.replicator.feeds.get(member.address)
            traffic = member.traffic
            behind = feed.behindSince if feed is not None else None
            described.append({
                "member": member.nodeId,
                "outbound": feed is not None and feed.link is not None,
                "inbound": self.inbound.get(member.nodeId) is not None,
                "sent_bytes": traffic.sentBytes,
                "sent_frames": traffic.sentFrames,
                "received_bytes": traffic.receivedBytes,
                "received_frames": traffic.receivedFrames,
                "backlog": len(feed.dirty) if feed is not None else 0,
                "behind_seconds": max(0.0, now - behind) if behind is not None else 0.0,
            })
        return described

    def replication(self):
        return self.stats.counts()

    def responsibleFor(self, clientId):
        """
        The address of the member responsible for the heartbeat client
        C{clientId}, or C{None} for this node: of the members not down
        whose links speak L{FORWARD} (or are not known yet not to), the
        one L{responsible} picks, the same on every member that sees the
        same.
        """
        chosen = responsible(clientId, self._candidatesNow())
        return None if chosen == self.membership.self.address else chosen

    def _candidatesNow(self):
        """
        The members that may be responsible for a heartbeat client now.
        """
        return [
            m.address for m in self.membership.members.values()
            if m.isSelf or (m.state != DOWN and self._forwards.get(m.address, True))
        ]

    def _membersChanged(self):
        """
        Tell the node when the members that may be responsible changed (a
        member SUSPICIOUS and UP again changes nothing: no sweep).
        """
        candidates = frozenset(self._candidatesNow())
        if candidates != self._candidates:
            self._candidates = candidates
            self.node.membersChanged()

    def _linksUp(self):
        return [feed.link for feed in self.replicator.feeds.values() if feed.link is not None]

    def _sendDigests(self):
        self.replicator.sendDigests()
        self.overrideSync.sendDigests()

    def reachable(self, address):
        """
        Whether this node's link to member C{address} is up and carries
        forwarded writes.
        """
        feed = self.replicator.feeds.get(address)
        link = feed.link if feed is not None else None
        return link is not None and FORWARD in link.dialect.capabilities

    def forward(self, address, write):
        feed = self.replicator.feeds.get(address)
        return self.forwarding.send(feed.link if feed is not None else None, write)

    def _dialectKnown(self, member, dialect):
        speaks = FORWARD in dialect.capabilities
        if self._forwards.get(member.address) != speaks:
            self._forwards[member.address] = speaks
            self._membersChanged()

    # Members

    def update(self, addresses):
        """
        Make the members C{addresses}: links are added and removed to match.
        """
        added, removed = self.membership.update(addresses)
        for member in added:
            feed = self.replicator.addMember(member)
            endpoint = _Watched(
                self._connector(member.address),
                lambda failure, m=member: self._unreachable(m, failure),
                member.address,
            )
            link = ClientService(
                endpoint,
                OutboundFactory(self, feed),
                retryPolicy=_memberRetryPolicy(endpoint),
                clock=self.clock,
            )
            link.watched = endpoint
            link.setName(member.address)
            self._links[member.address] = link
            link.setServiceParent(self)
            if not self.node.ready:
                self._waiting.add(member.address)
        for member in removed:
            self.replicator.removeMember(member)
            link = self._links.pop(member.address)
            link.disownServiceParent()
            self._linkStates.pop(member.address, None)
            self._waiting.discard(member.address)
        if added or removed:
            self.log.info(
                "members: {members}", members=sorted(self.membership.members)
            )
            self._membersChanged()
        self._checkReady()

    def reload(self):
        """
        Re-read C{cluster.conf} (on SIGHUP); a wrong file changes nothing.
        """
        try:
            addresses = self._reread()
        except Exception as e:
            self.log.error("cluster.conf not reloaded: {error}", error=str(e))
            return
        self.update(addresses)

    def memberUp(self, member):
        timer = self._deathTimers.pop(member.address, None)
        if timer is not None and timer.active():
            timer.cancel()
        self.barrier.alive(member)
        self._membersChanged()

    def memberDown(self, member):
        self._mourn(member)
        self._waiting.discard(member.address)
        self._checkReady()
        self._membersChanged()

    def memberRemoved(self, member):
        link = self.inbound.get(member.nodeId)
        if link is not None:
            # No longer a member: nothing more it sends may be applied (its
            # digests would bring its clients back after the orphan grace).
            link.transport.abortConnection()
        self.barrier.presumedDead(member)
        self._mourn(member)
        self._forwards.pop(member.address, None)

    def _mourn(self, member):
        """
        C{member} is down (or left): after C{orphan_grace_ms} it is presumed
        dead (5.4): sync rounds stop waiting for it and its clients go,
        unless taken over.
        """
        if member.address not in self._deathTimers:
            grace = self.config.orphan_grace_ms / 1000.0
            self._deathTimers[member.address] = self.clock.callLater(
                grace, self._presumedDead, member
            )

    def _presumedDead(self, member):
        del self._deathTimers[member.address]
        self.log.info(
            "member {member} presumed dead: down for orphan_grace_ms", member=member.address
        )
        self.barrier.presumedDead(member)
        self.receiver.dropClientsOf(member.nodeId)

    # Sync rounds (5.4)

    def _askSync(self, member, message):
        feed = self.replicator.feeds.get(member.address)
        if feed is None or feed.link is None:
            return False
        feed.link.sendMessage(message)
        return True

    def outboundUp(self, feed):
        """
        Our link to C{feed}'s member carries its snapshot from now on.
        """
        self._linkState(feed.member, "up")
        self.barrier.linkUp(feed.member)
        self._dialectKnown(feed.member, feed.link.dialect)
        self.overrideSync.sendAll(feed.link)

    def _syncAsked(self, nodeId, n):
        member = self.membership.member(nodeId)
        feed = self.replicator.feeds.get(member.address) if member is not None else None
        if feed is not None:
            feed.owe(n)

    def _syncAnswered(self, nodeId, n, restoring):
        member = self.membership.member(nodeId)
        if member is not None:
            self.barrier.answered(member, n, restoring)

    # Inbound links: at most one per member, the newest.

    def inboundUp(self, link):
        previous = self.inbound.get(link.nodeId)
        self.inbound[link.nodeId] = link
        if previous is not None:
            previous.closeConnection()
        self.log.info("member {peer} connected", peer=link.nodeId)
        self._reached.add(link.member.address)
        self.receiver.linkUp(link)
        # An answer to a sync may have been lost with its previous link.
        self.barrier.linkUp(link.member)
        self._reconnectNow(link.member)

    def _reconnectNow(self, member):
        """
        A member just connected to us, so it is reachable: if our own link
        to it is waiting out a reconnect backoff, try at once (a restarted
        member is loaded as soon as our snapshot reaches it).
        """
        feed = self.replicator.feeds.get(member.address)
        service = self._links.get(member.address)
        if feed is None or feed.connected or service is None or not service.running:
            return  # linked, or left
        if service.watched.connecting:
            # An attempt is under way; it may have been started while the
            # member was down, and fail only later: then retry at once.
            service.watched.retryNow = True
            return
        d = service.stopService()

        def restart(_):
            # Unless it was started again, or the member left, meanwhile.
            if not service.running and self._links.get(member.address) is service:
                service.startService()

        d.addCallback(restart)

    def inboundDown(self, link):
        if self.inbound.get(link.nodeId) is link:
            del self.inbound[link.nodeId]
            self.receiver.linkDown(link)
            # Its snapshot is waited for past load_timeout_ms only while
            # its link is up (5.5).
            self._reached.discard(link.member.address)
            if self._loadTimePassed and not self.node.ready:
                self._waiting.discard(link.member.address)
                self._checkReady()

    # Readiness (5.5)

    def _loaded(self, nodeId):
        member = self.membership.member(nodeId)
        if member is not None:
            self._waiting.discard(member.address)
        self._checkReady()

    def outboundDown(self, feed, reason):
        """
        Our link to C{feed}'s member, up until now, is lost: C{reason}.
        """
        self._linkState(feed.member, f"down: {reason}")

    def _linkState(self, member, state):
        """
        Our link to C{member} is up, or down for a reason: said once when
        it changes (not at each reconnect attempt), and the first reason
        why it is down.
        """
        up = state == "up"
        if self._linkStates.get(member.address) == up:
            return
        self._linkStates[member.address] = up
        self.log.info("link to member {member} {state}", member=member.address, state=state)

    def _unreachable(self, member, failure):
        self._linkState(member, f"down: {failure.getErrorMessage()}")
        if member.address in self._reached:
            return  # it dialled us: its snapshot is coming on that link
        if member.address in self._waiting:
            self._waiting.discard(member.address)
            self._checkReady()

    def _checkReady(self):
        if self.node.ready or self._waiting:
            return
        self._becomeReady("loaded from every reachable member")

    def _loadTimedOut(self):
        self._loadTimer = None
        self._loadTimePassed = True
        if self.node.ready:
            return
        # Members that never connected are not waited for any longer; one
        # that did is sending its snapshot, and a node serving reads without
        # it would answer with data missing (5.5).
        reached = self._waiting & self._reached
        if reached:
            self._waiting = reached
            self.log.info(
                "load_timeout_ms passed; still loading from {members}, which connected",
                members=sorted(reached),
            )
            return
        self._becomeReady(f"load_timeout_ms passed; still waiting for {sorted(self._waiting)}")

    def _becomeReady(self, why):
        self.node.loaded()
        self._waiting.clear()
        if self._loadTimer is not None and self._loadTimer.active():
            self._loadTimer.cancel()
        self._loadTimer = None
        self.log.info("node ready: {why}", why=why)

    # Service

    def startService(self):
        self.membership.self.clientAddress = self.node.clientAddress
        d = self._listen(PeerPortFactory(self))
        failures = []
        d.addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()
        super().startService()
        self.membership.start()
        self._digests.start(self.config.verify_interval_ms / 1000.0, now=False)
        if not self.node.ready:
            if self._waiting:
                self._loadTimer = self.clock.callLater(
                    self.config.load_timeout_ms / 1000.0, self._loadTimedOut
                )
            else:
                self._becomeReady("no other members")

    def _listening(self, port):
        self.port = port
        host = port.getHost()
        self.log.info(
            "peer port on {host}:{port}, members {members}",
            host=host.host,
            port=host.port,
            members=sorted(self.membership.members),
        )

    def stopService(self):
        self.membership.stop()
        if self._digests.running:
            self._digests.stop()
        if self._loadTimer is not None and self._loadTimer.active():
            self._loadTimer.cancel()
        for timer in self._deathTimers.values():
            if timer.active():
                timer.cancel()
        self._deathTimers.clear()
        self.receiver.stop()
        self.replicator.stop()
        self.forwarding.stop()
        d = super().stopService()
        for link in list(self.inbound.values()):
            link.transport.abortConnection()
        if self.port is not None:
            port, self.port = self.port, None
            d.addCallback(lambda _: port.stopListening())
        return d


def readMembers(config):
    """
    The members a clustered node's configuration names: C{(selfAddress,
    addresses)}, or C{None} for a standalone node (no C{cluster} file).

    @raise distro.config.ConfigError: naming the wrong key.
    """
    if not config.cluster:
        return None
    addresses = readClusterFile(config.cluster)
    return findSelf(addresses, config), addresses


def clusterFromConfig(node, reactor, members, environ):
    """
    The L{Cluster} of C{node}, listening and connecting through C{reactor},
    for the C{(selfAddress, addresses)} of L{readMembers}. A one-line
    C{cluster.conf} makes a cluster of one, a standalone node that a SIGHUP
    can grow.

    @raise distro.config.ConfigError: naming the wrong key.
    """
    config = node.config
    selfAddress, addresses = members
    secret = config.clusterSecret(environ)
    # A TLS peer port means a TLS cluster: members are dialed over TLS too.
    dialer = config.peerDialer()

    def connector(address):
        host, port = parseAddress(address, "member")
        return hostEndpoint(reactor, host, port, 5, dialer)

    def listen(factory):
        listening = reactor
        if config.peer_tls_cert:
            # This node shows members a certificate: so must they (mutual TLS).
            listening = MutualTLSReactor(reactor, dialer)
        return serverFromString(listening, config.peer_listen).listen(factory).addErrback(
            named("peer_listen", config.peer_listen)
        )

    return Cluster(
        node,
        selfAddress,
        addresses,
        secret,
        listen,
        connector,
        reread=lambda: readClusterFile(config.cluster),
        settings=ClusterSettings.fromConfig(config),
    )
