# -*- test-case-name: tests.test_client_session -*-
"""
Tests for L{distro.client.DistroClient}: requests, subscriptions, failover,
resume and redo, against the scripted nodes of L{tests._fakecluster}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from distro.client import (
    DistroClient,
    DistroError,
    Instance,
    NotConnected,
    RequestTimeout,
    Service,
    ServiceInfo,
)
from distro.client._address import formatAddress, parseAddress, parseServers
from distro.client._events import SessionEvent

from ._fakecluster import FakeCluster

ADDRESSES = ["10.0.0.1:9850", "10.0.0.2:9850", "10.0.0.3:9850"]
ORDERS = ("public", "DEFAULT_GROUP", "orders")


class SessionTestsMixin:
    """
    A fake three-node cluster and a way to make clients of it.
    """

    def setUp(self):
        self.clock = Clock()
        self.cluster = FakeCluster(self.clock, ADDRESSES)

    def makeClient(self, start=0, **kwargs):
        """
        Build an unstarted L{DistroClient} of the fake cluster, with a fixed
        retry delay of one second.
        """
        kwargs.setdefault("retry_policy", lambda failures: 1.0)
        return DistroClient(
            ADDRESSES,
            clock=self.clock,
            endpoint_factory=self.cluster.endpointFactory,
            start_at=start,
            **kwargs,
        )

    def connectClient(self, start=0, **kwargs):
        """
        Build a client and wait until it is connected.
        """
        client = self.makeClient(start, **kwargs)
        d = client.start()
        self.cluster.flush()
        self.assertIs(self.successResultOf(d), client)
        return client

    def settle(self, d=None):
        """
        Pump the connections; return C{d}'s result if it fired.
        """
        self.cluster.flush()
        if d is not None:
            return self.successResultOf(d)

    def hostIds(self, key=ORDERS):
        """
        The instance ids the cluster holds for a service.
        """
        return [h["instance_id"] for h in self.cluster.view(key)["hosts"]]


class ConnectTests(SessionTestsMixin, SynchronousTestCase):
    """
    Opening a session.
    """

    def test_startAtGivenServer(self):
        """
        The first connection goes to the server at index C{start}, and begins
        with C{hello} carrying the agent and no C{resume}.
        """
        client = self.connectClient(start=1, agent="tests/1")
        node = self.cluster.node(1)
        self.assertEqual(node.ops(), ["hello"])
        self.assertEqual(node.received[0]["agent"], "tests/1")
        self.assertNotIn("resume", node.received[0])
        self.assertEqual((client.node, client.client_id), ("node-1", "client-1"))
        self.assertTrue(client.connected)

    def test_randomStart(self):
        """
        Without C{start}, the first server is one of the list.
        """
        client = DistroClient(
            ADDRESSES, clock=self.clock, endpoint_factory=self.cluster.endpointFactory)
        client.start()
        self.assertIn(self.cluster.connectAttempts[0], ADDRESSES)

    def test_token(self):
        """
        A token is sent in C{hello}.
        """
        self.connectClient(token="s3cret")
        self.assertEqual(self.cluster.node(0).received[0]["token"], "s3cret")

    def test_skipDownServers(self):
        """
        A refused connection moves on to the next server.
        """
        self.cluster.node(0).up = False
        client = self.makeClient()
        d = client.start()
        self.clock.advance(1)
        self.settle()
        self.assertIs(self.successResultOf(d), client)
        self.assertEqual(self.cluster.connectAttempts, ADDRESSES[:2])

    def test_nothingAnswers(self):
        """
        When no server can be reached within the timeout, L{DistroClient.start}
        fails with L{NotConnected} naming the servers, after trying them in
        turn, and stops trying.
        """
        for node in self.cluster.nodes.values():
            node.up = False
        client = self.makeClient(timeout=5.0)
        d = client.start()
        self.clock.pump([1] * 5)
        error = self.failureResultOf(d, NotConnected).value
        self.assertIn("10.0.0.2:9850", str(error))
        self.assertEqual(self.cluster.connectAttempts, (ADDRESSES * 2)[:5])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused(self):
        """
        A node refusing C{hello} fails the start with its error, at once.
        """
        self.cluster.node(0).refuse["hello"] = ("UNAUTHORIZED", "bad token")
        d = self.makeClient().start()
        self.settle()
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "UNAUTHORIZED")
        self.assertEqual(self.cluster.connectAttempts, ADDRESSES[:1])

    def test_learnMembers(self):
        """
        The members a node announces join the server list.
        """
        client = DistroClient(
            ["10.0.0.1:9850"],
            clock=self.clock,
            endpoint_factory=self.cluster.endpointFactory,
            start_at=0,
        )
        client.start()
        self.settle()
        self.assertEqual(client.servers, ADDRESSES)


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
        message = self.cluster.node(0).received[-1]
        self.assertEqual(message["service"], {"namespace": "public",
                                              "group": "DEFAULT_GROUP", "name": "orders"})
        self.assertEqual(message["instance"], {
            "ip": "10.1.0.1", "port": 8080, "cluster": "DEFAULT", "weight": 1.0,
            "healthy": True, "enabled": True, "metadata": {"zone": "a"}})
        self.assertEqual(self.hostIds(), ["10.1.0.1#8080#DEFAULT"])
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
        first, second = self.cluster.node(0).received[-2:]
        self.assertEqual(first["service"], {"namespace": "ns", "group": "g", "name": "a"})
        self.assertEqual(second["service"], {"namespace": "dev", "group": "web", "name": "b"})

    def test_badInstance(self):
        """
        A malformed instance is refused at once, and not remembered.
        """
        self.assertRaises(ValueError, self.client.register, "orders", "h", 0)
        self.assertRaises(ValueError, self.client.register, "orders", "h", 1, cluster="a b")
        self.assertEqual(self.client.registrations(), {})

    def test_refusedRegister(self):
        """
        A register the node refuses fails with the node's code and is
        forgotten, so that no later redo repeats it.
        """
        self.settle(self.client.register("orders", "h", 1))
        self.cluster.node(0).refuse["register"] = ("LIMIT_EXCEEDED", "max_instances")
        d = self.client.register("orders", "h", 1, weight=5)
        self.settle()
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "LIMIT_EXCEEDED")
        [kept] = self.client.registrations()[Service("orders")]
        self.assertEqual(kept.weight, 1.0)

    def test_deregister(self):
        """
        C{deregister} removes the instance and tells whether it was there.
        """
        self.settle(self.client.register("orders", "h", 1))
        self.assertTrue(self.settle(self.client.deregister("orders", "h", 1)))
        self.assertEqual(self.hostIds(), [])
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
        self.assertTrue(self.settle(self.client.deregister("orders", "host.example", 1)))
        self.assertTrue(self.settle(self.client.deregister("orders", "2001:db8::1", 2)))
        self.assertEqual(self.client.registrations(), {})
        self.cluster.node(0).crash()
        self.settle()
        redo = [m for m in self.cluster.node(1).received if m.get("op") == "batch_register"]
        self.assertEqual([i for m in redo for i in m["instances"]], [])

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
        self.assertEqual(self.hostIds(), ["a#1#DEFAULT", "b#2#C2"])
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
        self.assertEqual(self.cluster.node(0).received[-1]["clusters"], ["C2"])
        self.assertTrue(self.cluster.node(0).received[-1]["healthy_only"])
        self.assertEqual(filtered.hosts, ())
        self.assertEqual(filtered.clusters, ("C2",))

    def test_servicesAndMembers(self):
        """
        C{services} returns the count and the list; C{members} the members.
        """
        self.settle(self.client.register("orders", "a", 1))
        result = self.settle(self.client.services())
        self.assertEqual(
            result,
            {"count": 1, "services": [{"group": "DEFAULT_GROUP", "name": "orders",
                                       "instances": 1}]},
        )
        self.assertEqual(self.cluster.node(0).received[-1]["namespace"], "public")
        members = self.settle(self.client.members())
        self.assertEqual([m["address"] for m in members], ADDRESSES)

    def test_ping(self):
        """
        C{ping} fires with L{None} once the node answers.
        """
        self.assertIsNone(self.settle(self.client.ping()))

    def test_timeout(self):
        """
        A request a node leaves unanswered fails with L{RequestTimeout} after
        the client's timeout.
        """
        self.cluster.node(0).silent = True
        d = self.client.members()
        self.settle()
        self.clock.advance(10)
        self.assertEqual(self.failureResultOf(d, RequestTimeout).value.op, "members")


class SubscriptionTests(SessionTestsMixin, SynchronousTestCase):
    """
    Subscriptions and pushes.
    """

    def setUp(self):
        super().setUp()
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
        self.assertEqual(self.cluster.node(0).ops()[-1], "subscribe")
        self.settle(self.other.register("orders", "a", 1))
        self.assertEqual((len(self.views), len(second)), (0, 1))
        self.settle(self.client.unsubscribe("orders"))
        self.assertEqual(self.cluster.node(0).ops()[-1], "unsubscribe")
        self.assertIsNone(self.client.last_service_info("orders"))

    def test_refusedSubscribe(self):
        """
        A subscription the node refuses is forgotten.
        """
        self.cluster.node(0).refuse["subscribe"] = ("LIMIT_EXCEEDED", "max_subscriptions")
        d = self.client.subscribe("orders", self.views.append)
        self.settle()
        self.failureResultOf(d, DistroError)
        self.assertIsNone(self.client.last_service_info("orders"))


class FailoverTests(SessionTestsMixin, SynchronousTestCase):
    """
    Losing a node: reconnection, resume and redo.
    """

    def setUp(self):
        super().setUp()
        self.client = self.connectClient()
        self.settle(self.client.register("orders", "a", 1))
        self.settle(self.client.register("orders", "b", 2, metadata={"k": "v"}))
        self.settle(self.client.register("payments", "c", 3))
        self.views = []
        self.settle(self.client.subscribe("orders", self.views.append))

    def test_resume(self):
        """
        After a crash the client connects to the next node, asks to resume
        its session, and re-sends its registrations (one C{batch_register}
        per service) and its subscriptions.
        """
        self.cluster.node(0).crash()
        self.settle()
        node = self.cluster.node(1)
        hello = node.received[0]
        self.assertEqual(
            hello["resume"], {"client_id": "client-1", "resume_token": "token-1", "epoch": 1}
        )
        self.assertEqual(
            node.ops(), ["hello", "batch_register", "batch_register", "subscribe", "redo_done"]
        )
        batches = {m["service"]["name"]: m["instances"] for m in node.received[1:3]}
        self.assertEqual(
            {name: [(i["ip"], i["port"]) for i in instances]
             for name, instances in batches.items()},
            {"orders": [("a", 1), ("b", 2)], "payments": [("c", 3)]},
        )
        self.assertEqual(batches["orders"][1]["metadata"], {"k": "v"})
        self.assertEqual(self.client.client_id, "client-1")
        self.assertEqual(self.client.node, "node-1")
        self.assertEqual(self.views, [])

    def test_emptiedServiceResent(self):
        """
        A service this session emptied is re-sent as an empty
        C{batch_register}: a node that resumes the session from older data
        (say, across a partition) must drop what was deregistered.
        """
        self.settle(self.client.batch_register("payments", []))
        self.assertNotIn(("public", "DEFAULT_GROUP", "payments"), {
            tuple(s.as_wire().values()) for s in self.client.registrations()
        })
        self.cluster.node(0).crash()
        self.settle()
        node = self.cluster.node(1)
        batches = {
            m["service"]["name"]: m["instances"]
            for m in node.received if m.get("op") == "batch_register"
        }
        self.assertEqual(batches["payments"], [])
        self.assertEqual([i["ip"] for i in batches["orders"]], ["a", "b"])

    def test_epochCarriedAcrossResumes(self):
        """
        Each resume presents the last epoch the cluster gave the session (in
        the hello reply, or the C{redo_done} reply), so that every new owner
        ranks above the ones before it, whatever they hold.
        """
        self.cluster.node(0).crash()
        self.settle()
        self.assertEqual(self.cluster.node(1).received[0]["resume"]["epoch"], 1)
        self.assertEqual(self.cluster.sessions["client-1"].epoch, 2)
        self.cluster.sessions["client-1"].epoch = 7  # raised again meanwhile
        self.cluster.node(1).crash()
        self.settle()
        self.assertEqual(self.cluster.node(2).received[0]["resume"]["epoch"], 2)

    def test_resumeRefusedWhileLoading(self):
        """
        A node that is still loading answers a resume with C{NOT_READY} and
        closes: the client goes on to the next node and resumes there, with
        its identity.
        """
        self.cluster.node(1).loading = True
        self.cluster.node(0).crash()
        self.settle()
        self.assertEqual(self.cluster.node(1).ops(), ["hello"])
        self.clock.advance(1)
        self.settle()
        self.assertEqual(self.client.node, "node-2")
        self.assertEqual(self.client.client_id, "client-1")
        self.assertEqual(self.cluster.node(2).ops()[-1], "redo_done")

    def test_sessionEvents(self):
        """
        Session listeners hear of a lost connection, then of a resume, or of
        a session that had to start over.
        """
        events = []
        self.client.add_session_listener(events.append)
        self.cluster.node(0).crash()
        self.settle()
        self.assertEqual(events, [SessionEvent.SUSPENDED, SessionEvent.RESUMED])
        self.cluster.node(2).resumable = False
        del events[:]
        self.cluster.node(1).crash()
        self.settle()
        for _ in range(2):  # round the list: n2 declines, n0 and n1 are down
            self.clock.advance(1)
            self.settle()
        self.assertEqual(events, [SessionEvent.SUSPENDED, SessionEvent.LOST])
        self.assertEqual(self.cluster.node(2).ops()[-1], "subscribe")

    def test_otherNodeResumes(self):
        """
        A node that does not know the session (lagging, or cut off from the
        one that did) is not taken at its word: the client tries the next
        one, which resumes it with its identity.
        """
        self.cluster.node(1).resumable = False
        self.cluster.node(0).crash()
        self.settle()
        self.assertEqual(self.client.node, "node-2")
        self.assertEqual(self.client.client_id, "client-1")
        self.assertEqual(self.cluster.node(1).ops(), ["hello"])

    def test_notResumed(self):
        """
        A node that cannot resume the session gives a new identity; the redo
        registers everything again under it.
        """
        self.cluster.node(1).resumable = False
        self.cluster.node(2).resumable = False
        self.cluster.node(0).crash()
        del self.cluster.sessions["client-1"]
        self.settle()
        self.clock.advance(1)  # round the list: n1 and n2 decline, n0 is down
        self.settle()
        self.assertEqual(self.client.node, "node-1")
        self.assertNotEqual(self.client.client_id, "client-1")
        self.assertEqual(list(self.cluster.sessions), [self.client.client_id])
        self.assertEqual(self.hostIds(), ["a#1#DEFAULT", "b#2#DEFAULT"])
        self.assertEqual(self.hostIds(("public", "DEFAULT_GROUP", "payments")), ["c#3#DEFAULT"])

    def test_changedViewAfterFailover(self):
        """
        A view that changed while the client was away reaches its listeners
        after the reconnection; pushes then come from the new node.
        """
        other = self.connectClient(start=2)
        self.cluster.node(0).crash()
        self.settle(other.register("orders", "z", 9))
        self.settle()
        self.assertEqual([h.ip for h in self.views[-1].hosts], ["a", "b", "z"])
        self.settle(other.deregister("orders", "z", 9))
        self.assertEqual([h.ip for h in self.views[-1].hosts], ["a", "b"])

    def test_requestsWaitForReconnection(self):
        """
        A request made while no node is reachable waits, and is sent once a
        node accepts the session; a write made meanwhile is part of the redo.
        """
        for node in self.cluster.nodes.values():
            node.up = False
        self.cluster.node(0).crash()
        d = self.client.register("orders", "new", 7)
        self.settle()
        self.assertNoResult(d)
        self.cluster.node(2).up = True
        self.clock.advance(1)
        self.settle()
        self.assertIsNone(self.successResultOf(d))
        batch = self.cluster.node(2).received[1]
        self.assertIn("new", [i["ip"] for i in batch["instances"]])
        self.assertEqual(self.cluster.node(2).ops()[-1], "register")

    def test_waitingRequestTimesOut(self):
        """
        A request waiting for a node fails with L{RequestTimeout} after the
        timeout; a write stays remembered for the next redo.
        """
        for node in self.cluster.nodes.values():
            node.up = False
        self.cluster.node(0).crash()
        d = self.client.register("orders", "new", 7)
        self.clock.pump([1] * 10)
        self.failureResultOf(d, RequestTimeout)
        self.assertIn("new", [i.ip for i in self.client.registrations()[Service("orders")]])

    def test_timedOutDeregister(self):
        """
        A deregister that timed out while no node answered still applies: the
        redo sends the service's remaining instances, here none.
        """
        self.settle(self.client.deregister("orders", "b", 2))
        for node in self.cluster.nodes.values():
            node.up = False
        self.cluster.node(0).crash()
        d = self.client.deregister("orders", "a", 1)
        self.clock.pump([1] * 10)
        self.failureResultOf(d, RequestTimeout)
        self.cluster.node(1).up = True
        self.clock.pump([1] * 5)
        self.settle()
        self.assertEqual(self.cluster.node(1).received[1]["instances"], [])
        self.assertEqual(self.hostIds(), [])
        self.assertEqual(list(self.client.registrations()), [Service("payments")])

    def test_lostMidRequest(self):
        """
        A request whose connection is lost before the reply is sent again on
        the next connection.
        """
        self.cluster.node(0).silent = True
        d = self.client.services()
        self.settle()
        self.cluster.node(0).crash()
        self.settle()
        self.assertEqual(self.successResultOf(d)["count"], 2)

    def test_queryFromLastView(self):
        """
        While no node answers, a query of a subscribed service is answered
        from the subscription's last view.
        """
        for node in self.cluster.nodes.values():
            node.up = False
        self.cluster.node(0).crash()
        info = self.successResultOf(self.client.query("orders"))
        self.assertEqual([h.ip for h in info.hosts], ["a", "b"])
        only = self.successResultOf(self.client.query("orders", clusters=["OTHER"]))
        self.assertEqual((only.hosts, only.clusters), ((), ("OTHER",)))
        self.assertNoResult(self.client.query("payments"))

    def test_notReady(self):
        """
        A node that is not ready yet gets the query again after a pause, and
        the redo's subscriptions too.
        """
        self.cluster.node(1).ready = False
        self.cluster.node(0).crash()
        self.settle()
        d = self.client.query("payments")
        self.settle()
        self.assertNoResult(d)
        self.cluster.node(1).ready = True
        self.clock.advance(0.5)
        self.settle()
        self.assertEqual([h.ip for h in self.successResultOf(d).hosts], ["c"])
        self.assertEqual(self.cluster.node(1).ops().count("subscribe"), 2)

    def test_notReadyFromLastView(self):
        """
        A query a not-ready node refuses is answered from the last view, if
        there is one.
        """
        self.cluster.node(1).ready = False
        self.cluster.node(0).crash()
        self.settle()
        info = self.settle(self.client.query("orders"))
        self.assertEqual([h.ip for h in info.hosts], ["a", "b"])

    def test_silentNode(self):
        """
        A node that stops answering is given up when a heartbeat ping times
        out, and the client moves to the next.
        """
        self.cluster.node(0).silent = True
        self.clock.advance(3)
        self.settle()
        self.assertEqual(self.cluster.node(0).ops()[-1], "ping")
        self.clock.advance(10)
        self.settle()
        self.assertEqual(self.client.node, "node-1")
        self.assertEqual(self.cluster.node(1).ops()[0], "hello")

    def test_backoff(self):
        """
        Failed attempts walk the server list round robin, waiting as the retry
        policy says between them.
        """
        for node in self.cluster.nodes.values():
            node.up = False
        self.cluster.node(0).crash()
        self.assertEqual(self.cluster.connectAttempts[-1:], ["10.0.0.2:9850"])
        self.clock.advance(0.9)
        self.assertEqual(len(self.cluster.connectAttempts), 2)
        self.clock.advance(0.1)
        self.clock.advance(1)
        self.assertEqual(self.cluster.connectAttempts[-2:], ["10.0.0.3:9850", "10.0.0.1:9850"])

    def test_refusedRedoRetried(self):
        """
        When a node refuses a service's redo, the client sends it again once
        a refused write of that service was undone.
        """
        node = self.cluster.node(1)
        node.resumable = self.cluster.node(2).resumable = False
        node.refuse["batch_register"] = ("LIMIT_EXCEEDED", "max_instances")
        self.cluster.node(0).crash()
        del self.cluster.sessions["client-1"]
        self.settle()
        self.clock.advance(1)  # round the list: none resumes the session
        self.settle()
        self.assertEqual(self.client.node, "node-1")
        self.assertEqual(self.hostIds(), [])
        del node.refuse["batch_register"]
        node.refuse["register"] = ("LIMIT_EXCEEDED", "max_instances")
        d = self.client.register("orders", "extra", 1)
        self.settle()
        self.failureResultOf(d, DistroError)
        self.assertEqual(node.ops()[-2:], ["register", "batch_register"])
        self.assertEqual(self.hostIds(), ["a#1#DEFAULT", "b#2#DEFAULT"])


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
        self.assertEqual(self.cluster.node(0).ops()[-1], "bye")
        self.assertEqual(self.hostIds(), [])
        self.assertFalse(client.connected)
        self.clock.advance(60)
        self.assertEqual(self.cluster.connectAttempts, ADDRESSES[:1])
        self.failureResultOf(client.ping(), NotConnected)

    def test_closeWhileDisconnected(self):
        """
        Closing a client that waits for a node fails its waiting requests and
        stops the attempts.
        """
        client = self.connectClient()
        for node in self.cluster.nodes.values():
            node.up = False
        self.cluster.node(0).crash()
        d = client.ping()
        self.successResultOf(client.close())
        self.failureResultOf(d, NotConnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeTwice(self):
        """
        A second C{close} does nothing.
        """
        client = self.connectClient()
        self.settle(client.close())
        self.successResultOf(client.close())
        self.assertEqual(self.cluster.node(0).ops().count("bye"), 1)


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
