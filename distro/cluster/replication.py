# -*- test-case-name: tests.test_cluster -*-
"""
Replication of owned clients between members (PROTOCOL.md 5.2).

Sending: the L{Replicator} reads the change stream and keeps one L{PeerFeed}
per member. The changes of one client in one reactor turn go out together,
at the end of the turn, as one C{delta} (their net effect) encoded once for
every feed. A feed writes it to its link at once; while its link cannot take
more (the transport paused us) it only marks the client dirty, and when the link drains it sends the latest C{client_state} of
each dirty client. What waits for a slow or stalled peer is therefore one
entry per dirty client, never a queue of changes, and no feed ever waits for
another. A link that comes up starts with a snapshot streamed client by
client; a link that breaks forgets everything (the next one starts over).

Receiving: the L{Receiver} applies what inbound links deliver, by the rules of
5.2: records carry their owner and epoch, a lower C{(epoch, owner)} than the
one held is ignored, a native client is only given up to a higher one, deltas
apply only on top of the revision they were made from (else C{resend}), and
a client that its owner's snapshot or digest no longer names, or whose owner
is presumed dead, is dropped once a sync round (L{distro.cluster.sync}) shows
that no other member took it over.

Sync: a member's C{sync} is answered with C{synced} on the feed to it, after
whatever the feed still has to send (its dirty clients, its snapshot).
"""

from twisted.logger import Logger
from zope.interface import implementer

from distro.cluster import records
from distro.cluster.digest import BUCKETS, LIST_AT_MOST, DigestIndex, bucketOf, isPackedHashes
from distro.interfaces import IClientObserver, IReplicaSink
from distro.wire import BAD_REQUEST, INTERNAL, UNKNOWN_OP, RequestError, encode, errorMessage

_STATE = None  # a dirty entry meaning "send the client's latest state"


class PeerFeed:
    """
    What this node sends to one member, over the member's current link.

    @ivar link: the authenticated outbound link, or C{None}; it has
        C{sendMessage(message)}.
    @ivar dirty: client id -> L{_STATE}, or C{(owner, epoch)} of a removed
        client; at most one entry per client.
    @ivar paused: whether the link's transport asked us to stop writing.
    @ivar connected: whether a connection to the member exists (perhaps not
        yet authenticated).
    """

    log = Logger()

    def __init__(self, replicator, member):
        self.replicator = replicator
        self.member = member
        self.link = None
        self.connected = False
        self.dirty = {}
        self.paused = False
        self.snapshotting = False
        self.owed = 0
        self._answered = 0
        self._snapshotCount = 0

    def linkUp(self, link):
        """
        A link is up and authenticated: stream a snapshot of every owned
        client, then keep up with changes.
        """
        # What changed before this moment goes in the snapshot, not ahead of
        # it (nor does a synced answer): flushed while this feed has no link.
        self.link = None
        self.replicator.flush()
        self.link = link
        self.paused = False
        # The last answer may have been lost with the last link: a snapshot
        # answers it again.
        self.owed = max(self.owed, self._answered)
        self.dirty = dict.fromkeys(self.replicator.owned, _STATE)
        self.snapshotting = True
        self._snapshotCount = 0
        link.sendMessage({"op": "snapshot_begin", "boot": self.replicator.boot})
        self.drain()

    def linkDown(self, link):
        """
        The link ended: nothing sent on it is assumed delivered.
        """
        if link is self.link:
            self.link = None
            self.dirty = {}
            self.snapshotting = False

    def dialect(self):
        """
        What the current link speaks, or C{None} without one.
        """
        return self.link.dialect if self.link is not None else None

    def pause(self):
        self.paused = True

    def resume(self):
        self.paused = False
        self.drain()

    def _writable(self, clientId):
        return self.link is not None and not self.paused and clientId not in self.dirty

    def changed(self, clientId, frame, out):
        """
        An owned client changed: add C{frame()} (its changes, encoded once
        for every feed) to C{out}, what is written next, or mark the client
        dirty; return whether L{drain} is due once C{out} is written.
        """
        if self._writable(clientId):
            data = frame()
            if len(data) <= self.replicator.maxFrame:
                out.append(data)
                return False
            # Too large for one frame (a big batch): the whole client
            # goes instead, in pieces.
            self.dirty[clientId] = _STATE
            return True
        if self.link is not None:
            self.dirty[clientId] = _STATE
        return False

    def write(self, frames):
        """
        Write C{frames} (from L{changed}) to the link, in one go.
        """
        if frames and self.link is not None:
            self.link.transport.writeSequence(frames)

    def removed(self, client, frame):
        """
        An owned client is gone: C{frame()} (its C{client_remove}, encoded
        once for every feed) now, or the removal marked dirty.
        """
        clientId = client.clientId
        if self._writable(clientId):
            self.link.transport.write(frame())
        elif self.link is not None:
            self.dirty[clientId] = (client.owner, client.epoch)

    def owe(self, n):
        """
        The member sent C{sync {n}}: answer C{synced {n}} once everything
        this feed has to send before it is out (on this link or, if it
        breaks, after the next one's snapshot).
        """
        self.owed = max(self.owed, n)
        self.drain()

    def touched(self, clientId):
        """
        Send the whole latest state of C{clientId} (it was taken over here,
        or the peer asked for it).
        """
        if self.link is None:
            return
        self.dirty[clientId] = _STATE
        self.drain()

    def drain(self):
        """
        Send what is dirty while the link takes it; end a snapshot once all
        of it was sent.
        """
        # Changes of this turn not yet sent go first: a state sent now
        # includes them, and a C{synced} promises them.
        self.replicator.flush()
        dirty = self.dirty
        owned = self.replicator.owned
        while self.link is not None and not self.paused and dirty:
            clientId = next(iter(dirty))
            entry = dirty.pop(clientId)
            client = owned.get(clientId)
            if entry is _STATE and client is not None:
                self._sendState(client)
                self._snapshotCount += self.snapshotting
            elif entry is not _STATE:
                self.link.sendMessage(records.clientRemove(clientId, *entry))
            # else: no longer ours (removed, or given up): nothing to say.
        if self.link is not None and self.snapshotting and not dirty:
            self.snapshotting = False
            self.link.sendMessage({"op": "snapshot_end", "count": self._snapshotCount})
        if self.link is not None and not self.paused and not dirty and self.owed:
            self.link.sendMessage(
                {"op": "synced", "n": self.owed, "restoring": self.replicator.restoring()}
            )
            self._answered, self.owed = self.owed, 0

    def _sendState(self, client):
        try:
            frames = records.clientStateFrames(
                client, self.replicator.maxFrame, self.link.dialect
            )
        except records.RecordTooLarge as e:
            # Refused at start (config.validate); never half sent.
            self.log.error("not replicated: {error}", error=str(e))
            return
        write = self.link.transport.write
        for frame in frames:
            write(frame)

    def _idle(self):
        return self.link is not None and not self.paused and not self.dirty and not self.snapshotting

    def digest(self, frame):
        """
        Send C{frame()} (this tick's digest), unless the link is busy (a
        snapshot or a backlog says more than a digest would).
        """
        if self._idle():
            self.link.transport.write(frame())

    def digestAsked(self, buckets):
        """
        The member holds other clients or revisions than ours in
        C{buckets}: list those buckets (unless the link is busy: what it is
        busy with may settle them, and the next digest tells).
        """
        self.replicator.flush()
        if self._idle():
            for frame in self.replicator.listingFrames(buckets):
                self.link.transport.write(frame)


