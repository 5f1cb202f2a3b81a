"""
Chaos: a real cluster under a random fault schedule, watched from outside.

A L{ChaosRun} starts N C{twistd -n distro-node} processes on 127.0.0.1. Their
peer links go through relays this process owns (one in front of each node's
peer port, which is what every C{cluster.conf} lists), so that the run can
cut a link (both ends see a reset), freeze it (nothing flows, nobody is
told) or slow it down. Nodes are killed (SIGKILL) and restarted, stopped
(SIGSTOP) and continued.

Meanwhile clients of the library (L{distro.client.DistroClient}, following
PROTOCOL.md 6: failover, resume, redo) register, deregister and re-register
instances on random nodes, each write putting its instances with a version
of their own in their metadata; some leave with C{bye} and others take
their place. One subscriber per node, connected to that node only, watches
every service, and the wrong-removal oracle (L{tests._oracle}) checks every
push against what the clients hold.

At the end the network heals, every node runs, the writes stop, and the run
waits until every node's views hold exactly what the clients still
connected hold. The L{ChaosReport} says how many operations and faults there
were, how many instances were lost or are ghosts, how many wrong removals
the subscribers saw, and how long the cluster took to converge.

Everything runs on 127.0.0.1; every wait is bounded; every process is ended
(SIGCONT, then SIGTERM, then SIGKILL) by L{ChaosRun.stop}.
"""

import os
import random
import signal
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogLevel, Logger, formatEvent, globalLogPublisher

from distro.client import DistroClient, DistroError, NotConnected
from distro.client._events import SessionEvent
from distro.client._protocol import ClientConnection

from tests._oracle import Oracle
from tests._ports import freePorts
from tests._process import TWISTD
from tests._relay import Network, Relay, Timers


# Node settings: failure detection in seconds, orphans kept longer than any
# fault lasts (dropping them is 5.4's rule, not a wrong removal).
NODE_SETTINGS = {
    "peer-timeout-ms": 1000,
    "down-after-ms": 3000,
    "disconnect-grace-ms": 2000,
    "orphan-grace-ms": 30000,
    "verify-interval-ms": 2000,
    "load-timeout-ms": 5000,
}
CLIENT_TIMEOUT = 2.0
START_TIMEOUT = 20.0
CONVERGE_TIMEOUT = 60.0
SERVICES = ("orders", "users", "stock", "mail")


# The nodes


class NodeProcess:
    """
    One node: its ports, and its current process (replaced by a restart).
    """

    def __init__(self, index, clientPort, peerPort, relayPort, directory, elapsed):
        self.index = index
        self.elapsed = elapsed
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.relayPort = relayPort
        self.directory = directory
        self.process = None
        self.transport = None
        self.incarnation = 0
        self.stopped = False
        self.ended = defer.Deferred()

    @property
    def nodeId(self):
        return f"127.0.0.1:{self.relayPort}"

    @property
    def clientAddress(self):
        return f"127.0.0.1:{self.clientPort}"

    @property
    def alive(self):
        return self.transport is not None

    def start(self, clusterFile):
        node = self
        self.incarnation += 1
        self.stopped = False
        self.portFile = os.path.join(self.directory, f"port.{self.index}.{self.incarnation}")
        logPath = os.path.join(self.directory, f"node{self.index}.{self.incarnation}.log")
        ended = self.ended = defer.Deferred()

        class Watch(ProcessProtocol):
            """
            The node's log, each line stamped with the run's clock when it
            arrived (the node's own stamps are whole seconds).
            """

            def __init__(self):
                self.log = open(logPath, "wb")
                self.partial = b""

            def outReceived(self, data):
                lines = (self.partial + data).split(b"\n")
                self.partial = lines.pop()
                for line in lines:
                    self._write(line)

            def _write(self, line):
                self.log.write(f"{node.elapsed():9.3f} ".encode() + line + b"\n")

            errReceived = outReceived

            def processEnded(self, reason):
                if self.partial:
                    self._write(self.partial)
                self.log.close()
                if node.ended is ended:
                    node.transport = None
                ended.callback(None)

        args = [
            "-n", "--pidfile=", "distro-node", "--nacos-listen", "", "--http-listen", "",
            "--listen", f"tcp:{self.clientPort}:interface=127.0.0.1",
            "--peer-listen", f"tcp:{self.peerPort}:interface=127.0.0.1",
            "--peer-advertise", self.nodeId,
            "--cluster", clusterFile,
            "--port-file", self.portFile,
            # The nodes share a directory: each its own data (kept across
            # its restarts).
            "--data-dir", os.path.join(self.directory, f"data{self.index}"),
        ]
        for key, value in NODE_SETTINGS.items():
            args += [f"--{key}", str(value)]
        self.transport = reactor.spawnProcess(
            Watch(), sys.executable, TWISTD + args, env=dict(os.environ), path=self.directory
        )

    def signal(self, name):
        if self.transport is None:
            return
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    @defer.inlineCallbacks
    def kill(self):
        self.signal("KILL")
        yield self.ended

    @defer.inlineCallbacks
    def terminate(self):
        if self.transport is None:
            return
        self.signal(signal.SIGCONT)
        self.signal("TERM")
        d = self.ended
        timeout = reactor.callLater(5, self.signal, "KILL")
        yield d
        if timeout.active():
            timeout.cancel()


