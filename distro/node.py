# -*- test-case-name: tests.test_server -*-
"""
A node: the client manager, the registry and the pusher of one registry
process, wired together, and what its client sessions ask of it (identity,
authorisation, membership).
"""

import socket

from twisted.internet.defer import fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from distro.address import formatAddress, parseAddress
from distro.admission import Admission
from distro.auth import Authority
from distro.clients import BATCH_SLICE, ClientIds, ClientManager
from distro.drain import CLOSE_AFTER, Moves, moveTargets
from distro.rebalance import DEFAULT_RATE, SETTLE_SECONDS, Rebalancer, plan, sessionCounts
from distro.errors import NOT_READY, UNAVAILABLE, BadRequest, RequestError
from distro.heartbeats import Heartbeats
from distro.hlc import HybridClock
from distro.interfaces import IClientObserver, IClusterHost, INode
from distro.overrides import MAX_WHO_CHARS, MAX_WHY_CHARS, Overrides, checkedText
from distro.push import Pusher
from distro.registry import Registry
from distro.requeststats import RequestStats
from distro.turns import Turns

# Why a resume was refused, as a hello reply says (PROTOCOL.md 4.1).
RESUME_UNKNOWN_CLIENT = "unknown_client"
RESUME_WRONG_TOKEN = "wrong_token"


