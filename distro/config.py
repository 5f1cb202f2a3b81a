# -*- test-case-name: tests.test_config -*-
"""
Node configuration: every key with its type, default and meaning, read from a
TOML file and overridden from the command line. A wrong value fails at start
with a message naming the key.
"""

import difflib
import os
import socket
import tomllib
from dataclasses import dataclass, fields

from distro.address import parseAddress
from distro.cluster.keys import ClusterKeys
from distro.http.keys import HttpKeys
from distro.keys import ConfigError, keyField, nonNegative, positive
from distro.logformat import LEVELS
from distro.nacos.keys import NacosKeys
from distro.native.keys import NativeKeys


# Bytes beyond its metadata that one instance can take in a frame: the
# longest ip, cluster and service names, the other fields and the envelope.
LARGEST_INSTANCE_OVERHEAD = 4096

# The smallest peer frame limit: a digest of bucket hashes (PROTOCOL.md
# 5.2.1) is 8 KiB and some.
MIN_PEER_FRAME = 16384


def _logFormat(key, value):
    if value not in ("text", "json"):
        raise ConfigError(key, "must be 'text' or 'json'")


def _address(key, value):
    """
    A C{host:port} address (an IPv6 host in brackets), or empty.
    """
    if value:
        try:
            parseAddress(value)
        except ValueError as e:
            raise ConfigError(key, str(e))


def _logLevel(key, value):
    if value not in LEVELS:
        raise ConfigError(key, f"must be one of {', '.join(LEVELS)}, not {value!r}")


def _tokens(key, value):
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table of token = [namespace, ...]")
    for token, namespaces in value.items():
        if not token:
            raise ConfigError(key, "a token must not be empty")
        if token.startswith("dt1."):
            raise ConfigError(key, "a token must not start with 'dt1.' (the form of login tokens)")
        if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
            raise ConfigError(key, f"token {token[:4]}...: must list namespace names or '*'")


def _networks(key, value):
    from distro.auth import parseNetworks

    try:
        parseNetworks(value)
    except ValueError as e:
        raise ConfigError(key, str(e))


def _users(key, value):
    from distro.auth import PasswordHashError, parsePasswordHash

    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table of user = {password, namespaces, admin}")
    for name, entry in value.items():
        where = f"user {name[:64]!r}"
        if not name or ":" in name:
            raise ConfigError(key, "a user name must not be empty or contain ':'")
        if not isinstance(entry, dict):
            raise ConfigError(key, f"{where}: must be a table {{password, namespaces, admin}}")
        unknown = set(entry) - {"password", "namespaces", "admin"}
        if unknown:
            raise ConfigError(key, f"{where}: unknown field {sorted(unknown)[0]!r}")
        try:
            parsePasswordHash(entry.get("password"))
        except PasswordHashError as e:
            raise ConfigError(key, f"{where}: password: {e}")
        namespaces = entry.get("namespaces", [])
        if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
            raise ConfigError(key, f"{where}: namespaces must list namespace names or '*'")
        if not isinstance(entry.get("admin", False), bool):
            raise ConfigError(key, f"{where}: admin must be true or false")


