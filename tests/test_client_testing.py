# -*- test-case-name: tests.test_client_testing -*-
"""
Tests for L{distro.client.testing}: the in-memory cluster of real nodes
shipped for the tests of programs that use the client, used as such a test
would use it.
"""

from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.client import DistroClient, DistroError, NotConnected, RequestTimeout, Service
from distro.client.testing import InMemoryCluster
from distro.config import ConfigError


def ips(info):
    """
    The ips of a view's hosts.
    """
    return [host.ip for host in info.hosts]


class ClusterTestsMixin:
    """
    Make clusters that are closed after the test.
    """

    def cluster(self, nodes=1, **options):
        cluster = InMemoryCluster(nodes, **options)
        self.addCleanup(cluster.close)
        self.current = cluster
        return cluster

    def done(self, d):
        """
        Move the bytes of the current cluster; return C{d}'s result.
        """
        self.current.flush()
        return self.successResultOf(d)


class InterfaceTests(ClusterTestsMixin, SynchronousTestCase):
    """
    The double gives the client what the client asks for.
    """

    def test_clock(self):
        """
        The clock provides L{IReactorTime}; a given one is used.
        """
        clock = Clock()
        cluster = self.cluster(clock=clock)
        self.assertIs(cluster.clock, clock)
        verifyObject(IReactorTime, self.cluster().clock)

    def test_endpoint(self):
        """
        L{InMemoryCluster.endpoint} provides L{IStreamClientEndpoint}.
        """
        cluster = self.cluster()
        verifyObject(IStreamClientEndpoint, cluster.endpoint("127.0.0.1", 8101))

    def test_client(self):
        """
        L{InMemoryCluster.client} is a connected L{DistroClient} of the
        first node.
        """
        cluster = self.cluster(2)
        client = cluster.client()
        self.assertIsInstance(client, DistroClient)
        self.assertTrue(client.connected)
        self.assertEqual(client.node, "n0")
        self.assertEqual(cluster.client(start_at=1).node, "n1")
        self.assertEqual(len(cluster), 2)
        self.assertEqual(len(cluster.servers), 2)

    def test_badArguments(self):
        """
        Bad arguments are refused, naming what is wrong.
        """
        error = self.assertRaises(ValueError, InMemoryCluster, 0)
        self.assertIn("nodes", str(error))
        error = self.assertRaises(ConfigError, InMemoryCluster, config={"no_such_key": 1})
        self.assertIn("no_such_key", str(error))
        cluster = self.cluster()
        error = self.assertRaises(ValueError, cluster.stop_node, 1)
        self.assertIn("index", str(error))


