# -*- test-case-name: tests.test_client_session -*-
"""
The client's view of the data model (PROTOCOL.md section 3): service keys,
instances and service views, as immutable values that convert to and from
their wire form.

Values built by the user are checked here, so that a mistake fails at the call
that made it, before the client remembers it for later re-registration.
"""

import re
from dataclasses import KW_ONLY, dataclass, field, replace

from distro.model import normalHost

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_GROUP",
    "DEFAULT_CLUSTER",
    "Service",
    "Instance",
    "ServiceInfo",
    "Member",
    "ServiceSummary",
    "ServicePage",
    "Override",
    "RESET",
]

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"

_CLUSTER = re.compile(r"[0-9A-Za-z_.-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _checkName(kind, value, separatorAllowed):
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a string, not {type(value).__name__}")
    if not 1 <= len(value.encode("utf-8")) <= 256:
        raise ValueError(f"{kind} must be 1 to 256 bytes of UTF-8: {value!r}")
    if _CONTROL.search(value):
        raise ValueError(f"{kind} must not contain control characters: {value!r}")
    if not separatorAllowed and "@@" in value:
        raise ValueError(f"{kind} must not contain '@@': {value!r}")


def _clusterFilter(clusters):
    """
    The canonical form of a cluster filter: a sorted tuple, or L{None} for all.
    """
    if isinstance(clusters, str):
        clusters = [clusters]
    return tuple(sorted(set(clusters))) if clusters else None


@dataclass(frozen=True)
class Service:
    """
    A service key: a name inside a group inside a namespace.
    """

    name: str
    _: KW_ONLY
    group: str = DEFAULT_GROUP
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self):
        _checkName("namespace", self.namespace, True)
        _checkName("group", self.group, False)
        _checkName("name", self.name, False)

    def __str__(self):
        return f"{self.namespace}/{self.group}/{self.name}"

    def as_wire(self):
        """
        The wire form, C{{"namespace", "group", "name"}}.
        """
        return {"namespace": self.namespace, "group": self.group, "name": self.name}

    @classmethod
    def from_wire(cls, key):
        """
        Read a wire service key; missing C{namespace} and C{group} take their
        defaults.
        """
        return cls(
            name=key["name"],
            group=key.get("group", DEFAULT_GROUP),
            namespace=key.get("namespace", DEFAULT_NAMESPACE),
        )