# Watching and writing


class _Subscriber:
    """
    A connection to one node's client port, subscribed to every service,
    telling the oracle of every view; reconnects while the run lasts.
    """

    def __init__(self, run, node):
        self.run = run
        self.node = node
        self.name = f"n{node.index}"
        self.connection = None
        self.running = True

    @defer.inlineCallbacks
    def keep(self):
        while self.running:
            try:
                yield self._subscribe()
                yield self._lost
            except Exception:
                pass
            self.run.oracle.forget(self.name)
            if self.running:
                yield self.run.timers.sleep(0.2)

    @defer.inlineCallbacks
    def _subscribe(self):
        run = self.run
        self._lost = defer.Deferred()
        connection = ClientConnection(reactor, observer=self, timeout=CLIENT_TIMEOUT)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.node.clientPort, timeout=2)
        yield connectProtocol(endpoint, connection)
        self.connection = connection
        try:
            yield connection.hello("chaos-subscriber/1")
            for service in SERVICES:
                while True:
                    try:
                        reply = yield connection.request("subscribe", service={"name": service})
                        break
                    except DistroError as e:
                        if e.code != "NOT_READY":
                            raise
                        yield run.timers.sleep(0.2)
                run.oracle.view(self.name, service, _shown(reply["service_info"]), fresh=True)
        except Exception:
            connection.transport.abortConnection()
            raise

    # IConnectionObserver

    def pushReceived(self, connection, message):
        if connection is self.connection:
            info = message["service_info"]
            self.run.oracle.view(self.name, info["service"]["name"], _shown(info))

    def requestTimedOut(self, connection, op):
        pass

    def connectionLost(self, connection, reason):
        if connection is self.connection:
            self.connection = None
            if not self._lost.called:
                self._lost.callback(None)

    def stop(self):
        self.running = False
        if self.connection is not None:
            self.connection.transport.abortConnection()


def _shown(info):
    return [(h["instance_id"], h.get("metadata", {}).get("v")) for h in info["hosts"]]


