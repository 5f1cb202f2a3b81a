# -*- test-case-name: tests.process.test_cluster_process -*-
"""
Integration tests of a cluster: three real C{twistd -n distro-node}
processes on 127.0.0.1, started from the sample configuration files
C{etc/node1.toml} .. C{etc/node3.toml} with free ports and short timeouts
(L{tests._process.ClusterTestCase}).

Nodes are killed (SIGKILL), stopped (SIGSTOP) and restarted. Every wait is
bounded (polled up to a deadline); every process is ended in cleanup.
"""

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from distro.client import Service

from tests._process import (
    CONVERGE_TIMEOUT,
    DOWN_AFTER_MS,
    ORDERS,
    PEER_TIMEOUT_MS,
    ClusterTestCase,
    hostIds,
    instanceId,
    waitFor,
)

STOCK = Service("stock")


class ClusterProcessTests(ClusterTestCase):
    """
    Three node processes replicate their clients' data to each other,
    survive the loss of a member, and catch up after a restart or a stall.
    """

    @defer.inlineCallbacks
    def test_registerEverywhereByeRemovesEverywhere(self):
        """
        Instances registered through node 1 with the client library show in
        queries on nodes 2 and 3, with the same checksum; when the client
        closes (C{bye}), they are gone from every node.
        """
        n1, n2, n3 = yield self.startCluster()
        client = yield self.client(self.members, start=0)
        self.assertEqual(client.node, n1.nodeId)
        yield client.register(ORDERS, "10.0.0.1", 8080, metadata={"zone": "a"})
        yield client.register(ORDERS, "10.0.0.2", 8080, cluster="east")
        expected = [instanceId("10.0.0.1", 8080), instanceId("10.0.0.2", 8080, "east")]
        infos = yield self.waitHosts(
            [n1, n2, n3], ORDERS, expected, "the instances on every node"
        )
        self.assertEqual(len({info["checksum"] for info in infos}), 1, infos)
        [host] = [h for h in infos[2]["hosts"] if h["ip"] == "10.0.0.1"]
        self.assertEqual(host["metadata"], {"zone": "a"})

        services = yield self.request(n3, "services")
        self.assertEqual(
            services["services"], [{"group": "DEFAULT_GROUP", "name": "orders", "instances": 2}]
        )

        yield client.close()
        infos = yield self.waitHosts([n1, n2, n3], ORDERS, [], "the instances gone everywhere")
        self.assertEqual(len({info["checksum"] for info in infos}), 1, infos)
        for m in self.members:
            self.assertFalse(m.process.ended, m.process.output.decode())

    @defer.inlineCallbacks
    def test_killedNodeClientResumesElsewhere(self):
        """
        SIGKILL of the node a client is on: the client resumes on a surviving
        node within seconds, keeping its client id; a subscriber on another
        node is never pushed a view without the client's instances, not even
        after C{orphan_grace_ms}; C{members} shows the dead node C{DOWN}.
        Restarted, the node loads the cluster's data (C{ready: true}, its
        query shows the instances) and the members see it C{UP} again; the
        client's C{bye} then removes its instances everywhere, the restarted
        node included.
        """
        orphanGraceMs = 2000
        n1, n2, n3 = yield self.startCluster(orphanGraceMs=orphanGraceMs)
        client = yield self.client(self.members, start=0)
        self.assertEqual(client.node, n1.nodeId)
        clientId = client.client_id
        yield client.batch_register(
            ORDERS, [{"ip": "10.0.1.1", "port": 80}, {"ip": "10.0.1.2", "port": 80}]
        )
        expected = [instanceId("10.0.1.1", 80), instanceId("10.0.1.2", 80)]
        yield self.waitHosts([n2, n3], ORDERS, expected, "the instances on nodes 2 and 3")

        subscriber = yield self.connectObserver(n3)
        reply = yield subscriber.request("subscribe", service=ORDERS.as_wire())
        self.assertEqual(hostIds(reply["service_info"]), expected)

        def vanished():
            """
            The pushes so far that lack one of the client's instances.
            """
            return [
                p for p in subscriber.seen if not set(expected) <= set(hostIds(p["service_info"]))
            ]

        killed = reactor.seconds()
        yield self.kill(n1)

        # The client resumes on the next server of its list: node 2.
        yield waitFor(
            lambda: client.connected and client.node == n2.nodeId,
            CONVERGE_TIMEOUT,
            "the client to resume on node 2",
        )
        failover = reactor.seconds() - killed
        self.assertEqual(client.client_id, clientId)
        self.assertLess(failover, 5.0)

        yield self.waitStates(n2, {n1.nodeId: "DOWN", n2.nodeId: "UP", n3.nodeId: "UP"})
        down = reactor.seconds() - killed
        # Not before down_after_ms of silence (node 1 pinged every
        # peer_timeout_ms / 3 until killed), give or take a poll.
        self.assertGreater(down, (DOWN_AFTER_MS - PEER_TIMEOUT_MS / 3 - 100) / 1000.0)
        yield self.waitStates(n3, {n1.nodeId: "DOWN"})

        # Past orphan_grace_ms after DOWN: orphans of node 1 were dropped by
        # now, and the client, owned by node 2, was not one of them.
        remaining = killed + (DOWN_AFTER_MS + orphanGraceMs) / 1000.0 + 0.5 - reactor.seconds()
        if remaining > 0:
            yield deferLater(reactor, remaining, lambda: None)
        infos = yield defer.gatherResults([self.query(m, ORDERS) for m in (n2, n3)])
        self.assertEqual([hostIds(i) for i in infos], [expected, expected])
        self.assertEqual(vanished(), [])
        self.assertTrue(subscriber.connected)
        self.assertEqual((client.node, client.client_id), (n2.nodeId, clientId))

        # Restart node 1: it catches up from its peers.
        restarted = reactor.seconds()
        yield self.startMember(n1)
        welcome = yield self.waitReady(n1)
        self.assertEqual(welcome["node"], n1.nodeId)
        yield self.waitHosts([n1], ORDERS, expected, "the instances on the restarted node 1")
        catchUp = reactor.seconds() - restarted
        infos = yield defer.gatherResults([self.query(m, ORDERS) for m in self.members])
        self.assertEqual(len({info["checksum"] for info in infos}), 1, infos)
        for m in (n2, n3, n1):
            yield self.waitStates(m, {o.nodeId: "UP" for o in self.members})
        self.assertEqual(vanished(), [])
        self.assertEqual((client.node, client.client_id), (n2.nodeId, clientId))

        yield client.close()
        yield self.waitHosts(self.members, ORDERS, [], "the instances gone everywhere")
        # The push travels on the subscriber's own connection: it may land
        # after the query replies that showed the instances gone.
        yield waitFor(
            lambda: subscriber.seen and hostIds(subscriber.seen[-1]["service_info"]) == [],
            5.0,
            "the push without the instances on node 3",
        )
        # Seen in the trial log (test.log) / pytest's captured output.
        print(
            f"failover {failover:.2f}s, DOWN after {down:.2f}s, "
            f"restart to caught up {catchUp:.2f}s"
        )

    @defer.inlineCallbacks
    def test_stoppedNodeConverges(self):
        """
        A node stopped (SIGSTOP) long enough to be seen C{DOWN} misses writes
        made elsewhere (registrations, a deregistration, a replaced batch, a
        client that left with C{bye}); once continued (SIGCONT), it holds the
        same views as the others (same checksums), the others still hold its
        own client's instances, and its subscriber is pushed the new view.
        """
        n1, n2, n3 = yield self.startCluster(orphanGraceMs=30000)
        c1 = yield self.client([n1])
        c2 = yield self.client([n2])
        leaver = yield self.client([n2])
        yield c1.register(STOCK, "10.0.2.1", 80)
        yield c1.register(STOCK, "10.0.2.2", 80)
        yield c2.batch_register(STOCK, [{"ip": "10.0.2.3", "port": 80}])
        yield leaver.register(STOCK, "10.0.2.4", 80)
        # A client of node 3 itself, on a raw connection that stays open.
        local = yield self.connectObserver(n3)
        reply = yield local.request(
            "register", service=STOCK.as_wire(), instance={"ip": "10.0.2.5", "port": 80}
        )
        self.assertEqual(reply["op"], "ok", reply)
        before = [instanceId(f"10.0.2.{i}", 80) for i in range(1, 6)]
        yield self.waitHosts(self.members, STOCK, before, "the first instances everywhere")
        subscriber = yield self.connectObserver(n3)
        reply = yield subscriber.request("subscribe", service=STOCK.as_wire())
        self.assertEqual(hostIds(reply["service_info"]), before)

        self.pause(n3)
        # Long enough for the others to drop their links with node 3.
        yield self.waitStates(n1, {n3.nodeId: "DOWN"})
        yield self.waitStates(n2, {n3.nodeId: "DOWN"})

        yield c1.register(STOCK, "10.0.2.6", 80, metadata={"v": "2"})
        yield c1.register(STOCK, "10.0.2.1", 80, weight=5.0)
        removed = yield c1.deregister(STOCK, "10.0.2.2", 80)
        self.assertTrue(removed)
        yield c2.batch_register(
            STOCK, [{"ip": "10.0.2.7", "port": 80}, {"ip": "10.0.2.8", "port": 80}]
        )
        yield leaver.close()
        yield c1.register(ORDERS, "10.0.3.1", 80)
        after = [instanceId(f"10.0.2.{i}", 80) for i in (1, 5, 6, 7, 8)]
        infos = yield self.waitHosts([n1, n2], STOCK, after, "the writes on nodes 1 and 2")
        self.assertEqual(infos[0]["checksum"], infos[1]["checksum"])
        self.assertEqual(subscriber.seen, [])

        self.unpause(n3)
        infos = yield self.waitHosts(self.members, STOCK, after, "node 3 to catch up")
        checksums = {info["checksum"] for info in infos}
        self.assertEqual(len(checksums), 1, infos)
        [weighted] = [h for h in infos[2]["hosts"] if h["ip"] == "10.0.2.1"]
        self.assertEqual(weighted["weight"], 5.0)
        [updated] = [h for h in infos[2]["hosts"] if h["ip"] == "10.0.2.6"]
        self.assertEqual(updated["metadata"], {"v": "2"})
        orders = yield self.waitHosts(
            self.members, ORDERS, [instanceId("10.0.3.1", 80)], "orders on every node"
        )
        self.assertEqual(len({info["checksum"] for info in orders}), 1, orders)
        for m in self.members:
            yield self.waitStates(m, {o.nodeId: "UP" for o in self.members})

        # The subscriber on node 3 ends with the converged view.
        yield waitFor(
            lambda: subscriber.seen
            and subscriber.seen[-1]["service_info"]["checksum"] in checksums,
            CONVERGE_TIMEOUT,
            "the subscriber on node 3 to be pushed the converged view",
        )
        self.assertTrue(local.connected)
