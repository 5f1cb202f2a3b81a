"""
Helpers of the process tier (C{tests/process/}): real C{twistd -n
distro-node} processes on 127.0.0.1, spoken to over TCP with a minimal
msgpack client written from PROTOCOL.md (L{RawClient}); one node
(L{ProcessTestCase}) or a cluster of three started from the sample
configuration files C{etc/node1.toml} .. C{etc/node3.toml}
(L{ClusterTestCase}).

The sample files name fixed ports, which may be taken on the machine running
the tests; so each cluster test writes its own C{cluster.conf} with free
ports and overrides C{listen}, C{peer_listen}, C{cluster} and C{port_file} on
the command line (which wins over the file), along with short timeouts so
that failure detection takes about a second.

Every wait is bounded (polled up to a deadline); every process is ended in
cleanup: SIGCONT first (a stopped process cannot act on SIGTERM), then
SIGTERM, then SIGKILL if it is still there after 5 seconds.
"""

import os
import signal
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from distro.client import DistroClient, Service
from distro.wire import FrameProtocol

from ._ports import freePorts
from ._tempfiles import TempPathMixin

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
# The console script the installation made, beside the interpreter.
DISTRO = os.path.join(os.path.dirname(sys.executable), "distro")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
REPLY_TIMEOUT = 5.0


class NodeProcess(ProcessProtocol):
    """
    A twistd child process: collects its output and tells when it ends.

    @ivar output: everything it wrote to stdout and stderr, as bytes.
    @ivar errors: what it wrote to stderr alone, as bytes.
    @ivar reason: the L{Failure} it ended with, once ended.
    """

    def __init__(self):
        self.output = bytearray()
        self.errors = bytearray()
        self.reason = None
        self._waiters = []

    def outReceived(self, data):
        """
        Keep what the process wrote.
        """
        self.output += data

    def errReceived(self, data):
        """
        Keep what the process wrote to stderr, apart and with the rest.
        """
        self.output += data
        self.errors += data

    def processEnded(self, reason):
        """
        Record the end and tell whoever waits for it.
        """
        self.reason = reason
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(reason.value)

    @property
    def ended(self):
        """
        Whether the process has ended.
        """
        return self.reason is not None

    @property
    def exitCode(self):
        """
        The exit code (C{None} if killed by a signal or still running).
        """
        if self.reason is None:
            return None
        return getattr(self.reason.value, "exitCode", None)

    def whenEnded(self, timeout):
        """
        A L{Deferred} firing with the end reason (L{ProcessDone} or
        L{ProcessTerminated}), failing with
        L{defer.TimeoutError} after C{timeout} seconds.
        """
        if self.reason is not None:
            return defer.succeed(self.reason.value)
        d = defer.Deferred()
        self._waiters.append(d)
        return d.addTimeout(timeout, reactor)

    def signal(self, name):
        """
        Send signal C{name} unless the process is already gone.
        """
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    @defer.inlineCallbacks
    def stop(self):
        """
        End the process: SIGTERM, then SIGKILL after L{STOP_TIMEOUT}.
        """
        if self.ended:
            return
        self.signal("TERM")
        try:
            yield self.whenEnded(STOP_TIMEOUT)
        except defer.TimeoutError:
            self.signal("KILL")
            yield self.whenEnded(STOP_TIMEOUT)


class RawClient(FrameProtocol):
    """
    A minimal client: numbered requests matched with replies by C{re}, and a
    queue of pushes.
    """

    def __init__(self):
        super().__init__()
        self._lastId = 0
        self._waiting = {}
        self.pushes = defer.DeferredQueue()
        self.unmatched = []
        self.lost = defer.Deferred()
        self.connected = False

    def connectionMade(self):
        """
        Note that the connection is up.
        """
        self.connected = True

    def request(self, op, **fields):
        """
        Send a request; the L{Deferred} fires with its reply (C{ok} or
        C{error}), and fails after L{REPLY_TIMEOUT} seconds.
        """
        self._lastId += 1
        rid = self._lastId
        d = self._waiting[rid] = defer.Deferred()
        self.sendMessage({"op": op, "id": rid, **fields})
        return d.addTimeout(REPLY_TIMEOUT, reactor)

    def nextPush(self):
        """
        The next push, failing after L{REPLY_TIMEOUT} seconds.
        """
        return self.pushes.get().addTimeout(REPLY_TIMEOUT, reactor)

    def messageReceived(self, message):
        """
        Queue a push, or fire the request a reply answers.
        """
        if message.get("op") == "push":
            self.pushes.put(message)
            return
        d = self._waiting.pop(message.get("re"), None)
        if d is None:
            self.unmatched.append(message)
        else:
            d.callback(message)

    def connectionLost(self, reason):
        """
        Fail the requests still waiting and fire L{lost}.
        """
        self.connected = False
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(reason)
        self.lost.callback(None)


@defer.inlineCallbacks
def waitFor(predicate, timeout, what):
    """
    Poll C{predicate} on the reactor's clock until it returns something true;
    return that. Fail after C{timeout} seconds.
    """
    deadline = reactor.seconds() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        yield deferLater(reactor, 0.05, lambda: None)