@implementer(IClientObserver, INode, IClusterHost)
class Node:
    """
    One registry node.

    @ivar ready: whether reads are served (PROTOCOL.md 5.5); a standalone node
        is ready at once, a clustered one once its cluster loaded it.
    @ivar draining: whether the node is stopping (L{drain}): it still serves
        its sessions and its peers, but takes no new session.
    @ivar clientAddress: the C{host:port} clients reach this node at.
    @ivar cluster: the L{distro.cluster.service.Cluster}, or C{None} when
        standalone.
    @ivar turns: the L{distro.interfaces.ITurns} the work of clients shares.
    @ivar authority: the L{distro.interfaces.IAuthority} every port asks.
    @ivar requests: the L{distro.interfaces.IRequestStats} of every port.
    """

    log = Logger()

    def __init__(self, config, clock, bootId=None, *, freezeLoaded=None, secret=b"", authority=None,
                 admission=None, turns=None):
        self.config = config
        self.clock = clock
        # The client connections of every port, counted once.
        self.admission = Admission(config.max_connections_per_ip) if admission is None else admission
        self.authority = Authority(config, clock, secret) if authority is None else authority
        # The reactor's time, shared by the work clients cause on every port.
        self.turns = Turns(clock) if turns is None else turns
        # What every port served, by op and code, counted as it answers.
        self.requests = RequestStats()
        self._freezeLoaded = freezeLoaded
        self.nodeId = config.node_id
        self.manager = ClientManager(
            self.nodeId, clock, config, ClientIds(self.nodeId, bootId), turns=self.turns
        )
        # The operators' overrides, replicated (PROTOCOL.md 5.7) and shown
        # over what clients publish.
        self.overrides = Overrides(
            HybridClock(clock, self.nodeId), maxOverrides=config.max_overrides,
            expiryMs=config.override_expiry_ms, maxMetadataBytes=config.max_metadata_bytes,
        )
        self._expiring = LoopingCall(self.expireOverrides)
        self._expiring.clock = clock
        # What keeps them on disk (an OverrideSaver), when data_dir is set.
        self._saver = None
        self.registry = Registry(self.overrides)
        self.manager.addObserver(self.registry)
        self.pusher = Pusher(self.registry, clock, config.push_delay_ms, self.turns)
        self.ready = True
        self.clientAddress = config.advertise or None
        # The client port's number when it listens on every interface.
        self._reachedAtPort = None
        self.sessions = {}
        self._ports = []
        self._restoring = set()
        self.cluster = None
        self.manager.addObserver(self)
        # The clients registered over HTTP, kept alive by beats.
        self.heartbeats = Heartbeats(
            self.manager, clock, self._responsible, maxClients=config.max_heartbeat_clients,
            turns=self.turns,
        )
        self.manager.addObserver(self.heartbeats)
        # Sessions asked to move to other members (draining, rebalancing).
        self.moves = Moves(self.manager, clock)
        self.draining = False
        self.rebalancer = Rebalancer(clock)
        self._rebalanceCall = None

    @property
    def bootId(self):
        return self.manager.ids.bootId

    def joinCluster(self, cluster):
        """
        The cluster side joins: its barrier guards removals (sync rounds),
        its observers follow the clients, it describes the members. A
        cluster of more than one loads what members hold before the node
        serves reads (L{loaded}).
        """
        self.cluster = cluster
        self.manager.barrier = cluster.barrier
        for observer in cluster.clientObservers():
            self.manager.addObserver(observer)
        if cluster.loading():
            self.ready = False

    def loaded(self):
        """
        The node has loaded what the cluster holds: it serves reads, and that
        data is long-lived. With C{freezeLoaded} (L{gc.freeze} in a running
        node), everything alive now is moved out of the collector's
        generations, so that a full collection no longer walks the whole
        registry.
        """
        self.ready = True
        if self._freezeLoaded is not None:
            self._freezeLoaded()

    def sessionStarted(self, session, resume=None):
        """
        A connection said hello. With C{resume} C{(clientId, token, epoch)}
        naming a client this node holds, with its token, the session
        resumes that client: it gets the client's new state, restoring
        until L{resumeDone} (its instances never vanish meanwhile);
        otherwise it gets a new client.

        @return: C{(client, resumeToken, resumed, refusal)}, C{refusal}
            why a C{resume} was not granted: L{RESUME_UNKNOWN_CLIENT} (this
            node holds no such client) or L{RESUME_WRONG_TOKEN}.
        @raise RequestError: C{NOT_READY} when this node, still loading,
            does not know the client yet (the cluster may): the client is
            to try another node.
        """
        if resume is not None:
            clientId, token, epoch = resume
            if not self.ready and clientId not in self.manager.clients:
                raise RequestError(
                    NOT_READY,
                    "resume: this node is still loading cluster data and does not "
                    "know this client yet; try another node",
                )
            state = self.manager.resume(clientId, token, epoch)
            if state is not None:
                previous = self.sessions.get(clientId)
                self.sessions[clientId] = session
                self._restoring.add(clientId)
                if previous is not None:
                    # The old connection is stale (half-open, or the client
                    # gave up on it); it goes without taking the client along.
                    previous.closeConnection()
                self.log.debug("client {client} resuming", client=clientId)
                return state, token, True, None
            refusal = RESUME_WRONG_TOKEN if clientId in self.manager.clients else RESUME_UNKNOWN_CLIENT
            self.log.debug(
                "client {client} cannot resume here: {why}", client=clientId, why=refusal.replace("_", " ")
            )
        else:
            refusal = None
        client, token = self.manager.clientConnected()
        self.sessions[client.clientId] = session
        return client, token, False, refusal

    def restoring(self):
        """
        The ids of the clients whose sessions are resuming here right now.
        """
        still = set()
        for clientId in self._restoring:
            session = self.sessions.get(clientId)
            if session is not None and session.client.restoring:
                still.add(clientId)
        self._restoring = still
        return sorted(still)

    def resumeDone(self, session):
        """
        A resumed session re-sent all its registrations (C{redo_done}): it
        takes its client over. Return the client it now speaks for.
        """
        client = self.manager.restored(session.client)
        self.log.debug("client {client} resumed at epoch {epoch}", client=client.clientId, epoch=client.epoch)
        return client

    def sessionEnded(self, session, orderly):
        """
        A connection ended (C{orderly} after C{bye}). Safe to call twice.
        """
        client = session.client
        if self.sessions.get(client.clientId) is session:
            del self.sessions[client.clientId]
            if client.restoring:
                self.manager.restoreAbandoned(client)
            else:
                self.manager.clientDisconnected(client.clientId, orderly)

    # What a port asks of the node's parts, through the node (INode).

    def register(self, client, service, instance):
        """
        Put C{instance} among C{client}'s instances in C{service}.
        """
        self.manager.register(client, service, instance)

    def deregister(self, client, service, instanceId):
        """
        Remove one of C{client}'s instances; return whether it was there.
        """
        return self.manager.deregister(client, service, instanceId)

    def batchRegister(self, client, service, instances):
        """
        Make C{client}'s instances in C{service} exactly C{instances}.
        """
        self.manager.batchRegister(client, service, instances)

    def batchRegisterInSlices(self, client, service, instances):
        """
        What L{batchRegister} does, as a generator of steps (for
        L{distro.interfaces.ITurns.run}): a batch of thousands is applied
        over several turns.
        """
        return self.manager.batchRegisterInSlices(client, service, instances, BATCH_SLICE)

    def serviceInfo(self, service, clusters=None, healthyOnly=False):
        """
        The L{distro.registry.ServiceInfo} of C{service}, filtered.
        """
        return self.registry.serviceInfo(service, clusters, healthyOnly)

    def services(self, namespace, group, page, size):
        """
        One page of the services of a namespace: C{(count, [(group, name,
        instances)])}.
        """
        return self.registry.services(namespace, group, page, size)

    def pushChannel(self, send):
        """
        A L{distro.push.PushChannel} for a new connection, writing with
        C{send}.
        """
        return self.pusher.channel(send)

    def subscribe(self, client, channel, service, clusters, info):
        """
        C{client} subscribes, through the push channel of its connection, to
        C{service} (C{clusters} filtering), whose C{info} it was just given:
        what any front end does.
        """
        self.manager.subscribe(client, service, clusters)
        self.pusher.subscribe(channel, service, clusters, info.checksum)

    def unsubscribe(self, client, channel, service, clusters):
        """
        The reverse of L{subscribe}.
        """
        self.manager.unsubscribe(client, service, clusters)
        self.pusher.unsubscribe(channel, service, clusters)

    def watch(self, channel, service, clusters, info):
        """
        C{channel} watches C{service} (C{clusters} filtering), whose C{info}
        it was just given, without a client: a subscription of the pusher
        alone, until C{channel} is closed.
        """
        self.pusher.subscribe(channel, service, clusters, info.checksum)

    def clientPortBound(self, address):
        """
        distro's client port is bound, reachable at C{address}
        (C{host:port}): what clients and peers are told, unless
        C{advertise} says otherwise.
        """
        if self.config.advertise:
            return
        host, port = parseAddress(address)
        if host in ("0.0.0.0", "::"):
            # Every interface: the host name is the guess told to peers; a
            # client is shown the address its own connection reached.
            self._reachedAtPort = port
            address = formatAddress(socket.gethostname(), port)
        self.clientAddress = address

    def portOpened(self, frontEnd):
        self._ports.append(frontEnd)

    def portClosed(self, frontEnd):
        if frontEnd in self._ports:
            self._ports.remove(frontEnd)

    def ports(self):
        return list(self._ports)

    def counts(self):
        """
        What this node holds, counted as it changes (nothing is walked):
        C{{"native_clients", "synced_clients", "services", "instances",
        "subscriptions"}}.
        """
        manager = self.manager
        return {
            "native_clients": manager.nativeCount,
            "synced_clients": len(manager.clients) - manager.nativeCount,
            "services": len(self.registry.views),
            "instances": self.registry.instanceCount,
            "subscriptions": self.pusher.subscriptionCount,
        }

    def peerLinks(self):
        return self.cluster.links() if self.cluster is not None else []

    def replication(self):
        return self.cluster.replication() if self.cluster is not None else {}

    # Operators' overrides (distro.overrides)

    def keepOverrides(self, saver):
        """
        The overrides are kept on disk by C{saver} (an
        L{distro.overridefile.OverrideSaver}): an operator's write is
        answered once it is saved.
        """
        self._saver = saver

    def _saved(self, entry):
        """
        A L{Deferred} firing with C{entry} once what the overrides hold now
        is on disk.
        """
        if self._saver is None or entry is None:
            return succeed(entry)
        return self._saver.durable().addCallback(lambda _: entry)

    def writeOverride(self, grant, host, service, instanceId, changes, why):
        """
        An operator's write of the override of C{instanceId} in C{service}
        (C{changes} from L{distro.overrides.parseChanges}), from a client
        at C{host}; return a L{Deferred} firing with the entry written once
        it is on disk (failing C{INTERNAL} if the disk refused: it holds
        on every member meanwhile).

        @raise RequestError: C{FORBIDDEN} for anyone but an operator
            (L{distro.interfaces.IAuthority.checkOperator}), C{BAD_REQUEST}
            for a write that changes nothing, C{LIMIT_EXCEEDED} past
            C{max_overrides}.
        """
        self.authority.checkOperator(grant, host, "override")
        grant.check(service.namespace, "service.namespace", self.clock.seconds())
        if not changes:
            raise BadRequest("override", "names nothing to change: enabled, weight, metadata or removed")
        override = self.overrides.write(service, instanceId, changes, who=self._who(grant, host),
                                        why=_why(why))
        self.log.info(
            "override of {service} {instance} by {who}: {changes} ({why})", service=str(service),
            instance=instanceId, who=override.who, changes=override.changes() or "cleared",
            why=override.why or "no reason given",
        )
        return self._saved(override)

    def clearOverride(self, grant, host, service, instanceId, why):
        """
        An operator clears the override of C{instanceId}: views show what
        its client publishes. Return a L{Deferred} firing with the
        tombstone once on disk, or with C{None} when no override was in
        force.
        """
        self.authority.checkOperator(grant, host, "override")
        grant.check(service.namespace, "service.namespace", self.clock.seconds())
        cleared = self.overrides.clear(service, instanceId, who=self._who(grant, host), why=_why(why))
        if cleared is not None:
            self.log.info("override of {service} {instance} cleared by {who} ({why})", service=str(service),
                          instance=instanceId, who=cleared.who, why=cleared.why or "no reason given")
        return self._saved(cleared)

    def listOverrides(self, grant, namespace=None):
        """
        The overrides in force, of C{namespace} or (for a grant of every
        namespace) of all.
        """
        now = self.clock.seconds()
        if namespace is None:
            grant.checkEvery("namespace")
        else:
            grant.check(namespace, "namespace", now)
        return [o for o in self.overrides.live() if namespace is None or o.service.namespace == namespace]

    @staticmethod
    def _who(grant, host):
        who = grant.subject if grant.subject != "anonymous" or not host else f"anonymous@{host}"
        return who if len(who) <= MAX_WHO_CHARS else who[:MAX_WHO_CHARS - 3] + "..."

    # Heartbeat clients (distro.heartbeats)

    def _responsible(self, clientId):
        return self.cluster is None or self.cluster.responsibleFor(clientId) is None

    def heartbeatWrite(self, write):
        """
        Apply a heartbeat client's C{write} here if this node is its
        responsible member or that member cannot be reached now, else
        forward it to that member.
        """
        member = None if self.cluster is None else self.cluster.responsibleFor(write.clientId)
        if member is not None and self.cluster.reachable(member):
            return self.cluster.forward(member, write)
        # Responsible, or the responsible member cannot be reached now (it
        # is not yet found down): this node holds the client meanwhile, and
        # the member responsible takes it over when it is back (5.6).
        try:
            return succeed(self._applyHeartbeat(write))
        except RequestError:
            return fail()

    def applyForwarded(self, write):
        """
        A member forwarded C{write}, judging this node responsible: it is
        applied here whatever this node judges (a write is forwarded once).
        """
        return self._applyHeartbeat(write)

    def _applyHeartbeat(self, write):
        """
        Apply C{write}, once this node has loaded what members hold: before
        that, the client's record may not have come yet (a deregister would
        miss it, a register outrank it with only one service).

        @raise RequestError: C{UNAVAILABLE} while loading.
        """
        if not self.ready:
            raise RequestError(UNAVAILABLE, "this node is still loading cluster data; try again")
        return self.heartbeats.apply(write)

    def membersChanged(self):
        self.heartbeats.takeOver()
        self._rebalanceLater()

    def _rebalanceLater(self):
        """
        A member came back (it restarted, or was down), or went: with
        C{rebalance_after_restart}, once things settled, this node gives
        the members below their share some of its sessions (nothing when
        it is at or below its own).
        """
        if not self.config.rebalance_after_restart or self.draining:
            return
        if self._rebalanceCall is not None and self._rebalanceCall.active():
            self._rebalanceCall.reset(SETTLE_SECONDS)
        else:
            self._rebalanceCall = self.clock.callLater(SETTLE_SECONDS, self._rebalance, DEFAULT_RATE)

    def rebalance(self, grant, host, rate=DEFAULT_RATE, asking=None):
        """
        An operator asks this node to move the client sessions it holds
        over its share of the cluster's to the members below theirs, C{rate}
        a second (L{distro.rebalance}).

        @return: C{{"node", "sessions", "share", "moving"}}: this node's
            id, the sessions it holds, its share, and how many it is moving.
        @param asking: the operator's own session, which is not moved.
        @raise RequestError: C{FORBIDDEN} for anyone but an operator,
            C{NOT_READY} while draining.
        """
        self.authority.checkOperator(grant, host, "rebalance")
        self.log.info("rebalance asked by {who}", who=self._who(grant, host))
        return self._rebalance(rate, asking)

    def _rebalance(self, rate, asking=None):
        self._rebalanceCall = None
        if self.draining:
            raise RequestError(NOT_READY, "rebalance: this node is draining (stopping)")
        members = self.members()
        counts = sessionCounts(self.manager.clients, self.nodeId, len(self.sessions))
        share, targets = plan(members, counts)
        if targets:
            self.log.info(
                "node {node} holds {count} client sessions, over its share of {share}: moving "
                "{moving} to {targets}, {rate:g} a second", node=self.nodeId, count=counts[self.nodeId],
                share=share, moving=len(targets), targets=", ".join(sorted(set(targets))), rate=rate,
            )
        # Sessions that published something first: those are what the
        # other members count.
        candidates = [item for item in sorted(self.sessions.items()) if item[1] is not asking]
        candidates.sort(key=lambda item: item[1].client.instanceCount == 0)
        self.rebalancer.start(candidates[:len(targets)], targets, moveTargets(members), rate)
        return {"node": self.nodeId, "sessions": counts[self.nodeId], "share": share, "moving": len(targets)}

    def clientsOrphaned(self, nodeId, clientIds):
        # A member restarted: its new life loaded.
        self.heartbeats.orphaned(nodeId, clientIds)
        self._rebalanceLater()

    def pushFailed(self):
        self.pusher.stats.failed += 1

    def pushStats(self):
        return self.pusher.stats

    def members(self, reachedAt=None):
        """
        The members of the cluster as the C{members} op shows them.

        @param reachedAt: the host the asking connection reached: when the
            client port listens on every interface and C{advertise} is not
            set, this node is shown there (that client can use it).
        """
        if self.cluster is not None:
            members = self.cluster.describeMembers()
        else:
            members = [{"node": self.nodeId, "address": self.clientAddress, "state": "UP", "self": True}]
        if reachedAt is None or self._reachedAtPort is None:
            return members
        address = formatAddress(reachedAt, self._reachedAtPort)
        return [dict(m, address=address) if m["self"] else m for m in members]

    # IClientObserver: a session whose client moved to another node ends.

    def clientChanged(self, change):
        pass

    def clientRemoved(self, client):
        pass

    def clientMoved(self, client):
        if client.native:
            return
        session = self.sessions.pop(client.clientId, None)
        if session is not None:
            # The client resumed elsewhere: this connection is stale. Its
            # instances stay; they belong to the new owner now.
            self.log.debug("client {client} moved to {owner}", client=client.clientId, owner=client.owner)
            session.closeConnection()

    def start(self):
        """
        The node runs: look for overrides to expire every tenth of
        C{override_expiry_ms} (at most every minute).
        """
        interval = min(self.config.override_expiry_ms / 10.0, 60_000) / 1000.0
        self._expiring.start(interval, now=False)

    def expireOverrides(self):
        self.overrides.expire(self.registry.published)

    def drain(self):
        """
        The node is about to stop (SIGTERM): it stops taking new sessions
        (C{/ready} answers 503) and asks every client session to move to
        another member that is up, while it goes on serving them and its
        peers.

        @return: a L{Deferred} firing once every client moved (another
            member took it over, or it is gone), or after
            C{drain_timeout_ms}.
        """
        self.draining = True
        self.rebalancer.stop()
        if self._rebalanceCall is not None and self._rebalanceCall.active():
            self._rebalanceCall.cancel()
        timeout = self.config.drain_timeout_ms / 1000.0
        targets = moveTargets(self.members())
        if not self.sessions or not targets or not timeout:
            self.log.info(
                "node {node} stopping without draining: {why}", node=self.nodeId,
                why=("no client session" if not self.sessions
                     else "no other member is up" if not targets else "drain_timeout_ms is 0"),
            )
            return succeed(None)
        self.log.info(
            "node {node} draining: asking {count} client sessions to move to {targets}",
            node=self.nodeId, count=len(self.sessions), targets=", ".join(targets),
        )
        d = self.moves.move(dict(self.sessions), targets, "draining", timeout, closeAfter=CLOSE_AFTER)
        return d.addCallback(self._drained)

    def _drained(self, notMoved):
        if notMoved:
            self.log.warn(
                "node {node} drained with {count} clients not moved within drain_timeout_ms",
                node=self.nodeId, count=notMoved,
            )
        else:
            self.log.info("node {node} drained: every client moved", node=self.nodeId)

    def stop(self):
        """
        The node is shutting down: cancel its timers.
        """
        if self._expiring.running:
            self._expiring.stop()
        self.rebalancer.stop()
        if self._rebalanceCall is not None and self._rebalanceCall.active():
            self._rebalanceCall.cancel()
        self.heartbeats.stop()
        self.manager.stop()


def _why(value):
    """
    An operator's reason, checked.
    """
    return "" if value is None else checkedText(value, "why", MAX_WHY_CHARS)
