# -*- test-case-name: tests.test_senders -*-
"""
What a receiving node keeps about each member that sends it replication
(PROTOCOL.md 5.2, 5.4), one small object per concern, each keyed by sender:
the synced clients each one owns (L{OwnerIndex}), the snapshot it is
streaming and the boot it told (L{Snapshots}), the clients it stopped naming
(L{Suspects}), the clients of its previous life (L{Orphans}), the records of
it that were refused (L{Rejected}) and the client it sent part of
(L{Pieces}). The L{distro.cluster.receiving.Receiver} handles the messages
over them.
"""

from distro.cluster.digest import DigestIndex


class OwnerIndex:
    """
    The synced clients held here, by the member that owns them (the sender
    of their records), with a L{DigestIndex} of each sender's (what its
    digests are compared with).

    @ivar bySender: node id -> ids of the synced clients it owns.
    """

    def __init__(self):
        self.bySender = {}
        self._senderOf = {}
        self._digests = {}

    def index(self, client):
        """
        C{client} (synced) is held at its owner and revision now.
        """
        clientId, owner = client.clientId, client.owner
        previous = self._senderOf.get(clientId)
        if previous != owner:
            if previous is not None:
                self.unindex(clientId)
            self._senderOf[clientId] = owner
            self.bySender.setdefault(owner, set()).add(clientId)
            self._digests.setdefault(owner, DigestIndex())
        self._digests[owner].put(clientId, client.revision)

    def unindex(self, clientId):
        """
        C{clientId} is no longer a synced client held here.
        """
        owner = self._senderOf.pop(clientId, None)
        if owner is not None:
            held = self.bySender.get(owner)
            held.discard(clientId)
            self._digests[owner].discard(clientId)
            if not held:
                del self.bySender[owner]
                del self._digests[owner]

    def senderOf(self, clientId):
        """
        The node id owning the synced client C{clientId}, or C{None}.
        """
        return self._senderOf.get(clientId)

    def clientsOf(self, sender):
        """
        The ids of the synced clients C{sender} owns (empty if none).
        """
        return self.bySender.get(sender, ())

    def digestOf(self, sender):
        """
        The L{DigestIndex} of the synced clients C{sender} owns, or C{None}
        if none.
        """
        return self._digests.get(sender)


class Snapshots:
    """
    The snapshot each sender is streaming (the clients it named so far), and
    the boot each sender's last snapshot told: another one means that the
    sender restarted, and stays meant until one of its snapshots ends.
    """

    def __init__(self):
        self._named = {}
        self._boots = {}
        self._restarted = set()

    def begin(self, sender, boot):
        """
        C{sender} starts a snapshot of the life C{boot}.
        """
        previous = self._boots.get(sender)
        self._boots[sender] = boot
        if previous is not None and boot != previous:
            self._restarted.add(sender)
        self._named[sender] = set()

    def name(self, sender, clientId):
        """
        C{sender} sent C{clientId}: part of its snapshot, if one is under
        way.
        """
        named = self._named.get(sender)
        if named is not None:
            named.add(clientId)

    def end(self, sender):
        """
        C{sender}'s snapshot ended: return C{(named, restarted)}, the ids it
        named and whether the sender restarted before it, or C{None} when
        no snapshot of C{sender} was under way.
        """
        named = self._named.pop(sender, None)
        if named is None:
            return None
        restarted = sender in self._restarted
        self._restarted.discard(sender)
        return named, restarted

    def abandon(self, sender):
        """
        C{sender}'s link dropped: its snapshot will not end (the next link
        starts another).
        """
        self._named.pop(sender, None)


class Suspects:
    """
    Synced clients their sender stopped naming: it removed them, or another
    member took them over. Each is handed to C{drop} after a sync round (by
    then, a takeover's record is in), unless its sender named it again
    meanwhile.

    @param barrier: the node's L{distro.interfaces.ISyncBarrier}.
    @param drop: called with C{(sender, clientIds, restoring, why)} once a
        round is over: the suspects still suspected, the ids being resumed
        (the round's result), and why they were suspected.
    """

    def __init__(self, barrier, drop):
        self._barrier = barrier
        self._drop = drop
        self._bySender = {}

    def add(self, sender, clientIds, why):
        """
        C{sender} no longer names C{clientIds}, for the reason C{why}: those
        not suspected yet wait for the next sync round.
        """
        suspects = self._bySender.setdefault(sender, set())
        fresh = [c for c in clientIds if c not in suspects]
        if not fresh:
            return
        suspects.update(fresh)
        self._barrier.whenSynced().addCallback(self._roundOver, sender, fresh, why)

    def clear(self, sender, clientId):
        """
        C{sender} named C{clientId} again: not a suspect any more.
        """
        suspects = self._bySender.get(sender)
        if suspects:
            suspects.discard(clientId)

    def _roundOver(self, restoring, sender, clientIds, why):
        suspects = self._bySender.get(sender, set())
        still = [c for c in clientIds if c in suspects]
        suspects.difference_update(still)
        if not suspects:
            self._bySender.pop(sender, None)
        if still:
            self._drop(sender, still, restoring, why)