@dataclass
class CoreKeys:
    """
    The keys of the node's core: its id, what every client connection may
    do, logs, the garbage collector, auth.
    """

    node_id: str = keyField("", "This node's id; empty means the host name.")
    listen_backlog: int = keyField(
        4096,
        "Pending connections the client port's kernel queue holds (unless listen names a "
        "backlog): the clients of a dead node all arrive at once.",
        positive,
    )
    advertise: str = keyField(
        "", "The client-port address given to clients (host:port); empty means derived.",
        _address,
    )
    idle_timeout_ms: int = keyField(10000, "Connections silent this long are closed.", positive)
    disconnect_grace_ms: int = keyField(
        2000, "How long a client's instances outlive its connection.", nonNegative
    )
    drain_timeout_ms: int = keyField(
        10000,
        "On SIGTERM, how long the node waits for its clients to move to other members before "
        "it stops; 0: it stops at once.",
        nonNegative,
    )
    rebalance_after_restart: bool = keyField(
        False,
        "When the members change (one restarted, for example), a node holding more than its "
        "share of the cluster's client sessions moves the excess to the others, a few a second.",
    )
    push_delay_ms: int = keyField(
        0, "Minimum interval between two pushes of one subscription; 0: as soon as possible.",
        nonNegative,
    )
    max_frame: int = keyField(8 * 1024 * 1024, "Largest client-port frame, in bytes.", positive)
    handshake_timeout_ms: int = keyField(
        10000,
        "A connection (client or peer port) that has not completed its handshake this long "
        "after connecting is dropped.",
        positive,
    )
    max_unsent_bytes: int = keyField(
        16 * 1024 * 1024,
        "Bytes a client connection may have waiting past its send buffer; a reply that would "
        "not fit is refused, a push that would not fit closes the connection.",
        positive,
    )
    max_instances_per_client: int = keyField(10000, "Instances one client may publish.", positive)
    max_subscriptions_per_client: int = keyField(10000, "Subscriptions one client may hold.", positive)
    max_connections_per_ip: int = keyField(
        0, "Connections per remote IP, to the client ports together; 0 is unlimited.", nonNegative
    )
    max_metadata_bytes: int = keyField(8192, "Largest encoded metadata of one instance.", positive)
    max_heartbeat_clients: int = keyField(
        100000,
        "Heartbeat clients (instances registered over HTTP, one client per ip:port) this node "
        "owns at most; past it their registrations are refused.",
        positive,
    )
    log_format: str = keyField("text", "'text' (twistd's log) or 'json' (JSON lines, see json_log).", _logFormat)
    json_log: str = keyField("-", "Where JSON lines go when log_format is json: a path, or - for stdout.")
    log_level: str = keyField(
        "info",
        "The least level logged: debug (also each client's connecting, resuming, leaving, "
        "and every reconnect attempt of a peer link), info, warn or error.",
        _logLevel,
    )
    log_rotate_bytes: int = keyField(
        10_000_000, "twistd's log file is rotated past this size (with --logfile, or daemonized).",
        positive,
    )
    log_max_files: int = keyField(10, "Rotated log files kept; older ones are removed.", positive)
    gc_freeze: bool = keyField(
        True,
        "Move what exists at start, what was loaded, and what survives each garbage "
        "collection of generation 1 or 2 out of the collector's generations: each collection "
        "walks only what is new, and pauses stay short with a large registry.",
    )
    auth_tokens: dict = keyField(
        {},
        "Client tokens: token = [namespace, ...] ('*' for all, '' is public). With neither "
        "these nor auth_users: no authentication.",
        _tokens,
    )
    auth_users: dict = keyField(
        {},
        "Users who log in (Nacos SDKs' username/password): user = {password = scrypt hash "
        "(distro hash-password), namespaces = [...], admin = bool}. Needs the cluster secret, "
        "which signs their tokens.",
        _users,
    )
    auth_token_ttl_ms: int = keyField(
        18000000, "How long a login token is valid (Nacos' tokenTtl, 5 h).", positive
    )
    admin_from: str = keyField(
        "",
        "Without auth_tokens or auth_users, the networks operators' actions (overrides) are taken "
        "from besides loopback: comma-separated addresses or CIDRs, e.g. 10.0.0.0/8. With "
        "tokens or users, those need an admin grant instead.",
        _networks,
    )
    data_dir: str = keyField(
        "distro-data",
        "Directory of this node's durable data (the operators' overrides), relative to twistd's "
        "--rundir (where it runs); one per node. Empty: kept in memory only (members still hold them).",
    )
    max_overrides: int = keyField(
        10000, "Operator overrides the cluster holds at most (cleared ones count until forgotten).",
        positive,
    )
    override_expiry_ms: int = keyField(
        7 * 24 * 3600 * 1000,
        "An override whose instance no client published for this long is cleared; a cleared "
        "one is forgotten this long after.",
        positive,
    )


