# -*- test-case-name: tests.test_process -*-
"""
Integration tests: a real C{twistd -n distro-node} process, spoken to over
TCP on 127.0.0.1 with a minimal msgpack client written from PROTOCOL.md.

Every wait is bounded; every process is ended in cleanup (SIGTERM, then
SIGKILL if it is still there after 5 seconds).
"""

import json
import os
import signal
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from distro.wire import FrameProtocol

from ._tempfiles import TempPathMixin

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
REPLY_TIMEOUT = 5.0

SERVICE = {"namespace": "public", "group": "DEFAULT_GROUP", "name": "orders"}


class NodeProcess(ProcessProtocol):
    """
    A twistd child process: collects its output and tells when it ends.

    @ivar output: everything it wrote to stdout and stderr, as bytes.
    @ivar reason: the L{Failure} it ended with, once ended.
    """

    def __init__(self):
        self.output = bytearray()
        self.reason = None
        self._waiters = []

    def outReceived(self, data):
        """
        Keep what the process wrote.
        """
        self.output += data

    errReceived = outReceived

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

    def spawn(self, *args):
        """
        Start C{twistd -n distro-node ARGS} in a fresh directory; it is
        stopped in cleanup.
        """
        directory = self.tempPath()
        os.makedirs(directory)
        process = NodeProcess()
        # The Nacos gRPC port only where a test asks for it (its default,
        # 9848, is one port for every node of the machine).
        argv = TWISTD + ["-n", "--pidfile=", "--rundir", directory, "distro-node",
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
        process = self.spawn(*args)
        yield process.whenEnded(START_TIMEOUT)
        return process.exitCode, process.output.decode("utf-8", "replace")


class NodeProcessTests(ProcessTestCase):
    """
    A node process serves clients over the protocol.
    """

    @defer.inlineCallbacks
    def test_registerQuerySubscribe(self):
        """
        One client registers and queries; a second, subscribed client is
        pushed each change; C{bye} removes the first client's instance.
        """
        process, host, port = yield self.startNode("--node-id", "proc-1")
        self.assertEqual(host, "127.0.0.1")

        publisher = yield self.connect(host, port)
        welcome = yield self.hello(publisher)
        self.assertEqual(welcome["proto"], 1)
        self.assertEqual(welcome["re"], 1)
        self.assertEqual(welcome["node"], "proc-1")
        self.assertIsInstance(welcome["client_id"], str)
        self.assertIsInstance(welcome["resume_token"], str)
        self.assertIs(welcome["resumed"], False)
        self.assertIs(welcome["ready"], True)
        self.assertEqual((welcome["heartbeat_ms"], welcome["idle_timeout_ms"]), (3000, 10000))
        self.assertEqual(welcome["members"], [f"127.0.0.1:{port}"])

        subscriber = yield self.connect(host, port)
        other = yield self.hello(subscriber)
        self.assertNotEqual(other["client_id"], welcome["client_id"])
        reply = yield subscriber.request("subscribe", service=SERVICE)
        self.assertEqual(reply["op"], "ok", reply)
        self.assertEqual(reply["service_info"]["hosts"], [])

        instance = {"ip": "10.0.0.1", "port": 8080, "metadata": {"version": "1"}}
        reply = yield publisher.request("register", service=SERVICE, instance=instance)
        self.assertEqual(reply, {"op": "ok", "re": 2})

        push = yield subscriber.nextPush()
        self.assertEqual(push["seq"], 1)
        [host1] = push["service_info"]["hosts"]
        self.assertEqual(host1["instance_id"], "10.0.0.1#8080#DEFAULT")
        self.assertEqual(host1["metadata"], {"version": "1"})
        self.assertEqual(push["service_info"]["service"], SERVICE)

        reply = yield publisher.request("query", service={"name": "orders"})
        self.assertEqual(reply["op"], "ok", reply)
        info = reply["service_info"]
        self.assertEqual([h["instance_id"] for h in info["hosts"]], ["10.0.0.1#8080#DEFAULT"])
        self.assertEqual(info["checksum"], push["service_info"]["checksum"])

        reply = yield publisher.request("bye")
        self.assertEqual(reply["op"], "ok", reply)
        yield publisher.lost.addTimeout(REPLY_TIMEOUT, reactor)

        push = yield subscriber.nextPush()
        self.assertEqual(push["seq"], 2)
        self.assertEqual(push["service_info"]["hosts"], [])
        reply = yield subscriber.request("query", service=SERVICE)
        self.assertEqual(reply["service_info"]["hosts"], [])
        self.assertEqual(subscriber.unmatched, [])
        self.assertFalse(process.ended)

    @defer.inlineCallbacks
    def test_helloRequired(self):
        """
        A request before C{hello} is refused and the connection closed, and the
        node goes on serving others.
        """
        process, host, port = yield self.startNode()
        rude = yield self.connect(host, port)
        reply = yield rude.request("query", service=SERVICE)
        self.assertEqual(reply["code"], "HELLO_REQUIRED")
        yield rude.lost.addTimeout(REPLY_TIMEOUT, reactor)
        polite = yield self.connect(host, port)
        yield self.hello(polite)
        reply = yield polite.request("ping")
        self.assertEqual(reply, {"op": "ok", "re": 2})

    @defer.inlineCallbacks
    def test_sigterm(self):
        """
        SIGTERM shuts the node down cleanly: the reactor stops, and twistd
        then ends itself with the same signal, as it does since Twisted 21.
        """
        process, host, port = yield self.startNode()
        client = yield self.connect(host, port)
        yield self.hello(client)
        process.signal("TERM")
        reason = yield process.whenEnded(STOP_TIMEOUT)
        self.assertIsInstance(reason, ProcessTerminated)
        self.assertEqual(reason.signal, signal.SIGTERM)
        self.assertIn(b"Server Shut Down.", process.output)
        yield client.lost.addTimeout(REPLY_TIMEOUT, reactor)

    @defer.inlineCallbacks
    def test_jsonLogToStdout(self):
        """
        With C{--log-format json}, standard output carries JSON lines of the
        node's events, and a bounded amount of them (no feedback loop through
        twistd's redirected C{sys.stdout}).
        """
        process, host, port = yield self.startNode("--log-format", "json")
        client = yield self.connect(host, port)
        yield self.hello(client)
        yield process.stop()
        output = process.output.decode("utf-8", "replace")
        self.assertLess(len(output), 100_000)
        events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        namespaces = {e.get("log_namespace") for e in events}
        self.assertIn("distro.native.service.ClientPortService", namespaces)
        self.assertNotIn("stdout", namespaces)


class BadConfigTests(ProcessTestCase):
    """
    A wrong configuration stops twistd at once, naming the key.
    """

    @defer.inlineCallbacks
    def test_negativeOption(self):
        """
        C{--heartbeat-ms -1} exits non-zero naming C{heartbeat_ms}.
        """
        code, output = yield self.failedStart("--heartbeat-ms", "-1")
        self.assertNotEqual(code, 0)
        self.assertIsNotNone(code)
        self.assertIn("'heartbeat_ms'", output)

    @defer.inlineCallbacks
    def test_unknownKeyInFile(self):
        """
        A configuration file with an unknown key exits non-zero naming it.
        """
        path = self.tempPath()
        with open(path, "w") as f:
            f.write("heartbeat_ms = 1000\nbogus_key = 1\n")
        code, output = yield self.failedStart("--config", path)
        self.assertNotEqual(code, 0)
        self.assertIsNotNone(code)
        self.assertIn("'bogus_key'", output)

    @defer.inlineCallbacks
    def test_portInUse(self):
        """
        A client port that cannot be bound makes twistd exit non-zero,
        naming the key.
        """
        process, host, port = yield self.startNode()
        code, output = yield self.failedStart("--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertNotEqual(code, 0)
        self.assertIn(f"listen: cannot listen on tcp:{port}", output)
