# -*- test-case-name: tests.test_model -*-
"""
The data model of PROTOCOL.md section 3: service keys, instances, their
validation (one place, one error per bad field) and the checksum of a view.
"""

import hashlib
import ipaddress
import math
import re
from typing import NamedTuple

import msgpack

from distro.errors import BadRequest, LimitExceeded
from distro.shared import Shared

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"
MAX_NAME_BYTES = 256
MAX_WEIGHT = 10000.0

_CLUSTER = re.compile(r"[0-9A-Za-z_.-]{1,64}\Z")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ServiceKey(NamedTuple):
    """
    The identity of a service: namespace, group, name.
    """

    namespace: str
    group: str
    name: str

    def toWire(self):
        """
        The map form used on the wire.
        """
        return {"namespace": self.namespace, "group": self.group, "name": self.name}

    def __str__(self):
        return f"{self.namespace}/{self.group}/{self.name}"


class Instance:
    """
    One published instance of a service, immutable once built. Its
    C{metadata} map may be shared with other instances that carry an equal
    one (see L{parseInstance}): nothing may ever change it.

    C{writeTs} is the owner's timestamp (milliseconds) of the write that
    published it; it breaks ties between clients publishing the same
    C{(ip, port, cluster)} but is not part of the instance's content.
    """

    __slots__ = (
        "ip",
        "port",
        "cluster",
        "weight",
        "healthy",
        "enabled",
        "metadata",
        "writeTs",
        "instanceId",
        "_packed",
        "_hash",
    )

    def __init__(self, ip, port, cluster, weight, healthy, enabled, metadata, writeTs=0):
        self.ip = ip
        self.port = port
        self.cluster = cluster
        self.weight = weight
        self.healthy = healthy
        self.enabled = enabled
        self.metadata = metadata
        self.writeTs = writeTs
        self.instanceId = f"{ip}#{port}#{cluster}"
        self._packed = None
        self._hash = None

    def content(self):
        """
        Everything a subscriber sees, as a tuple that compares and hashes the
        same on every node.
        """
        return (*self._scalars(), tuple(sorted(self.metadata.items())))

    def _scalars(self):
        return (self.ip, self.port, self.cluster, self.weight, self.healthy, self.enabled)

    def sameContent(self, other):
        """
        Whether C{other} would look the same to a subscriber.
        """
        return other is not None and (
            self.ip == other.ip
            and self.port == other.port
            and self.cluster == other.cluster
            and self.weight == other.weight
            and self.healthy == other.healthy
            and self.enabled == other.enabled
            and self.metadata == other.metadata
        )

    def _fields(self):
        return {
            "ip": self.ip,
            "port": self.port,
            "cluster": self.cluster,
            "weight": self.weight,
            "healthy": self.healthy,
            "enabled": self.enabled,
            "metadata": self.metadata,
        }

    def host(self):
        """
        The host map of a ServiceInfo: the instance plus C{instance_id}.
        """
        host = self._fields()
        host["instance_id"] = self.instanceId
        return host

    def packedHost(self):
        """
        L{host} packed with msgpack, made once and shared by every reply and
        push that carries this instance.
        """
        if self._packed is None:
            self._packed = msgpack.packb(self.host(), use_bin_type=True)
        return self._packed

    def contentHash(self):
        """
        What this instance adds to a view's checksum (PROTOCOL.md 3): the
        BLAKE2b-128 of the msgpack array of its L{content}, as an integer.
        """
        if self._hash is None:
            digest = hashlib.blake2b(
                msgpack.packb(self.content(), use_bin_type=True), digest_size=16
            ).digest()
            self._hash = int.from_bytes(digest, "big")
        return self._hash

    def toRecord(self):
        """
        The replication form (PROTOCOL.md 5.2): the array of the fields of
        L{RECORD_FIELDS}, C{write_ts} last.
        """
        return [*self._scalars(), self.metadata, self.writeTs]

    def __repr__(self):
        return f"<Instance {self.instanceId} w={self.weight} h={self.healthy} e={self.enabled}>"


