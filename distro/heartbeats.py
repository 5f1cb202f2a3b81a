# -*- test-case-name: tests.test_heartbeats -*-
"""
Heartbeat clients: Distro's other kind of client (PROTOCOL.md 5.6). An
instance registered over HTTP (Nacos' open API) has no connection to live
as long as: its client is its C{ip:port}, kept alive by beats, owned by one
I{responsible} member of the cluster (a stable hash of C{ip:port} over the
members that are not down, the same on every node). Any node takes the
request and forwards writes and beats to the responsible member; the owner
replicates the client like any other.

Like Nacos, a heartbeat client publishes at most one instance per service
(registering again replaces it). An instance is unhealthy once no beat came
for its beat timeout, and removed once none came for its delete timeout
(Nacos' defaults, 15 s and 30 s, or its metadata's C{preserved.*}); a beat
makes it healthy again. A client with no instance left is removed.

When the members change, the member now responsible for a client another
member owns takes it over (a move, its instances unchanged, its beats
counted from then): no subscriber sees it vanish.
"""

import heapq
from typing import NamedTuple

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from distro.errors import NOT_FOUND, BadRequest, LimitExceeded, RequestError
from distro.interfaces import IClientObserver
from distro.model import Instance

# Nacos' defaults for an instance whose metadata says nothing (ms).
BEAT_INTERVAL_MS = 5000
BEAT_TIMEOUT_MS = 15000
DELETE_TIMEOUT_MS = 30000

# The metadata keys that override them, per instance (ms), as Nacos names
# them.
INTERVAL_KEY = "preserved.heart.beat.interval"
TIMEOUT_KEY = "preserved.heart.beat.timeout"
DELETE_KEY = "preserved.ip.delete.timeout"

# What a beat answers, as Nacos' codes: the instance was there, or is not
# known (the client registers again).
BEAT_OK = 10200
BEAT_NOT_FOUND = 20404

# How often the owner looks for instances whose beats stopped (s).
CHECK_EVERY = 0.5

# How long after taking a client over this node does not take it again on
# a record's arrival (s): while two members' views of the members differ,
# both may judge themselves responsible; they take it from each other at
# most this often until their views agree.
RETAKE_AFTER = 5.0

# The clients one slice of a takeover sweep looks at (each a hash per
# member): a few ms.
SWEEP_SLICE = 512

# What a write may be.
KINDS = ("register", "update", "deregister", "beat")


def clientIdOf(ip, port):
    """
    The id of the heartbeat client of C{ip:port}.
    """
    return f"{ip}:{port}"


def isHeartbeatClient(clientId):
    """
    Whether C{clientId} names a heartbeat client (a session's id holds
    C{#}, PROTOCOL.md 4.1; an C{ip:port} never does).
    """
    return "#" not in clientId


class Write(NamedTuple):
    """
    One write of a heartbeat client, as any node takes it and the
    responsible member applies it.

    @ivar kind: one of L{KINDS}.
    @ivar service: the L{distro.model.ServiceKey}.
    @ivar instance: the L{Instance} registered or updated; for a beat, the
        instance to register if the client holds none in C{service} (a
        beat that carries its instance, as Nacos' clients send), else
        C{None}.
    """

    kind: str
    ip: str
    port: int
    service: object
    instance: object = None

    @property
    def clientId(self):
        return clientIdOf(self.ip, self.port)


def _setting(metadata, key, default):
    value = metadata.get(key)
    if value is None:
        return default
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return default
    return ms if ms > 0 else default


class _Beats:
    """
    The beats of one published instance: when the last came, and its
    settings (seconds).
    """

    __slots__ = ("last", "interval", "timeout", "delete", "due")

    def __init__(self, last, metadata):
        self.last = last
        # When its one check is due (None: none waits).
        self.due = None
        self.interval = _setting(metadata, INTERVAL_KEY, BEAT_INTERVAL_MS) / 1000.0
        self.timeout = _setting(metadata, TIMEOUT_KEY, BEAT_TIMEOUT_MS) / 1000.0
        self.delete = _setting(metadata, DELETE_KEY, DELETE_TIMEOUT_MS) / 1000.0