class Orphans:
    """
    The clients of a restarted sender's previous life that its new snapshot
    does not name. Their sessions ended with that life, so they are kept
    for a grace (the time any lost session has to resume), then handed to
    C{due}; digests do not make them go sooner.

    @param clock: an C{IReactorTime}.
    @param grace: the grace, in seconds.
    @param due: called with C{(sender, clientIds)} once their grace is over.
    """

    def __init__(self, clock, grace, due):
        self._clock = clock
        self._grace = grace
        self._due = due
        self._bySender = {}
        self._timers = []

    def schedule(self, sender, clientIds):
        """
        C{clientIds} of C{sender} are orphans: their grace starts now,
        unless it already runs.
        """
        orphans = self._bySender.setdefault(sender, set())
        fresh = [c for c in clientIds if c not in orphans]
        if not fresh:
            return
        orphans.update(fresh)
        self._timers.append(self._clock.callLater(self._grace, self._graceOver, sender, fresh))

    def forget(self, sender, clientId):
        """
        C{sender}'s new life named C{clientId} (it resumed there, or was
        taken back): it is no orphan.
        """
        orphans = self._bySender.get(sender)
        if orphans:
            orphans.discard(clientId)

    def excluding(self, sender, clientIds):
        """
        C{clientIds} but for the orphans of C{sender}, in order.
        """
        orphans = self._bySender.get(sender, ())
        return [c for c in clientIds if c not in orphans]

    def stop(self):
        """
        Cancel every grace (the node is shutting down).
        """
        for call in self._timers:
            if call.active():
                call.cancel()
        self._timers = []

    def _graceOver(self, sender, clientIds):
        self._timers = [c for c in self._timers if c.active()]
        orphans = self._bySender.get(sender, set())
        due = [c for c in clientIds if c in orphans]
        orphans.difference_update(due)
        if not orphans:
            self._bySender.pop(sender, None)
        if due:
            self._due(sender, due)


class Rejected:
    """
    The revision of each client whose record from a sender was refused (bad
    data, or a fault of ours applying it): not asked for again at that
    revision, or the same bytes would come back forever (Nacos #11701).
    Forgotten when the sender sends the client anew (removed, or at another
    revision) or no longer owns it.
    """

    def __init__(self):
        self._bySender = {}

    def remember(self, sender, clientId, revision):
        """
        C{sender}'s record of C{clientId} at C{revision} was refused.
        """
        self._bySender.setdefault(sender, {})[clientId] = revision

    def isRejected(self, sender, clientId, revision):
        """
        Whether C{sender}'s record of C{clientId} at C{revision} was
        refused.
        """
        rejected = self._bySender.get(sender)
        return rejected is not None and rejected.get(clientId) == revision

    def forget(self, sender, clientId):
        """
        C{sender}'s C{clientId} was applied or removed.
        """
        rejected = self._bySender.get(sender)
        if rejected is not None:
            rejected.pop(clientId, None)
            if not rejected:
                del self._bySender[sender]

    def forgetUnnamed(self, sender, named, covers):
        """
        C{sender}'s digest covers the clients for which C{covers(clientId)}
        is true and names C{named}: the covered ones it does not name, it no
        longer owns.
        """
        rejected = self._bySender.get(sender)
        if rejected is None:
            return
        for clientId in [c for c in rejected if c not in named and covers(c)]:
            del rejected[clientId]
        if not rejected:
            del self._bySender[sender]

    def forgetSender(self, sender):
        """
        C{sender} is presumed dead, or left: it owns nothing any more.
        """
        self._bySender.pop(sender, None)

    def count(self):
        """
        How many records are remembered (at most one per client its sender
        still owns).
        """
        return sum(len(rejected) for rejected in self._bySender.values())


class Pieces:
    """
    The C{client_state} each sender has sent part of: a client larger than
    a frame comes in consecutive pieces (C{part} 0, 1, ... with C{more}),
    so a sender has at most one unfinished.

    @param dropped: called with C{(sender, clientId, cause)} when an
        unfinished C{client_state} is given up because C{cause} (an op)
        came first.
    @cvar INCOMPLETE: what L{add} returns while more pieces are to come.
    @cvar MISSING: what L{add} returns for a piece whose predecessors are
        not here (discarded, or lost).
    """

    INCOMPLETE = object()
    MISSING = object()

    def __init__(self, dropped):
        self._dropped = dropped
        self._bySender = {}

    def add(self, sender, key, part, services, more):
        """
        Take piece C{part} of the C{client_state} C{key} (C{(client_id,
        owner, epoch, revision)}) from C{sender}, with its C{services}
        (L{ServiceKey} -> C{{instanceId: Instance}}) and C{more}.

        @return: the services of the whole client when this piece ends it,
            else L{INCOMPLETE} or L{MISSING}.
        """
        unfinished = self._bySender.pop(sender, None)
        if unfinished is not None and (unfinished.key != key or unfinished.next != part):
            self._dropped(sender, unfinished.key[0], "another client_state")
            unfinished = None
        if part > 0:
            if unfinished is None:
                return self.MISSING
            unfinished.add(services)
            services = unfinished.services
        if more:
            if unfinished is None:
                unfinished = _Unfinished(key)
                unfinished.add(services)
            unfinished.next = part + 1
            self._bySender[sender] = unfinished
            return self.INCOMPLETE
        return services

    def interrupt(self, sender, cause):
        """
        C{sender} sent something else (the op C{cause}): the pieces of a
        client are consecutive, so its unfinished one will not be finished
        (its sender's next digest asks for it again).
        """
        unfinished = self._bySender.pop(sender, None)
        if unfinished is not None:
            self._dropped(sender, unfinished.key[0], cause)

    def forget(self, sender):
        """
        C{sender}'s link dropped: nothing more of its unfinished client
        comes.
        """
        self._bySender.pop(sender, None)


class _Unfinished:
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