def _once(message):
    """
    A function returning the frame of C{message()}, built on the first call
    only: one encoding for every feed that writes it, none if none does.
    """
    frame = []

    def get():
        if not frame:
            frame.append(encode(message()))
        return frame[0]

    return get


class _Unsent:
    """
    The changes of one owned client this reactor turn, not sent yet.

    @ivar changes: the L{ClientChange}s in order, or C{None} when the whole
        client goes (no member holds it yet).
    """

    __slots__ = ("client", "baseRevision", "changes")

    def __init__(self, client, baseRevision, changes):
        self.client = client
        self.baseRevision = baseRevision
        self.changes = changes

    def message(self, dialect=None):
        """
        The message of these changes, as a link speaking C{dialect} (by
        default, every capability) carries them.
        """
        client = self.client
        changes = self.changes
        if changes is None:
            return records.clientState(client, dialect)
        if len(changes) == 1:
            change = changes[0]
            return records.delta(
                client,
                self.baseRevision,
                change.put,
                [(s, iid) for s, iid, _ in change.remove],
                dialect,
            )
        # The net effect: each instance's last word (within a change, its
        # removes come before its puts).
        net = {}
        for change in changes:
            for service, iid, _ in change.remove:
                net[service, iid] = None
            for service, instance in change.put:
                net[service, instance.instanceId] = instance
        return records.delta(
            client,
            self.baseRevision,
            [(s, i) for (s, _), i in net.items() if i is not None],
            [(s, iid) for (s, iid), i in net.items() if i is None],
            dialect,
        )


