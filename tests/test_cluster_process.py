# -*- test-case-name: tests.test_cluster_process -*-
"""
Integration tests of a cluster: three real C{twistd -n distro-node}
processes on 127.0.0.1, started from the sample configuration files
C{etc/node1.toml} .. C{etc/node3.toml}.

The sample files name fixed ports, which may be taken on the machine running
the tests; so each test writes its own C{cluster.conf} with free ports and
overrides C{listen}, C{peer_listen}, C{cluster} and C{port_file} on the
command line (which wins over the file), along with short timeouts so that
failure detection takes about a second.

Nodes are killed (SIGKILL), stopped (SIGSTOP) and restarted. Every wait is
bounded (polled up to a deadline); every process is ended in cleanup: SIGCONT
first (a stopped process cannot act on SIGTERM), then SIGTERM, then SIGKILL.
"""

import os
import signal

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater

from distro.client import DistroClient, Service

from ._ports import freePorts
from .test_process import START_TIMEOUT, ProcessTestCase, RawClient, waitFor

ETC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc")

# Failure detection in about a second (PROTOCOL.md 5.3, 5.4).
PEER_TIMEOUT_MS = 500
DOWN_AFTER_MS = 1000
DISCONNECT_GRACE_MS = 2000
VERIFY_INTERVAL_MS = 500
LOAD_TIMEOUT_MS = 5000

# How long a change may take to show on every node, and the polling period.
CONVERGE_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
# The library client's connect and request timeout.
CLIENT_TIMEOUT = 3.0

ORDERS = Service("orders")
STOCK = Service("stock")


def hostIds(info):
    """
    The sorted instance ids of a wire ServiceInfo.
    """
    return sorted(host["instance_id"] for host in info["hosts"])


def instanceId(ip, port, cluster="DEFAULT"):
    return f"{ip}#{port}#{cluster}"


class Observer(RawClient):
    """
    A raw client that also keeps every push it got, in order.
    """

    def __init__(self):
        super().__init__()
        self.seen = []

    def messageReceived(self, message):
        if message.get("op") == "push":
            self.seen.append(message)
        super().messageReceived(message)


class Member:
    """
    One node of the test cluster: its sample file, ports, and current
    process (replaced when restarted).
    """

    def __init__(self, index, clientPort, peerPort):
        self.index = index
        self.config = os.path.join(ETC, f"node{index}.toml")
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.process = None
        self._observer = None

    @property
    def address(self):
        """
        The client-port address, C{host:port}.
        """
        return f"127.0.0.1:{self.clientPort}"

    @property
    def nodeId(self):
        """
        The node id: a clustered node's default is its C{cluster.conf} line.
        """
        return f"127.0.0.1:{self.peerPort}"

    def __repr__(self):
        return f"<node{self.index} {self.nodeId}>"


