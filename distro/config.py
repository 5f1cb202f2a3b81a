# -*- test-case-name: tests.test_config -*-
"""
Node configuration: every key with its type, default and meaning, read from a
TOML file and overridden from the command line. A wrong value fails at start
with a message naming the key.
"""

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields

from twisted.internet.endpoints import serverFromString

from distro import tls, tlslisten
from distro.nacos.listen import NacosListenError, parseListen

# Parsing an endpoint string does not touch the reactor it is given.
_NO_REACTOR = object()


# Bytes beyond its metadata that one instance can take in a frame: the
# longest ip, cluster and service names, the other fields and the envelope.
LARGEST_INSTANCE_OVERHEAD = 4096

# The smallest peer frame limit: a digest of bucket hashes (PROTOCOL.md
# 5.2.1) is 8 KiB and some.
MIN_PEER_FRAME = 16384


class ConfigError(Exception):
    """
    The configuration is wrong; the message names the key.
    """

    def __init__(self, key, problem):
        super().__init__(f"configuration key {key!r}: {problem}")
        self.key = key


def _positive(key, value):
    if value <= 0:
        raise ConfigError(key, "must be greater than 0")


def _nonNegative(key, value):
    if value < 0:
        raise ConfigError(key, "must not be negative")


def _endpoint(key, value):
    if tlslisten.isTLSEndpoint(value):
        try:
            tls.requireTLS()
        except tls.TLSUnavailable as e:
            raise ConfigError(key, str(e))
    try:
        serverFromString(_NO_REACTOR, value)
    except Exception as e:
        raise ConfigError(key, f"not a Twisted server endpoint string ({e})")


def _optionalEndpoint(key, value):
    if value:
        _endpoint(key, value)


def _nacosListen(key, value):
    try:
        parseListen(value)
    except NacosListenError as e:
        raise ConfigError(key, str(e))


def _logFormat(key, value):
    if value not in ("text", "json"):
        raise ConfigError(key, "must be 'text' or 'json'")


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


