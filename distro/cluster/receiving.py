# -*- test-case-name: tests.test_cluster -*-
"""
Receiving replication (PROTOCOL.md 5.2): the L{Receiver} applies what
inbound links deliver to this node's synced clients.

Records carry their owner and epoch, a lower C{(epoch, owner)} than the
one held is ignored, a native client is only given up to a higher one, deltas
apply only on top of the revision they were made from (else C{resend}), and
a client that its owner's snapshot or digest no longer names, or whose owner
is presumed dead, is dropped once a sync round (L{distro.cluster.sync}) shows
that no other member took it over.

What this node sends is L{distro.cluster.sending}.
"""

from twisted.logger import Logger
from zope.interface import implementer

from distro.cluster import records
from distro.cluster.forwarding import FORWARD, forwardedMessage, parseForward
from distro.cluster.digest import BUCKETS, DigestIndex, bucketOf, isPackedHashes
from distro.cluster.senders import Orphans, OwnerIndex, Pieces, Rejected, Snapshots, Suspects
from distro.cluster.stats import ReplicationStats
from distro.interfaces import IClientObserver, IReplicaSink
from distro.wire import BAD_REQUEST, INTERNAL, UNKNOWN_OP, RequestError, errorMessage


def _outranks(epoch, owner, client):
    """
    Whether a record at C{(epoch, owner)} is newer than what C{client} holds.
    """
    return (epoch, owner) > (client.epoch, client.owner)