@dataclass(frozen=True)
class Instance:
    """
    One instance of a service. Its identity inside the service is
    L{identity}, C{(ip, port, cluster)}.

    C{ip} is kept in the one spelling nodes use too
    (L{distro.model.normalHost}): C{"Host.Example."} is C{"host.example"},
    C{"2001:DB8:0::1"} is C{"2001:db8::1"}. C{metadata} is copied into a new
    C{dict}: changing the mapping given to the constructor does not change
    the instance.
    """

    ip: str
    port: int
    _: KW_ONLY
    cluster: str = DEFAULT_CLUSTER
    weight: float = 1.0
    healthy: bool = True
    enabled: bool = True
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        ip = normalHost(self.ip)
        if ip is None:
            raise ValueError(f"ip must be an IP address or a DNS host name: {self.ip!r}")
        object.__setattr__(self, "ip", ip)
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise ValueError(f"port must be an integer in 1..65535: {self.port!r}")
        if not isinstance(self.cluster, str) or not _CLUSTER.fullmatch(self.cluster):
            raise ValueError(f"cluster must match [0-9A-Za-z_.-]{{1,64}}: {self.cluster!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)):
            raise ValueError(f"weight must be a number: {self.weight!r}")
        if not 0 <= self.weight <= 10000:
            raise ValueError(f"weight must be in 0..10000: {self.weight!r}")
        for flag in ("healthy", "enabled"):
            if type(getattr(self, flag)) is not bool:
                raise ValueError(f"{flag} must be a bool: {getattr(self, flag)!r}")
        metadata = dict(self.metadata or {})
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"metadata must map strings to strings: {key!r}")
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "metadata", metadata)

    @property
    def identity(self):
        """
        C{(ip, port, cluster)}: what makes this instance unique in a service.
        """
        return (self.ip, self.port, self.cluster)

    @property
    def instance_id(self):
        """
        The text form of L{identity}, C{"ip#port#cluster"}.
        """
        return f"{self.ip}#{self.port}#{self.cluster}"

    def as_wire(self):
        """
        The wire form of this instance.
        """
        return {
            "ip": self.ip,
            "port": self.port,
            "cluster": self.cluster,
            "weight": self.weight,
            "healthy": self.healthy,
            "enabled": self.enabled,
            "metadata": dict(self.metadata),
        }

    def as_host(self):
        """
        The wire form of this instance as a view lists it: with its
        C{instance_id}.
        """
        wire = self.as_wire()
        wire["instance_id"] = self.instance_id
        return wire

    @classmethod
    def from_wire(cls, value):
        """
        Read a wire instance (or host); unknown keys, such as a host's
        C{instance_id}, are ignored.
        """
        return cls(
            ip=value["ip"],
            port=value["port"],
            cluster=value.get("cluster", DEFAULT_CLUSTER),
            weight=value.get("weight", 1.0),
            healthy=value.get("healthy", True),
            enabled=value.get("enabled", True),
            metadata=value.get("metadata") or {},
        )

    @classmethod
    def coerce(cls, value):
        """
        Accept an L{Instance} or a mapping with the fields of one.
        """
        if isinstance(value, cls):
            return value
        return cls(**value)


@dataclass(frozen=True)
class ServiceInfo:
    """
    A service view as a node sent it, in a reply or a push.

    @ivar service: the L{Service}.
    @ivar hosts: a tuple of L{Instance}.
    @ivar checksum: a digest of the view's content: equal on every node that
        holds the same view.
    @ivar revision: raised by the sending node on each change of the view; it
        is local to that node, so it is not comparable across a failover.
    @ivar clusters: the cluster filter the view was asked with, a tuple, or
        L{None} for all clusters.
    """

    service: Service
    hosts: tuple
    checksum: str
    revision: int
    _: KW_ONLY
    clusters: tuple = None

    @classmethod
    def from_wire(cls, value):
        """
        Read a wire ServiceInfo.
        """
        clusters = value.get("clusters")
        return cls(
            service=Service.from_wire(value["service"]),
            hosts=tuple(Instance.from_wire(host) for host in value.get("hosts", ())),
            checksum=value["checksum"],
            revision=value["revision"],
            clusters=tuple(clusters) if clusters else None,
        )

    def as_wire(self):
        """
        The wire form, which is also the form printed as JSON.
        """
        return {
            "service": self.service.as_wire(),
            "clusters": list(self.clusters) if self.clusters is not None else None,
            "hosts": [host.as_host() for host in self.hosts],
            "checksum": self.checksum,
            "revision": self.revision,
        }

    def healthy_only(self):
        """
        This view without its unhealthy hosts (C{checksum} and C{revision}
        still describe the whole view).
        """
        hosts = tuple(host for host in self.hosts if host.healthy)
        return replace(self, hosts=hosts)


@dataclass(frozen=True)
class Member:
    """
    A member of the cluster, as the node asked sees it.

    @ivar node: the member's node id.
    @ivar address: where clients reach it (its client port), C{"host:port"}.
    @ivar state: C{"UP"}, C{"SUSPICIOUS"} or C{"DOWN"}.
    @ivar is_self: whether it is the node that answered.
    """

    node: str
    address: str
    state: str
    _: KW_ONLY
    is_self: bool = False

    @classmethod
    def from_wire(cls, value):
        """
        Read a member of a C{members} reply.
        """
        return cls(value["node"], value["address"], value["state"],
                   is_self=bool(value.get("self")))

    def as_wire(self):
        """
        The wire form, C{{"node", "address", "state", "self"}}.
        """
        return {"node": self.node, "address": self.address, "state": self.state,
                "self": self.is_self}


