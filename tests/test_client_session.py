# -*- test-case-name: tests.test_client_session -*-
"""
Tests for L{distro.client.DistroClient}: requests, subscriptions, failover,
resume and redo, against real nodes in memory
(L{distro.client.testing.InMemoryCluster}).
"""

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from distro.client import (
    DistroClient,
    DistroError,
    Instance,
    Member,
    NotConnected,
    RequestTimeout,
    Service,
    ServiceInfo,
    ServicePage,
    ServiceSummary,
)
from distro.client._address import formatAddress, parseAddress, parseServers
from distro.client._events import SessionEvent

from ._memorycluster import ClusterTestMixin

# Metadata above the nodes' max_metadata_bytes: a write carrying it is refused.
LIMIT = {"max_metadata_bytes": 64}
LARGE = {"k": "x" * 100}


class SessionTestsMixin(ClusterTestMixin):
    """
    A cluster of three real nodes in memory, and a way to make clients of it
    through a L{ClientNetwork}.
    """

    nodes = 3
    config = LIMIT

    def setUp(self):
        self.useCluster(**self.config)

    def useCluster(self, **config):
        super().useCluster(**config)
        self.servers = self.cluster.servers

    def makeClient(self, start=0, **kwargs):
        """
        Build an unstarted L{DistroClient} of the cluster, with a fixed
        retry delay of one second.
        """
        kwargs.setdefault("retry_policy", lambda failures: 1.0)
        return DistroClient(
            self.servers,
            clock=self.clock,
            endpoint_factory=self.network.endpoint,
            start_at=start,
            **kwargs,
        )

    def connectClient(self, start=0, **kwargs):
        """
        A client the node at index C{start} accepted.
        """
        kwargs.setdefault("retry_policy", lambda failures: 1.0)
        return self.cluster.client(
            start_at=start, endpoint_factory=self.network.endpoint, **kwargs
        )

    def hostIds(self, index, name="orders"):
        """
        The instance ids of node C{index}'s view of a service.
        """
        return [h.instance_id for h in self.cluster.view(index, name).hosts]

    def stopAll(self, last=0):
        """
        Stop every node, node C{last} last: a client of it finds none.
        """
        for index in range(3):
            if index != last:
                self.cluster.stop_node(index)
        self.cluster.stop_node(last)


class ConnectTests(SessionTestsMixin, SynchronousTestCase):
    """
    Opening a session.
    """

    def test_startAtGivenServer(self):
        """
        The first connection goes to the server at index C{start}, and begins
        with C{hello} carrying the agent and no C{resume}; the client takes
        the node's name and the id the node gave it.
        """
        client = self.connectClient(start=1, agent="tests/1")
        [hello] = self.cluster.requests(1)
        self.assertEqual(hello["op"], "hello")
        self.assertEqual(hello["agent"], "tests/1")
        self.assertNotIn("resume", hello)
        self.assertEqual(self.cluster.requests(0) + self.cluster.requests(2), [])
        self.assertEqual(client.node, "n1")
        self.assertEqual(self.cluster.client_ids(1), [client.client_id])
        self.assertTrue(client.connected)

    def test_randomStart(self):
        """
        Without C{start}, the first server is one of the list.
        """
        client = DistroClient(
            self.servers, clock=self.clock, endpoint_factory=self.network.endpoint)
        client.start()
        self.assertIn(self.network.attempts[0], self.servers)

    def test_token(self):
        """
        A token is sent in C{hello}: a node wanting it accepts the client.
        """
        self.useCluster(auth_tokens={"s3cret": ["*"]})
        self.assertTrue(self.connectClient(token="s3cret").connected)
        self.assertEqual(self.cluster.requests(0)[0]["token"], "s3cret")

    def test_skipDownServers(self):
        """
        A refused connection moves on to the next server.
        """
        self.cluster.stop_node(0)
        client = self.makeClient()
        d = client.start()
        self.advance(1)
        self.assertIs(self.successResultOf(d), client)
        self.assertEqual(self.network.attempts, self.servers[:2])

    def test_everyServerRefused(self):
        """
        When every server refused the connection, L{DistroClient.start}
        fails at once (the first round of attempts waits for no backoff),
        with L{NotConnected} naming each server and why, and stops trying.
        """
        self.stopAll()
        client = self.makeClient(timeout=10.0)
        d = client.start()
        self.settle()
        error = self.failureResultOf(d, NotConnected).value
        self.assertEqual(error.reasons, {server: "connection refused" for server in self.servers})
        for server in self.servers:
            self.assertIn(f"{server}: connection refused", str(error))
        self.assertEqual(self.network.attempts, self.servers)
        # The stopped nodes run no timer: these would be the client's.
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nothingAnswers(self):
        """
        When a server does not answer (node 1 is paused) and the others
        refuse, L{DistroClient.start} fails after the timeout with
        L{NotConnected} naming each server and why, after trying them in
        turn.
        """
        self.cluster.stop_node(0)
        self.cluster.stop_node(2)
        self.cluster.pause_node(1)
        client = self.makeClient(timeout=5.0)
        d = client.start()
        self.advance(*[1] * 4)
        self.assertNoResult(d)
        self.advance(1)
        error = self.failureResultOf(d, NotConnected).value
        self.assertEqual(error.reasons, {self.servers[0]: "connection refused",
                                         self.servers[1]: "timed out",
                                         self.servers[2]: "not tried"})
        self.assertIn(f"{self.servers[1]}: timed out", str(error))
        self.assertEqual(self.network.attempts, self.servers[:2])

    def test_refused(self):
        """
        A node refusing C{hello} (here, for want of a token) fails the start
        with its error, at once.
        """
        self.useCluster(auth_tokens={"s3cret": ["*"]})
        d = self.makeClient().start()
        self.settle()
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "UNAUTHORIZED")
        self.assertEqual(self.network.attempts, self.servers[:1])

    def test_learnMembers(self):
        """
        The members a node announces join the server list.
        """
        client = DistroClient(
            self.servers[:1],
            clock=self.clock,
            endpoint_factory=self.network.endpoint,
            start_at=0,
        )
        client.start()
        self.settle()
        self.assertEqual(client.servers, self.servers)


