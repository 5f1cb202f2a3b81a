# -*- test-case-name: tests.test_clients -*-
"""
Clients: the server-side record of each client session, native (connected to
this node) or synced (replicated from the node that owns it), and the
L{ClientManager} that owns them and announces every change of their data on
one change stream.
"""

import hashlib
import hmac
import itertools
import os
import secrets

from twisted.internet.defer import succeed
from twisted.logger import Logger
from zope.interface import implementer

from distro.errors import LimitExceeded
from distro.interfaces import IClientManager, ISyncBarrier
from distro.turns import Turns

# The instances one step of a batch applied in slices puts or removes
# (L{ClientManager.batchRegisterInSlices}): a few ms of work.
BATCH_SLICE = 256
# The instances of a leaving client removed a turn: each may be a service's
# last (its view dropped, its subscribers pushed), some 20 us apiece.
REMOVAL_SLICE = 16


class Client:
    """
    One client session's data.

    @ivar clientId: unique across the cluster and across restarts.
    @ivar native: C{True} if the session is connected to this node.
    @ivar owner: the id of the node that owns the client.
    @ivar epoch: raised each time ownership moves to another node.
    @ivar revision: raised on every change of the client's data by its owner.
    @ivar resumeTokenHash: SHA-256 hex of the token that lets the session resume.
    @ivar services: L{distro.model.ServiceKey} -> instance id -> L{Instance}.
    @ivar subscriptions: set of C{(service, clusters)} (native clients only).
    @ivar connected: whether a connection currently carries the session.
    @ivar restoring: C{True} for the new state of a resumed session that is
        still re-sending its registrations (PROTOCOL.md 4.1): it is not in
        the manager's C{clients}, and its changes are announced to nobody
        until L{ClientManager.restored}.
    """

    __slots__ = (
        "clientId",
        "native",
        "owner",
        "epoch",
        "revision",
        "resumeTokenHash",
        "services",
        "subscriptions",
        "instanceCount",
        "connected",
        "expiry",
        "restoring",
    )

    def __init__(self, clientId, native, owner, epoch=1, revision=0, resumeTokenHash=""):
        self.clientId = clientId
        self.native = native
        self.owner = owner
        self.epoch = epoch
        self.revision = revision
        self.resumeTokenHash = resumeTokenHash
        self.services = {}
        self.subscriptions = set()
        self.instanceCount = 0
        self.connected = native
        self.expiry = None
        self.restoring = False

    def instances(self, service):
        """
        This client's instances in C{service}, by instance id.
        """
        return self.services.get(service, {})

    def __repr__(self):
        kind = "native" if self.native else "synced"
        return (
            f"<Client {self.clientId} {kind} owner={self.owner} "
            f"epoch={self.epoch} rev={self.revision} instances={self.instanceCount}>"
        )


class ClientChange:
    """
    One step of a client's revision: what it put and removed.

    @ivar put: C{[(service, Instance)]}.
    @ivar remove: C{[(service, instanceId, Instance)]}, the removed instance
        included so that consumers need not look it up.
    @ivar moved: whether the change came with a change of ownership (a
        C{clientMoved} follows, which says the rest).
    """

    __slots__ = ("client", "baseRevision", "put", "remove", "moved")

    def __init__(self, client, baseRevision, put, remove, moved=False):
        self.client = client
        self.baseRevision = baseRevision
        self.put = put
        self.remove = remove
        self.moved = moved


class _Confirming:
    """
    A client's expiry whose disconnect grace has passed, waiting for the
    node's sync with the other members before the client is removed. Like a
    delayed call, it can be cancelled (the session resumed meanwhile).
    """

    __slots__ = ("cancelled",)

    def __init__(self):
        self.cancelled = False

    def active(self):
        return not self.cancelled

    def cancel(self):
        self.cancelled = True


