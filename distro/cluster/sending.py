# -*- test-case-name: tests.test_cluster,tests.test_sync -*-
"""
Sending replication (PROTOCOL.md 5.2): the clients this node owns, streamed
to every other member.

The L{Replicator} reads the change stream and keeps one L{PeerFeed}
per member. The changes of one client in one reactor turn go out together,
at the end of the turn, as one C{delta} (their net effect) encoded once for
every feed. A feed writes it to its link at once; while its link cannot take
more (the transport paused us) it only marks the client dirty, and when the link drains it sends the latest C{client_state} of
each dirty client. What waits for a slow or stalled peer is therefore one
entry per dirty client, never a queue of changes, and no feed ever waits for
another. A link that comes up starts with a snapshot streamed client by
client; a link that breaks forgets everything (the next one starts over).

Sync: a member's C{sync} is answered with C{synced} on the feed to it, after
whatever the feed still has to send (its dirty clients, its snapshot).

What other members send is applied by L{distro.cluster.receiving}.
"""

from twisted.logger import Logger
from zope.interface import implementer

from distro.cluster import records
from distro.cluster.digest import LIST_AT_MOST, DigestIndex
from distro.cluster.stats import ReplicationStats
from distro.interfaces import IClientObserver
from distro.wire import encode

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
    @ivar behindSince: since when the member has lacked something of ours
        (no link, a snapshot under way, dirty clients), or C{None} while it
        has everything this node wrote (its replication lag).
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
        # Until a snapshot reached it, the member lacks what we own.
        self.behindSince = replicator.clock.seconds()

    def _behind(self):
        """
        Something of ours is not written to the member's link: it is behind
        from now, unless it already was.
        """
        if self.behindSince is None:
            self.behindSince = self.replicator.clock.seconds()

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
        self._behind()
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
            self._behind()

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
            self._behind()
            return True
        if self.link is not None:
            self.dirty[clientId] = _STATE
            self._behind()
        return False

    def write(self, frames):
        """
        Write C{frames} (from L{changed}) to the link, in one go.
        """
        if frames and self.link is not None:
            self.link.writeSequence(frames)

    def removed(self, client, frame):
        """
        An owned client is gone: C{frame()} (its C{client_remove}, encoded
        once for every feed) now, or the removal marked dirty.
        """
        clientId = client.clientId
        if self._writable(clientId):
            self.link.write(frame())
        elif self.link is not None:
            self.dirty[clientId] = (client.owner, client.epoch)
            self._behind()

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
        self._behind()
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
            self.replicator.stats.snapshotsSent += 1
        if self.link is not None and not dirty and not self.snapshotting:
            self.behindSince = None  # caught up
        if self.link is not None and not self.paused and not dirty and self.owed:
            self.link.sendMessage(
                {"op": "synced", "n": self.owed, "restoring": self.replicator.restoring()}
            )
            self._answered, self.owed = self.owed, 0

    def _sendState(self, client):
        try:
            frames = records.clientStateFrames(client, self.replicator.maxFrame)
        except records.RecordTooLarge as e:
            # Refused at start (config.validate); never half sent.
            self.log.error("not replicated: {error}", error=str(e))
            return
        write = self.link.write
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
            self.link.write(frame())

    def digestAsked(self, buckets):
        """
        The member holds other clients or revisions than ours in
        C{buckets}: list those buckets (unless the link is busy: what it is
        busy with may settle them, and the next digest tells).
        """
        self.replicator.flush()
        if self._idle():
            for frame in self.replicator.listingFrames(buckets):
                self.link.write(frame)


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

    def message(self):
        client = self.client
        changes = self.changes
        if changes is None:
            return records.clientState(client)
        if len(changes) == 1:
            change = changes[0]
            return records.delta(
                client,
                self.baseRevision,
                change.put,
                [(s, iid) for s, iid, _ in change.remove],
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
    @ivar stats: the cluster's L{ReplicationStats} (snapshots sent).
    """

    def __init__(self, clock, restoring=list, boot="", maxFrame=64 * 1024 * 1024, stats=None):
        self.clock = clock
        self.stats = ReplicationStats() if stats is None else stats
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
            for feed, out in feeds:
                if feed.changed(clientId, frame, out):
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
