# -*- test-case-name: tests.test_client_testing -*-
"""
A test double for programs that use L{distro.client}: real distro nodes in
memory, for their tests.

L{InMemoryCluster} runs one or more real nodes (the same code as a
C{distro-node}, replicating to each other) in the test's process, on a
L{twisted.internet.task.Clock}, with in-memory connections instead of
sockets. Its L{InMemoryCluster.client} is a real L{distro.client.DistroClient}
connected to them: what a test sees is what a program would see of a real
cluster, pushes, failover and errors included, and the test never touches the
global reactor nor waits for real time.

    from twisted.trial.unittest import SynchronousTestCase
    from distro.client.testing import InMemoryCluster

    class OrdersTests(SynchronousTestCase):
        def test_seesNewInstances(self):
            cluster = InMemoryCluster()
            self.addCleanup(cluster.close)
            seen = []
            cluster.client().subscribe("orders", seen.append)
            d = cluster.client().register("orders", "10.0.0.5", 8080)
            cluster.flush()
            self.successResultOf(d)
            cluster.advance(1)
            self.assertEqual([h.ip for h in seen[-1].hosts], ["10.0.0.5"])

Nothing moves until the test says so: a request's L{Deferred} fires once
L{InMemoryCluster.flush} moved the bytes on every connection (without moving
the clock), or L{InMemoryCluster.advance} moved the clock, running timers
and moving bytes on the way.
"""

from distro import model
from distro.client._errors import NotConnected
from distro.client._inmemory import MemoryCluster
from distro.client._model import Service, ServiceInfo
from distro.client._session import DistroClient
from distro.native.views import wireMap

__all__ = ["InMemoryCluster"]

# The cluster secret of the nodes' peer links; nothing outside can reach them.
_SECRET = b"distro.client.testing"


