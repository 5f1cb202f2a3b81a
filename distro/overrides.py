# -*- test-case-name: tests.test_overrides -*-
"""
Operator overrides (PROTOCOL.md 5.7): what an operator set on one instance
of a service (out of rotation, another weight, a metadata patch, removed),
with who set it, when and why, held by every member alike.

The map is last-writer-wins per key, C{(service, instance_id)}, by the
stamps of a L{distro.hlc.HybridClock}: a member applies any entry whose
stamp is above the one it holds, so members that were told the same
entries, in any order and any number of times, hold the same map. Clearing
an override is an entry too (a tombstone), so that a clear reaches every
member and outranks the override it cleared; tombstones are forgotten after
C{override_expiry_ms}, as are the overrides of instances no client
published for that long.

Views apply the overrides over what clients publish (L{Override.apply}):
a client that registers again does not undo a drain.
"""

import hashlib
import re

import msgpack
from twisted.logger import Logger
from zope.interface import implementer

from distro.errors import BadRequest, LimitExceeded
from distro.interfaces import IOverrides
from distro.model import MAX_WEIGHT, Instance, parseInstanceRef, parseService

MAX_WHO_CHARS = 128
MAX_WHY_CHARS = 512
MAX_NODE_CHARS = 256
# Stamps' integers stay below this (one above it still fits msgpack's and
# every member's range).
MAX_STAMP = 2**62

# The fields an operator's write may set; each absent leaves what the
# override had, each nil removes it from the override.
CHANGES = ("enabled", "weight", "metadata", "removed")


class Override:
    """
    The entry of one key: an override, or the tombstone of a cleared one
    (C{cleared}, no field set).

    @ivar enabled: C{True}/C{False} shown instead of what the client
        publishes, or C{None}.
    @ivar weight: the weight shown, or C{None}.
    @ivar metadata: a patch of the metadata shown, C{{key: value}} with
        C{None} values removing the key, or C{None}.
    @ivar removed: whether the instance is hidden from every view.
    @ivar who: who wrote it (a user or token's name, or C{distro} for an
        expiry).
    @ivar why: the reason given, or C{""}.
    @ivar stamp: its L{distro.hlc.HybridClock} stamp, C{(ms, counter,
        node)}; C{ms} is when it was written.
    """

    __slots__ = ("service", "instanceId", "enabled", "weight", "metadata", "removed", "who", "why",
                 "stamp", "cleared")

    def __init__(self, service, instanceId, *, enabled=None, weight=None, metadata=None,
                 removed=False, who, why, stamp, cleared=False):
        self.service = service
        self.instanceId = instanceId
        self.enabled = enabled
        self.weight = weight
        self.metadata = metadata
        self.removed = removed
        self.who = who
        self.why = why
        self.stamp = stamp
        self.cleared = cleared

    @property
    def key(self):
        return (self.service, self.instanceId)

    def changes(self):
        """
        The fields it sets, C{{name: value}}.
        """
        found = {}
        for name in CHANGES:
            value = getattr(self, name)
            if value is not None and (value is not False or name != "removed"):
                found[name] = value
        return found

    def apply(self, instance):
        """
        C{instance} as views show it under this override: another
        L{Instance}, C{instance} itself if it changes nothing, or C{None}
        when it is removed.
        """
        if self.removed:
            return None
        if self.cleared or (self.enabled is None and self.weight is None and not self.metadata):
            return instance
        metadata = instance.metadata
        if self.metadata:
            metadata = dict(metadata)
            for key, value in self.metadata.items():
                if value is None:
                    metadata.pop(key, None)
                else:
                    metadata[key] = value
        return Instance(
            instance.ip, instance.port, instance.cluster,
            instance.weight if self.weight is None else self.weight,
            instance.healthy,
            instance.enabled if self.enabled is None else self.enabled,
            metadata, instance.writeTs,
        )

    def toWire(self):
        """
        The entry's map (PROTOCOL.md 5.7): on peer links, on disk, and as
        the C{overrides} op lists it.
        """
        wire = {
            "service": self.service.toWire(),
            "instance_id": self.instanceId,
            "who": self.who,
            "why": self.why,
            "stamp": list(self.stamp),
        }
        if self.cleared:
            wire["cleared"] = True
        wire.update(self.changes())
        return wire

    def __repr__(self):
        return f"<Override {self.service}/{self.instanceId} {self.changes()} stamp={self.stamp}>"


