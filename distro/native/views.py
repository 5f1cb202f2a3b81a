# -*- test-case-name: tests.test_hostlist -*-
"""
A view as distro's own protocol sends it (PROTOCOL.md 3): the msgpack map
of a L{distro.registry.ServiceInfo}. Its packed form is a few byte strings
around the packed hosts of each of its groups, written without copying;
each is made once, kept with its info or group (so that every reply and
push of a view shares them), and goes with it.
"""

import msgpack

_KEY = "msgpack"
_PACKER = msgpack.Packer()
_HEAD = _PACKER.pack_map_header(5) + msgpack.packb("service")
_CLUSTERS = msgpack.packb("clusters")
_HOSTS = msgpack.packb("hosts")
_CHECKSUM = msgpack.packb("checksum")
_REVISION = msgpack.packb("revision")


def _clusters(info):
    return list(info.clusters) if info.clusters is not None else None


def wireMap(info):
    """
    The map form of C{info}.
    """
    return {
        "service": info.service.toWire(),
        "clusters": _clusters(info),
        "hosts": [i.host() for i in info.hosts],
        "checksum": info.checksum,
        "revision": info.revision,
    }


def _packedHosts(group):
    return b"".join(h.packedHost() for h in group.hosts)


def _pieces(info):
    head = b"".join((
        _HEAD, msgpack.packb(info.service.toWire()),
        _CLUSTERS, msgpack.packb(_clusters(info)),
        _HOSTS, _PACKER.pack_array_header(info.count),
    ))
    tail = b"".join((_CHECKSUM, msgpack.packb(info.checksum), _REVISION, msgpack.packb(info.revision)))
    pieces = [head] + [g.encoded(_KEY, _packedHosts) for g in info.hostGroups() if g.hosts] + [tail]
    return pieces, sum(len(piece) for piece in pieces)


def packedPieces(info):
    """
    The msgpack of L{wireMap}, as byte strings to write one after the other.
    """
    return info.encoded(_KEY, _pieces)[0]


def packedSize(info):
    """
    The length of L{packedPieces}, counted once.
    """
    return info.encoded(_KEY, _pieces)[1]


def packed(info):
    """
    The msgpack of L{wireMap} as one byte string.
    """
    return b"".join(packedPieces(info))
