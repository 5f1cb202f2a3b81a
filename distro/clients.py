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

from twisted.logger import Logger
from zope.interface import implementer

from distro.interfaces import IClientManager
from distro.wire import LimitExceeded


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
    """

    __slots__ = ("client", "baseRevision", "put", "remove")

    def __init__(self, client, baseRevision, put, remove):
        self.client = client
        self.baseRevision = baseRevision
        self.put = put
        self.remove = remove


def hashResumeToken(token):
    """
    The form of a resume token that is stored and replicated.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ClientIds:
    """
    Client ids unique across the cluster and across restarts: the node id, a
    random boot id drawn at every start, and a counter.
    """

    def __init__(self, nodeId, bootId=None):
        self.prefix = f"{nodeId}#{bootId or os.urandom(6).hex()}#"
        self._counter = itertools.count(1)

    def next(self):
        """
        A new client id.
        """
        return f"{self.prefix}{next(self._counter)}"


@implementer(IClientManager)
class ClientManager:
    """
    Owns every L{Client} of a node and announces each change of their data, in
    order, to its observers (the change stream).

    @param clock: an C{IReactorTime}.
    @param limits: an object with C{max_instances_per_client},
        C{max_subscriptions_per_client} and C{disconnect_grace_ms}.
    """

    log = Logger()

    def __init__(self, nodeId, clock, limits, ids=None):
        self.nodeId = nodeId
        self.clock = clock
        self.limits = limits
        self.ids = ids or ClientIds(nodeId)
        self.clients = {}
        self._observers = []

    def addObserver(self, observer):
        self._observers.append(observer)

    def _writeTs(self):
        return int(self.clock.seconds() * 1000)

    def _announce(self, client, baseRevision, put, remove):
        change = ClientChange(client, baseRevision, put, remove)
        for observer in self._observers:
            observer.clientChanged(change)

    # Sessions

    def clientConnected(self):
        token = secrets.token_urlsafe(18)
        client = Client(self.ids.next(), True, self.nodeId, resumeTokenHash=hashResumeToken(token))
        self.clients[client.clientId] = client
        return client, token

    def resume(self, clientId, token):
        """
        A new session presents C{clientId} and its resume token. If this node
        holds that client (native, or synced from another node) and the token
        matches, the client is the new session's and is returned: its expiry
        is cancelled, its old subscriptions dropped, and a synced client is
        taken over (this node becomes its owner at the next epoch, announced
        with C{clientMoved}). Otherwise C{None}.
        """
        client = self.clients.get(clientId)
        if client is None:
            return None
        if not hmac.compare_digest(client.resumeTokenHash, hashResumeToken(token)):
            return None
        self._cancelExpiry(client)
        client.connected = True
        client.subscriptions.clear()
        if not client.native:
            client.native = True
            client.owner = self.nodeId
            client.epoch += 1
            self.log.info(
                "client {client} taken over at epoch {epoch}", client=clientId, epoch=client.epoch
            )
            for observer in self._observers:
                observer.clientMoved(client)
        return client

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
        if orderly or not client.instanceCount:
            self.removeClient(clientId)
            return
        grace = self.limits.disconnect_grace_ms / 1000.0
        client.expiry = self.clock.callLater(grace, self._expire, clientId)

    def _expire(self, clientId):
        client = self.clients.get(clientId)
        if client is not None:
            client.expiry = None
            self.log.info("client {client} expired after its disconnect grace", client=clientId)
            self.removeClient(clientId)

    def removeClient(self, clientId):
        client = self.clients.pop(clientId, None)
        if client is None:
            return None
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
            client.native = client.connected = False
            client.subscriptions.clear()
        client.owner, client.epoch = owner, epoch
        client.resumeTokenHash = resumeTokenHash
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
        baseRevision, client.revision = client.revision, revision
        if moved:
            for observer in self._observers:
                observer.clientMoved(client)
        if put or remove:
            self._announce(client, baseRevision, put, remove)
        return client

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