def _key(default, doc, check=None):
    meta = {"doc": doc, "check": check, "default": default}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """
    The configuration of one node. Keys and defaults follow PROTOCOL.md 7.
    """

    node_id: str = _key("", "This node's id; empty means the host name.")
    listen: str = _key("tcp:9850", "Client port, as a Twisted server endpoint string.", _endpoint)
    listen_backlog: int = _key(
        4096,
        "Pending connections the client port's kernel queue holds (unless listen names a "
        "backlog): the clients of a dead node all arrive at once.",
        _positive,
    )
    advertise: str = _key(
        "", "The client-port address given to clients (host:port); empty means derived."
    )
    port_file: str = _key("", "If set, the bound client address is written to this file.")
    heartbeat_ms: int = _key(3000, "How often clients must send a frame.", _positive)
    idle_timeout_ms: int = _key(10000, "Connections silent this long are closed.", _positive)
    disconnect_grace_ms: int = _key(
        2000, "How long a client's instances outlive its connection.", _nonNegative
    )
    push_delay_ms: int = _key(
        0, "Minimum interval between two pushes of one subscription; 0: as soon as possible.",
        _nonNegative,
    )
    max_frame: int = _key(8 * 1024 * 1024, "Largest client-port frame, in bytes.", _positive)
    handshake_timeout_ms: int = _key(
        10000,
        "A connection (client or peer port) that has not completed its handshake this long "
        "after connecting is dropped.",
        _positive,
    )
    max_unsent_bytes: int = _key(
        16 * 1024 * 1024,
        "Bytes a client connection may have waiting past its send buffer; a reply that would "
        "not fit is refused, a push that would not fit closes the connection.",
        _positive,
    )
    max_instances_per_client: int = _key(10000, "Instances one client may publish.", _positive)
    max_subscriptions_per_client: int = _key(10000, "Subscriptions one client may hold.", _positive)
    max_connections_per_ip: int = _key(
        0, "Connections per remote IP, to the client ports together; 0 is unlimited.", _nonNegative
    )
    max_metadata_bytes: int = _key(8192, "Largest encoded metadata of one instance.", _positive)
    log_format: str = _key("text", "'text' (twistd's log) or 'json' (JSON lines, see json_log).", _logFormat)
    json_log: str = _key("-", "Where JSON lines go when log_format is json: a path, or - for stdout.")
    log_rotate_bytes: int = _key(
        10_000_000, "twistd's log file is rotated past this size (with --logfile, or daemonized).",
        _positive,
    )
    log_max_files: int = _key(10, "Rotated log files kept; older ones are removed.", _positive)
    cluster: str = _key(
        "", "Path of cluster.conf (one host:peer_port per line); empty or one line: standalone."
    )
    peer_listen: str = _key("tcp:9849", "Peer port, as a Twisted server endpoint string.", _endpoint)
    nacos_listen: str = _key(
        "tcp:9848",
        "Nacos gRPC port (where a Nacos SDK given host:8848 dials): tcp:PORT or "
        "tcp:PORT:interface=HOST; empty disables it.",
        _nacosListen,
    )
    http_listen: str = _key(
        "tcp:8848",
        "HTTP port (Nacos login and open API, /health, /ready), as a Twisted server endpoint "
        "string; empty disables it.",
        _optionalEndpoint,
    )
    peer_tls_ca: str = _key(
        "",
        "PEM file of the CA that signs the members' peer-port certificates; required when "
        "peer_listen is ssl: (members are then dialed over TLS and verified), else empty.",
    )
    peer_tls_cert: str = _key(
        "",
        "PEM certificate (with peer_tls_key) this node presents when it dials members; its "
        "TLS peer port then requires members to present one signed by peer_tls_ca.",
    )
    peer_tls_key: str = _key("", "PEM private key of peer_tls_cert.")
    peer_advertise: str = _key(
        "", "This node's own line in cluster.conf (host:port); empty means found by port."
    )
    cluster_secret: str = _key(
        "", "Shared secret of peer links; else $DISTRO_CLUSTER_SECRET, else secret_file."
    )
    secret_file: str = _key("", "A file holding the cluster secret (first line).")
    verify_interval_ms: int = _key(5000, "How often each node sends peers a digest.", _positive)
    peer_timeout_ms: int = _key(
        3000, "A member silent this long is SUSPICIOUS.", _positive
    )
    down_after_ms: int = _key(6000, "A member silent this long is DOWN.", _positive)
    orphan_grace_ms: int = _key(
        30000, "How long the clients of a DOWN member are kept for a resume.", _nonNegative
    )
    load_timeout_ms: int = _key(
        10000, "A starting node serves reads after this long even if not loaded.", _nonNegative
    )
    peer_max_frame: int = _key(64 * 1024 * 1024, "Largest peer-port frame, in bytes.", _positive)
    gc_freeze: bool = _key(
        True,
        "Move what survives a full garbage collection, and what was loaded at start, out of "
        "the collector's generations: pauses stay short with a large registry.",
    )
    auth_tokens: dict = _key(
        {},
        "Client tokens: token = [namespace, ...] ('*' for all, '' is public). With neither "
        "these nor auth_users: no authentication.",
        _tokens,
    )
    auth_users: dict = _key(
        {},
        "Users who log in (Nacos SDKs' username/password): user = {password = scrypt hash "
        "(distro hash-password), namespaces = [...], admin = bool}. Needs the cluster secret, "
        "which signs their tokens.",
        _users,
    )
    auth_token_ttl_ms: int = _key(
        18000000, "How long a login token is valid (Nacos' tokenTtl, 5 h).", _positive
    )

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

    def clusterSecret(self, environ):
        """
        The cluster secret as bytes (empty: none), from the key, else the
        environment variable C{DISTRO_CLUSTER_SECRET}, else the file.
        """
        if self.cluster_secret:
            return self.cluster_secret.encode("utf-8")
        if environ.get("DISTRO_CLUSTER_SECRET"):
            return environ["DISTRO_CLUSTER_SECRET"].encode("utf-8")
        if self.secret_file:
            try:
                with open(self.secret_file, "rb") as f:
                    secret = f.readline().strip()
            except OSError as e:
                raise ConfigError("secret_file", f"cannot read it: {e.strerror}")
            if not secret:
                raise ConfigError("secret_file", "the file is empty")
            return secret
        return b""

    def peerDialer(self):
        """
        The L{tls.TLSDialer} members are dialed with, its files read; L{None}
        when the peer port is not TLS.

        @raise ConfigError: naming the key of a TLS file that cannot be used,
            or of a combination that cannot work.
        """
        keys = ("peer_tls_ca", "peer_tls_cert", "peer_tls_key")
        if not tlslisten.isTLSEndpoint(self.peer_listen):
            for key in keys:
                if getattr(self, key):
                    raise ConfigError(key, "is set, but peer_listen is not a TLS (ssl:) endpoint")
            return None
        if not self.peer_tls_ca:
            raise ConfigError(
                "peer_tls_ca",
                "peer_listen is a TLS (ssl:) endpoint, so members are dialed over TLS: "
                "name the CA file that signs their certificates",
            )
        options = tls.TLSOptions(
            ca=self.peer_tls_ca, cert=self.peer_tls_cert or None, key=self.peer_tls_key or None
        )
        try:
            return tls.TLSDialer(options, dict(zip(("ca", "cert", "key"), keys)))
        except tls.TLSFileError as e:
            raise ConfigError(e.option, e.problem)


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
            raise ConfigError(key, f"unknown key in {path}")
    return data


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
            raise ConfigError(key, "unknown key")
    values.update(overrides or {})
    return Config(**values).validate()
