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
from distro.cluster.digest import BUCKETS, DigestIndex, bucketOf, isPackedHashes
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
    Applies what other members replicate to this node's synced clients.

    @ivar bySender: node id -> ids of the synced clients it owns.
    @ivar loaded: called with a node id when that member's snapshot ended.
    @ivar barrier: the node's L{distro.interfaces.ISyncBarrier}.
    @ivar syncAsked: called with C{(nodeId, n)} when a member sends
        C{sync}.
    @ivar syncAnswered: called with C{(nodeId, n, restoring)} when a
        member sends C{synced}.
    """

    log = Logger()

    def __init__(
        self,
        manager,
        clock,
        config,
        barrier,
        loaded=lambda nodeId: None,
        syncAsked=lambda nodeId, n: None,
        syncAnswered=lambda nodeId, n, restoring: None,
    ):
        self.manager = manager
        self.clock = clock
        self.config = config
        self.barrier = barrier
        self.loaded = loaded
        self.syncAsked = syncAsked
        self.syncAnswered = syncAnswered
        self.bySender = {}
        self._senderOf = {}
        self._digests = {}
        self._snapshots = {}
        self._suspects = {}
        self._rejected = {}
        self._boots = {}
        self._restarted = set()
        self._orphans = {}
        self._orphanTimers = []
        self._pieces = {}

    # Index of synced clients by owner

    def _index(self, client):
        clientId, owner = client.clientId, client.owner
        previous = self._senderOf.get(clientId)
        if previous != owner:
            if previous is not None:
                self._unindex(clientId)
            self._senderOf[clientId] = owner
            self.bySender.setdefault(owner, set()).add(clientId)
            self._digests.setdefault(owner, DigestIndex())
        self._digests[owner].put(clientId, client.revision)

    def _unindex(self, clientId):
        owner = self._senderOf.pop(clientId, None)
        if owner is not None:
            held = self.bySender.get(owner)
            held.discard(clientId)
            self._digests[owner].discard(clientId)
            if not held:
                del self.bySender[owner]
                del self._digests[owner]

    # IClientObserver: keep the index true when clients go or move.

    def clientChanged(self, change):
        pass

    def clientRemoved(self, client):
        self._unindex(client.clientId)

    def clientMoved(self, client):
        if client.native:
            self._unindex(client.clientId)
        else:
            self._index(client)

    # Clients their owner may have given up

    def _suspect(self, sender, clientIds, why):
        """
        C{sender} no longer names C{clientIds}: it removed them, or another
        member took them over. Drop those still its own after a sync round
        (by then, a takeover's record is in), unless it names them again
        meanwhile.
        """
        suspects = self._suspects.setdefault(sender, set())
        fresh = [c for c in clientIds if c not in suspects]
        if not fresh:
            return
        suspects.update(fresh)
        self.barrier.whenSynced().addCallback(self._dropSuspects, sender, fresh, why)

    def _cleared(self, sender, clientId):
        suspects = self._suspects.get(sender)
        if suspects:
            suspects.discard(clientId)

    def _dropSuspects(self, restoring, sender, clientIds, why):
        suspects = self._suspects.get(sender, set())
        dropped = []
        for clientId in clientIds:
            if clientId not in suspects:
                continue
            suspects.discard(clientId)
            # A member resuming it will send it (if the resume fails, the
            # sender's next digest makes it a suspect again).
            if self._senderOf.get(clientId) == sender and clientId not in restoring:
                self.manager.removeClient(clientId)
                dropped.append(clientId)
        if not suspects:
            self._suspects.pop(sender, None)
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
        self._rejected.pop(nodeId, None)
        self._suspect(nodeId, list(self.bySender.get(nodeId, ())), "presumed dead")

    # IReplicaSink

    def linkUp(self, link):
        pass

    def linkDown(self, link):
        self._snapshots.pop(link.nodeId, None)
        self._pieces.pop(link.nodeId, None)

    def received(self, link, message):
        op = message.get("op")
        if op != "client_state" and op != "ping" and link.nodeId in self._pieces:
            # The pieces of a client are consecutive: this one will not be
            # finished (its sender's next digest asks for it again).
            self._dropPieces(link.nodeId, self._pieces.pop(link.nodeId), op)
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

    def _dropPieces(self, sender, pieces, cause):
        self.log.warn(
            "dropped the unfinished client_state of {client} from {peer}: {cause} came first",
            client=pieces.key[0],
            peer=sender,
            cause=cause,
        )

    def _reject(self, sender, message):
        clientId = message.get("client_id")
        if type(clientId) is str and type(message.get("revision")) is int:
            self._rejected.setdefault(sender, {})[clientId] = message["revision"]

    def _forgetRejected(self, sender, clientId):
        rejected = self._rejected.get(sender)
        if rejected is not None:
            rejected.pop(clientId, None)
            if not rejected:
                del self._rejected[sender]

    def digestOf(self, nodeId):
        """
        The L{DigestIndex} of the synced clients held from C{nodeId} (what
        its C{digest} hashes are compared with), or L{None} if none.
        """
        return self._digests.get(nodeId)

    def rejectedCount(self):
        """
        How many records are remembered as rejected (at most one per client
        its sender still owns).
        """
        return sum(len(rejected) for rejected in self._rejected.values())

    def _checkOwner(self, sender, header):
        if header.owner != sender:
            raise RequestError(BAD_REQUEST, "owner: a node replicates only the clients it owns")

    def _named(self, sender, clientId):
        named = self._snapshots.get(sender)
        if named is not None:
            named.add(clientId)
        self._cleared(sender, clientId)

    def _snapshotBegin(self, sender, message):
        boot = message.get("boot")
        if type(boot) is not str:
            raise RequestError(BAD_REQUEST, "boot: must be a string")
        previous = self._boots.get(sender)
        self._boots[sender] = boot
        if previous is not None and boot != previous:
            # The sender restarted: the clients of its previous life that
            # this snapshot does not name are orphans (5.4).
            self._restarted.add(sender)
        self._snapshots[sender] = set()

    def _clientState(self, sender, message):
        header, revision, tokenHash, services = records.parseClientState(
            message, self.config.max_metadata_bytes
        )
        self._checkOwner(sender, header)
        more = message.get("more", False)
        if type(more) is not bool:
            raise RequestError(BAD_REQUEST, "more: must be a boolean")
        part = message.get("part", 0)
        if type(part) is not int or part < 0:
            raise RequestError(BAD_REQUEST, "part: must be an integer >= 0")
        key = (header.clientId, header.owner, header.epoch, revision)
        pieces = self._pieces.pop(sender, None)
        if pieces is not None and (pieces.key != key or pieces.next != part):
            self._dropPieces(sender, pieces, "another client_state")
            pieces = None
        if part > 0:
            if pieces is None:
                if self._rejected.get(sender, {}).get(header.clientId) == revision:
                    return None  # the rest of a client rejected at this revision
                # The start of this client was lost (discarded): ask again.
                return {"op": "resend", "client_ids": [header.clientId]}
            pieces.add(services)
            services = pieces.services
        if more:
            if pieces is None:
                pieces = _Pieces(key)
                pieces.add(services)
            pieces.next = part + 1
            self._pieces[sender] = pieces
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
        self._forgetRejected(sender, header.clientId)
        client = self.manager.syncState(
            header.clientId, header.owner, header.epoch, revision, tokenHash, services
        )
        self._index(client)
        return None

    def _snapshotEnd(self, sender, message):
        named = self._snapshots.pop(sender, None)
        if named is None:
            return None
        # Not named: removed by the sender, or moved on to another member,
        # whose record may still be on its way (a snapshot is no stricter
        # than a digest).
        unnamed = [c for c in self.bySender.get(sender, ()) if c not in named]
        if sender in self._restarted:
            self._restarted.discard(sender)
            self._orphan(sender, unnamed)
        else:
            self._suspect(sender, unnamed, "not in its snapshot")
        self.loaded(sender)
        return None

    def _orphan(self, sender, clientIds):
        """
        The clients of a restarted sender's previous life: their sessions
        ended with it, so they are kept for C{disconnect_grace_ms}, the time
        any lost session has to resume; then they go, but for those taken
        over or being resumed.
        """
        orphans = self._orphans.setdefault(sender, set())
        fresh = [c for c in clientIds if c not in orphans]
        if not fresh:
            return
        orphans.update(fresh)
        grace = self.config.disconnect_grace_ms / 1000.0
        call = self.clock.callLater(grace, self._orphansDue, sender, fresh)
        self._orphanTimers.append(call)

    def _orphansDue(self, sender, clientIds):
        self._orphanTimers = [c for c in self._orphanTimers if c.active()]
        orphans = self._orphans.get(sender, set())
        orphans.difference_update(clientIds)
        if not orphans:
            self._orphans.pop(sender, None)
        self._suspect(sender, clientIds, "orphaned by its restart")

    def stop(self):
        """
        Cancel the orphan timers (the node is shutting down).
        """
        for call in self._orphanTimers:
            if call.active():
                call.cancel()
        self._orphanTimers = []

    def _delta(self, sender, message):
        header, baseRevision, revision, put, remove = records.parseDelta(
            message, self.config.max_metadata_bytes
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
        self._index(held)
        return None

    def _clientRemove(self, sender, message):
        header = records.Header(message)
        self._checkOwner(sender, header)
        self._forgetRejected(sender, header.clientId)
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
            index = self._digests.get(sender) or DigestIndex()
            differing = index.differing(hashes)
            if differing:
                return {"op": "digest_ask", "buckets": differing}
            return None
        digest = records.parseDigest(message)
        buckets = records.parseBuckets(message.get("buckets"), BUCKETS)
        covers = (lambda c: True) if buckets is None else (lambda c: bucketOf(c) in buckets)
        rejected = self._rejected.get(sender, {})
        for clientId in [c for c in rejected if c not in digest and covers(c)]:
            del rejected[clientId]  # the sender no longer owns it
        if not rejected:
            self._rejected.pop(sender, None)
        clients = self.manager.clients
        wanted = []
        for clientId, revision in digest.items():
            held = clients.get(clientId)
            if held is None:
                if rejected.get(clientId) != revision:
                    wanted.append(clientId)
            elif not held.native and held.owner == sender and held.revision != revision:
                if rejected.get(clientId) != revision:
                    wanted.append(clientId)
        orphans = self._orphans.get(sender, ())
        if buckets is None:
            held = self.bySender.get(sender, ())
        else:
            index = self._digests.get(sender)
            held = index.inBuckets(buckets) if index is not None else ()
        missing = [c for c in held if c not in digest and c not in orphans]
        self._suspect(sender, missing, "not in its digest")
        if wanted:
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


class _Pieces:
    """
    The pieces of one C{client_state} received so far from one sender.

    @ivar key: C{(client_id, owner, epoch, revision)} they belong to.
    @ivar services: L{ServiceKey} -> C{{instanceId: Instance}}, merged.
    @ivar next: the C{part} expected next.
    """

    __slots__ = ("key", "services", "next")

    def __init__(self, key):
        self.key = key
        self.services = {}
        self.next = 1

    def add(self, services):
        """
        Merge the services of one more piece.
        """
        for service, instances in services.items():
            self.services.setdefault(service, {}).update(instances)


class _Record:
    """
    The C{(epoch, owner)} of a record, shaped like a client for
    L{_outranks}.
    """

    __slots__ = ("epoch", "owner")

    def __init__(self, epoch, owner):
        self.epoch = epoch
        self.owner = owner
