# -*- test-case-name: tests.test_client_blocking -*-
"""
Tests for L{distro.client.blocking.BlockingClient}, calling from a worker
thread into a stand-in reactor that runs each call at once, against a real
node in memory (L{distro.client.testing.InMemoryCluster}).
"""

import threading

from twisted.trial.unittest import SynchronousTestCase

from distro.client import DistroError, Member, Service, ServiceSummary
from distro.client import blocking
from distro.client.blocking import BlockingClient
from distro.client.testing import InMemoryCluster


class InlineReactor:
    """
    Runs what is handed to it from a thread at once, then lets the
    cluster's clock and bytes move on for a second (past the node's push
    delay), so that the L{Deferred} of the call has fired.
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.threads = []

    def callFromThread(self, f, *args, **kwargs):
        """
        Call C{f} now, in the calling thread, then run the cluster for a
        second.
        """
        self.threads.append(threading.current_thread())
        f(*args, **kwargs)
        self.cluster.advance(1)


def inThread(f, *args, **kwargs):
    """
    Call C{f} in a new thread and wait for it: return its result, or raise
    its exception.
    """
    outcome = {}

    def target():
        try:
            outcome["result"] = f(*args, **kwargs)
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class BlockingClientTests(SynchronousTestCase):
    """
    The blocking facade over a L{DistroClient}.
    """

    def setUp(self):
        # Its clients, at 10.0.0.1, may take operators' actions.
        self.cluster = InMemoryCluster(config={"max_instances_per_client": 1, "admin_from": "10.0.0.0/8"})
        self.addCleanup(self.cluster.close)
        client = self.cluster.client()
        self.reactor = InlineReactor(self.cluster)
        self.client = BlockingClient.from_client(client, self.reactor)

    def test_calls(self):
        """
        Each method returns its result instead of a L{Deferred}, the same
        objects as L{DistroClient}'s (C{services} a L{ServicePage},
        C{members} L{Member}s), and runs in the reactor's thread.
        """
        self.assertIsNone(inThread(self.client.register, "orders", "a", 1))
        info = inThread(self.client.query, "orders")
        self.assertEqual([h.ip for h in info.hosts], ["a"])
        page = inThread(self.client.services)
        self.assertEqual(page.services, (ServiceSummary(Service("orders"), 1),))
        self.assertEqual(list(inThread(self.client.registrations)), [Service("orders")])
        self.assertTrue(inThread(self.client.deregister, "orders", "a", 1))
        [member] = inThread(self.client.members)
        self.assertIsInstance(member, Member)
        self.assertTrue(member.is_self)
        self.assertIsNone(inThread(self.client.ping))
        self.assertEqual(inThread(self.client.rebalance, rate=10)["moving"], 0)
        self.assertEqual(self.client.client_id, self.client.client.client_id)
        self.assertIsInstance(self.client.client_id, str)
        self.assertNotIn(threading.main_thread(), self.reactor.threads)

    def test_errors(self):
        """
        A refused request raises L{DistroError}: here, a second instance
        where the node takes one per client.
        """
        inThread(self.client.register, "s", "a", 1)
        error = self.assertRaises(DistroError, inThread, self.client.register, "s", "b", 1)
        self.assertEqual(error.code, "LIMIT_EXCEEDED")

    def test_subscribe(self):
        """
        Listeners get pushes; the last view is kept; unsubscribe stops them.
        """
        views = []
        inThread(self.client.subscribe, "orders", views.append)
        inThread(self.client.register, "orders", "a", 1)
        self.assertEqual([[h.ip for h in v.hosts] for v in views], [["a"]])
        self.assertEqual(inThread(self.client.last_service_info, "orders"), views[-1])
        inThread(self.client.unsubscribe, "orders", views.append)
        inThread(self.client.batch_register, "orders", [])
        self.assertEqual(len(views), 1)

    def test_closeSaysBye(self):
        """
        Leaving the C{with} block closes the client, which says C{bye}.
        """
        def use():
            with self.client as client:
                client.ping()

        inThread(use)
        self.assertEqual(self.cluster.requests(0)[-1]["op"], "bye")

    def test_connect(self):
        """
        The constructor connects through L{distro.client.connect} in the
        shared reactor, passing its arguments on.
        """
        calls = []

        def connect(servers, **kwargs):
            calls.append((servers, kwargs))
            return self.cluster.connect(servers=servers)

        self.patch(blocking, "_runningReactor", lambda: self.reactor)
        self.patch(blocking, "connect", connect)
        servers = self.cluster.servers
        client = inThread(BlockingClient, servers, namespace="dev", token="t", timeout=3,
                          cache_dir="views")
        [(given, kwargs)] = calls
        self.assertEqual(given, servers)
        self.assertEqual(
            (kwargs["namespace"], kwargs["token"], kwargs["timeout"], kwargs["reactor"],
             kwargs["cache_dir"]),
            ("dev", "t", 3, self.reactor, "views"),
        )
        self.assertNotEqual(client.client_id, self.client.client_id)

    def test_notFromReactorThread(self):
        """
        Calling from the reactor's thread, which would wait forever, raises.
        """
        self.patch(blocking, "isInIOThread", lambda: True)
        self.assertRaises(RuntimeError, self.client.ping)