class RequestTests(SessionTestsMixin, SynchronousTestCase):
    """
    Requests on a live connection.
    """

    def setUp(self):
        super().setUp()
        self.client = self.connectClient()

    def test_register(self):
        """
        C{register} sends the instance with every field and the default
        service key, and the node holds it.
        """
        d = self.client.register("orders", "10.1.0.1", 8080, metadata={"zone": "a"})
        self.assertIsNone(self.settle(d))
        message = self.cluster.requests(0)[-1]
        self.assertEqual(message["service"], {"namespace": "public",
                                              "group": "DEFAULT_GROUP", "name": "orders"})
        self.assertEqual(message["instance"], {
            "ip": "10.1.0.1", "port": 8080, "cluster": "DEFAULT", "weight": 1.0,
            "healthy": True, "enabled": True, "metadata": {"zone": "a"}})
        self.assertEqual(self.hostIds(0), ["10.1.0.1#8080#DEFAULT"])
        self.assertEqual(self.cluster.view(0, "orders").hosts[0].metadata, {"zone": "a"})
        self.assertEqual(
            self.client.registrations(),
            {Service("orders"): [Instance("10.1.0.1", 8080, metadata={"zone": "a"})]},
        )

    def test_serviceValue(self):
        """
        A L{Service} argument names its own group and namespace; the client's
        defaults apply to plain names.
        """
        client = self.connectClient(namespace="dev", group="web")
        self.settle(client.register(Service("a", group="g", namespace="ns"), "h", 1))
        self.settle(client.register("b", "h", 1))
        first, second = self.cluster.requests(0)[-2:]
        self.assertEqual(first["service"], {"namespace": "ns", "group": "g", "name": "a"})
        self.assertEqual(second["service"], {"namespace": "dev", "group": "web", "name": "b"})
        self.assertEqual(len(self.cluster.view(0, Service("b", group="web", namespace="dev")).hosts), 1)

    def test_badInstance(self):
        """
        A malformed instance is refused at once, and not remembered.
        """
        self.assertRaises(ValueError, self.client.register, "orders", "h", 0)
        self.assertRaises(ValueError, self.client.register, "orders", "h", 1, cluster="a b")
        self.assertEqual(self.client.registrations(), {})

    def test_refusedRegister(self):
        """
        A register the node refuses (here, metadata above its
        C{max_metadata_bytes}) fails with the node's code and is forgotten,
        so that no later redo repeats it.
        """
        self.settle(self.client.register("orders", "h", 1))
        d = self.client.register("orders", "h", 1, weight=5, metadata=LARGE)
        self.settle()
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "LIMIT_EXCEEDED")
        [kept] = self.client.registrations()[Service("orders")]
        self.assertEqual((kept.weight, kept.metadata), (1.0, {}))
        self.cluster.stop_node(0)
        [redo] = [m for m in self.cluster.requests(1) if m["op"] == "batch_register"]
        self.assertEqual([(i["weight"], i["metadata"]) for i in redo["instances"]], [(1.0, {})])

    def test_deregister(self):
        """
        C{deregister} removes the instance and tells whether it was there.
        """
        self.settle(self.client.register("orders", "h", 1))
        self.assertTrue(self.settle(self.client.deregister("orders", "h", 1)))
        self.assertEqual(self.hostIds(0), [])
        self.assertFalse(self.settle(self.client.deregister("orders", "h", 1)))
        self.assertEqual(self.client.registrations(), {})

    def test_deregisterOtherSpelling(self):
        """
        The library keys instances by the address as the node normalises it
        (host names lower-cased, a trailing dot dropped, IP literals in
        their compressed form): deregistering another spelling of the same
        address forgets it, and no reconnection brings it back.
        """
        self.settle(self.client.register("orders", "Host.Example.", 1))
        self.settle(self.client.register("orders", "2001:DB8:0:0::1", 2))
        [first, second] = self.client.registrations()[Service("orders")]
        self.assertEqual((first.ip, second.ip), ("host.example", "2001:db8::1"))
        self.assertEqual(self.hostIds(0), ["2001:db8::1#2#DEFAULT", "host.example#1#DEFAULT"])
        self.assertTrue(self.settle(self.client.deregister("orders", "host.example", 1)))
        self.assertTrue(self.settle(self.client.deregister("orders", "2001:db8::1", 2)))
        self.assertEqual(self.client.registrations(), {})
        self.cluster.stop_node(0)
        self.assertEqual(self.client.node, "n1")
        redo = [m for m in self.cluster.requests(1) if m.get("op") == "batch_register"]
        self.assertEqual([i for m in redo for i in m["instances"]], [])
        self.assertEqual(self.hostIds(1), [])

    def test_deregisterBadAddress(self):
        """
        An address no node would accept is refused at once.
        """
        self.assertRaises(ValueError, self.client.deregister, "orders", "not an address", 1)

    def test_batchRegister(self):
        """
        C{batch_register} takes dicts and L{Instance}s and replaces this
        session's instances of the service.
        """
        self.settle(self.client.register("orders", "old", 1))
        d = self.client.batch_register(
            "orders", [{"ip": "a", "port": 1}, Instance("b", 2, cluster="C2")]
        )
        self.settle(d)
        self.assertEqual(self.hostIds(0), ["a#1#DEFAULT", "b#2#C2"])
        self.assertEqual(
            sorted(i.instance_id for i in self.client.registrations()[Service("orders")]),
            ["a#1#DEFAULT", "b#2#C2"],
        )

    def test_query(self):
        """
        C{query} returns a L{ServiceInfo}; a cluster filter and
        C{healthy_only} are sent.
        """
        self.settle(self.client.register("orders", "a", 1))
        self.settle(self.client.register("orders", "b", 1, cluster="C2", healthy=False))
        info = self.settle(self.client.query("orders"))
        self.assertIsInstance(info, ServiceInfo)
        self.assertEqual([h.instance_id for h in info.hosts], ["a#1#DEFAULT", "b#1#C2"])
        self.assertEqual(info.service, Service("orders"))
        filtered = self.settle(self.client.query("orders", clusters=["C2"], healthy_only=True))
        self.assertEqual(self.cluster.requests(0)[-1]["clusters"], ["C2"])
        self.assertTrue(self.cluster.requests(0)[-1]["healthy_only"])
        self.assertEqual(filtered.hosts, ())
        self.assertEqual(filtered.clusters, ("C2",))
        unhealthy = self.settle(self.client.query("orders", clusters=["C2"]))
        self.assertEqual([h.instance_id for h in unhealthy.hosts], ["b#1#C2"])

    def test_servicesAndMembers(self):
        """
        C{services} returns a L{ServicePage}: the count and the page's
        L{ServiceSummary}s, each with its whole L{Service} key (to query it
        with); C{members} a tuple of L{Member}s. Their wire forms are the
        node's.
        """
        self.settle(self.client.register("orders", "a", 1))
        self.settle(self.client.register(Service("users", group="G", namespace="dev"), "b", 1))
        page = self.settle(self.client.services())
        self.assertEqual(page, ServicePage(1, (ServiceSummary(Service("orders"), 1),),
                                           namespace="public"))
        self.assertEqual(
            page.as_wire(),
            {"count": 1, "services": [{"group": "DEFAULT_GROUP", "name": "orders",
                                       "instances": 1}]},
        )
        self.assertEqual(self.cluster.requests(0)[-1]["namespace"], "public")
        [summary] = self.settle(self.client.services(namespace="dev")).services
        self.assertEqual(summary.service, Service("users", group="G", namespace="dev"))
        self.assertEqual(self.settle(self.client.query(summary.service)).hosts[0].ip, "b")

        members = self.settle(self.client.members())
        self.assertIsInstance(members, tuple)
        self.assertEqual(members[0], Member("n0", self.servers[0], "UP", is_self=True))
        self.assertEqual([(m.address, m.is_self) for m in members],
                         [(self.servers[0], True), (self.servers[1], False),
                          (self.servers[2], False)])
        self.assertEqual(members[1].as_wire(), {"node": "n1", "address": self.servers[1],
                                                "state": "UP", "self": False})

    def test_ping(self):
        """
        C{ping} fires with L{None} once the node answers.
        """
        self.assertIsNone(self.settle(self.client.ping()))
        self.assertEqual(self.ops(0), ["hello", "ping"])

    def test_timeout(self):
        """
        A request a node leaves unanswered (it is paused) fails with
        L{RequestTimeout} after the client's timeout.
        """
        self.cluster.pause_node(0)
        d = self.client.members()
        self.advance(9.9)
        self.assertNoResult(d)
        self.advance(0.1)
        self.assertEqual(self.failureResultOf(d, RequestTimeout).value.op, "members")


