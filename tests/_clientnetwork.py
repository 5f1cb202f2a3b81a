"""
The network between test clients and the nodes of a
L{distro.client.testing.InMemoryCluster}, as the clients see it: every
connection attempt is recorded, and nodes can be made unreachable from the
clients (their attempts are refused) while the nodes themselves run on.
"""

from twisted.internet.defer import fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from distro.client._address import formatAddress


@implementer(IStreamClientEndpoint)
class _Refused:
    """
    An endpoint whose connection attempts are refused.
    """

    def __init__(self, address):
        self.address = address

    def connect(self, protocolFactory):
        return fail(ConnectionRefusedError(self.address))


class ClientNetwork:
    """
    An C{endpoint_factory} for the clients of C{cluster}.

    @ivar attempts: the C{"host:port"} of every connection attempt, in order.
    @ivar unreachable: the addresses whose attempts are refused.
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.attempts = []
        self.unreachable = set()

    def endpoint(self, host, port):
        """
        The endpoint of one connection attempt to C{host:port}.
        """
        address = formatAddress(host, port)
        self.attempts.append(address)
        if address in self.unreachable:
            return _Refused(address)
        return self.cluster.endpoint(host, port)

    def refuse(self, *indexes):
        """
        From now on, refuse the clients' attempts to reach these nodes
        (connections already open stay up).
        """
        self.unreachable.update(self.cluster.servers[i] for i in indexes)

    def allow(self, *indexes):
        """
        Let the clients reach these nodes again.
        """
        self.unreachable.difference_update(self.cluster.servers[i] for i in indexes)