def _text(value, field, maxBytes=MAX_NAME_BYTES):
    if type(value) is str and value.isascii() and value.isprintable() and 0 < len(value) <= maxBytes:
        # The usual name: printable ASCII (no control character), its
        # length its size in UTF-8.
        return value
    if type(value) is not str:
        raise BadRequest(field, "must be a string")
    if not value:
        raise BadRequest(field, "must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate (JSON can carry one): no UTF-8 could hold it.
        raise BadRequest(field, "is not valid Unicode text (a lone surrogate)")
    if size > maxBytes:
        raise BadRequest(field, f"longer than {maxBytes} bytes")
    if _CONTROL.search(value):
        raise BadRequest(field, "contains a control character")
    return value


def parseService(value, field="service"):
    """
    Validate a service key map and apply its defaults.

    @rtype: L{ServiceKey}
    @raise BadRequest: naming the offending field.
    """
    if type(value) is not dict:
        raise BadRequest(field, "must be a map")
    namespace = value.get("namespace", DEFAULT_NAMESPACE)
    group = value.get("group", DEFAULT_GROUP)
    if namespace is None or namespace == "":
        namespace = DEFAULT_NAMESPACE  # "" is public, as in Nacos
    if group is None:
        group = DEFAULT_GROUP
    if "name" not in value:
        raise BadRequest(f"{field}.name", "is required")
    name = value["name"]
    try:
        known = _SERVICE_KEYS.get((namespace, group, name))
    except TypeError:  # an unhashable value: validation names it
        known = None
    if known is not None:
        return known
    namespace = _text(namespace, f"{field}.namespace")
    group = _text(group, f"{field}.group")
    name = _text(name, f"{field}.name")
    if "@@" in group:
        raise BadRequest(f"{field}.group", "must not contain '@@'")
    if "@@" in name:
        raise BadRequest(f"{field}.name", "must not contain '@@'")
    # A namespace and a group name many services: one string of each (a
    # bounded table, not sys.intern: interned strings are never freed on
    # some Python 3.12 releases, and these come from clients).
    namespace = _NAMES.same(namespace)
    group = _NAMES.same(group)
    key = ServiceKey(namespace, group, name)
    return _SERVICE_KEYS.share(key, key)


# Service keys already validated: the same service is named again and again
# (every request and replicated record), and one key object serves them all.
_SERVICE_KEYS = Shared(65536)
# The names of namespaces, groups and clusters: few, each shared by many
# service keys and instances.
_NAMES = Shared(4096)


def parseNamespace(value, field="namespace"):
    """
    Validate an optional namespace (defaulting to C{public}, which C{""}
    also names, as in Nacos).
    """
    if value is None or value == "":
        return DEFAULT_NAMESPACE
    return _text(value, field)


def parseGroup(value, field="group"):
    """
    Validate an optional group filter; C{None} means every group.
    """
    if value is None:
        return None
    return _text(value, field)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_NORMAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}\Z")


def normalHost(value):
    """
    The one spelling of an instance address that nodes and the client
    library both use: an IPv4 or IPv6 literal in its compressed form, or a
    DNS host name lower-cased without its trailing dot; C{None} if
    C{value} is neither.
    """
    if type(value) is not str or not value:
        return None
    if _NORMAL_IPV4.match(value):
        return value  # the usual case, already in its one spelling
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        # An all-numeric last label is no DNS name (RFC 3696 2): "1.2.3.4.5"
        # or "300.1.1.1" is a mistyped address.
        return None
    return name.lower()


def parseIp(value, field):
    """
    An instance address, normalised (L{normalHost}).
    """
    if type(value) is not str or not value:
        raise BadRequest(field, "must be a non-empty string")
    host = normalHost(value)
    if host is None:
        raise BadRequest(field, "must be an IP address or a DNS host name")
    return host