class ProcessTestCase(TempPathMixin, TestCase):
    """
    Starts twistd processes and connects clients to them, cleaning up both.
    """

    timeout = 90
    # The token of every hello, for nodes that require one.
    helloToken = None

    def spawn(self, *args, twistd=("-n", "--pidfile=")):
        """
        Start C{twistd -n distro-node ARGS} in a fresh directory; it is
        stopped in cleanup.

        @param twistd: twistd's own options (a daemon: without C{-n}, with
            C{--pidfile} and C{--logfile}; paths are relative to the
            directory).
        """
        directory = self.tempPath()
        os.makedirs(directory)
        process = NodeProcess()
        # The Nacos gRPC port only where a test asks for it (its default,
        # 9848, is one port for every node of the machine).
        argv = TWISTD + [*twistd, "--rundir", directory, "distro-node",
                         "--nacos-listen", "", "--http-listen", "", *args]
        # No path: twistd changes to its directory itself, so that Twisted
        # spawns with posix_spawn and never forks this process, whose gRPC
        # threads (tests that drive the Nacos port in process) make a forked
        # child die before it execs (seen in CI: "twistd ended early" with
        # no output, after gRPC's "skipping fork() handlers").
        reactor.spawnProcess(process, sys.executable, argv, env=dict(os.environ))
        self.addCleanup(process.stop)
        return process

    @defer.inlineCallbacks
    def startNode(self, *args):
        """
        Start a node on 127.0.0.1 port 0 and wait for its port file.

        @return: a L{Deferred} firing with C{(process, host, port)}.
        """
        portFile = self.tempPath()
        process = self.spawn(
            "--listen", "tcp:0:interface=127.0.0.1", "--port-file", portFile, *args
        )

        def bound():
            if process.ended:
                raise AssertionError(f"twistd ended early ({process.reason.value!r}):\n{process.output.decode()}")
            try:
                with open(portFile) as f:
                    return f.read()
            except FileNotFoundError:
                return None

        address = yield waitFor(bound, START_TIMEOUT, "the port file")
        self.assertTrue(address.endswith("\n"), address)
        host, port = address.strip().rsplit(":", 1)
        return process, host, int(port)

    @defer.inlineCallbacks
    def connect(self, host, port):
        """
        Connect a L{RawClient}; it is disconnected in cleanup.
        """
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=5)
        client = yield connectProtocol(endpoint, RawClient()).addTimeout(5, reactor)
        self.addCleanup(self._disconnect, client)
        return client

    def _disconnect(self, client):
        """
        Abort C{client}'s connection if still open and wait for its end.
        """
        if client.connected:
            client.transport.abortConnection()
        return client.lost.addTimeout(STOP_TIMEOUT, reactor)

    @defer.inlineCallbacks
    def hello(self, client):
        """
        Do the handshake and check its reply.
        """
        token = {"token": self.helloToken} if self.helloToken else {}
        reply = yield client.request("hello", proto=1, agent="test_process/1", **token)
        self.assertEqual(reply["op"], "ok", reply)
        return reply

    @defer.inlineCallbacks
    def failedStart(self, *args):
        """
        Run twistd with C{args}, expecting it to exit by itself.

        @return: a L{Deferred} firing with C{(exitCode, output)}.
        """
        process = yield self.exited(*args)
        return process.exitCode, process.output.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def failedStartErrors(self, *args):
        """
        L{failedStart}, with what it wrote to stderr alone.

        @return: a L{Deferred} firing with C{(exitCode, stderr)}.
        """
        process = yield self.exited(*args)
        return process.exitCode, process.errors.decode("utf-8", "replace")

    def exited(self, *args, **kwargs):
        """
        Run twistd with C{args} (and L{spawn}'s C{kwargs}); a L{Deferred}
        firing with its L{NodeProcess} once it has exited by itself.
        """
        process = self.spawn(*args, **kwargs)
        return process.whenEnded(START_TIMEOUT).addCallback(lambda _: process)


# A cluster of node processes

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

    def __init__(self, index, clientPort, peerPort, dataDir=""):
        self.index = index
        # Kept across its restarts (each process runs in a new directory).
        self.dataDir = dataDir
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
            "--data-dir", member.dataDir,
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
            try:
                yield self.waitStates(m, {o.nodeId: "UP" for o in self.members})
            except AssertionError as e:
                # What each node said of its peer links (CI saw a member
                # DOWN at start once, with nothing else to go on).
                raise AssertionError(f"{e}\n{self.outputTails()}")
        return self.members

    def outputTails(self, size=3000):
        """
        The end of each node's output, for a failure's message.
        """
        return "\n".join(f"--- {member}:\n{process.output.decode('utf-8', 'replace')[-size:]}"
                         for member, process in self.processes)

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
        self.members = [Member(i + 1, ports[2 * i], ports[2 * i + 1], self.tempPath()) for i in range(count)]
        self.clusterFile = self.tempPath()
        with open(self.clusterFile, "w") as f:
            f.write("# written by tests/_process.py\n")
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
