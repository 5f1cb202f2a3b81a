# -*- test-case-name: tests.test_config -*-
"""
The configuration keys of the cluster side: the members, the peer port and
its TLS, the secret, and the timings of liveness, digests and loading.
"""

from dataclasses import dataclass

from distro import tls, tlslisten
from distro.keys import ConfigError, endpoint, keyField, nonNegative, positive


@dataclass
class ClusterKeys:
    """
    The cluster side of a node.
    """

    cluster: str = keyField(
        "", "Path of cluster.conf (one host:peer_port per line); empty or one line: standalone."
    )
    peer_listen: str = keyField("tcp:9849", "Peer port, as a Twisted server endpoint string.", endpoint)
    peer_tls_ca: str = keyField(
        "",
        "PEM file of the CA that signs the members' peer-port certificates; required when "
        "peer_listen is ssl: (members are then dialed over TLS and verified), else empty.",
    )
    peer_tls_cert: str = keyField(
        "",
        "PEM certificate (with peer_tls_key) this node presents when it dials members; its "
        "TLS peer port then requires members to present one signed by peer_tls_ca.",
    )
    peer_tls_key: str = keyField("", "PEM private key of peer_tls_cert.")
    peer_advertise: str = keyField(
        "", "This node's own line in cluster.conf (host:port); empty means found by port."
    )
    cluster_secret: str = keyField(
        "", "Shared secret of peer links; else $DISTRO_CLUSTER_SECRET, else secret_file."
    )
    secret_file: str = keyField("", "A file holding the cluster secret (first line).")
    verify_interval_ms: int = keyField(5000, "How often each node sends peers a digest.", positive)
    peer_timeout_ms: int = keyField(
        3000, "A member silent this long is SUSPICIOUS.", positive
    )
    down_after_ms: int = keyField(6000, "A member silent this long is DOWN.", positive)
    orphan_grace_ms: int = keyField(
        30000, "How long the clients of a DOWN member are kept for a resume.", nonNegative
    )
    load_timeout_ms: int = keyField(
        10000, "A starting node serves reads after this long even if not loaded.", nonNegative
    )
    peer_max_frame: int = keyField(64 * 1024 * 1024, "Largest peer-port frame, in bytes.", positive)

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