def parsePort(value, field):
    """
    A port number, 1..65535.
    """
    if type(value) is not int:
        raise BadRequest(field, "must be an integer")
    if not 1 <= value <= 65535:
        raise BadRequest(field, "must be in 1..65535")
    return value


def parseCluster(value, field):
    """
    A cluster name, C{[0-9A-Za-z_.-]{1,64}}, default C{DEFAULT}.
    """
    if value is None:
        return DEFAULT_CLUSTER
    if type(value) is not str or not _CLUSTER.match(value):
        raise BadRequest(field, "must match [0-9A-Za-z_.-]{1,64}")
    return value


def parseClusters(value, field="clusters"):
    """
    An optional cluster filter: C{None} or a list of cluster names, returned as
    a sorted tuple without duplicates (so equal filters compare equal).
    """
    if value is None:
        return None
    if type(value) is not list:
        raise BadRequest(field, "must be a list of cluster names")
    if len(value) > 1024:
        raise BadRequest(field, "lists more than 1024 clusters")
    return tuple(sorted({parseCluster(c, f"{field}[{i}]") for i, c in enumerate(value)}))


def _bool(value, field, default):
    if value is None:
        return default
    if type(value) is not bool:
        raise BadRequest(field, "must be a boolean")
    return value


def parseInstance(value, field="instance", maxMetadataBytes=8192, writeTs=0):
    """
    Validate an instance map and apply its defaults.

    @rtype: L{Instance}
    @raise BadRequest: naming the offending field.
    @raise LimitExceeded: if the metadata is larger than C{maxMetadataBytes}.
    """
    if type(value) is not dict:
        raise BadRequest(field, "must be a map")
    get = value.get
    cluster = get("cluster")
    weight = get("weight")
    healthy = get("healthy")
    if type(healthy) is not bool:
        healthy = _bool(healthy, f"{field}.healthy", True)
    enabled = get("enabled")
    if type(enabled) is not bool:
        enabled = _bool(enabled, f"{field}.enabled", True)
    metadata = get("metadata")
    return _instance(
        get("ip"),
        get("port"),
        DEFAULT_CLUSTER if cluster is None else cluster,
        1.0 if weight is None else weight,
        healthy,
        enabled,
        _NO_METADATA if metadata is None else metadata,
        writeTs,
        field,
        maxMetadataBytes,
    )


RECORD_FIELDS = ("ip", "port", "cluster", "weight", "healthy", "enabled", "metadata", "write_ts")


def parseRecord(value, field="instance", maxMetadataBytes=8192):
    """
    Validate an instance record, the replication form (PROTOCOL.md 5.2): the
    array of L{RECORD_FIELDS}, every one present.

    @rtype: L{Instance}
    @raise BadRequest: naming the offending field.
    @raise LimitExceeded: if the metadata is larger than C{maxMetadataBytes}.
    """
    if type(value) is not list or len(value) != 8:
        raise BadRequest(field, f"must be an array of {len(RECORD_FIELDS)}: {', '.join(RECORD_FIELDS)}")
    ip, port, cluster, weight, healthy, enabled, metadata, writeTs = value
    if type(healthy) is not bool:
        raise BadRequest(f"{field}.healthy", "must be a boolean")
    if type(enabled) is not bool:
        raise BadRequest(f"{field}.enabled", "must be a boolean")
    if type(writeTs) is not int:
        raise BadRequest(f"{field}.write_ts", "must be an integer")
    return _instance(
        ip, port, cluster, weight, healthy, enabled, metadata, writeTs, field, maxMetadataBytes
    )