@dataclass
class Config(NativeKeys, NacosKeys, HttpKeys, ClusterKeys, CoreKeys):
    """
    The configuration of one node: the keys of its core, its cluster side and
    each of its ports, each declared where it is used. Keys and defaults
    follow PROTOCOL.md 7.
    """

    def validate(self):
        """
        Check every key; raise L{ConfigError} naming the first wrong one.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            expected = type(f.metadata["default"])
            if expected is int and (type(value) is not int):
                raise ConfigError(f.name, f"must be an integer, not {value!r}")
            if expected is bool and type(value) is not bool:
                raise ConfigError(f.name, f"must be true or false, not {value!r}")
            if expected is not int and not isinstance(value, expected):
                raise ConfigError(f.name, f"must be a {expected.__name__}, not {value!r}")
            check = f.metadata["check"]
            if check is not None:
                check(f.name, value)
        if self.idle_timeout_ms <= self.heartbeat_ms:
            raise ConfigError("idle_timeout_ms", "must be greater than heartbeat_ms")
        if self.down_after_ms <= self.peer_timeout_ms:
            raise ConfigError("down_after_ms", "must be greater than peer_timeout_ms")
        # One instance of the largest metadata, with its longest names, must
        # fit in a request and in a piece of a replicated client.
        largestInstance = self.max_metadata_bytes + LARGEST_INSTANCE_OVERHEAD
        for key in ("max_frame", "peer_max_frame"):
            if getattr(self, key) < largestInstance:
                raise ConfigError(
                    key,
                    f"must be at least {largestInstance} bytes: an instance of "
                    f"max_metadata_bytes ({self.max_metadata_bytes}) must fit in one frame",
                )
        if self.peer_max_frame < MIN_PEER_FRAME:
            raise ConfigError(
                "peer_max_frame",
                f"must be at least {MIN_PEER_FRAME} bytes: a digest's bucket hashes must fit",
            )
        if not self.node_id and not self.cluster:
            # A clustered node defaults to its own cluster.conf line, which
            # differs between nodes that share a host name.
            self.node_id = socket.gethostname()
        self.peerDialer()
        return self


KEYS = {f.name: f for f in fields(Config)}

# Files named in a configuration file, relative to that file's directory.
RELATIVE_PATHS = frozenset(
    {"cluster", "secret_file", "peer_tls_ca", "peer_tls_cert", "peer_tls_key"}
)

# Secrets are never command-line options: they would show in ps.
FILE_ONLY = frozenset({"auth_tokens", "auth_users", "cluster_secret"})


def parseValue(key, text):
    """
    Convert a command-line string to the type of C{key}.
    """
    f = KEYS[key]
    kind = type(f.metadata["default"])
    if kind is bool:
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise ConfigError(key, f"must be true or false, not {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(key, f"must be an integer, not {text!r}")
    if key in FILE_ONLY:
        raise ConfigError(key, "is set in the configuration file only")
    return text


def loadFile(path):
    """
    Read a TOML file into a dict of known keys.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("config", f"{path} is not valid TOML: {e}")
    for key in data:
        if key not in KEYS:
            raise ConfigError(key, f"unknown key in {path}{nearestKey(key)}")
    return data


def nearestKey(name):
    """
    A hint naming the known key C{name} was probably meant to be (a near
    miss), or empty.
    """
    near = difflib.get_close_matches(name, KEYS, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def build(path=None, overrides=None):
    """
    The configuration from defaults, then the file at C{path}, then
    C{overrides} (already typed), validated.
    """
    values = loadFile(path) if path else {}
    for key in RELATIVE_PATHS & values.keys():
        if isinstance(values[key], str) and values[key] and not os.path.isabs(values[key]):
            values[key] = os.path.join(os.path.dirname(path), values[key])
    for key in overrides or {}:
        if key not in KEYS:
            raise ConfigError(key, f"unknown key{nearestKey(key)}")
    values.update(overrides or {})
    return Config(**values).validate()
