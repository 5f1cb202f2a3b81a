# -*- test-case-name: tests.test_records -*-
"""
The wire forms of replicated client data (PROTOCOL.md 5.2): C{client_state},
C{delta} and C{client_remove}, built from a L{distro.clients.Client} on the
sending node and validated into plain values on the receiving one.

A record that fails validation is bad data, not a fault of the link: it is
reported with L{BadRequest} naming the field, and asking for it again would
only bring the same bytes back.
"""

import msgpack

from distro.model import parseRecord, parseService
from distro.wire import BadRequest, RequestError, encode

# What a piece of a client_state adds beyond its instances: the array
# headers of each [service, [instances]] entry, and a margin.
_ENTRY_OVERHEAD = 12
_PIECE_MARGIN = 64


class RecordTooLarge(Exception):
    """
    A record cannot be cut into frames within the peer limit (a single
    instance does not fit: a configuration the node refuses at start).
    """


def clientState(client):
    """
    The C{client_state} message of a whole client.
    """
    return {
        "op": "client_state",
        "client_id": client.clientId,
        "owner": client.owner,
        "epoch": client.epoch,
        "revision": client.revision,
        "resume_token_hash": client.resumeTokenHash,
        "services": [
            [service.toWire(), [i.toRecord() for i in held.values()]]
            for service, held in client.services.items()
        ],
    }


def clientStateFrames(client, maxFrame):
    """
    The C{client_state} of a whole client as encoded frames, each within
    C{maxFrame} bytes: one frame if it fits, else pieces numbered by
    C{part} from 0, all but the last with C{more: true} (PROTOCOL.md 5.2
    rule 7), to be sent consecutively on the link.

    @raise RecordTooLarge: if one instance alone does not fit.
    """
    message = clientState(client)
    frame = encode(message)
    if len(frame) <= maxFrame:
        return [frame]
    header = {k: v for k, v in message.items() if k != "services"}
    budget = maxFrame - len(encode(dict(header, services=[], part=2**32, more=True))) - _PIECE_MARGIN
    pieces = []
    current = []
    size = 0
    for service, instances in message["services"]:
        serviceSize = len(msgpack.packb(service)) + _ENTRY_OVERHEAD
        entry = None
        for instanceSize, instance in _sized(instances):
            needed = instanceSize + (serviceSize if entry is None else 0)
            if current and size + needed > budget:
                pieces.append(current)
                current, size, entry = [], 0, None
                needed = instanceSize + serviceSize
            if entry is None:
                entry = [service, []]
                current.append(entry)
            if instance is not None:
                entry[1].append(instance)
            size += needed
    pieces.append(current)
    frames = []
    for n, services in enumerate(pieces):
        piece = dict(header, services=services, part=n)
        if n < len(pieces) - 1:
            piece["more"] = True
        frame = encode(piece)
        if len(frame) > maxFrame:
            raise RecordTooLarge(
                f"client {client.clientId}: an instance does not fit in peer_max_frame {maxFrame}"
            )
        frames.append(frame)
    return frames


def _sized(instances):
    """
    C{(encoded size, instance)} of each instance; a service without any
    still takes its place, as C{(0, None)}.
    """
    if not instances:
        return [(0, None)]
    return [(len(msgpack.packb(i)), i) for i in instances]


def delta(client, baseRevision, put, remove):
    """
    The C{delta} message taking C{client} from C{baseRevision} to its
    current revision: C{put} is C{[(service, Instance)]}, C{remove}
    C{[(service, instanceId)]}; both go grouped by service.
    """
    puts = {}
    for service, instance in put:
        records = puts.get(service)
        if records is None:
            records = puts[service] = []
        records.append(instance.toRecord())
    removes = {}
    for service, instanceId in remove:
        ids = removes.get(service)
        if ids is None:
            ids = removes[service] = []
        ids.append(instanceId)
    return {
        "op": "delta",
        "client_id": client.clientId,
        "owner": client.owner,
        "epoch": client.epoch,
        "base_revision": baseRevision,
        "revision": client.revision,
        "put": [[s.toWire(), records] for s, records in puts.items()],
        "remove": [[s.toWire(), ids] for s, ids in removes.items()],
    }


def clientRemove(clientId, owner, epoch):
    """
    The C{client_remove} message.
    """
    return {"op": "client_remove", "client_id": clientId, "owner": owner, "epoch": epoch}