def parseChanges(message, maxMetadataBytes, prefix=""):
    """
    The changes an operator's write asks for, C{{name: value or None}}
    (C{None}: remove that field from the override), from the fields of
    L{CHANGES} C{message} holds.

    @raise BadRequest: naming the offending field.
    """
    changes = {}
    for name in CHANGES:
        if name not in message:
            continue
        value = message[name]
        field = prefix + name
        if value is None:
            changes[name] = None
        elif name in ("enabled", "removed"):
            if type(value) is not bool:
                raise BadRequest(field, "must be a boolean, or nil to remove it")
            changes[name] = value
        elif name == "weight":
            changes[name] = _weight(value, field)
        else:
            changes[name] = _patch(value, field, maxMetadataBytes)
    return changes


def _weight(value, field):
    if type(value) not in (int, float) or value != value or not 0 <= value <= MAX_WEIGHT:
        raise BadRequest(field, "must be a number in 0..10000")
    return float(value)


def _patch(value, field, maxMetadataBytes):
    """
    A metadata patch: a map of strings to strings, or to nil (remove the
    key), within C{max_metadata_bytes}.
    """
    if type(value) is not dict:
        raise BadRequest(field, "must be a map of strings to strings or nil")
    for key, entry in value.items():
        if type(key) is not str or (entry is not None and type(entry) is not str):
            raise BadRequest(field, "must be a map of strings to strings or nil")
    try:
        size = len(msgpack.packb(value, use_bin_type=True))
    except UnicodeEncodeError:
        raise BadRequest(field, "is not valid Unicode text (a lone surrogate)")
    if size > maxMetadataBytes:
        raise LimitExceeded("max_metadata_bytes", f"{field} is larger than {maxMetadataBytes} bytes")
    return dict(value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# What the map takes from members and disk beyond its own
# max_metadata_bytes: members' limits may differ for a while (a rolling
# change of configuration), and an entry refused by one member would be
# asked for and refused again at every interval.
PEER_METADATA_BYTES = 65536


def checkedText(value, field, limit):
    """
    A C{who} or C{why}: a string of at most C{limit} characters of UTF-8
    text without control characters (it goes to logs, to disk, to every
    member).

    @raise BadRequest: naming C{field}.
    """
    if type(value) is not str:
        raise BadRequest(field, "must be a string")
    if len(value) > limit:
        raise BadRequest(field, f"must be at most {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(field, "is not valid Unicode text (a lone surrogate)")
    if _CONTROL.search(value):
        raise BadRequest(field, "contains a control character")
    return value


def parseInstanceId(value, field="instance_id"):
    """
    An instance id, C{ip#port#cluster}, checked as its parts are.
    """
    if type(value) is not str or value.count("#") < 2:
        raise BadRequest(field, "must be ip#port#cluster")
    ip, port, cluster = value.rsplit("#", 2)
    if not port.isdigit():
        raise BadRequest(field, "must be ip#port#cluster, port a number")
    canonical = parseInstanceRef({"ip": ip, "port": int(port), "cluster": cluster}, field)
    if canonical != value:
        raise BadRequest(field, f"must be spelled {canonical!r}")
    return value


def parseStamp(value, field="stamp"):
    if (
        type(value) is not list or len(value) != 3
        or type(value[0]) is not int or not 0 <= value[0] < MAX_STAMP
        or type(value[1]) is not int or not 0 <= value[1] < MAX_STAMP
        or type(value[2]) is not str or not 0 < len(value[2]) <= MAX_NODE_CHARS
    ):
        raise BadRequest(field, "must be [ms, counter, node]")
    return (value[0], value[1], value[2])


def parseOverride(value, maxMetadataBytes, field="override"):
    """
    An entry in its map form (L{Override.toWire}), from a member or disk.

    @raise BadRequest: naming the offending field.
    """
    if type(value) is not dict:
        raise BadRequest(field, "must be a map")
    service = parseService(value.get("service"), f"{field}.service")
    instanceId = parseInstanceId(value.get("instance_id"), f"{field}.instance_id")
    cleared = value.get("cleared", False)
    if type(cleared) is not bool:
        raise BadRequest(f"{field}.cleared", "must be a boolean")
    changes = parseChanges(value, maxMetadataBytes, f"{field}.")
    if cleared and any(v is not None and (k != "removed" or v) for k, v in changes.items()):
        raise BadRequest(f"{field}.cleared", "a cleared entry sets nothing")
    return Override(
        service, instanceId,
        enabled=changes.get("enabled"),
        weight=changes.get("weight"),
        metadata=changes.get("metadata"),
        removed=bool(changes.get("removed")),
        who=checkedText(value.get("who"), f"{field}.who", MAX_WHO_CHARS),
        why=checkedText(value.get("why", ""), f"{field}.why", MAX_WHY_CHARS),
        stamp=parseStamp(value.get("stamp"), f"{field}.stamp"),
        cleared=cleared,
    )


def entryHash(override):
    """
    What an entry adds to the digest: BLAKE2b-64 of its key and stamp (an
    entry's stamp names its content: one write made it).
    """
    service = override.service
    ms, counter, node = override.stamp
    text = "\0".join((service.namespace, service.group, service.name, override.instanceId,
                      str(ms), str(counter), node))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@implementer(IOverrides)
class Overrides:
    """
    The node's map of overrides (L{IOverrides}).

    @param hlc: the node's L{distro.hlc.HybridClock}.
    @param maxOverrides: C{max_overrides}: how many overrides in force
        operators may set; as many cleared ones are kept at most (the oldest
        forgotten first), and twice that many entries taken from members.
    @param expiryMs: C{override_expiry_ms}.
    @param maxMetadataBytes: C{max_metadata_bytes}, what an operator's
        metadata patch may take (one from a member or disk may take
        L{PEER_METADATA_BYTES}).
    """

    log = Logger()

    def __init__(self, hlc, *, maxOverrides, expiryMs, maxMetadataBytes):
        self.hlc = hlc
        self.maxOverrides = maxOverrides
        self.expiryMs = expiryMs
        self.maxMetadataBytes = maxMetadataBytes
        self.entries = {}
        # service -> {instance id: Override}, the live ones only.
        self.byService = {}
        self.liveCount = 0
        self.digest = 0
        self.observers = []
        # key -> since when (ms) no client publishes its instance.
        self._goneSince = {}
        self._refusedMerges = 0

    def addObserver(self, observer):
        self.observers.append(observer)

    def get(self, service, instanceId):
        return self.entries.get((service, instanceId))

    def live(self):
        """
        The overrides in force, by key.
        """
        return sorted((o for o in self.entries.values() if not o.cleared),
                      key=lambda o: (o.service, o.instanceId))

    def of(self, service):
        """
        C{{instance id: Override}} of the overrides in force in C{service},
        or C{None}; the same map object until the service has none.
        """
        return self.byService.get(service)

    def _put(self, override):
        key = override.key
        previous = self.entries.get(key)
        if previous is not None:
            self.digest ^= entryHash(previous)
            self.liveCount -= not previous.cleared
        self.entries[key] = override
        self.digest ^= entryHash(override)
        self.liveCount += not override.cleared
        # A new entry: whether its instance is gone counts from now.
        self._goneSince.pop(key, None)
        shown = self.byService.get(override.service)
        if override.cleared:
            if shown is not None:
                shown.pop(override.instanceId, None)
                if not shown:
                    del self.byService[override.service]
        else:
            if shown is None:
                shown = self.byService[override.service] = {}
            shown[override.instanceId] = override

    def _drop(self, key):
        override = self.entries.pop(key)
        self.digest ^= entryHash(override)
        self.liveCount -= not override.cleared
        self._goneSince.pop(key, None)

    def _tell(self, override, written):
        for observer in self.observers:
            observer.overrideChanged(override, written)

    def merge(self, override):
        """
        A member's (or disk's) entry: applied if its stamp is above the one
        held for its key; return whether it was.
        """
        held = self.entries.get(override.key)
        if held is not None and held.stamp >= override.stamp:
            return False
        if override.cleared and self._forgettable(override, self._nowMs()):
            return False  # a tombstone already forgotten here
        if held is None and len(self.entries) >= 2 * self.maxOverrides:
            # Members check their operators' writes against max_overrides:
            # this many means a member configured otherwise, or worse.
            self._refusedMerges += 1
            if self._refusedMerges in (1, 100) or self._refusedMerges % 10000 == 0:
                self.log.warn("refused {count} overrides from members: this node holds {held}, twice "
                              "max_overrides", count=self._refusedMerges, held=len(self.entries))
            return False
        self.hlc.witness(override.stamp)
        self._put(override)
        self._tell(override, False)
        return True

    def write(self, service, instanceId, changes, *, who, why):
        """
        An operator's write at this node: C{changes} (L{parseChanges})
        applied to the override held, stamped above it.

        @return: the new entry (cleared when nothing is left set).
        @raise BadRequest: it would set nothing on an instance without an
            override, or the entry would not be one that members and disk
            take (a C{who} or C{why} of the wrong form).
        @raise LimitExceeded: C{max_overrides} overrides are in force.
        """
        held = self.entries.get((service, instanceId))
        inForce = held is not None and not held.cleared
        fields = held.changes() if inForce else {}
        for name, value in changes.items():
            if value is None or (name == "removed" and not value):
                fields.pop(name, None)
            else:
                fields[name] = float(value) if name == "weight" else value
        if not fields and not inForce:
            raise BadRequest("override", f"{instanceId} has no override to change")
        if fields and not inForce and self.liveCount >= self.maxOverrides:
            raise LimitExceeded("max_overrides", f"at most {self.maxOverrides} overrides are in force at once")
        override = Override(
            service, instanceId,
            enabled=fields.get("enabled"),
            weight=fields.get("weight"),
            metadata=fields.get("metadata"),
            removed=bool(fields.get("removed")),
            who=who, why=why,
            stamp=self.hlc.after(held.stamp if held is not None else None),
            cleared=not fields,
        )
        # Nothing is kept that members or disk would refuse.
        parseOverride(override.toWire(), self.maxMetadataBytes)
        self._put(override)
        self._tell(override, True)
        if override.cleared:
            self._boundTombstones()
        return override

    def _boundTombstones(self):
        """
        Keep at most C{max_overrides} cleared entries: forget the oldest
        (a member that missed its clear may bring that override back).
        """
        tombstones = len(self.entries) - self.liveCount
        if tombstones <= self.maxOverrides:
            return
        oldest = sorted((o.stamp, k) for k, o in self.entries.items() if o.cleared)
        forgotten = [k for _, k in oldest[:tombstones - self.maxOverrides]]
        for key in forgotten:
            self._drop(key)
        self._forgot(forgotten)

    def clear(self, service, instanceId, *, who, why):
        """
        Clear the override of an instance: views show what its client
        publishes again. Return the tombstone, or C{None} if none was in
        force.
        """
        held = self.entries.get((service, instanceId))
        if held is None or held.cleared:
            return None
        return self.write(service, instanceId, dict.fromkeys(CHANGES), who=who, why=why)

    def _nowMs(self):
        return int(self.hlc.clock.seconds() * 1000)

    def _forgettable(self, tombstone, now):
        return now - tombstone.stamp[0] >= self.expiryMs

    def expire(self, published):
        """
        Look at every entry (every C{override_expiry_ms / 10} or so): an
        override whose instance no client published (C{published(service,
        instanceId)} false) for C{override_expiry_ms} is cleared here (a
        tombstone written by C{distro}, replicated as any clear); a
        tombstone that old is forgotten.

        @return: the keys forgotten.
        """
        now = self._nowMs()
        forgotten = []
        seconds = self.expiryMs // 1000
        for key, override in list(self.entries.items()):
            if override.cleared:
                if self._forgettable(override, now):
                    self._drop(key)
                    forgotten.append(key)
                continue
            if published(*key):
                self._goneSince.pop(key, None)
                continue
            since = self._goneSince.setdefault(key, now)
            if now - since >= self.expiryMs:
                self.write(*key, dict.fromkeys(CHANGES), who="distro",
                           why=f"expired: no client published the instance for {seconds} s")
        if forgotten:
            self._forgot(forgotten)
        return forgotten

    def _forgot(self, keys):
        for observer in self.observers:
            observer.overridesForgotten(keys)

    def ofWire(self, value, field="override"):
        """
        Parse one entry's map from a member or disk (L{parseOverride}).
        """
        return parseOverride(value, max(self.maxMetadataBytes, PEER_METADATA_BYTES), field)