class ClusterTestCase(ProcessTestCase):
    """
    Starts a three-node cluster and talks to its nodes.
    """

    timeout = 60

    def nodeArgs(self, member, portFile):
        """
        The command line of C{member}: its sample file, then the overrides.
        """
        return [
            "--config", member.config,
            "--listen", f"tcp:{member.clientPort}:interface=127.0.0.1",
            "--peer-listen", f"tcp:{member.peerPort}:interface=127.0.0.1",
            "--cluster", self.clusterFile,
            "--port-file", portFile,
            "--peer-timeout-ms", str(PEER_TIMEOUT_MS),
            "--down-after-ms", str(DOWN_AFTER_MS),
            "--disconnect-grace-ms", str(DISCONNECT_GRACE_MS),
            "--orphan-grace-ms", str(self.orphanGraceMs),
            "--verify-interval-ms", str(VERIFY_INTERVAL_MS),
            "--load-timeout-ms", str(LOAD_TIMEOUT_MS),
            # Raw observer connections send no heartbeat.
            "--idle-timeout-ms", "120000",
        ]

    @defer.inlineCallbacks
    def startCluster(self, orphanGraceMs=5000):
        """
        Write a C{cluster.conf} of three members on free ports, start them,
        and wait until each is ready and sees the others C{UP}.

        @return: a L{Deferred} firing with the three L{Member}s.
        """
        yield self.startMembers(3, orphanGraceMs)
        for m in self.members:
            yield self.waitReady(m)
            yield self.waitStates(m, {o.nodeId: "UP" for o in self.members})
        return self.members

    def startMembers(self, count, orphanGraceMs=5000):
        """
        Write a C{cluster.conf} of C{count} members on free ports and start
        them, without waiting for more than their ports.

        @return: a L{Deferred} firing with the L{Member}s.
        """
        self.orphanGraceMs = orphanGraceMs
        self.processes = []
        # Registered before the processes' own cleanups, so it runs after
        # they ended: their whole output is there.
        self.addCleanup(self.checkOutputs)
        ports = freePorts(2 * count)
        self.members = [Member(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(count)]
        self.clusterFile = self.tempPath()
        with open(self.clusterFile, "w") as f:
            f.write("# written by tests/test_cluster_process.py\n")
            for m in self.members:
                f.write(f"127.0.0.1:{m.peerPort}\n")
        return defer.gatherResults(
            [self.startMember(m) for m in self.members], consumeErrors=True
        )

    @defer.inlineCallbacks
    def startMember(self, member):
        """
        Start (or restart) C{member}'s process and wait until it listens.
        """
        portFile = self.tempPath()
        process = self.spawn(*self.nodeArgs(member, portFile))
        # Cleanups run last-registered first: SIGCONT before spawn's SIGTERM.
        self.addCleanup(self._continue, process)
        member.process = process
        self.processes.append((member, process))
        member._observer = None

        def bound():
            if process.ended:
                raise AssertionError(f"{member} ended early:\n{process.output.decode()}")
            return os.path.exists(portFile)

        yield waitFor(bound, START_TIMEOUT, f"{member}'s port file")
        return member

    def checkOutputs(self):
        """
        No node logged a traceback (an unhandled error), until its end.
        """
        for member, process in self.processes:
            output = process.output.decode("utf-8", "replace")
            for marker in ("Traceback", "Unhandled"):
                if marker in output:
                    at = output.index(marker)
                    excerpt = output[max(0, at - 2000) : at + 4000]
                    self.fail(f"{member} logged {marker!r}:\n{excerpt}")

    def _continue(self, process):
        if not process.ended:
            process.signal(signal.SIGCONT)

    def kill(self, member):
        """
        SIGKILL C{member}; the L{Deferred} fires once it is gone.
        """
        member.process.signal("KILL")
        member._observer = None
        return member.process.whenEnded(START_TIMEOUT)

    def pause(self, member):
        """
        SIGSTOP C{member}: it neither reads nor answers until L{unpause}.
        """
        member.process.signal("STOP")

    def unpause(self, member):
        """
        SIGCONT C{member}.
        """
        member.process.signal(signal.SIGCONT)

    # Talking to nodes

    @defer.inlineCallbacks
    def observer(self, member):
        """
        A raw client connected to C{member} (said hello); reused until its
        connection ends.
        """
        if member._observer is None or not member._observer.connected:
            member._observer = yield self.connectObserver(member)
        return member._observer

    @defer.inlineCallbacks
    def connectObserver(self, member):
        """
        A new L{Observer} connected to C{member}, after C{hello}; it is
        disconnected in cleanup.

        @return: a L{Deferred} firing with the observer; the reply to its
            C{hello} is its C{welcome}.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", member.clientPort, timeout=5)
        client = yield connectProtocol(endpoint, Observer()).addTimeout(5, reactor)
        self.addCleanup(self._disconnect, client)
        client.welcome = yield self.hello(client)
        return client

    @defer.inlineCallbacks
    def request(self, member, op, **fields):
        """
        Send one request to C{member} on its observer connection.

        @return: a L{Deferred} firing with the reply (C{ok} or C{error}).
        """
        client = yield self.observer(member)
        reply = yield client.request(op, **fields)
        return reply

    @defer.inlineCallbacks
    def query(self, member, service):
        """
        The C{service_info} of C{service} on C{member}, failing on an error.
        """
        reply = yield self.request(member, "query", service=service.as_wire())
        self.assertEqual(reply["op"], "ok", f"query on {member}: {reply}")
        return reply["service_info"]

    @defer.inlineCallbacks
    def states(self, member):
        """
        C{member}'s C{members}: node id -> state.
        """
        reply = yield self.request(member, "members")
        self.assertEqual(reply["op"], "ok", f"members on {member}: {reply}")
        return {m["node"]: m["state"] for m in reply["members"]}

    @defer.inlineCallbacks
    def poll(self, fetch, predicate, what, timeout=CONVERGE_TIMEOUT):
        """
        Call C{fetch} (returning a L{Deferred}) until C{predicate} holds for
        its result; fail after C{timeout} seconds, showing the last result.
        A failed fetch (a node not answering yet) counts as not holding.

        @return: a L{Deferred} firing with the result that held.
        """
        deadline = reactor.seconds() + timeout
        last = None
        while True:
            try:
                last = yield fetch()
            except Exception as e:
                last = e
            else:
                if predicate(last):
                    return last
            if reactor.seconds() > deadline:
                raise AssertionError(f"gave up waiting for {what} after {timeout}s; last: {last!r}")
            yield deferLater(reactor, POLL_INTERVAL, lambda: None)

    def waitHosts(self, members, service, expected, what):
        """
        Wait until every node of C{members} has exactly the instance ids
        C{expected} in its view of C{service}.

        @return: a L{Deferred} firing with the views, in order.
        """
        expected = sorted(expected)

        def fetch():
            return defer.gatherResults([self.query(m, service) for m in members])

        return self.poll(fetch, lambda infos: all(hostIds(i) == expected for i in infos), what)

    def waitReady(self, member):
        """
        Wait until a new connection to C{member} is told C{ready: true}.

        @return: a L{Deferred} firing with that hello reply.
        """

        @defer.inlineCallbacks
        def hello():
            client = yield self.connectObserver(member)
            client.transport.loseConnection()
            return client.welcome

        return self.poll(hello, lambda reply: reply["ready"] is True, f"{member} ready")

    def waitStates(self, member, expected, timeout=CONVERGE_TIMEOUT):
        """
        Wait until C{member}'s C{members} shows the states C{expected} (node
        id -> state; other members not checked).
        """

        def holds(states):
            return all(states.get(node) == state for node, state in expected.items())

        return self.poll(
            lambda: self.states(member), holds, f"{member} to show {expected}", timeout
        )

    @defer.inlineCallbacks
    def client(self, members, start=0):
        """
        A library client with the client addresses of C{members}, connecting
        to C{members[start]} first; it is closed in cleanup.
        """
        client = DistroClient(
            [m.address for m in members],
            clock=reactor,
            endpoint_factory=lambda host, port: TCP4ClientEndpoint(
                reactor, host, port, timeout=CLIENT_TIMEOUT
            ),
            agent="test_cluster_process/1",
            timeout=CLIENT_TIMEOUT,
            start_at=start,
            token=self.helloToken,
        )
        yield client.start()
        self.addCleanup(client.close)
        return client


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