class _Writer:
    """
    One client of the library and what it did, for the oracle.
    """

    def __init__(self, run, number):
        self.run = run
        self.number = number
        self.ip = f"10.{number // 250}.{number % 250}.1"
        self.version = 0
        self.client = None
        self.sessionId = None
        self.held = {}  # service -> {port: version}

    def key(self, service, port):
        return (service, f"{self.ip}#{port}#DEFAULT")

    @defer.inlineCallbacks
    def start(self):
        run = self.run
        servers = [n.clientAddress for n in run.nodes]
        self.client = DistroClient(
            servers,
            clock=reactor,
            endpoint_factory=lambda host, port: HostnameEndpoint(
                reactor, host, port, timeout=CLIENT_TIMEOUT
            ),
            timeout=CLIENT_TIMEOUT,
            start_at=run.rng.randrange(len(servers)),
        )
        self.client.add_session_listener(self._session)
        yield self.client.start()

    def _session(self, event):
        oracle = self.run.oracle
        if event in (SessionEvent.CONNECTED, SessionEvent.RESUMED):
            self.sessionId = self.client.client_id
        self.run.note(f"writer {self.ip}: {event.name} ({self.sessionId})")
        if event == SessionEvent.LOST:
            self.run.event(f"session {self.sessionId} of {self.ip} lost")
        if event == SessionEvent.SUSPENDED:
            oracle.suspended(self.ip)
        elif event == SessionEvent.RESUMED:
            oracle.resumed(self.ip)
            self.run.report.resumes += 1
        elif event == SessionEvent.LOST:
            oracle.lost(self.ip)
            self.run.report.lostSessions += 1

    def _write(self, call, puts, removes):
        token = self.run.oracle.sent(self.ip, puts, removes)
        self.run.report.operations += 1
        d = call()

        def done(_):
            self.run.oracle.acked(token)

        def failed(failure):
            self.run.report.failedOperations += 1

        return d.addCallbacks(done, failed)

    def step(self, rng):
        service = rng.choice(SERVICES)
        held = self.held.setdefault(service, {})
        self.version += 1
        version = str(self.version)
        kind = rng.random()
        if kind < 0.45 or not held:
            port = rng.randrange(1, 9)
            held[port] = version
            return self._write(
                lambda: self.client.register(service, self.ip, port, metadata={"v": version}),
                [(self.key(service, port), version)],
                [],
            )
        if kind < 0.75:
            port = rng.choice(sorted(held))
            del held[port]
            return self._write(
                lambda: self.client.deregister(service, self.ip, port),
                [],
                [self.key(service, port)],
            )
        ports = set(rng.sample(range(1, 9), rng.randrange(0, 4)))
        removes = [self.key(service, p) for p in held if p not in ports]
        self.held[service] = dict.fromkeys(ports, version)
        instances = [
            {"ip": self.ip, "port": p, "metadata": {"v": version}} for p in sorted(ports)
        ]
        return self._write(
            lambda: self.client.batch_register(service, instances),
            [(self.key(service, p), version) for p in ports],
            removes,
        )

    def leave(self):
        self.run.note(f"writer {self.ip}: leaves ({self.sessionId})")
        removes = [self.key(s, p) for s, ports in self.held.items() for p in ports]
        self.run.oracle.sent(self.ip, [], removes)
        self.held = {}
        return self.client.close()

    def expected(self):
        """
        C{{service: {instanceId: version}}}: what this client holds, as its
        library knows it.
        """
        result = {}
        for service, instances in self.client.registrations().items():
            result[service.name] = {
                "#".join(map(str, i.identity)): i.metadata.get("v") for i in instances
            }
        return result


class ChaosReport:
    """
    What a run did and saw.
    """

    def __init__(self, seed, nodes, duration):
        self.seed = seed
        self.nodes = nodes
        self.duration = duration
        self.operations = 0
        self.failedOperations = 0
        self.faults = []
        self.faultCount = 0
        self.resumes = 0
        self.lostSessions = 0
        self.pushes = 0
        self.wrongRemovals = []
        self.lost = None
        self.ghosts = None
        self.convergedAfter = None

    def ok(self):
        return (
            not self.wrongRemovals
            and self.lost == 0
            and self.ghosts == 0
            and self.convergedAfter is not None
        )

    def line(self):
        converged = "never" if self.convergedAfter is None else f"{self.convergedAfter:.2f} s"
        return (
            f"seed {self.seed} nodes {self.nodes} {self.duration:g} s: "
            f"operations {self.operations} (failed {self.failedOperations}), "
            f"faults {self.faultCount}, resumes {self.resumes}, lost sessions {self.lostSessions}, "
            f"pushes {self.pushes}, lost {self.lost}, ghosts {self.ghosts}, "
            f"wrong removals {len(self.wrongRemovals)}, converged after heal {converged}"
        )


