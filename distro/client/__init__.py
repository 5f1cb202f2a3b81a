# -*- test-case-name: tests.test_client_api -*-
"""
The Python client of a distro cluster.

Twisted programs use L{connect}, which gives a L{DistroClient} whose methods
return L{Deferred}s. Programs without a reactor use
L{distro.client.blocking.BlockingClient}, with the same methods returning
plain values. Tests of programs that use the client run it against real
nodes in memory: L{distro.client.testing.InMemoryCluster}.

    from distro.client import connect

    client = await connect(["10.0.0.1:9850", "10.0.0.2:9850"], reactor=reactor)
    await client.register("orders", "10.0.0.7", 8080, metadata={"zone": "a"})
    info = await client.subscribe("payments", print)

With C{cache_dir}, the last view of each subscription and query is kept in a
directory and served while no node answers, after a restart too. With
C{tls=TLSOptions(ca="ca.pem")}, servers are dialed over TLS.

The names below are the whole public API; the modules whose names start
with an underscore are not, and may change.
"""

from distro.tls import TLSOptions

from ._errors import DistroError, NotConnected, RequestTimeout
from ._model import RESET, Instance, Member, Override, Service, ServiceInfo, ServicePage, ServiceSummary
from ._session import DistroClient, connect

__all__ = [
    "DistroClient",
    "DistroError",
    "Instance",
    "Member",
    "NotConnected",
    "Override",
    "RESET",
    "RequestTimeout",
    "Service",
    "ServiceInfo",
    "ServicePage",
    "ServiceSummary",
    "TLSOptions",
    "connect",
]