def _str(message, key):
    value = message.get(key)
    if type(value) is not str or not value:
        raise BadRequest(key, "must be a non-empty string")
    return value


def _int(message, key):
    value = message.get(key)
    if type(value) is not int or value < 0:
        raise BadRequest(key, "must be an integer >= 0")
    return value


def _list(value, field):
    if type(value) is not list:
        raise BadRequest(field, "must be a list")
    return value


def _pair(value, field):
    if type(value) is not list or len(value) != 2:
        raise BadRequest(field, "must be a [service, value] pair")
    return value


def _records(values, field, maxMetadataBytes):
    """
    The L{Instance}s of a list of instance records.
    """
    values = _list(values, field)
    try:
        return [parseRecord(v, field, maxMetadataBytes) for v in values]
    except RequestError:
        # Again, one by one, to name the record at fault.
        for m, value in enumerate(values):
            parseRecord(value, f"{field}[{m}]", maxMetadataBytes)
        raise


class Header:
    """
    The identifying part of a replication record.
    """

    __slots__ = ("clientId", "owner", "epoch")

    def __init__(self, message):
        self.clientId = _str(message, "client_id")
        self.owner = _str(message, "owner")
        self.epoch = _int(message, "epoch")


def parseClientState(message, maxMetadataBytes):
    """
    Validate a C{client_state}.

    @return: C{(header, revision, resumeTokenHash, services)} where
        C{services} maps L{ServiceKey} to C{{instanceId: Instance}}.
    """
    header = Header(message)
    revision = _int(message, "revision")
    tokenHash = message.get("resume_token_hash", "")
    if type(tokenHash) is not str:
        raise BadRequest("resume_token_hash", "must be a string")
    services = {}
    for n, entry in enumerate(_list(message.get("services"), "services")):
        field = f"services[{n}]"
        service, instances = _pair(entry, field)
        key = parseService(service, f"{field}.service")
        held = services.setdefault(key, {})
        for instance in _records(instances, f"{field}.instances", maxMetadataBytes):
            held[instance.instanceId] = instance
    return header, revision, tokenHash, services


def parseDelta(message, maxMetadataBytes):
    """
    Validate a C{delta}.

    @return: C{(header, baseRevision, revision, put, remove)} with C{put}
        C{[(service, Instance)]} and C{remove} C{[(service, instanceId)]}.
    """
    header = Header(message)
    baseRevision = _int(message, "base_revision")
    revision = _int(message, "revision")
    if revision <= baseRevision:
        raise BadRequest("revision", "must be greater than base_revision")
    put = []
    for n, entry in enumerate(_list(message.get("put", []), "put")):
        field = f"put[{n}]"
        service, instances = _pair(entry, field)
        key = parseService(service, f"{field}.service")
        for instance in _records(instances, f"{field}.instances", maxMetadataBytes):
            put.append((key, instance))
    remove = []
    for n, entry in enumerate(_list(message.get("remove", []), "remove")):
        field = f"remove[{n}]"
        service, ids = _pair(entry, field)
        key = parseService(service, f"{field}.service")
        for iid in _list(ids, f"{field}.instance_ids"):
            if type(iid) is not str:
                raise BadRequest(f"{field}.instance_ids", "must be strings")
            remove.append((key, iid))
    return header, baseRevision, revision, put, remove


def parseDigest(message):
    """
    Validate a C{digest}: C{{clientId: revision}}.
    """
    clients = {}
    for n, entry in enumerate(_list(message.get("clients"), "clients")):
        if (
            type(entry) is not list
            or len(entry) != 2
            or type(entry[0]) is not str
            or type(entry[1]) is not int
        ):
            raise BadRequest(f"clients[{n}]", "must be a [client_id, revision] pair")
        clients[entry[0]] = entry[1]
    return clients


def parseBuckets(value, count):
    """
    Validate the C{buckets} of a C{digest} listing or a C{digest_ask}: a
    set of bucket numbers below C{count}, or L{None} when absent.
    """
    if value is None:
        return None
    if type(value) is not list or not all(type(b) is int and 0 <= b < count for b in value):
        raise BadRequest("buckets", f"must be a list of bucket numbers 0..{count - 1}")
    return set(value)