def _instance(ip, port, cluster, weight, healthy, enabled, metadata, writeTs, field, maxMetadataBytes):
    # Every instance of every request and replicated record comes through
    # here: the usual values are checked inline, and a field's name is
    # spelled out only for an error.
    if type(ip) is not str or not _NORMAL_IPV4.match(ip):
        ip = parseIp(ip, f"{field}.ip")
    if type(port) is not int or not 1 <= port <= 65535:
        parsePort(port, f"{field}.port")
    if type(cluster) is not str:
        raise BadRequest(f"{field}.cluster", "must be a string")
    if not _CLUSTER.match(cluster):
        parseCluster(cluster, f"{field}.cluster")
    if type(weight) not in (int, float) or not math.isfinite(weight):
        raise BadRequest(f"{field}.weight", "must be a number")
    if not 0 <= weight <= MAX_WEIGHT:
        raise BadRequest(f"{field}.weight", "must be in 0..10000")
    if metadata is not _NO_METADATA:
        metadata = _checkedMetadata(metadata, field, maxMetadataBytes)
    weight = float(weight)
    return Instance(
        ip,
        _PORTS.setdefault(port, port),
        _NAMES.same(cluster),
        _WEIGHTS.get(weight, weight),
        healthy,
        enabled,
        metadata,
        writeTs,
    )


# One object for each port number and for the usual weights, shared by every
# instance (a number object per instance is memory for nothing).
_PORTS = {}
_WEIGHTS = {w: w for w in (0.0, 1.0, 10.0, 100.0)}


# Metadata maps shared by the instances that carry equal ones (most instances
# of a service carry the same few keys and values): a map per instance would
# be most of an instance's memory. Instances never change their metadata.
# Each is remembered with its packed size, so that an equal map is neither
# packed nor kept again.
_NO_METADATA = {}
_SHARED_METADATA = Shared(4096)
_SHARED_METADATA_ENTRIES = 8


def _checkedMetadata(metadata, field, maxMetadataBytes):
    """
    C{metadata} checked (a map of strings within C{maxMetadataBytes}
    packed), as the map to keep: an equal one already kept if there is.
    """
    if type(metadata) is not dict:
        raise BadRequest(f"{field}.metadata", "must be a map of strings")
    if not metadata:
        return _NO_METADATA
    key = known = None
    if len(metadata) <= _SHARED_METADATA_ENTRIES:
        try:
            key = tuple(metadata.items())
            known = _SHARED_METADATA.get(key)
        except TypeError:  # an unhashable value: refused below
            key = None
    if known is not None:
        # Equal to a map checked before: strings only.
        metadata, size = known
    else:
        for k, v in metadata.items():
            if type(k) is not str or type(v) is not str:
                raise BadRequest(f"{field}.metadata", "keys and values must be strings")
        try:
            size = len(msgpack.packb(metadata))
        except UnicodeEncodeError:
            raise BadRequest(f"{field}.metadata", "is not valid Unicode text (a lone surrogate)")
    if size > maxMetadataBytes:
        raise LimitExceeded(
            "max_metadata_bytes",
            f"{field}.metadata is larger than {maxMetadataBytes} bytes",
        )
    if key is not None and known is None:
        _SHARED_METADATA.share(key, (metadata, size))
    return metadata


def parseInstanceRef(value, field="instance"):
    """
    The identity part of an instance (C{ip}, C{port}, C{cluster}?), as its
    C{instance_id}.
    """
    if type(value) is not dict:
        raise BadRequest(field, "must be a map")
    ip = parseIp(value.get("ip"), f"{field}.ip")
    port = parsePort(value.get("port"), f"{field}.port")
    cluster = parseCluster(value.get("cluster"), f"{field}.cluster")
    return f"{ip}#{port}#{cluster}"


def checksum(instances):
    """
    A digest of a view's content (PROTOCOL.md 3): the sum of the instances'
    L{Instance.contentHash} modulo 2**128, as 32 hex digits. Equal on every
    node for equal content, whatever the order the instances are given in.
    """
    return formatChecksum(checksumSum(instances))


CHECKSUM_MODULUS = 1 << 128


def checksumSum(instances):
    """
    The sum of the instances' L{Instance.contentHash}, modulo 2**128.
    """
    return sum(i.contentHash() for i in instances) % CHECKSUM_MODULUS


def formatChecksum(total):
    """
    A checksum sum as a view's checksum: 32 hex digits.
    """
    return f"{total:032x}"