def hashResumeToken(token):
    """
    The form of a resume token that is stored and replicated.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ClientIds:
    """
    Client ids unique across the cluster and across restarts: the node id, a
    random boot id drawn at every start, and a counter.

    @ivar bootId: this start's boot id.
    """

    def __init__(self, nodeId, bootId=None):
        self.bootId = bootId or os.urandom(6).hex()
        self.prefix = f"{nodeId}#{self.bootId}#"
        self._counter = itertools.count(1)

    def next(self):
        """
        A new client id.
        """
        return f"{self.prefix}{next(self._counter)}"


@implementer(ISyncBarrier)
class Alone:
    """
    The sync barrier of a node without other members: nobody else can have
    taken a client over, so a node alone is always in sync.
    """

    def whenSynced(self):
        return succeed(frozenset())


@implementer(IClientManager)
class ClientManager:
    """
    Owns every L{Client} of a node and announces each change of their data, in
    order, to its observers (the change stream).

    A native client whose disconnect grace passed is removed only once the
    node is in sync with the other members (L{ISyncBarrier}): if the client
    resumed at another member meanwhile, that member's record has arrived
    by then and the client is no longer this node's to remove.

    @param clock: an C{IReactorTime}.
    @param limits: an object with C{max_instances_per_client},
        C{max_subscriptions_per_client} and C{disconnect_grace_ms}.
    @ivar barrier: the L{ISyncBarrier} consulted before an expiry (the
        cluster sets its own).
    """

    log = Logger()

    def __init__(self, nodeId, clock, limits, ids=None, turns=None):
        self.nodeId = nodeId
        self.clock = clock
        self.turns = Turns(clock) if turns is None else turns
        self.limits = limits
        self.ids = ids or ClientIds(nodeId)
        self.barrier = Alone()
        self.clients = {}
        # How many of them are native (the rest are synced), kept as they
        # change: counting them would walk every client.
        self.nativeCount = 0
        self._observers = []

    def addObserver(self, observer):
        self._observers.append(observer)

    def _writeTs(self):
        return int(self.clock.seconds() * 1000)

    def _announce(self, client, baseRevision, put, remove, moved=False):
        change = ClientChange(client, baseRevision, put, remove, moved)
        for observer in self._observers:
            observer.clientChanged(change)

    def _moved(self, client):
        for observer in self._observers:
            observer.clientMoved(client)

    # Sessions

    def clientConnected(self):
        token = secrets.token_urlsafe(18)
        client = Client(self.ids.next(), True, self.nodeId, resumeTokenHash=hashResumeToken(token))
        self.clients[client.clientId] = client
        self.nativeCount += 1
        return client, token

    def resume(self, clientId, token, epoch=0):
        """
        A new session presents C{clientId}, its resume token, and the last
        epoch it was given. If this node holds that client (native, or
        synced from another node) and the token matches, return the
        session's new state of the client, L{Client.restoring}: it starts
        empty, takes the session's writes while it re-sends its
        registrations, and replaces the held client at L{restored}. The
        held client is kept as it is meanwhile (a native one no longer
        expires). Otherwise C{None}.

        @param epoch: the epoch the client was last given; the takeover
            will be above it and above the held one.
        """
        held = self.clients.get(clientId)
        if held is None:
            return None
        if not hmac.compare_digest(held.resumeTokenHash, hashResumeToken(token)):
            return None
        if held.native:
            self._cancelExpiry(held)
            held.connected = True
        state = Client(
            clientId,
            True,
            self.nodeId,
            epoch=max(held.epoch, epoch) + 1,
            resumeTokenHash=held.resumeTokenHash,
        )
        state.restoring = True
        return state

    def restored(self, state):
        """
        The session of C{state} (from L{resume}) has re-sent everything:
        this node owns the client from now on, at an epoch above any it
        held, with exactly the instances of C{state}. What differs from
        the held client is announced, then the move (C{clientMoved}).

        @return: the L{Client} the session now speaks for.
        """
        clientId = state.clientId
        held = self.clients.get(clientId)
        state.restoring = False
        if held is None:
            # Removed meanwhile (its old owner's grace ran out): the session
            # brings it back, at an epoch above the removal's.
            self.clients[clientId] = state
            self.nativeCount += 1
            state.revision = 1
            put = [(s, i) for s, instances in state.services.items() for i in instances.values()]
            self._announce(state, 0, put, [])
            return state
        self._cancelExpiry(held)
        self.nativeCount += not held.native
        held.native = held.connected = True
        held.owner = self.nodeId
        held.epoch = max(state.epoch, held.epoch + 1)
        held.subscriptions = state.subscriptions
        baseRevision = held.revision
        held.revision += 1
        put, remove = self._replace(held, state.services)
        self.log.debug(
            "client {client} taken over at epoch {epoch}", client=clientId, epoch=held.epoch
        )
        self._announce(held, baseRevision, put, remove, moved=True)
        self._moved(held)
        return held

    def heartbeatClient(self, clientId, epoch):
        """
        A new native client with no session (a heartbeat client,
        L{distro.heartbeats}), owned here at C{epoch}: it lives as long as
        its owner keeps it, and has no resume token.
        """
        client = Client(clientId, True, self.nodeId, epoch=epoch)
        self.clients[clientId] = client
        self.nativeCount += 1
        return client

    def takeOver(self, clientId):
        """
        This node takes over the synced client C{clientId}, with its
        instances unchanged, at an epoch above its owner's (a heartbeat
        client whose responsible member this node has become): announced
        as a move, as a resumed session's takeover is.

        @return: the L{Client}, now native.
        """
        held = self.clients[clientId]
        if held.native:
            return held
        self.nativeCount += 1
        held.native = True
        held.connected = False
        held.owner = self.nodeId
        held.epoch += 1
        self.log.debug("client {client} taken over at epoch {epoch}", client=clientId, epoch=held.epoch)
        self._moved(held)
        return held

    def _cancelExpiry(self, client):
        if client.expiry is not None and client.expiry.active():
            client.expiry.cancel()
        client.expiry = None

    def clientDisconnected(self, clientId, orderly):
        client = self.clients.get(clientId)
        if client is None or not client.native:
            return
        client.connected = False
        client.subscriptions.clear()
        if orderly and client.instanceCount > REMOVAL_SLICE:
            # Gone without a grace, emptied as an expired one is (a client
            # of 10,000 held the reactor 36 ms at once), unless it resumes
            # meanwhile.
            self.removeClients([clientId], lambda held: held is client and not held.connected)
            return
        if orderly or not client.instanceCount:
            self.removeClient(clientId)
            return
        grace = self.limits.disconnect_grace_ms / 1000.0
        client.expiry = self.clock.callLater(grace, self._expire, clientId)

    def restoreAbandoned(self, state):
        """
        The session of C{state} (from L{resume}) ended before it re-sent
        everything: nothing of it is kept. A held native client starts its
        disconnect grace again; a synced one stays its owner's.
        """
        held = self.clients.get(state.clientId)
        if held is not None and held.native and held.connected:
            self.clientDisconnected(state.clientId, orderly=False)

    def _expire(self, clientId):
        client = self.clients.get(clientId)
        if client is None:
            return
        # Resumed at another member meanwhile? Its record arrives before the
        # sync completes; a resume here cancels the expiry.
        pending = client.expiry = _Confirming()
        self.barrier.whenSynced().addCallback(self._expired, clientId, pending)

    def _expired(self, restoring, clientId, pending):
        client = self.clients.get(clientId)
        if client is None or client.expiry is not pending or pending.cancelled:
            return
        if clientId in restoring:
            # Another member is resuming it: its takeover, or the end of
            # that session, comes next; wait another grace.
            grace = self.limits.disconnect_grace_ms / 1000.0
            client.expiry = self.clock.callLater(grace, self._expire, clientId)
            return
        # It stays pending until its turn: a resume meanwhile cancels it.
        self.removeClients(
            [clientId], lambda held: held.expiry is pending and not pending.cancelled
        ).addCallback(self._expiredRemoved)

    def _expiredRemoved(self, removed):
        for clientId in removed:
            self.log.info("client {client} expired after its disconnect grace", client=clientId)

    def removeClients(self, clientIds, due):
        """
        Remove the clients C{clientIds} in the node's turns, as its upkeep
        (L{distro.interfaces.ITurns.background}), one at a time: many large clients
        going together (their graces ended at once, their owner presumed
        dead) never hold the reactor for all of them. A native client of
        more than L{REMOVAL_SLICE} instances is emptied first, that many a
        step, each a revision of its own (replicated as a delta), so that
        neither does one of thousands (10,000 instances in as many services
        took 36 ms at once), and a request that comes meanwhile waits for
        one step at most; a synced one goes at once (its owner sliced its own
        removal). A client goes, and each slice, only if C{due(client)}
        still holds when its turn comes (it may have resumed meanwhile).

        @return: a L{Deferred} firing with the ids removed.
        """
        return self.turns.background(self._removing(list(clientIds), due))

    def _removing(self, clientIds, due):
        removed = []
        for clientId in clientIds:
            client = self.clients.get(clientId)
            if client is not None and due(client):
                yield from self._emptying(client, due)
                if self.clients.get(clientId) is client and due(client):
                    self.removeClient(clientId)
                    removed.append(clientId)
            yield
        return removed

    def _emptying(self, client, due, size=REMOVAL_SLICE):
        """
        Remove the instances of C{client}, if native, C{size} a step, a step
        per C{next()}, while it is held and C{due} and more than C{size}
        are left (those go with it).
        """
        clientId = client.clientId
        while client.native and not client.restoring and client.instanceCount > size:
            held = ((service, iid) for service, instances in client.services.items() for iid in instances)
            self._step(client, client.revision + 1, [], list(itertools.islice(held, size)))
            yield
            if self.clients.get(clientId) is not client or not due(client):
                return

    def removeClient(self, clientId):
        client = self.clients.pop(clientId, None)
        if client is None:
            return None
        self.nativeCount -= client.native
        self._cancelExpiry(client)
        for observer in self._observers:
            observer.clientRemoved(client)
        return client

    def stop(self):
        """
        Cancel pending expiries (the node is shutting down).
        """
        for client in self.clients.values():
            self._cancelExpiry(client)

    # Data replicated from the owner (synced clients)

    def syncState(self, clientId, owner, epoch, revision, resumeTokenHash, services):
        """
        Make the client C{clientId} exactly what its owner says: C{services}
        maps each L{ServiceKey} to C{{instanceId: Instance}}. A native client
        held here becomes synced (its owner moved it): announced with
        C{clientMoved}, its instances kept. Only what differs is announced.
        Whether the record may be applied at all is the caller's rule.

        @return: the L{Client}.
        """
        client = self.clients.get(clientId)
        if client is None:
            client = self.clients[clientId] = Client(clientId, False, owner)
        moved = client.native or client.owner != owner or client.epoch != epoch
        if client.native:
            self._cancelExpiry(client)
            self.nativeCount -= 1
            client.native = client.connected = False
            client.subscriptions.clear()
        client.owner, client.epoch = owner, epoch
        client.resumeTokenHash = resumeTokenHash
        put, remove = self._replace(client, services)
        baseRevision, client.revision = client.revision, revision
        if moved:
            self._moved(client)
        if put or remove:
            self._announce(client, baseRevision, put, remove)
        return client

    def _replace(self, client, services):
        """
        Make C{client}'s instances exactly C{services}; return what to
        announce: C{(put, remove)}.
        """
        put = []
        remove = []
        for service, held in client.services.items():
            wanted = services.get(service, {})
            for iid, old in held.items():
                if iid not in wanted:
                    remove.append((service, iid, old))
        for service, wanted in services.items():
            held = client.services.get(service, {})
            for iid, instance in wanted.items():
                old = held.get(iid)
                if old is None or old.writeTs != instance.writeTs or not old.sameContent(instance):
                    put.append((service, instance))
        client.services = {service: dict(wanted) for service, wanted in services.items() if wanted}
        client.instanceCount = sum(len(wanted) for wanted in client.services.values())
        return put, remove

    def syncDelta(self, client, revision, put, removeIds):
        """
        Apply one change of a synced client, as its owner sent it: C{put} is
        C{[(service, Instance)]}, C{removeIds} C{[(service, instanceId)]}.
        """
        self._step(client, revision, put, removeIds)

    # Writes by native clients

    def _checkRoom(self, client, adding):
        limit = self.limits.max_instances_per_client
        if client.instanceCount + adding > limit:
            raise LimitExceeded(
                "max_instances_per_client",
                f"a client may publish at most {limit} instances",
            )

    def _stamp(self, instance):
        instance.writeTs = self._writeTs()
        return instance

    def register(self, client, service, instance):
        held = client.services.get(service)
        if held is None or instance.instanceId not in held:
            self._checkRoom(client, 1)
        self._apply(client, service, [self._stamp(instance)], ())

    def deregister(self, client, service, instanceId):
        held = client.services.get(service)
        if not held or instanceId not in held:
            return False
        self._apply(client, service, (), [instanceId])
        return True

    def batchRegister(self, client, service, instances):
        held = client.services.get(service, {})
        wanted = {}
        for instance in instances:
            wanted[instance.instanceId] = self._stamp(instance)
        self._checkRoom(client, len(wanted) - len(held))
        removed = [iid for iid in held if iid not in wanted]
        self._apply(client, service, list(wanted.values()), removed)

    def batchRegisterInSlices(self, client, service, instances, size=BATCH_SLICE):
        """
        What L{batchRegister} does, in steps of at most C{size} instances,
        each a revision of its own: a generator doing one step per
        C{next()}, so that a batch of thousands never holds the reactor
        (the caller runs the steps in turns, L{distro.interfaces.ITurns}).
        The instances not wanted go first, then the wanted are put: between
        steps some old ones are gone and some new ones there, and an
        instance in both is never missing; the client never holds more
        than the larger of before and after. A batch of at most C{size}
        is one step. It stops if the client goes meanwhile.

        @raise LimitExceeded: before any step, as L{batchRegister}.
        """
        held = client.services.get(service, {})
        wanted = {}
        for instance in instances:
            wanted[instance.instanceId] = instance
        self._checkRoom(client, len(wanted) - len(held))
        removed = [iid for iid in held if iid not in wanted]
        put = list(wanted.values())
        if len(removed) + len(put) <= size:
            self._apply(client, service, [self._stamp(i) for i in put], removed)
            return
        steps = [((), removed[n:n + size]) for n in range(0, len(removed), size)]
        steps += [(put[n:n + size], ()) for n in range(0, len(put), size)]
        for n, (putting, removing) in enumerate(steps):
            if n:
                yield
                if self.clients.get(client.clientId) is not client:
                    return
            self._apply(client, service, [self._stamp(i) for i in putting], removing)

    def _apply(self, client, service, put, removeIds):
        """
        Apply one revision step of a native client in one service.
        """
        self._step(
            client,
            client.revision + 1,
            [(service, i) for i in put],
            [(service, iid) for iid in removeIds],
        )

    def _step(self, client, revision, put, removeIds):
        """
        Remove C{removeIds}, then put C{put}, move C{client} to C{revision}
        and announce what changed. Services left empty are dropped.
        """
        services = client.services
        remove = []
        for service, iid in removeIds:
            held = services.get(service)
            old = held.pop(iid, None) if held else None
            if old is not None:
                remove.append((service, iid, old))
                if not held:
                    del services[service]
        for service, instance in put:
            held = services.get(service)
            if held is None:
                held = services[service] = {}
            if instance.instanceId not in held:
                client.instanceCount += 1
            held[instance.instanceId] = instance
        client.instanceCount -= len(remove)
        baseRevision, client.revision = client.revision, revision
        if not client.restoring:
            self._announce(client, baseRevision, put, remove)

    # Subscriptions (native clients only; never replicated)

    def subscribe(self, client, service, clusters):
        key = (service, clusters)
        if key in client.subscriptions:
            return False
        limit = self.limits.max_subscriptions_per_client
        if len(client.subscriptions) >= limit:
            raise LimitExceeded(
                "max_subscriptions_per_client",
                f"a client may hold at most {limit} subscriptions",
            )
        client.subscriptions.add(key)
        return True

    def unsubscribe(self, client, service, clusters):
        key = (service, clusters)
        if key not in client.subscriptions:
            return False
        client.subscriptions.discard(key)
        return True