class SubscriptionTests(SessionTestsMixin, SynchronousTestCase):
    """
    Subscriptions and pushes.
    """

    def setUp(self):
        super().setUp()
        self.connect()

    def connect(self):
        """
        A client of node 0, another of node 1.
        """
        self.client = self.connectClient()
        self.other = self.connectClient(start=1)
        self.views = []

    def test_subscribe(self):
        """
        C{subscribe} returns the current view; the listener then gets every
        pushed view, and the last one is kept.
        """
        self.settle(self.other.register("orders", "a", 1))
        info = self.settle(self.client.subscribe("orders", self.views.append))
        self.assertEqual([h.ip for h in info.hosts], ["a"])
        self.assertEqual(self.views, [])
        self.settle(self.other.register("orders", "b", 1))
        self.assertEqual([[h.ip for h in v.hosts] for v in self.views], [["a", "b"]])
        self.assertEqual(self.client.last_service_info("orders"), self.views[-1])

    def test_clusterFilter(self):
        """
        Subscriptions with different cluster filters are kept apart.
        """
        other = []
        self.settle(self.client.subscribe("orders", self.views.append, clusters=["C2"]))
        self.settle(self.client.subscribe("orders", other.append))
        self.settle(self.other.register("orders", "a", 1, cluster="C2"))
        self.assertEqual(self.views[-1].clusters, ("C2",))
        self.assertEqual(other[-1].clusters, None)
        self.assertEqual(self.client.last_service_info("orders", clusters=["C2"]), self.views[-1])
        self.settle(self.other.register("orders", "b", 1, cluster="C3"))
        self.assertEqual([[h.ip for h in v.hosts] for v in self.views], [["a"]])
        self.assertEqual([h.ip for h in other[-1].hosts], ["a", "b"])

    def test_failingListener(self):
        """
        A listener that raises is logged and does not keep the others from
        their view.
        """
        def broken(info):
            raise RuntimeError("broken listener")

        self.settle(self.client.subscribe("orders", broken))
        self.settle(self.client.subscribe("orders", self.views.append))
        self.settle(self.other.register("orders", "a", 1))
        self.assertEqual(len(self.views), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unsubscribe(self):
        """
        The node is told once the last listener is gone; pushes then stop.
        """
        second = []
        self.settle(self.client.subscribe("orders", self.views.append))
        self.settle(self.client.subscribe("orders", second.append))
        self.settle(self.client.unsubscribe("orders", self.views.append))
        self.assertEqual(self.ops(0)[-1], "subscribe")
        self.settle(self.other.register("orders", "a", 1))
        self.assertEqual((len(self.views), len(second)), (0, 1))
        self.settle(self.client.unsubscribe("orders"))
        self.assertEqual(self.ops(0)[-1], "unsubscribe")
        self.assertIsNone(self.client.last_service_info("orders"))
        self.settle(self.other.register("orders", "b", 1))
        self.assertEqual((len(self.views), len(second)), (0, 1))

    def test_refusedSubscribe(self):
        """
        A subscription the node refuses (here, one above its
        C{max_subscriptions_per_client}) is forgotten.
        """
        self.useCluster(max_subscriptions_per_client=1)
        self.connect()
        self.settle(self.client.subscribe("payments", lambda info: None))
        d = self.client.subscribe("orders", self.views.append)
        self.settle()
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "LIMIT_EXCEEDED")
        self.assertIsNone(self.client.last_service_info("orders"))
        self.settle(self.other.register("orders", "a", 1))
        self.assertEqual(self.views, [])