class ChaosRun:
    """
    One run: C{nodes} nodes, C{clients} writers, C{duration} seconds of
    faults, from C{seed}.
    """

    log = Logger()

    def __init__(self, seed, nodes=3, clients=40, duration=60.0, directory=None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.size = nodes
        self.clientCount = clients
        self.duration = duration
        self.directory = directory or tempfile.mkdtemp(prefix="distro-chaos-")
        self.timers = Timers()
        self.network = Network(self.timers)
        self.nodes = []
        self.writers = []
        self.subscribers = []
        self.report = ChaosReport(seed, nodes, duration)
        self._t0 = reactor.seconds()
        self._clientLogFile = None
        self.oracle = Oracle(self.elapsed, self._owner)
        self._ips = {}
        self._faulty = set()
        self._pending = set()
        self._running = False
        self._numbers = iter(range(1, 60000))

    def _owner(self, instanceId):
        return self._ips.get(instanceId.split("#", 1)[0])

    def elapsed(self):
        """
        Seconds since the run started.
        """
        return reactor.seconds() - self._t0

    def _clientLog(self, event):
        """
        Keep what the client library logs, stamped with the run's clock.
        """
        if (
            self._clientLogFile is None
            or not event.get("log_namespace", "").startswith("distro.client")
            or event.get("log_level") == LogLevel.debug
        ):
            return
        self._clientLogFile.write(f"{self.elapsed():9.3f} {formatEvent(event)}\n")

    def note(self, text):
        """
        Add a line of the run's own to the clients' log.
        """
        if self._clientLogFile is not None:
            self._clientLogFile.write(f"{self.elapsed():9.3f} {text}\n")

    def event(self, text, fault=False):
        self.report.faults.append((round(self.elapsed(), 3), text))
        self.report.faultCount += fault

    # Setting up

    @defer.inlineCallbacks
    def start(self):
        self._t0 = reactor.seconds()
        self._clientLogFile = open(os.path.join(self.directory, "clients.log"), "w")
        globalLogPublisher.addObserver(self._clientLog)
        ports = freePorts(2 * self.size)
        for i in range(self.size):
            relay = Relay(self.network, i, ports[2 * i + 1])
            relay.port = reactor.listenTCP(0, relay, interface="127.0.0.1")
            self.network.relays.append(relay)
            node = NodeProcess(
                i,
                ports[2 * i],
                ports[2 * i + 1],
                relay.port.getHost().port,
                self.directory,
                self.elapsed,
            )
            self.nodes.append(node)
            self.network.nodeIds[node.nodeId] = i
        self.clusterFile = os.path.join(self.directory, "cluster.conf")
        with open(self.clusterFile, "w") as f:
            for node in self.nodes:
                f.write(node.nodeId + "\n")
        for node in self.nodes:
            node.start(self.clusterFile)
        for node in self.nodes:
            yield self.waitReady(node)
        for node in self.nodes:
            subscriber = _Subscriber(self, node)
            self.subscribers.append(subscriber)
            subscriber.keep()
        yield defer.gatherResults([self.addWriter() for _ in range(self.clientCount)])

    @defer.inlineCallbacks
    def addWriter(self):
        """
        A new writer, once a node accepted it (tried again while faults
        keep every node from answering in time).
        """
        while True:
            writer = _Writer(self, next(self._numbers))
            self._ips[writer.ip] = writer.ip
            try:
                yield writer.start()
            except NotConnected:
                continue
            self.writers.append(writer)
            return writer

    @defer.inlineCallbacks
    def waitReady(self, node, timeout=START_TIMEOUT):
        """
        Wait until C{node} listens and says it is ready.
        """
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline:
            if os.path.exists(node.portFile):
                try:
                    connection = ClientConnection(reactor, timeout=2)
                    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", node.clientPort, timeout=2)
                    yield connectProtocol(endpoint, connection)
                    try:
                        reply = yield connection.hello("chaos-probe/1")
                        if reply.get("ready"):
                            return
                    finally:
                        connection.transport.abortConnection()
                except Exception:
                    pass
            yield self.timers.sleep(0.1)
        raise AssertionError(f"node {node.index} not ready after {timeout} s")

    # Running

    @defer.inlineCallbacks
    def _write(self, writer):
        while self._running:
            yield self.timers.sleep(self.rng.uniform(0.1, 1.0))
            if not self._running:
                return
            if self.rng.random() < 0.01:
                yield writer.leave()
                self.writers.remove(writer)
                if self._running:
                    replacement = yield self.addWriter()
                    self._write(replacement)
                return
            yield writer.step(self.rng)

    @defer.inlineCallbacks
    def _fault(self):
        rng = self.rng
        kinds = ["kill", "stop", "cut", "freeze", "delay"]
        kind = rng.choice(kinds)
        a, b = rng.sample(range(self.size), 2)
        length = rng.uniform(1.0, 4.0)
        # At most a minority of nodes down or stopped at once.
        if kind in ("kill", "stop") and len(self._faulty) >= (self.size - 1) // 2:
            kind = "delay"
        if kind in ("kill", "stop") and a in self._faulty:
            return
        node = self.nodes[a]
        if kind == "kill":
            self._faulty.add(a)
            self.event(f"kill n{a}", fault=True)
            yield node.kill()
            yield self.timers.sleep(length)
            self.event(f"restart n{a}")
            node.start(self.clusterFile)
            try:
                yield self.waitReady(node)
            finally:
                self._faulty.discard(a)
        elif kind == "stop":
            self._faulty.add(a)
            self.event(f"stop n{a}", fault=True)
            node.stopped = True
            node.signal("STOP")
            yield self.timers.sleep(length)
            node.signal(signal.SIGCONT)
            node.stopped = False
            self._faulty.discard(a)
            self.event(f"continue n{a}")
        else:
            if kind == "cut":
                self.network.cut(a, b)
            elif kind == "freeze":
                self.network.freeze(a, b)
            else:
                self.network.delay(a, b, rng.choice([0.05, 0.2, 0.5, 1.0]))
            self.event(f"{kind} n{a}-n{b}", fault=True)
            yield self.timers.sleep(length)
            self.network.restore(a, b)
            self.event(f"restore n{a}-n{b}")

    def _track(self, d):
        self._pending.add(d)
        d.addBoth(lambda r: (self._pending.discard(d), r)[1])
        return d

    @defer.inlineCallbacks
    def run(self):
        """
        The whole run; fires with the L{ChaosReport}.
        """
        yield self.start()
        self._running = True
        for writer in list(self.writers):
            self._write(writer)
        end = reactor.seconds() + self.duration
        while reactor.seconds() < end:
            yield self.timers.sleep(self.rng.uniform(1.0, 3.0))
            if reactor.seconds() < end:
                self._track(self._fault())
        self._running = False
        yield self.heal()
        healed = reactor.seconds()
        self.event("healed")
        converged = yield self.converge(healed + CONVERGE_TIMEOUT)
        if converged:
            self.report.convergedAfter = reactor.seconds() - healed
        self.report.wrongRemovals = self.oracle.wrongRemovals()
        self.report.pushes = self.oracle.pushes
        return self.report

    @defer.inlineCallbacks
    def heal(self):
        """
        End every fault: wait for those in progress, restore the network,
        continue and restart every node, and let every client connect.
        """
        while self._pending:
            yield defer.DeferredList(list(self._pending), consumeErrors=True)
        self.network.heal()
        for node in self.nodes:
            if node.stopped:
                node.signal(signal.SIGCONT)
                node.stopped = False
            if not node.alive:
                node.start(self.clusterFile)
        for node in self.nodes:
            yield self.waitReady(node)

    @defer.inlineCallbacks
    def views(self, node):
        """
        C{{service: {instanceId: version}}} of C{node}, or C{None}.
        """
        connection = ClientConnection(reactor, timeout=2)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", node.clientPort, timeout=2)
        try:
            yield connectProtocol(endpoint, connection)
        except Exception:
            return None
        try:
            yield connection.hello("chaos-probe/1")
            result = {}
            for service in SERVICES:
                reply = yield connection.request("query", service={"name": service})
                result[service] = dict(_shown(reply["service_info"]))
            return result
        except Exception:
            return None
        finally:
            connection.transport.abortConnection()

    @defer.inlineCallbacks
    def converge(self, deadline):
        """
        Poll until every node's views are what the connected clients hold;
        then count lost and ghost instances (also at the deadline).
        """
        while True:
            expected = {s: {} for s in SERVICES}
            for writer in self.writers:
                for service, instances in writer.expected().items():
                    expected.setdefault(service, {}).update(instances)
            lost = ghosts = 0
            for node in self.nodes:
                views = yield self.views(node)
                if views is None:
                    lost = ghosts = None
                    break
                for service in SERVICES:
                    want = set(expected[service].items())
                    have = set(views[service].items())
                    lost += len(want - have)
                    ghosts += len(have - want)
            self.report.lost, self.report.ghosts = lost, ghosts
            if lost == 0 and ghosts == 0:
                return True
            if reactor.seconds() > deadline:
                return False
            yield self.timers.sleep(0.2)

    @defer.inlineCallbacks
    def stop(self):
        """
        Close every client, subscriber, relay and node.
        """
        self._running = False
        self.timers.cancel()
        for subscriber in self.subscribers:
            subscriber.stop()
        for writer in list(self.writers):
            try:
                yield writer.client.close().addTimeout(3, reactor)
            except Exception:
                pass
        for pipe in list(self.network.pipes):
            pipe.abort()
        for relay in self.network.relays:
            if relay.port is not None:
                yield relay.port.stopListening()
        yield defer.gatherResults([node.terminate() for node in self.nodes])
        self.timers.cancel()
        if self._clientLogFile is not None:
            globalLogPublisher.removeObserver(self._clientLog)
            self._clientLogFile.close()
            self._clientLogFile = None