class InMemoryCluster:
    """
    Real distro nodes in memory, and clients of them.

    Each node lists every node as a member (C{cluster.conf}), as a real
    cluster of that many nodes does; they are started, and their links up,
    when the constructor returns.

    @ivar clock: the L{twisted.internet.task.Clock} the nodes and the clients
        run on.
    @ivar servers: the client-port addresses of the nodes, C{"host:port"},
        by index (no socket listens there).
    """

    def __init__(self, nodes=1, *, clock=None, config=None):
        """
        @param nodes: how many nodes, at least 1.
        @param clock: a L{twisted.internet.task.Clock}; a new one by default.
        @param config: node configuration keys (those of a node's TOML file,
            for example C{{"auth_tokens": {"s3cret": ["*"]}}} or
            C{{"max_instances_per_client": 2}}), for every node.
        @raise ValueError: if C{nodes} is not a positive integer.
        @raise distro.config.ConfigError: naming a key of C{config} that is
            unknown or has a bad value.
        """
        if type(nodes) is not int or nodes < 1:
            raise ValueError(f"nodes must be an integer >= 1: {nodes!r}")
        self._harness = MemoryCluster(nodes, _SECRET, clock=clock, **(config or {}))
        self.clock = self._harness.clock
        self.servers = [slot.clientAddress for slot in self._harness.slots]
        self._clients = []
        self._harness.start()

    def __len__(self):
        return len(self._harness.slots)

    def endpoint(self, host, port):
        """
        An L{IStreamClientEndpoint} to the node whose client port is
        C{host:port}: its connection attempts are refused while that node is
        stopped. The default C{endpoint_factory} of L{client}.
        """
        return self._harness.clientEndpoint(host, port)

    def connect(self, **options):
        """
        Start a client of this cluster, as L{distro.client.connect} does.

        @param options: options of L{distro.client.DistroClient}; by default
            C{servers} is L{servers}, C{clock} is L{clock}, C{endpoint_factory}
            is L{endpoint} and C{start_at} is 0 (the first node).
        @return: the L{Deferred} of L{distro.client.DistroClient.start}, after
            moving the bytes it made: it has fired if a node accepted the
            client.
        """
        options.setdefault("clock", self.clock)
        options.setdefault("endpoint_factory", self.endpoint)
        options.setdefault("start_at", 0)
        client = DistroClient(options.pop("servers", self.servers), **options)
        self._clients.append(client)
        d = client.start()
        self.flush()
        return d

    def client(self, **options):
        """
        A client connected to this cluster.

        @param options: as for L{connect}.
        @return: a L{distro.client.DistroClient} that a node accepted.
        @raise distro.client.DistroError: if the node refused it (for
            example C{UNAUTHORIZED}).
        @raise distro.client.NotConnected: if no node accepted it at once
            (they are all stopped, or paused): use L{connect} and L{advance}
            to wait for one.
        """
        d = self.connect(**options)
        result = []
        d.addBoth(result.append)
        if not result:
            d.cancel()
            d.addErrback(lambda failure: None)
            raise NotConnected("no node accepted the client at once")
        if isinstance(result[0], DistroClient):
            return result[0]
        result[0].raiseException()

    def flush(self):
        """
        Run what is due now, and move bytes on every connection until
        nothing moves.
        """
        self._harness.flush()

    def advance(self, seconds):
        """
        Move the clock C{seconds} forward, running timers and moving bytes
        on the way, as a reactor would.
        """
        self._harness.advance(seconds)

    def stop_node(self, index):
        """
        Node C{index}'s process dies: its connections are reset (clients and
        the other nodes see them lost) and connection attempts to it are
        refused until L{start_node}. Its clients fail over to the other
        nodes, which keep their registrations.
        """
        self._slot(index)
        self._harness.crash(index)

    def start_node(self, index):
        """
        Start node C{index} again, as a new process (a node that is running
        dies first): it loads the cluster's data from the other nodes.
        """
        self._slot(index)
        self._harness.restart(index)

    def drain_node(self, index):
        """
        Node C{index} is stopped gracefully (SIGTERM): its readiness fails,
        its client sessions are asked to move to the other nodes (clients
        of this library resume there, their instances never vanishing), and
        once they did, or after its C{drain_timeout_ms} (advance the clock),
        it stops as in L{stop_node}.

        @return: a L{Deferred} firing with L{None} once it stopped.
        """
        self._running(index)
        return self._harness.drain(index)

    def pause_node(self, index):
        """
        Node C{index} stops (SIGSTOP): it reads nothing, answers nothing and
        runs no timer until L{resume_node}; connections to it stay open.
        Its clients see requests time out.
        """
        self._slot(index)
        self._harness.stall(index)

    def resume_node(self, index):
        """
        Node C{index} runs again (SIGCONT) after L{pause_node}: its overdue
        timers first, then what waits on its connections.
        """
        self._slot(index)
        self._harness.unstall(index)

    def requests(self, index=None):
        """
        The requests clients sent, in order of arrival: those node C{index}
        received, or those of every node.

        @return: a list of maps, as on the wire (C{{"op": ..., "id": ...}}
            and the request's fields).
        """
        return [
            message
            for to, message in self._harness.requests
            if index is None or to == index
        ]

    def view(self, index, service, *, clusters=None):
        """
        Node C{index}'s current view of C{service}, read from the node itself
        (no client asks: L{requests} does not show it), as a query without
        C{healthy_only} would answer it. Nodes replicate to each other: after
        L{flush}, a change made on one node is in the view of every node that
        is not paused.

        @param service: a service name (in the namespace C{public} and the
            group C{DEFAULT_GROUP}), or a L{distro.client.Service}.
        @param clusters: a list of cluster names to keep, or L{None} for all.
        @return: a L{distro.client.ServiceInfo}.
        @raise ValueError: if node C{index} is stopped (it holds nothing).
        """
        node = self._running(index).node
        if not isinstance(service, Service):
            service = Service(service)
        key = model.parseService(service.as_wire())
        clusterFilter = model.parseClusters(list(clusters)) if clusters is not None else None
        return ServiceInfo.from_wire(wireMap(node.serviceInfo(key, clusterFilter)))

    def client_ids(self, index):
        """
        The ids of the client sessions node C{index} holds, sorted: its own
        (connected, or within their C{disconnect_grace_ms}), and those of the
        other nodes that were replicated to it (a session is replicated from
        its first write on, a register for example). A client's
        C{client_id} is among those of its node once the node accepted it;
        it goes from every node after C{close}.

        @return: a list of strings.
        @raise ValueError: if node C{index} is stopped (it holds nothing).
        """
        return sorted(self._running(index).node.manager.clients)

    def close(self):
        """
        Close every client made by L{client} or L{connect} (they say C{bye})
        and stop the nodes.
        """
        for client in self._clients:
            client.close()
        self._clients = []
        self.flush()
        self._harness.stop()

    def _slot(self, index):
        if type(index) is not int or not 0 <= index < len(self):
            raise ValueError(f"index must be a node index in 0..{len(self) - 1}: {index!r}")
        return self._harness.slots[index]

    def _running(self, index):
        slot = self._slot(index)
        if not slot.alive:
            raise ValueError(f"node {index} is stopped")
        return slot

