# -*- test-case-name: tests.test_client_session -*-
"""
The Python client of a distro cluster.

Twisted programs use L{connect}, which gives a L{DistroClient} whose methods
return L{Deferred}s. Programs without a reactor use
L{distro.client.blocking.BlockingClient}, with the same methods returning
plain values.

    from distro.client import connect

    client = await connect(["10.0.0.1:9850", "10.0.0.2:9850"], reactor=reactor)
    await client.register("orders", "10.0.0.7", 8080, metadata={"zone": "a"})
    info = await client.subscribe("payments", print)

With C{cache_dir}, the last view of each subscription and query is kept in a
directory (L{ViewCache}) and served while no node answers, after a restart
too. With C{tls=TLSOptions(ca="ca.pem")}, servers are dialed over TLS.
"""

from distro.tls import TLSFileError, TLSOptions, TLSUnavailable

from ._address import formatAddress, parseAddress, parseServers
from ._cache import IViewCache, ViewCache
from ._errors import DistroError, NotConnected, RequestTimeout
from ._events import SessionEvent
from ._model import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    Instance,
    Service,
    ServiceInfo,
)
from ._protocol import DEFAULT_TIMEOUT, ClientConnection, IConnectionObserver
from ._session import DEFAULT_AGENT, DistroClient, connect

__all__ = [
    "DEFAULT_AGENT",
    "DEFAULT_CLUSTER",
    "DEFAULT_GROUP",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TIMEOUT",
    "ClientConnection",
    "DistroClient",
    "DistroError",
    "IConnectionObserver",
    "IViewCache",
    "Instance",
    "NotConnected",
    "RequestTimeout",
    "Service",
    "ServiceInfo",
    "SessionEvent",
    "TLSFileError",
    "TLSOptions",
    "TLSUnavailable",
    "ViewCache",
    "connect",
    "formatAddress",
    "parseAddress",
    "parseServers",
]