class FailoverTests(SessionTestsMixin, SynchronousTestCase):
    """
    Losing a node: reconnection, resume and redo.
    """

    def setUp(self):
        super().setUp()
        self.client = self.connectClient()
        self.clientId = self.client.client_id
        self.settle(self.client.register("orders", "a", 1))
        self.settle(self.client.register("orders", "b", 2, metadata={"k": "v"}))
        self.settle(self.client.register("payments", "c", 3))
        self.views = []
        self.settle(self.client.subscribe("orders", self.views.append))

    def restartLoading(self):
        """
        Restart node 1 while nodes 0 and 2 are paused: it knows none of
        their clients, and is not ready (it waits for them) until node 2
        resumes or its C{load_timeout_ms} passes.
        """
        self.cluster.pause_node(0)
        self.cluster.pause_node(2)
        self.cluster.start_node(1)

    def restartWaiting(self):
        """
        Restart node 1 while node 2 is paused: it loads node 0's clients
        (this one's) but is not ready (it waits for node 2) until node 2
        resumes or its C{load_timeout_ms} passes.
        """
        self.cluster.pause_node(2)
        self.cluster.start_node(1)

    def test_resume(self):
        """
        After a crash the client connects to the next node, asks to resume
        its session, and re-sends its registrations (one C{batch_register}
        per service) and its subscriptions.
        """
        self.cluster.stop_node(0)
        hello = self.cluster.requests(1)[0]
        resume = hello["resume"]
        self.assertEqual(sorted(resume), ["client_id", "epoch", "resume_token"])
        self.assertEqual((resume["client_id"], resume["epoch"]), (self.clientId, 1))
        self.assertIsInstance(resume["resume_token"], str)
        self.assertEqual(
            self.ops(1), ["hello", "batch_register", "batch_register", "subscribe", "redo_done"]
        )
        batches = {m["service"]["name"]: m["instances"] for m in self.cluster.requests(1)[1:3]}
        self.assertEqual(
            {name: [(i["ip"], i["port"]) for i in instances]
             for name, instances in batches.items()},
            {"orders": [("a", 1), ("b", 2)], "payments": [("c", 3)]},
        )
        self.assertEqual(batches["orders"][1]["metadata"], {"k": "v"})
        # The node took the token: the session is the same.
        self.assertEqual(self.client.client_id, self.clientId)
        self.assertEqual(self.client.node, "n1")
        self.assertEqual(self.views, [])
        self.assertEqual(self.hostIds(1), ["a#1#DEFAULT", "b#2#DEFAULT"])

    def test_emptiedServiceResent(self):
        """
        A service this session emptied is re-sent as an empty
        C{batch_register}: a node that resumes the session from older data
        (say, across a partition) must drop what was deregistered.
        """
        self.settle(self.client.batch_register("payments", []))
        self.assertNotIn(Service("payments"), self.client.registrations())
        self.cluster.stop_node(0)
        batches = {
            m["service"]["name"]: m["instances"]
            for m in self.cluster.requests(1) if m.get("op") == "batch_register"
        }
        self.assertEqual(batches["payments"], [])
        self.assertEqual([i["ip"] for i in batches["orders"]], ["a", "b"])

    def test_epochCarriedAcrossResumes(self):
        """
        Each resume presents the last epoch the cluster gave the session, so
        that every new owner ranks above the ones before it: 1 for a new
        session, then one more at each takeover.
        """
        self.cluster.stop_node(0)
        self.assertEqual(self.cluster.requests(1)[0]["resume"]["epoch"], 1)
        self.cluster.stop_node(1)
        self.assertEqual(self.cluster.requests(2)[0]["resume"]["epoch"], 2)
        self.cluster.start_node(0)
        self.cluster.stop_node(2)
        [hello] = [m for m in self.cluster.requests(0) if "resume" in m]
        self.assertEqual(hello["resume"]["epoch"], 3)
        self.assertEqual(
            (self.client.node, self.client.client_id), ("n0", self.clientId)
        )

    def test_resumeRefusedWhileLoading(self):
        """
        A node that is still loading, and does not know the session yet,
        answers a resume with C{NOT_READY} and closes: the client goes on to
        the next node and resumes there, with its identity.
        """
        self.restartLoading()
        self.cluster.stop_node(0)
        self.assertEqual(self.ops(1), ["hello"])
        self.assertFalse(self.client.connected)
        self.advance(1)  # the client waits for paused node 2
        self.cluster.resume_node(2)
        self.assertEqual(self.client.node, "n2")
        self.assertEqual(self.client.client_id, self.clientId)
        self.assertEqual(self.ops(1), ["hello"])
        self.assertEqual(self.ops(2)[-1], "redo_done")

    def test_sessionEvents(self):
        """
        Session listeners hear of a lost connection, then of a resume, or of
        a session that had to start over (the nodes that held it are gone).
        """
        events = []
        self.client.add_session_listener(events.append)
        self.cluster.stop_node(0)
        self.assertEqual(events, [SessionEvent.SUSPENDED, SessionEvent.RESUMED])
        del events[:]
        self.cluster.stop_node(2)
        self.cluster.stop_node(1)
        self.cluster.start_node(2)
        # Round the list from n2, down at first: n0 and n1 are down, n2 (up
        # again) does not know the session; n0, n1, then n2 again.
        self.advance(*[1] * 6)
        self.assertEqual(events, [SessionEvent.SUSPENDED, SessionEvent.LOST])
        self.assertEqual(self.ops(2)[-1], "subscribe")
        self.assertNotEqual(self.client.client_id, self.clientId)

    def test_offlineEvent(self):
        """
        While no node answers, the first query answered from what the
        client holds (the subscription's last view) tells the listeners
        C{"offline"}, once, until a node takes the session again.
        """
        events = []
        self.client.add_session_listener(events.append)
        self.stopAll()
        self.assertEqual(events, [SessionEvent.SUSPENDED])
        for _ in range(2):
            self.successResultOf(self.client.query("orders"))
        self.assertEqual(events, [SessionEvent.SUSPENDED, SessionEvent.OFFLINE])
        self.cluster.start_node(1)
        self.advance(*[1] * 6)
        self.assertEqual(events[2:], [SessionEvent.LOST])
        self.stopAll()
        self.successResultOf(self.client.query("orders"))
        self.assertEqual(events[3:], [SessionEvent.SUSPENDED, SessionEvent.OFFLINE])

    def test_otherNodeResumes(self):
        """
        A node that does not know the session (it restarted while the node
        that had it was unreachable) is not taken at its word: the client
        tries the next one, which resumes it with its identity.
        """
        self.cluster.pause_node(0)
        self.cluster.start_node(1)
        self.advance(10.5)  # n1 is ready past load_timeout_ms, without n0's clients
        self.assertNotIn(self.clientId, self.cluster.client_ids(1))
        self.cluster.stop_node(0)
        self.assertEqual(self.client.node, "n2")
        self.assertEqual(self.client.client_id, self.clientId)
        self.assertEqual(self.ops(1), ["hello"])
        self.assertEqual(self.ops(2)[-1], "redo_done")

    def test_notResumed(self):
        """
        A node that cannot resume the session gives a new identity; the redo
        registers everything again under it.
        """
        self.stopAll()
        self.cluster.start_node(1)
        self.cluster.start_node(2)
        # Round the list: n2 and n1 do not know the session, n0 is down.
        self.advance(*[1] * 4)
        self.assertEqual(self.client.node, "n2")
        self.assertNotEqual(self.client.client_id, self.clientId)
        for index in (1, 2):
            # Those the declined hellos made went with their connections.
            self.assertEqual(self.cluster.client_ids(index), [self.client.client_id])
            self.assertEqual(self.hostIds(index), ["a#1#DEFAULT", "b#2#DEFAULT"])
            self.assertEqual(self.hostIds(index, "payments"), ["c#3#DEFAULT"])

    def test_wholeClusterRestarted(self):
        """
        Every node restarted (none knows the session): once one answers,
        the client goes round the others at once, not after its retry
        delay each time (a declined resume is an answer, not a failure),
        and registers everything again under a new identity.
        """
        client = self.connectClient(retry_policy=lambda failures: 5.0)
        self.settle(client.register("orders", "r", 9))
        self.stopAll()
        self.advance(*[5] * 4)  # the client finds no node, again and again
        for index in range(3):
            self.cluster.start_node(index)
        self.settle()
        self.assertFalse(client.connected)
        self.advance(5)  # its next attempt: the first node declines it
        self.assertTrue(client.connected)
        self.assertNotEqual(client.client_id, self.clientId)
        for index in range(3):
            self.assertIn("r#9#DEFAULT", self.hostIds(index))

    def test_changedViewAfterFailover(self):
        """
        A view that changed while the client was away reaches its listeners
        after the reconnection; pushes then come from the new node.
        """
        other = self.connectClient(start=2)
        self.network.refuse(1, 2)
        self.cluster.stop_node(0)
        self.settle(other.register("orders", "z", 9))
        self.assertEqual(self.views, [])
        self.network.allow(1, 2)
        self.advance(1)
        self.assertEqual(self.client.node, "n2")
        self.assertEqual([h.ip for h in self.views[-1].hosts], ["a", "b", "z"])
        self.settle(other.deregister("orders", "z", 9))
        self.assertEqual([h.ip for h in self.views[-1].hosts], ["a", "b"])

    def test_requestsWaitForReconnection(self):
        """
        A request made while no node is reachable waits, and is sent once a
        node accepts the session; a write made meanwhile is part of the redo.
        """
        self.network.refuse(1, 2)
        self.cluster.stop_node(0)
        d = self.client.register("orders", "new", 7)
        self.settle()
        self.assertNoResult(d)
        self.network.allow(2)
        self.advance(1)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.client.client_id, self.clientId)
        [batch] = [m for m in self.cluster.requests(2)
                   if m["op"] == "batch_register" and m["service"]["name"] == "orders"]
        self.assertIn("new", [i["ip"] for i in batch["instances"]])
        self.assertEqual(self.ops(2)[-1], "register")
        self.assertEqual(self.hostIds(2), ["a#1#DEFAULT", "b#2#DEFAULT", "new#7#DEFAULT"])

    def test_waitingRequestTimesOut(self):
        """
        A request waiting for a node fails with L{RequestTimeout} after the
        timeout; a write stays remembered for the next redo.
        """
        self.stopAll()
        d = self.client.register("orders", "new", 7)
        self.advance(9.9)
        self.assertNoResult(d)
        self.advance(0.1)
        self.failureResultOf(d, RequestTimeout)
        self.assertIn("new", [i.ip for i in self.client.registrations()[Service("orders")]])

    def test_timedOutDeregister(self):
        """
        A deregister that timed out while no node answered still applies: the
        redo sends the service's remaining instances, here none, and the
        node that kept them drops them.
        """
        self.settle(self.client.deregister("orders", "b", 2))
        self.network.refuse(1, 2)
        self.cluster.stop_node(0)
        d = self.client.deregister("orders", "a", 1)
        self.advance(*[1] * 10)
        self.failureResultOf(d, RequestTimeout)
        self.assertEqual(self.hostIds(1), ["a#1#DEFAULT"])
        self.network.allow(1)
        self.advance(*[1] * 5)
        self.assertEqual(self.client.client_id, self.clientId)
        self.assertEqual(self.cluster.requests(1)[1]["instances"], [])
        self.assertEqual(self.hostIds(1), [])
        self.assertEqual(list(self.client.registrations()), [Service("payments")])

    def test_lostMidRequest(self):
        """
        A request whose connection is lost before the reply is sent again on
        the next connection.
        """
        self.cluster.pause_node(0)
        d = self.client.services()
        self.settle()
        self.assertNoResult(d)
        self.cluster.stop_node(0)
        self.assertEqual(self.successResultOf(d).count, 2)
        self.assertEqual(self.ops(1)[-1], "services")

    def test_queryFromLastView(self):
        """
        While no node answers, a query of a subscribed service is answered
        from the subscription's last view.
        """
        self.stopAll()
        info = self.successResultOf(self.client.query("orders"))
        self.assertEqual([h.ip for h in info.hosts], ["a", "b"])
        only = self.successResultOf(self.client.query("orders", clusters=["OTHER"]))
        self.assertEqual((only.hosts, only.clusters), ((), ("OTHER",)))
        unknown = self.client.query("payments")
        self.assertNoResult(unknown)
        self.successResultOf(self.client.close())
        self.failureResultOf(unknown, NotConnected)

    def test_notReady(self):
        """
        A node that is not ready yet gets the query again after a pause, and
        the redo's subscriptions too.
        """
        self.restartWaiting()
        self.cluster.stop_node(0)
        self.assertEqual((self.client.node, self.client.client_id), ("n1", self.clientId))
        d = self.client.query("payments")
        self.settle()
        self.assertNoResult(d)
        self.cluster.resume_node(2)  # n1 loads from it, and is ready
        self.advance(0.5)
        self.assertEqual([h.ip for h in self.successResultOf(d).hosts], ["c"])
        self.assertEqual(self.ops(1).count("subscribe"), 2)
        self.assertEqual(self.ops(1).count("query"), 2)

    def test_notReadyFromLastView(self):
        """
        A query a not-ready node refuses is answered from the last view, if
        there is one.
        """
        self.restartWaiting()
        self.cluster.stop_node(0)
        self.assertEqual(self.client.node, "n1")
        info = self.settle(self.client.query("orders"))
        self.assertEqual([h.ip for h in info.hosts], ["a", "b"])
        self.assertEqual(self.ops(1)[-1], "query")

    def test_silentNode(self):
        """
        A node that stops answering (paused) is given up when a heartbeat
        ping, due after C{heartbeat_ms} of silence, times out; the client
        moves to the next.
        """
        self.cluster.pause_node(0)
        self.advance(12.9)  # the ping went at 3 s; it times out at 13 s
        self.assertEqual(self.client.node, "n0")
        self.assertEqual(self.cluster.requests(1), [])
        self.advance(0.2)
        self.assertEqual(self.client.node, "n1")
        self.assertEqual(self.client.client_id, self.clientId)
        self.assertEqual(self.ops(1)[0], "hello")

    def test_backoff(self):
        """
        Failed attempts walk the server list round robin, waiting as the retry
        policy says between them.
        """
        self.stopAll()
        self.assertEqual(self.network.attempts, self.servers[:2])
        self.advance(0.9)
        self.assertEqual(len(self.network.attempts), 2)
        self.advance(0.1)
        self.advance(1)
        self.assertEqual(self.network.attempts[-2:], [self.servers[2], self.servers[0]])

    def test_refusedRedoRetried(self):
        """
        When a node refuses a service's redo, the client sends it again once
        a refused write of that service was undone: here a write made while
        no node answered, whose metadata no node takes, makes the redo of
        its service refused; once the write itself is refused and undone,
        the service's registrations are sent again, and taken.
        """
        self.network.refuse(1, 2)
        self.cluster.stop_node(0)
        d = self.client.register("payments", "c", 3, metadata=LARGE)
        self.network.allow(1, 2)
        with capturedLogs() as events:
            self.advance(1)
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "LIMIT_EXCEEDED")
        self.assertEqual((self.client.node, self.client.client_id), ("n2", self.clientId))
        logged = " ".join(formatEvent(e) for e in events)
        self.assertIn("node refused the registrations of public/DEFAULT_GROUP/payments", logged)
        self.assertEqual(
            self.ops(2),
            ["hello", "batch_register", "batch_register", "subscribe", "redo_done",
             "register", "batch_register"],
        )
        [kept] = self.client.registrations()[Service("payments")]
        self.assertEqual(kept.metadata, {})
        self.assertEqual(self.hostIds(2, "payments"), ["c#3#DEFAULT"])
        self.assertEqual(self.hostIds(2), ["a#1#DEFAULT", "b#2#DEFAULT"])