class UserTests(ClusterTestsMixin, SynchronousTestCase):
    """
    What a user's test does: register, subscribe, see pushes, fail over.
    """

    def test_registerAndQuery(self):
        """
        A registration is seen by another client's query, and recorded among
        the requests the node received.
        """
        cluster = self.cluster()
        client = cluster.client()
        self.done(client.register("orders", "10.0.0.5", 8080, metadata={"a": "b"}))
        info = self.done(cluster.client().query("orders"))
        self.assertEqual(ips(info), ["10.0.0.5"])
        self.assertEqual(info.hosts[0].metadata, {"a": "b"})
        self.assertEqual(
            [m["op"] for m in cluster.requests(0)], ["hello", "register", "hello", "query"]
        )

    def test_pushes(self):
        """
        A subscriber sees the changes other clients make, after the node's
        push delay.
        """
        cluster = self.cluster()
        seen = []
        watcher = cluster.client()
        self.done(watcher.subscribe("orders", seen.append))
        writer = cluster.client()
        writer.register("orders", "10.0.0.5", 8080)
        cluster.advance(1)
        self.assertEqual(ips(seen[-1]), ["10.0.0.5"])
        writer.deregister("orders", "10.0.0.5", 8080)
        cluster.advance(1)
        self.assertEqual(ips(seen[-1]), [])

    def test_pushesAcrossNodes(self):
        """
        With two nodes, a subscriber of one sees what a client of the other
        registers.
        """
        cluster = self.cluster(2)
        seen = []
        self.done(cluster.client(start_at=1).subscribe("orders", seen.append))
        cluster.client().register("orders", "10.0.0.5", 8080)
        cluster.advance(1)
        self.assertEqual(ips(seen[-1]), ["10.0.0.5"])

    def test_close(self):
        """
        A closed client says C{bye}: its instances go at once.
        """
        cluster = self.cluster()
        client = cluster.client()
        client.register("orders", "10.0.0.5", 8080)
        self.done(client.close())
        self.assertEqual(cluster.requests(0)[-1]["op"], "bye")
        self.assertEqual(ips(self.done(cluster.client().query("orders"))), [])

    def test_failover(self):
        """
        When its node stops, a client moves to the other, keeps its session
        and its registrations, and its subscription goes on.
        """
        cluster = self.cluster(2)
        client = cluster.client()
        events = []
        client.add_session_listener(events.append)
        seen = []
        self.done(client.subscribe(Service("payments"), seen.append))
        self.done(client.register("orders", "10.0.0.5", 8080))
        clientId = client.client_id
        cluster.stop_node(0)
        cluster.advance(5)
        self.assertEqual((client.node, client.client_id), ("n1", clientId))
        self.assertEqual(events, ["suspended", "resumed"])
        info = self.done(cluster.client(start_at=1).query("orders"))
        self.assertEqual(ips(info), ["10.0.0.5"])
        cluster.client(start_at=1).register("payments", "10.0.0.9", 80)
        cluster.advance(1)
        self.assertEqual(ips(seen[-1]), ["10.0.0.9"])

    def test_startNode(self):
        """
        A stopped node refuses connections (a client of it alone fails to
        start as soon as it is refused); started again, it takes clients
        and has the cluster's data.
        """
        cluster = self.cluster(2)
        cluster.client(start_at=1).register("orders", "10.0.0.5", 8080)
        cluster.stop_node(0)
        d = cluster.connect(servers=[cluster.servers[0]])
        cluster.flush()
        error = self.failureResultOf(d, NotConnected).value
        self.assertEqual(error.reasons, {cluster.servers[0]: "connection refused"})
        cluster.start_node(0)
        cluster.advance(5)
        info = self.done(cluster.client().query("orders"))
        self.assertEqual(ips(info), ["10.0.0.5"])

    def test_noNodeAnswers(self):
        """
        L{InMemoryCluster.client} raises L{NotConnected} when no node takes
        the client at once.
        """
        cluster = self.cluster()
        cluster.stop_node(0)
        self.assertRaises(NotConnected, cluster.client)

    def test_pausedNode(self):
        """
        A paused node answers nothing: the client's requests time out; once
        it resumes, it answers again.
        """
        cluster = self.cluster()
        client = cluster.client(timeout=2.0)
        cluster.pause_node(0)
        d = client.query("orders")
        cluster.advance(3)
        self.failureResultOf(d, RequestTimeout)
        cluster.resume_node(0)
        cluster.advance(5)
        self.assertEqual(ips(self.done(client.query("orders"))), [])

    def test_config(self):
        """
        Node configuration applies: a cluster wanting tokens refuses a
        client without one with C{UNAUTHORIZED}, and takes one with it.
        """
        cluster = self.cluster(config={"auth_tokens": {"s3cret": ["*"]}})
        error = self.assertRaises(DistroError, cluster.client)
        self.assertEqual(error.code, "UNAUTHORIZED")
        self.assertTrue(cluster.client(token="s3cret").connected)

    def test_view(self):
        """
        L{InMemoryCluster.view} is a node's view of a service, as a query
        would answer it, cluster filter included; every node has the changes
        made on another once the bytes moved. Reading it sends no request.
        """
        cluster = self.cluster(2)
        client = cluster.client()
        self.done(client.register("orders", "10.0.0.5", 8080, cluster="C1", metadata={"a": "b"}))
        self.done(client.register(Service("orders", group="g"), "10.0.0.6", 80))
        asked = self.done(cluster.client(start_at=1).query("orders"))
        requests = cluster.requests()
        for index in (0, 1):
            info = cluster.view(index, "orders")
            self.assertEqual(info, asked)
            self.assertEqual(info.hosts[0].metadata, {"a": "b"})
        self.assertEqual(ips(cluster.view(1, Service("orders", group="g"))), ["10.0.0.6"])
        filtered = cluster.view(0, "orders", clusters=["C2"])
        self.assertEqual((filtered.hosts, filtered.clusters), ((), ("C2",)))
        self.assertEqual(cluster.requests(), requests)
        cluster.stop_node(0)
        error = self.assertRaises(ValueError, cluster.view, 0, "orders")
        self.assertIn("stopped", str(error))

    def test_clientIds(self):
        """
        L{InMemoryCluster.client_ids} are the ids of the sessions a node
        holds: its own, and those of the other node once they wrote; a
        closed client's goes.
        """
        cluster = self.cluster(2)
        first = cluster.client()
        second = cluster.client(start_at=1)
        self.assertEqual(cluster.client_ids(0), [first.client_id])
        self.assertEqual(cluster.client_ids(1), [second.client_id])
        self.done(first.register("orders", "10.0.0.5", 8080))
        self.done(second.register("orders", "10.0.0.6", 8080))
        both = sorted([first.client_id, second.client_id])
        self.assertEqual(cluster.client_ids(0), both)
        self.assertEqual(cluster.client_ids(1), both)
        self.done(first.close())
        self.assertEqual(cluster.client_ids(0), [second.client_id])
        self.assertEqual(cluster.client_ids(1), [second.client_id])
        cluster.stop_node(1)
        self.assertRaises(ValueError, cluster.client_ids, 1)

    def test_readme(self):
        """
        The example of the README works.
        """
        cluster = InMemoryCluster(nodes=2)
        self.addCleanup(cluster.close)
        client = cluster.client()
        d = client.register("orders", "10.0.0.5", 8080)
        cluster.flush()
        self.successResultOf(d)
        cluster.stop_node(0)
        cluster.advance(5)
        self.assertEqual(client.node, "n1")
        d = cluster.client(start_at=1).query("orders")
        cluster.flush()
        self.assertEqual([h.ip for h in self.successResultOf(d).hosts], ["10.0.0.5"])