@implementer(IClientObserver)
class Replicator:
    """
    Streams the clients this node owns to every other member.

    @ivar owned: client id -> the native L{Client}s that have data (what
        snapshots and digests are made of).
    @ivar feeds: member address -> L{PeerFeed}.
    @ivar restoring: returns the ids of the clients that sessions of this
        node are resuming right now (told in C{synced}: a member must not
        remove them meanwhile).
    @ivar boot: this node's boot id, told in C{snapshot_begin}.
    @ivar maxFrame: the largest frame a member takes (C{peer_max_frame}):
        a client larger than that is sent in pieces.
    """

    def __init__(self, clock, restoring=list, boot="", maxFrame=64 * 1024 * 1024):
        self.clock = clock
        self.owned = {}
        self.index = DigestIndex()
        self.feeds = {}
        self.restoring = restoring
        self.boot = boot
        self.maxFrame = maxFrame
        self._unsent = {}
        self._flushing = None

    def addMember(self, member):
        feed = self.feeds.get(member.address)
        if feed is None:
            feed = self.feeds[member.address] = PeerFeed(self, member)
        return feed

    def removeMember(self, member):
        return self.feeds.pop(member.address, None)

    # IClientObserver

    def clientChanged(self, change):
        client = change.client
        if not client.native or change.moved:
            # Synced data is never forwarded; a takeover goes out whole,
            # with its clientMoved.
            return
        clientId = client.clientId
        unsent = self._unsent.get(clientId)
        if unsent is None:
            self.owned[clientId] = client
            # The client's first change goes whole: no peer holds it, so a
            # delta would only come back as a resend.
            self._unsent[clientId] = _Unsent(
                client, change.baseRevision, None if change.baseRevision == 0 else [change]
            )
            if self._flushing is None:
                self._flushing = self.clock.callLater(0, self.flush)
        elif unsent.changes is not None:
            unsent.changes.append(change)

    def flush(self):
        """
        Send every feed the changes of this turn not sent yet: one message
        per client, encoded once for all.
        """
        if self._flushing is not None:
            if self._flushing.active():
                self._flushing.cancel()
            self._flushing = None
        if not self._unsent:
            return
        unsent, self._unsent = self._unsent, {}
        index = self.index
        feeds = [(feed, []) for feed in self.feeds.values()]
        draining = []
        for clientId, changes in unsent.items():
            # Digests tell the revision sent (a digest flushes first).
            index.put(clientId, changes.client.revision)
            frame = _once(changes.message)
            narrowed = None
            for feed, out in feeds:
                dialect = feed.dialect()
                if dialect is None or dialect.whole:
                    framed = frame
                else:
                    # A link that lacks a capability (a member from before
                    # it): its own encoding, one per set of capabilities.
                    narrowed = narrowed if narrowed is not None else {}
                    framed = narrowed.get(dialect.capabilities)
                    if framed is None:
                        framed = narrowed[dialect.capabilities] = _once(
                            lambda d=dialect, c=changes: c.message(d)
                        )
                if feed.changed(clientId, framed, out):
                    draining.append(feed)
        for feed, out in feeds:
            feed.write(out)
        # What drain sends (a synced answer among it) follows this turn's
        # changes.
        for feed in draining:
            feed.drain()

    def stop(self):
        """
        Send what this turn changed now (the node is stopping).
        """
        self.flush()

    def clientRemoved(self, client):
        self._unsent.pop(client.clientId, None)
        if self.owned.pop(client.clientId, None) is None:
            return
        self.index.discard(client.clientId)
        frame = _once(lambda: records.clientRemove(client.clientId, client.owner, client.epoch))
        for feed in self.feeds.values():
            feed.removed(client, frame)

    def clientMoved(self, client):
        # A takeover goes whole; a client given up is no longer ours to send.
        self._unsent.pop(client.clientId, None)
        if client.native:
            self.owned[client.clientId] = client
            self.index.put(client.clientId, client.revision)
            for feed in self.feeds.values():
                feed.touched(client.clientId)
        else:
            # Given up to a newer owner: it speaks for the client now.
            self.owned.pop(client.clientId, None)
            self.index.discard(client.clientId)

    def sendDigests(self):
        """
        Send every idle feed this tick's digest, encoded once for all: the
        list of owned clients when there are few, else the bucket hashes.
        """
        self.flush()  # the revisions it tells are sent before it
        if len(self.owned) <= LIST_AT_MOST:
            frame = _once(
                lambda: {
                    "op": "digest",
                    "clients": [[c.clientId, c.revision] for c in self.owned.values()],
                }
            )
        else:
            frame = _once(lambda: {"op": "digest", "hashes": self.index.packed()})
        for feed in self.feeds.values():
            feed.digest(frame)

    def listingFrames(self, buckets):
        """
        The C{digest} frames listing the owned clients of C{buckets} (asked
        for with C{digest_ask}), whole buckets per frame, each within
        L{maxFrame}.
        """
        budget = self.maxFrame // 2
        frames = []
        clients, listed, size = [], [], 0
        for bucket, entries in self.index.listing(buckets).items():
            bucketSize = sum(len(c) + 16 for c, _ in entries) + 8
            if listed and size + bucketSize > budget:
                frames.append(encode({"op": "digest", "clients": clients, "buckets": listed}))
                clients, listed, size = [], [], 0
            clients.extend(entries)
            listed.append(bucket)
            size += bucketSize
        if listed:
            frames.append(encode({"op": "digest", "clients": clients, "buckets": listed}))
        return frames


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
        # node id -> what its current inbound link speaks.
        self._dialects = {}

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
        self._dialects[link.nodeId] = link.dialect

    def linkDown(self, link):
        if self._dialects.get(link.nodeId) is link.dialect:
            del self._dialects[link.nodeId]
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
            message, self.config.max_metadata_bytes, self._dialects.get(sender)
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
            message, self.config.max_metadata_bytes, self._dialects.get(sender)
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
