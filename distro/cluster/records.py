# -*- test-case-name: tests.test_replication -*-
"""
The wire forms of replicated client data (PROTOCOL.md 5.2): C{client_state},
C{delta} and C{client_remove}, built from a L{distro.clients.Client} on the
sending node and validated into plain values on the receiving one.

A record that fails validation is bad data, not a fault of the link: it is
reported with L{BadRequest} naming the field, and asking for it again would
only bring the same bytes back.
"""

from distro.model import parseInstance, parseService
from distro.wire import BadRequest


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
            [service.toWire(), [i.toWire() for i in held.values()]]
            for service, held in client.services.items()
        ],
    }


def delta(change):
    """
    The C{delta} message of one L{distro.clients.ClientChange}.
    """
    client = change.client
    return {
        "op": "delta",
        "client_id": client.clientId,
        "owner": client.owner,
        "epoch": client.epoch,
        "base_revision": change.baseRevision,
        "revision": change.baseRevision + 1,
        "put": [[s.toWire(), i.toWire()] for s, i in change.put],
        "remove": [[s.toWire(), iid] for s, iid, _ in change.remove],
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


def _instance(value, field, maxMetadataBytes):
    writeTs = value.get("write_ts") if type(value) is dict else None
    if type(writeTs) is not int:
        raise BadRequest(f"{field}.write_ts", "must be an integer")
    return parseInstance(value, field, maxMetadataBytes, writeTs)


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
        for m, value in enumerate(_list(instances, f"{field}.instances")):
            instance = _instance(value, f"{field}.instances[{m}]", maxMetadataBytes)
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
        service, value = _pair(entry, f"put[{n}]")
        put.append(
            (
                parseService(service, f"put[{n}].service"),
                _instance(value, f"put[{n}].instance", maxMetadataBytes),
            )
        )
    remove = []
    for n, entry in enumerate(_list(message.get("remove", []), "remove")):
        service, iid = _pair(entry, f"remove[{n}]")
        if type(iid) is not str:
            raise BadRequest(f"remove[{n}].instance_id", "must be a string")
        remove.append((parseService(service, f"remove[{n}].service"), iid))
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