@implementer(IReplicaSink, IClientObserver)
class Receiver:
    """
    Applies what other members replicate to this node's synced clients;
    what it keeps about each sender is in L{distro.cluster.senders}.

    @param maxMetadataBytes: C{max_metadata_bytes}, what a record's
        instances are checked against.
    @param disconnectGraceMs: C{disconnect_grace_ms}, how long the clients
        of a restarted sender's previous life are kept (5.4).
    @ivar loaded: called with a node id when that member's snapshot ended.
    @ivar barrier: the node's L{distro.interfaces.ISyncBarrier}.
    @ivar syncAsked: called with C{(nodeId, n)} when a member sends
        C{sync}.
    @ivar syncAnswered: called with C{(nodeId, n, restoring)} when a
        member sends C{synced}.
    @ivar stats: the cluster's L{ReplicationStats} (snapshots loaded,
        digests that found differences).
    @ivar applyForwarded: applies a heartbeat client's write a member
        forwarded (L{distro.interfaces.IClusterHost.applyForwarded}).
    @ivar orphaned: called with C{(nodeId, clientIds)} when a restarted
        member's snapshot ends without the clients of its previous life.
    @ivar overridesReceived: called with C{(link, message)} for the
        operators' overrides a member sends (5.7); returns the answer.
    """

    log = Logger()

    def __init__(
        self,
        manager,
        clock,
        barrier,
        *,
        maxMetadataBytes,
        disconnectGraceMs,
        loaded=lambda nodeId: None,
        syncAsked=lambda nodeId, n: None,
        syncAnswered=lambda nodeId, n, restoring: None,
        stats=None,
        applyForwarded=None,
        orphaned=lambda nodeId, clientIds: None,
        overridesReceived=lambda link, message: None,
    ):
        self.manager = manager
        self.stats = ReplicationStats() if stats is None else stats
        self.maxMetadataBytes = maxMetadataBytes
        self.barrier = barrier
        self.loaded = loaded
        self.syncAsked = syncAsked
        self.syncAnswered = syncAnswered
        self.applyForwarded = applyForwarded
        self.orphaned = orphaned
        self.overridesReceived = overridesReceived
        self._owners = OwnerIndex()
        self._snapshots = Snapshots()
        self._suspects = Suspects(barrier, self._dropSuspects)
        self._orphans = Orphans(clock, disconnectGraceMs / 1000.0, self._orphansDue)
        self._rejected = Rejected()
        self._pieces = Pieces(self._dropPieces)

    @property
    def bySender(self):
        """
        Node id -> ids of the synced clients it owns.
        """
        return self._owners.bySender

    # IClientObserver: keep the index true when clients go or move.

    def clientChanged(self, change):
        pass

    def clientRemoved(self, client):
        self._owners.unindex(client.clientId)

    def clientMoved(self, client):
        if client.native:
            self._owners.unindex(client.clientId)
        else:
            self._owners.index(client)

    # Clients their owner may have given up

    def _dropSuspects(self, sender, clientIds, restoring, why):
        """
        A sync round is over and C{sender} still does not name C{clientIds}:
        those still its own go.
        """
        # A member resuming it will send it (if the resume fails, the
        # sender's next digest makes it a suspect again). Many large
        # clients go over several turns, each still its sender's when it
        # goes.
        self.manager.removeClients(
            clientIds,
            lambda client: self._owners.senderOf(client.clientId) == sender
            and client.clientId not in restoring,
        ).addCallback(self._dropped, sender, why)

    def _dropped(self, dropped, sender, why):
        if dropped:
            self.log.info(
                "dropped {count} clients of {peer}: {why} ({clients})",
                count=len(dropped),
                peer=sender,
                why=why,
                clients=" ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""),
            )

    def dropClientsOf(self, nodeId):
        """
        Member C{nodeId} is presumed dead (or left): its clients go, but
        for those another member took over (5.4).
        """
        self._rejected.forgetSender(nodeId)
        self._suspects.add(nodeId, list(self._owners.clientsOf(nodeId)), "presumed dead")

    # IReplicaSink

    def linkUp(self, link):
        pass

    def linkDown(self, link):
        self._snapshots.abandon(link.nodeId)
        self._pieces.forget(link.nodeId)

    def received(self, link, message):
        op = message.get("op")
        if op == "forward":
            # Not part of the replication stream: it interrupts nothing.
            return self._forward(link, message)
        if op == "overrides" or op == "override_digest":
            # Nor are the operators' overrides (5.7).
            return self.overridesReceived(link, message)
        if op != "client_state" and op != "ping":
            self._pieces.interrupt(link.nodeId, op)
        handler = self._handlers.get(op) if type(op) is str else None
        if handler is None:
            return errorMessage(None, UNKNOWN_OP, f"unknown peer op {op!r}"[:200])
        try:
            return handler(self, link.nodeId, message)
        except RequestError as e:
            # Bad data: report it; asking again would bring the same bytes.
            self.log.warn(
                "rejected {op} from {peer}: {error}", op=op, peer=link.nodeId, error=e.message
            )
            self._reject(link.nodeId, message)
            return errorMessage(None, e.code, e.message)
        except Exception:
            # A bug of ours. Dropping the link would only bring the same
            # record back with the next snapshot, forever: keep the link,
            # and do not ask for this revision again.
            self.log.failure("failed to apply {op} from {peer}", op=op, peer=link.nodeId)
            self._reject(link.nodeId, message)
            return errorMessage(None, INTERNAL, f"{op}: internal error applying it")

    def _forward(self, link, message):
        """
        A member forwarded a heartbeat client's write (5.6): apply it and
        answer C{forwarded}, with its result or its refusal.
        """
        if link.dialect is None or FORWARD not in link.dialect.capabilities:
            return errorMessage(None, BAD_REQUEST, "op: forward needs the forward capability")
        n = message.get("id")
        try:
            n, write = parseForward(message, self.maxMetadataBytes)
        except RequestError as e:
            if type(n) is int and n >= 0:
                return forwardedMessage(n, error=e)  # its sender fails it at once
            return errorMessage(None, e.code, e.message)
        try:
            result = self.applyForwarded(write)
        except RequestError as e:
            return forwardedMessage(n, error=e)
        except Exception:
            self.log.failure("failed to apply a write forwarded by {peer}", peer=link.nodeId)
            return forwardedMessage(n, error=RequestError(INTERNAL, "internal error applying it"))
        return forwardedMessage(n, result)

    def _dropPieces(self, sender, clientId, cause):
        self.log.warn(
            "dropped the unfinished client_state of {client} from {peer}: {cause} came first",
            client=clientId,
            peer=sender,
            cause=cause,
        )

    def _reject(self, sender, message):
        clientId = message.get("client_id")
        if type(clientId) is str and type(message.get("revision")) is int:
            self._rejected.remember(sender, clientId, message["revision"])

    def digestOf(self, nodeId):
        """
        The L{DigestIndex} of the synced clients held from C{nodeId} (what
        its C{digest} hashes are compared with), or L{None} if none.
        """
        return self._owners.digestOf(nodeId)

    def rejectedCount(self):
        """
        How many records are remembered as rejected (at most one per client
        its sender still owns).
        """
        return self._rejected.count()

    def _checkOwner(self, sender, header):
        if header.owner != sender:
            raise RequestError(BAD_REQUEST, "owner: a node replicates only the clients it owns")

    def _named(self, sender, clientId):
        self._snapshots.name(sender, clientId)
        self._suspects.clear(sender, clientId)
        self._orphans.forget(sender, clientId)

    def _snapshotBegin(self, sender, message):
        boot = message.get("boot")
        if type(boot) is not str:
            raise RequestError(BAD_REQUEST, "boot: must be a string")
        self._snapshots.begin(sender, boot)

    def _clientState(self, sender, message):
        header, revision, tokenHash, services = records.parseClientState(
            message, self.maxMetadataBytes
        )
        self._checkOwner(sender, header)
        more = message.get("more", False)
        if type(more) is not bool:
            raise RequestError(BAD_REQUEST, "more: must be a boolean")
        part = message.get("part", 0)
        if type(part) is not int or part < 0:
            raise RequestError(BAD_REQUEST, "part: must be an integer >= 0")
        key = (header.clientId, header.owner, header.epoch, revision)
        services = self._pieces.add(sender, key, part, services, more)
        if services is Pieces.MISSING:
            if self._rejected.isRejected(sender, header.clientId, revision):
                return None  # the rest of a client rejected at this revision
            # The start of this client was lost (discarded): ask again.
            return {"op": "resend", "client_ids": [header.clientId]}
        if services is Pieces.INCOMPLETE:
            return None
        self._named(sender, header.clientId)
        held = self.manager.clients.get(header.clientId)
        if held is not None:
            if held.native:
                if not _outranks(header.epoch, header.owner, held):
                    return None  # peer data never overwrites a native client
                self.log.info(
                    "client {client} moved to {owner} at epoch {epoch}",
                    client=header.clientId,
                    owner=header.owner,
                    epoch=header.epoch,
                )
            elif _outranks(held.epoch, held.owner, _Record(header.epoch, header.owner)):
                return None  # an older owner's record
        self._rejected.forget(sender, header.clientId)
        client = self.manager.syncState(
            header.clientId, header.owner, header.epoch, revision, tokenHash, services
        )
        self._owners.index(client)
        return None

    def _snapshotEnd(self, sender, message):
        ended = self._snapshots.end(sender)
        if ended is None:
            return None
        named, restarted = ended
        self.stats.snapshotsReceived += 1
        # Not named: removed by the sender, or moved on to another member,
        # whose record may still be on its way (a snapshot is no stricter
        # than a digest).
        unnamed = [c for c in self._owners.clientsOf(sender) if c not in named]
        if restarted:
            # The clients of its previous life: their sessions ended with
            # it, so they are kept for C{disconnect_grace_ms}, the time any
            # lost session has to resume; then they go, but for those taken
            # over or being resumed (5.4).
            self._orphans.schedule(sender, unnamed)
            self.orphaned(sender, unnamed)
        else:
            self._suspects.add(sender, unnamed, "not in its snapshot")
        self.loaded(sender)
        return None

    def _orphansDue(self, sender, clientIds):
        self._suspects.add(sender, clientIds, "orphaned by its restart")

    def stop(self):
        """
        Cancel the orphan timers (the node is shutting down).
        """
        self._orphans.stop()

    def _delta(self, sender, message):
        header, baseRevision, revision, put, remove = records.parseDelta(
            message, self.maxMetadataBytes
        )
        self._checkOwner(sender, header)
        self._named(sender, header.clientId)
        held = self.manager.clients.get(header.clientId)
        if held is not None and _outranks(held.epoch, held.owner, _Record(header.epoch, header.owner)):
            return None  # an older owner's change
        if held is not None and held.native:
            return None  # only a whole client_state at a newer epoch moves it
        if (
            held is None
            or (held.epoch, held.owner) != (header.epoch, header.owner)
            or held.revision != baseRevision
        ):
            return {"op": "resend", "client_ids": [header.clientId]}
        self.manager.syncDelta(held, revision, put, remove)
        self._owners.index(held)
        return None

    def _clientRemove(self, sender, message):
        header = records.Header(message)
        self._checkOwner(sender, header)
        self._rejected.forget(sender, header.clientId)
        held = self.manager.clients.get(header.clientId)
        if held is None:
            return None
        if held.native:
            if _outranks(header.epoch, header.owner, held):
                self.manager.removeClient(header.clientId)
            return None
        if not _outranks(held.epoch, held.owner, _Record(header.epoch, header.owner)):
            self.manager.removeClient(header.clientId)
        return None

    def _digest(self, sender, message):
        hashes = message.get("hashes")
        if hashes is not None:
            if not isPackedHashes(hashes):
                raise RequestError(BAD_REQUEST, f"hashes: must be {BUCKETS} 8-byte hashes")
            index = self._owners.digestOf(sender) or DigestIndex()
            differing = index.differing(hashes)
            if differing:
                self.stats.digestMismatches += 1
                return {"op": "digest_ask", "buckets": differing}
            return None
        digest = records.parseDigest(message)
        buckets = records.parseBuckets(message.get("buckets"), BUCKETS)
        covers = (lambda c: True) if buckets is None else (lambda c: bucketOf(c) in buckets)
        rejected = self._rejected
        rejected.forgetUnnamed(sender, digest, covers)
        clients = self.manager.clients
        wanted = []
        for clientId, revision in digest.items():
            held = clients.get(clientId)
            if held is None:
                if not rejected.isRejected(sender, clientId, revision):
                    wanted.append(clientId)
            elif not held.native and held.owner == sender and held.revision != revision:
                if not rejected.isRejected(sender, clientId, revision):
                    wanted.append(clientId)
        if buckets is None:
            held = self._owners.clientsOf(sender)
        else:
            index = self._owners.digestOf(sender)
            held = index.inBuckets(buckets) if index is not None else ()
        missing = self._orphans.excluding(sender, [c for c in held if c not in digest])
        self._suspects.add(sender, missing, "not in its digest")
        if wanted:
            self.stats.digestRepairs += 1
            self.stats.digestRepairedClients += len(wanted)
            return {"op": "resend", "client_ids": wanted}
        return None

    def _ping(self, sender, message):
        return {"op": "pong"}

    def _sync(self, sender, message):
        n = message.get("n")
        if type(n) is not int or n < 1:
            raise RequestError(BAD_REQUEST, "n: must be an integer >= 1")
        self.syncAsked(sender, n)
        return None

    def _synced(self, sender, message):
        n = message.get("n")
        if type(n) is not int or n < 1:
            raise RequestError(BAD_REQUEST, "n: must be an integer >= 1")
        restoring = message.get("restoring", [])
        if type(restoring) is not list or not all(type(c) is str for c in restoring):
            raise RequestError(BAD_REQUEST, "restoring: must be a list of client ids")
        self.syncAnswered(sender, n, restoring)
        return None

    _handlers = {
        "snapshot_begin": _snapshotBegin,
        "client_state": _clientState,
        "snapshot_end": _snapshotEnd,
        "delta": _delta,
        "client_remove": _clientRemove,
        "digest": _digest,
        "ping": _ping,
        "sync": _sync,
        "synced": _synced,
    }


class _Record:
    """
    The C{(epoch, owner)} of a record, shaped like a client for
    L{_outranks}.
    """

    __slots__ = ("epoch", "owner")

    def __init__(self, epoch, owner):
        self.epoch = epoch
        self.owner = owner
