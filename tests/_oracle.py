"""
The wrong-removal oracle: what subscribers were shown, held against what each
client had published.

A I{wrong removal} is a push (or any later view of a subscription) that lacks
an instance that the subscriber's previous view of that subscription held,
while the instance's client had acknowledged the write that view showed (or
a later one putting it), had not removed it since, and had not lost its
session. Every write puts its instances with a version of their own in their
metadata, so a view says which write it shows: a view lagging behind the
writes (a slow link) may show an instance that was removed and put again,
and its removal is then no flap. "Had not lost its session": the
client's session was never refused a resume from the time its connection
broke until the time it got a new identity, and a client still disconnected
at the end counts as lost from its disconnection on (its session will
expire; the cluster may drop its instances).

Shared by the in-memory property test and the real-process chaos runs: time
is whatever C{now()} says, and the callers tell the oracle what clients sent,
what was acknowledged, what happened to sessions and what subscribers saw.
"""

import itertools


class _Publisher:
    """
    What one client published, per C{(service, instanceId)}: the sequence
    number of the first write of each version, of the last acknowledged
    write that put it, and of the last write that removed it.
    """

    def __init__(self, name):
        self.name = name
        self.versions = {}
        self.ackedPut = {}
        self.removed = {}
        self.suspendedAt = None
        self.lostWindows = []

    def firm(self, key, version):
        """
        Whether the write of C{version} of C{key} (or a later one putting
        it) was acknowledged, and nothing removed C{key} since.
        """
        sent = self.versions.get((key, version))
        acked = self.ackedPut.get(key)
        if sent is None or acked is None or acked < sent:
            return False
        removed = self.removed.get(key)
        return removed is None or removed < sent


class Candidate:
    """
    One instance gone from one subscriber's view while its client held it.
    """

    __slots__ = ("at", "subscriber", "service", "instanceId", "publisher")

    def __init__(self, at, subscriber, service, instanceId, publisher):
        self.at = at
        self.subscriber = subscriber
        self.service = service
        self.instanceId = instanceId
        self.publisher = publisher

    def __repr__(self):
        return (
            f"<wrong removal at {self.at:.3f}: {self.subscriber} lost {self.service} "
            f"{self.instanceId} of {self.publisher}>"
        )


class Oracle:
    """
    @param now: returns the current time, in seconds.
    @param owner: maps an instance id to the name of the client publishing
        it (clients do not share instances), or C{None} if unknown.
    """

    def __init__(self, now, owner):
        self.now = now
        self.owner = owner
        self._seq = itertools.count(1)
        self._publishers = {}
        self._views = {}
        self.candidates = []
        self.pushes = 0

    def publisher(self, name):
        found = self._publishers.get(name)
        if found is None:
            found = self._publishers[name] = _Publisher(name)
        return found

    # What clients do

    def sent(self, name, puts=(), removes=()):
        """
        Client C{name} sent a write putting C{puts} (C{(key, version)}
        pairs) and removing C{removes} (keys), each key a C{(service,
        instanceId)}. Returns a token for L{acked}.
        """
        publisher = self.publisher(name)
        seq = next(self._seq)
        for key, version in puts:
            publisher.versions.setdefault((key, version), seq)
        for key in removes:
            publisher.removed[key] = seq
        return (name, seq, tuple(key for key, _ in puts))

    def acked(self, token):
        """
        The write of C{token} was acknowledged by a node.
        """
        name, seq, keys = token
        publisher = self.publisher(name)
        for key in keys:
            if publisher.ackedPut.get(key, 0) < seq:
                publisher.ackedPut[key] = seq

    def suspended(self, name):
        """
        Client C{name}'s connection broke (its session may still resume).
        """
        publisher = self.publisher(name)
        if publisher.suspendedAt is None:
            publisher.suspendedAt = self.now()

    def resumed(self, name):
        """
        Client C{name} resumed its session on a new connection.
        """
        self.publisher(name).suspendedAt = None

    def lost(self, name):
        """
        Client C{name}'s session is gone (a resume was refused, or the client
        left without C{bye}): from its disconnection until now, nothing it
        published counts; what it acknowledged before counts no more.
        """
        publisher = self.publisher(name)
        start = publisher.suspendedAt if publisher.suspendedAt is not None else self.now()
        publisher.lostWindows.append((start, self.now()))
        publisher.suspendedAt = None
        publisher.ackedPut.clear()

    # What subscribers see

    def view(self, subscriber, service, hosts, fresh=False):
        """
        Subscriber C{subscriber} was shown C{hosts} (C{(instanceId,
        version)} pairs) for C{service}: in a push, or (with C{fresh}) as
        the first view of a new subscription, which nothing is compared
        with.
        """
        key = (subscriber, service)
        current = dict(hosts)
        previous = self._views.get(key)
        self._views[key] = current
        if fresh or previous is None:
            return
        self.pushes += 1
        at = self.now()
        for iid, version in previous.items():
            if iid in current:
                continue
            name = self.owner(iid)
            if name is None:
                continue
            if self.publisher(name).firm((service, iid), version):
                self.candidates.append(Candidate(at, subscriber, service, iid, name))

    def forget(self, subscriber):
        """
        C{subscriber}'s connection is gone: its next view is a fresh one.
        """
        for key in [k for k in self._views if k[0] == subscriber]:
            del self._views[key]

    # Verdict

    def wrongRemovals(self):
        """
        The candidates that fall in no lost window of their client (clients
        still disconnected count as lost from their disconnection on).
        """
        end = self.now()
        result = []
        for candidate in self.candidates:
            publisher = self.publisher(candidate.publisher)
            windows = list(publisher.lostWindows)
            if publisher.suspendedAt is not None:
                windows.append((publisher.suspendedAt, end))
            if not any(start <= candidate.at <= stop for start, stop in windows):
                result.append(candidate)
        return result
