"""
For tests of the client library against real nodes in memory
(L{distro.client.testing.InMemoryCluster}): L{ClientNetwork}, the network
between the clients and the nodes as the clients see it (every connection
attempt is recorded, and nodes can be made unreachable from the clients
while they run on), and L{ClusterTestMixin}, which makes a test's cluster.
"""

from twisted.internet.defer import fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from distro.client._address import formatAddress
from distro.client.testing import InMemoryCluster


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


class ClusterTestMixin:
    """
    A L{twisted.trial.unittest.SynchronousTestCase} mixin: the test's
    cluster of C{nodes} real nodes, and a L{ClientNetwork} to it.

    @ivar cluster: the L{InMemoryCluster}, closed after the test.
    @ivar clock: its clock.
    @ivar network: a L{ClientNetwork} of it.
    """

    nodes = 1

    def useCluster(self, **config):
        """
        Make a new cluster, with the node configuration C{config}, the
        test's.
        """
        self.cluster = InMemoryCluster(self.nodes, config=config)
        self.addCleanup(self.cluster.close)
        self.clock = self.cluster.clock
        self.network = ClientNetwork(self.cluster)

    def settle(self, d=None):
        """
        Move the bytes; return C{d}'s result if it fired.
        """
        self.cluster.flush()
        if d is not None:
            return self.successResultOf(d)

    def advance(self, *steps):
        """
        Move the clock by each of C{steps} seconds in turn, as a reactor
        would.
        """
        for seconds in steps:
            self.cluster.advance(seconds)

    def ops(self, index):
        """
        The ops node C{index} received from clients, in order.
        """
        return [message["op"] for message in self.cluster.requests(index)]