class CloseTests(SessionTestsMixin, SynchronousTestCase):
    """
    Ending a session.
    """

    def test_bye(self):
        """
        C{close} sends C{bye}; the node removes the session's instances and
        the client does not reconnect.
        """
        client = self.connectClient()
        self.settle(client.register("orders", "a", 1))
        self.assertIsNone(self.settle(client.close()))
        self.assertEqual(self.ops(0)[-1], "bye")
        self.assertEqual(self.hostIds(0), [])
        self.assertEqual(self.cluster.client_ids(0), [])
        self.assertFalse(client.connected)
        self.advance(60)
        self.assertEqual(self.network.attempts, self.servers[:1])
        self.failureResultOf(client.ping(), NotConnected)

    def test_closeWhileDisconnected(self):
        """
        Closing a client that waits for a node fails its waiting requests and
        stops the attempts.
        """
        client = self.connectClient()
        self.stopAll()
        d = client.ping()
        self.successResultOf(client.close())
        self.failureResultOf(d, NotConnected)
        # The stopped nodes run no timer: these would be the client's.
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeTwice(self):
        """
        A second C{close} does nothing.
        """
        client = self.connectClient()
        self.settle(client.close())
        self.successResultOf(client.close())
        self.assertEqual(self.ops(0).count("bye"), 1)