@implementer(IClientObserver)
class Heartbeats:
    """
    The heartbeat clients of a node: applies their writes and beats here
    (as the owner), checks the beats of those it owns, and takes over
    those it has become responsible for.

    @param manager: the node's L{distro.interfaces.IClientManager}.
    @param responsible: C{(clientId) -> bool}, whether this node is the
        client's responsible member now.
    @param maxClients: how many heartbeat clients this node may own.
    @param turns: the node's L{distro.interfaces.ITurns}, which a takeover
        sweep shares (it looks at every heartbeat client another member
        owns).
    """

    log = Logger()

    def __init__(self, manager, clock, responsible, *, maxClients, turns):
        self.manager = manager
        self.clock = clock
        self.responsible = responsible
        self.maxClients = maxClients
        self.turns = turns
        # Whether a takeover sweep runs, and whether another is due after it.
        self._sweeping = False
        self._sweepAgain = False
        # Ids of every heartbeat client held (native or synced).
        self.held = set()
        # Ids of those owned here.
        self.owned = set()
        # (clientId, service) -> _Beats, for the instances owned here.
        self._beats = {}
        # (due, n, clientId, service): when to look at an instance next.
        self._due = []
        self._n = 0
        # clientId -> when this node last took it over.
        self._taken = {}
        # clientId -> {service: its last beat here}, of the clients this
        # node gave up (a newer owner's record came): if it takes one back,
        # the beats it had count.
        self._given = {}
        # Ids of synced clients to look at in the next turn.
        self._arrived = set()
        self._looking = None
        # How many clients this turn took over, and why, logged in one
        # line at the turn's end.
        self._tookOver = {}
        self._telling = None
        self._check = LoopingCall(self.check)
        self._check.clock = clock

    def stop(self):
        """
        Stop checking (the node is shutting down).
        """
        self._due.clear()
        for call in (self._looking, self._telling):
            if call is not None and call.active():
                call.cancel()
        if self._check.running:
            self._check.stop()

    # Writes, as the responsible member applies them

    def apply(self, write):
        """
        Apply C{write} here, taking its client over if another member owns
        it (this node is responsible for it, or was told so by the member
        that forwarded it).

        @return: for a beat, C{(code, intervalMs)}; else C{None}.
        @raise RequestError: a write refused (C{NOT_FOUND} updating an
            instance the client does not hold, a limit).
        """
        if write.kind not in KINDS:
            raise BadRequest("kind", f"must be one of {', '.join(KINDS)}")
        client = self._own(write.clientId, create=write.kind == "register" or (
            write.kind == "beat" and write.instance is not None))
        service = write.service
        if write.kind == "register":
            return self._put(client, service, write.instance)
        held = client.instances(service) if client is not None else {}
        if write.kind == "update":
            if not held:
                raise RequestError(NOT_FOUND, f"instance: {write.ip}:{write.port} is not registered in {service}")
            return self._put(client, service, write.instance)
        if write.kind == "deregister":
            if held:
                self.manager.batchRegister(client, service, [])
                self._forget(client.clientId, service)
                self._removeIfEmpty(client)
            return None
        # A beat.
        if not held:
            if write.instance is None:
                return BEAT_NOT_FOUND, BEAT_INTERVAL_MS
            self._put(client, service, write.instance)
            held = client.instances(service)
        instance = next(iter(held.values()))
        beats = self._beats.get((client.clientId, service)) or self._track(client.clientId, service, instance)
        beats.last = self.clock.seconds()
        if not instance.healthy:
            self.manager.batchRegister(client, service, [_withHealth(instance, True)])
        return BEAT_OK, int(beats.interval * 1000)

    def _own(self, clientId, create):
        """
        The native client C{clientId}, taken over from its owner or made
        new (with C{create}); C{None} if it is held nowhere and not made.
        """
        client = self.manager.clients.get(clientId)
        if client is not None and client.native:
            return client
        if client is None and not create:
            return None
        if len(self.owned) >= self.maxClients:
            raise LimitExceeded(
                "max_heartbeat_clients", f"this node owns at most {self.maxClients} heartbeat clients"
            )
        if client is None:
            return self.manager.heartbeatClient(clientId, int(self.clock.seconds() * 1000))
        client = self.manager.takeOver(clientId)
        self._restore(client)
        self._tell("a write came while its responsible member is unreachable")
        return client

    def _put(self, client, service, instance):
        self.manager.batchRegister(client, service, [instance])
        self._track(client.clientId, service, instance)
        return None

    def _removeIfEmpty(self, client):
        if not client.instanceCount:
            self.manager.removeClient(client.clientId)

    # Beats

    def _track(self, clientId, service, instance):
        """
        Count the beats of C{client}'s C{instance} in C{service} from now,
        with the instance's settings; the check already waiting for it, if
        any, is kept (an earlier one is scheduled if the settings need it).
        """
        key = (clientId, service)
        previous = self._beats.get(key)
        beats = self._beats[key] = _Beats(self.clock.seconds(), instance.metadata)
        beats.due = previous.due if previous is not None else None
        self._schedule(beats, beats.last + beats.timeout, clientId, service)
        return beats

    def pendingChecks(self):
        """
        How many instances' checks wait.
        """
        return sum(1 for beats in self._beats.values() if beats.due is not None)

    def _forget(self, clientId, service):
        self._beats.pop((clientId, service), None)

    def _schedule(self, beats, due, clientId, service):
        """
        Check C{beats} at C{due}, unless a check of them waits for earlier
        (it looks again then): one check per instance waits at a time.
        """
        if beats.due is not None and beats.due <= due:
            return
        beats.due = due
        self._n += 1
        heapq.heappush(self._due, (due, self._n, clientId, service))
        if not self._check.running:
            # Checks run while there are beats to check, only.
            self._check.start(CHECK_EVERY, now=False)

    def check(self):
        """
        Mark unhealthy the instances whose beats stopped for their timeout,
        remove those silent for their delete timeout.
        """
        now = self.clock.seconds()
        due = self._due
        while due and due[0][0] <= now:
            when, _, clientId, service = heapq.heappop(due)
            beats = self._beats.get((clientId, service))
            if beats is None or beats.due != when:
                continue  # forgotten, or replaced by an earlier check
            beats.due = None
            client = self.manager.clients.get(clientId)
            if client is None or not client.native:
                continue
            held = client.instances(service)
            if not held:
                self._forget(clientId, service)
                continue
            silent = now - beats.last
            if silent >= beats.delete:
                self.log.info("heartbeat client {client}: no beat for {s:.1f} s, removed from {service}",
                              client=clientId, s=silent, service=str(service))
                self._forget(clientId, service)
                self.manager.batchRegister(client, service, [])
                self._removeIfEmpty(client)
                continue
            if silent >= beats.timeout:
                instance = next(iter(held.values()))
                if instance.healthy:
                    self.manager.batchRegister(client, service, [_withHealth(instance, False)])
                self._schedule(beats, beats.last + beats.delete, clientId, service)
            else:
                self._schedule(beats, beats.last + beats.timeout, clientId, service)
        if not due and self._check.running:
            self._check.stop()

    # Responsibility

    def takeOver(self):
        """
        The members changed: take over the heartbeat clients this node is
        now responsible for that another member owns, in slices over the
        coming turns (one sweep at a time; a change during a sweep makes
        another follow it).
        """
        if self._sweeping:
            self._sweepAgain = True
            return
        self._sweeping = True
        self.turns.run(self._sweep()).addBoth(self._swept)

    def _sweep(self):
        candidates = sorted(self.held - self.owned)
        taken = 0
        for n in range(0, len(candidates), SWEEP_SLICE):
            if n:
                yield
            taken += self._take(candidates[n:n + SWEEP_SLICE])
        if taken:
            self._tell("this member is responsible for them now", taken)

    def _swept(self, result):
        if isinstance(result, Failure):
            self.log.failure("takeover sweep failed", result)
        self._sweeping = False
        if self._sweepAgain:
            self._sweepAgain = False
            self.takeOver()
        return None

    def orphaned(self, nodeId, clientIds):
        """
        Member C{nodeId} restarted without C{clientIds}: its heartbeat
        clients would go with its previous life, though it is responsible
        for them again, and it cannot get them back (a member is sent only
        the clients others own). Every member holding one takes it over now
        (the highest C{(epoch, owner)} of their takeovers wins everywhere,
        5.2), and the member responsible takes it back when the winner's
        record reaches it.
        """
        taken = self._take([c for c in clientIds if isHeartbeatClient(c)], lambda clientId: True)
        if taken:
            self._tell(f"their owner {nodeId} restarted without them", taken)

    def _take(self, clientIds, judge=None):
        """
        Take over those of C{clientIds} held here, synced, that C{judge}
        (by default: whether this node is responsible) says to.

        @return: how many were taken over.
        """
        judge = judge or self.responsible
        taken = 0
        now = self.clock.seconds()
        for clientId in clientIds:
            client = self.manager.clients.get(clientId)
            if client is None or client.native or not judge(clientId):
                continue
            if len(self.owned) >= self.maxClients:
                self.log.warn("not taking over heartbeat clients: max_heartbeat_clients reached")
                break
            self._taken[clientId] = now
            client = self.manager.takeOver(clientId)
            self._restore(client)
            taken += 1
        return taken

    def _tell(self, why, count=1):
        """
        Count C{count} clients taken over for C{why}, logged at the end of
        the turn in one line per reason (a member's death can move
        thousands).
        """
        self._tookOver[why] = self._tookOver.get(why, 0) + count
        if self._telling is None:
            self._telling = self.clock.callLater(0, self._told)

    def _told(self):
        self._telling = None
        tookOver, self._tookOver = self._tookOver, {}
        for why, count in sorted(tookOver.items()):
            self.log.info("took over {count} heartbeat clients: {why}", count=count, why=why)

    def _restore(self, client):
        """
        C{client}, taken back, had beats here before it was given up: they
        count (a member cut off took it over, and marked it unhealthy for
        want of the beats that came here): an instance whose last beat here
        is within its timeout is healthy.
        """
        given = self._given.pop(client.clientId, None)
        if not given:
            return
        now = self.clock.seconds()
        for service, last in given.items():
            beats = self._beats.get((client.clientId, service))
            held = client.instances(service)
            if beats is None or not held or now - last >= beats.timeout:
                continue
            beats.last = last
            instance = next(iter(held.values()))
            if not instance.healthy:
                self.manager.batchRegister(client, service, [_withHealth(instance, True)])

    def _arrive(self, clientId):
        """
        A member's record of C{clientId} arrived: if this node is
        responsible for it (a member that restarted is sent the clients
        it is responsible for), take it over in the next turn, unless it
        did so lately (L{RETAKE_AFTER}).
        """
        taken = self._taken.get(clientId)
        if taken is not None and self.clock.seconds() - taken < RETAKE_AFTER:
            return
        self._arrived.add(clientId)
        if self._looking is None:
            self._looking = self.clock.callLater(0, self._lookAtArrived)

    def _lookAtArrived(self):
        self._looking = None
        arrived, self._arrived = self._arrived, set()
        taken = self._take(sorted(arrived))
        if taken:
            self._tell("their records came to this member, responsible for them", taken)

    # IClientObserver: follow which heartbeat clients are held and owned.

    def clientChanged(self, change):
        client = change.client
        clientId = client.clientId
        if not isHeartbeatClient(clientId):
            return
        if clientId not in self.held:
            self.held.add(clientId)
            if client.native:
                self.owned.add(clientId)
        if not client.native and change.baseRevision == 0:
            self._arrive(clientId)

    def clientRemoved(self, client):
        clientId = client.clientId
        if clientId in self.held:
            self.held.discard(clientId)
            self.owned.discard(clientId)
            self._taken.pop(clientId, None)
            self._given.pop(clientId, None)
            self._arrived.discard(clientId)
            for service in client.services:
                self._forget(clientId, service)

    def clientMoved(self, client):
        clientId = client.clientId
        if not isHeartbeatClient(clientId):
            return
        self.held.add(clientId)
        if client.native:
            # Taken over: its beats count from now.
            self.owned.add(clientId)
            for service, held in client.services.items():
                for instance in held.values():
                    self._track(clientId, service, instance)
        else:
            # Its new owner counts its beats (kept, should it come back).
            self.owned.discard(clientId)
            given = {}
            for service in client.services:
                beats = self._beats.pop((clientId, service), None)
                if beats is not None:
                    given[service] = beats.last
            if given:
                self._given[clientId] = given
            self._arrive(clientId)


def _withHealth(instance, healthy):
    """
    C{instance} with C{healthy} (instances are immutable).
    """
    return Instance(instance.ip, instance.port, instance.cluster, instance.weight, healthy,
                    instance.enabled, instance.metadata)