@dataclass(frozen=True)
class ServiceSummary:
    """
    A service of a listing, and how many instances its unfiltered view shows.
    """

    service: Service
    instances: int

    def as_wire(self):
        """
        The wire form, C{{"group", "name", "instances"}} (the namespace is
        the listing's).
        """
        return {"group": self.service.group, "name": self.service.name,
                "instances": self.instances}


@dataclass(frozen=True)
class ServicePage:
    """
    One page of a namespace's services, in group and name order.

    @ivar count: how many services the namespace (or the group asked) has
        in all.
    @ivar services: this page's, a tuple of L{ServiceSummary}.
    @ivar namespace: the namespace listed.
    """

    count: int
    services: tuple
    _: KW_ONLY
    namespace: str = DEFAULT_NAMESPACE

    @classmethod
    def from_wire(cls, value, *, namespace=DEFAULT_NAMESPACE):
        """
        Read a C{services} reply to a request for C{namespace}.
        """
        return cls(
            value["count"],
            tuple(
                ServiceSummary(
                    Service(entry["name"], group=entry.get("group", DEFAULT_GROUP),
                            namespace=namespace),
                    entry["instances"],
                )
                for entry in value["services"]
            ),
            namespace=namespace,
        )

    def as_wire(self):
        """
        The wire form, C{{"count", "services": [{"group", "name",
        "instances"}]}}.
        """
        return {"count": self.count, "services": [s.as_wire() for s in self.services]}


class _Reset:
    """
    The type of L{RESET}.
    """

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "RESET"


# Given for a field of L{distro.client.DistroClient.set_override}: that field
# is removed from the override (views show what the instance's client
# publishes for it again).
RESET = _Reset()


@dataclass(frozen=True)
class Override:
    """
    An operator's override of one instance (PROTOCOL.md 5.7): what views
    show of it instead of what its client publishes.

    @ivar service: the L{Service}.
    @ivar instance_id: C{"ip#port#cluster"}.
    @ivar enabled: shown enabled or not, or L{None} (as published).
    @ivar weight: the weight shown, or L{None}.
    @ivar metadata: a patch of the metadata shown (a value of L{None}
        hides that key), or L{None}.
    @ivar removed: whether the instance is shown nowhere.
    @ivar who: who set it.
    @ivar why: the reason given (C{""} for none).
    @ivar at: when it was set, seconds since the epoch.
    @ivar cleared: whether it was cleared (sets nothing).
    """

    service: Service
    instance_id: str
    _: KW_ONLY
    enabled: bool = None
    weight: float = None
    metadata: dict = None
    removed: bool = False
    who: str = ""
    why: str = ""
    at: float = 0.0
    cleared: bool = False

    @classmethod
    def from_wire(cls, value):
        """
        Read a wire entry.
        """
        return cls(
            service=Service.from_wire(value["service"]),
            instance_id=value["instance_id"],
            enabled=value.get("enabled"),
            weight=value.get("weight"),
            metadata=value.get("metadata"),
            removed=bool(value.get("removed", False)),
            who=value.get("who", ""),
            why=value.get("why", ""),
            at=value["stamp"][0] / 1000.0,
            cleared=bool(value.get("cleared", False)),
        )

    def changes(self):
        """
        The fields it sets, C{{name: value}}.
        """
        found = {name: getattr(self, name) for name in ("enabled", "weight", "metadata")
                 if getattr(self, name) is not None}
        if self.removed:
            found["removed"] = True
        return found

    def as_json(self):
        """
        The form printed as JSON: the service, C{instance_id}, the fields
        set, C{who}, C{why}, C{at}.
        """
        return dict(service=self.service.as_wire(), instance_id=self.instance_id, who=self.who,
                    why=self.why, at=self.at, **self.changes())