class AddressTests(SynchronousTestCase):
    """
    Server addresses.
    """

    def test_parse(self):
        """
        C{host:port}, bracketed IPv6, and a missing port are understood.
        """
        self.assertEqual(parseAddress("10.0.0.1:1234"), ("10.0.0.1", 1234))
        self.assertEqual(parseAddress("[::1]:9850"), ("::1", 9850))
        self.assertEqual(parseAddress("node.example"), ("node.example", 9850))
        self.assertEqual(parseAddress("[fe80::1]"), ("fe80::1", 9850))

    def test_malformed(self):
        """
        Malformed addresses raise L{ValueError}.
        """
        for text in ["::1:9850", "host:", "host:x", "host:70000", "[::1", ":80", "[::1]x"]:
            self.assertRaises(ValueError, parseAddress, text)

    def test_servers(self):
        """
        Lists and comma-separated strings both work; duplicates go.
        """
        self.assertEqual(
            parseServers(["a:1,b:2", "a:1", " [::1]:3 "]),
            [("a", 1), ("b", 2), ("::1", 3)],
        )
        self.assertRaises(ValueError, parseServers, " , ")

    def test_format(self):
        """
        L{formatAddress} brackets IPv6 hosts.
        """
        self.assertEqual(formatAddress("::1", 1), "[::1]:1")
        self.assertEqual(formatAddress("a", 1), "a:1")


class ModelTests(SynchronousTestCase):
    """
    The client's values.
    """

    def test_instanceDefaults(self):
        """
        An instance has the protocol's defaults and its id.
        """
        instance = Instance("10.0.0.1", 80)
        self.assertEqual(instance.as_wire(), {
            "ip": "10.0.0.1", "port": 80, "cluster": "DEFAULT", "weight": 1.0,
            "healthy": True, "enabled": True, "metadata": {}})
        self.assertEqual(instance.instance_id, "10.0.0.1#80#DEFAULT")

    def test_instanceChecks(self):
        """
        Out-of-range and mistyped fields are refused.
        """
        for bad in [
            dict(ip="", port=1),
            dict(ip="a", port=True),
            dict(ip="a", port=1, weight=-1),
            dict(ip="a", port=1, weight=10001),
            dict(ip="a", port=1, healthy=1),
            dict(ip="a", port=1, cluster="x" * 65),
            dict(ip="a", port=1, metadata={"k": 1}),
        ]:
            self.assertRaises(ValueError, Instance, **bad)
        self.assertRaises(TypeError, Instance.coerce, {"ip": "a", "port": 1, "wieght": 2})

    def test_metadataCopied(self):
        """
        The metadata given is copied, not shared.
        """
        metadata = {"k": "v"}
        instance = Instance("a", 1, metadata=metadata)
        metadata["k"] = "changed"
        self.assertEqual(instance.metadata, {"k": "v"})

    def test_serviceChecks(self):
        """
        Service names follow the protocol's rules.
        """
        self.assertRaises(ValueError, Service, "a@@b")
        self.assertRaises(ValueError, Service, "a", group="g@@")
        self.assertRaises(ValueError, Service, "")
        self.assertRaises(ValueError, Service, "a\nb")
        self.assertRaises(ValueError, Service, "x" * 257)
        self.assertEqual(str(Service("a", group="g", namespace="ns")), "ns/g/a")

    def test_serviceInfoRoundTrip(self):
        """
        A ServiceInfo read from the wire gives the same wire form back, and
        ignores unknown fields.
        """
        wire = {
            "service": {"namespace": "public", "group": "DEFAULT_GROUP", "name": "orders"},
            "clusters": ["C1"],
            "hosts": [{"ip": "a", "port": 1, "cluster": "C1", "weight": 2.0, "healthy": False,
                       "enabled": True, "metadata": {"k": "v"}, "instance_id": "a#1#C1"}],
            "checksum": "abc",
            "revision": 4,
        }
        info = ServiceInfo.from_wire(dict(wire, future="x"))
        self.assertEqual(info.as_wire(), wire)
        self.assertEqual(info.healthy_only().hosts, ())
