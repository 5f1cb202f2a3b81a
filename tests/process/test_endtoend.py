# -*- test-case-name: tests.process.test_endtoend -*-
"""
End-to-end tests: a real C{twistd -n distro-node} process on 127.0.0.1,
driven by the C{distro} command (run as a child process) and by the client
library L{distro.client}.

Node processes are started with the helpers of L{tests._process}. Every
wait is bounded, and every process is ended in cleanup.
"""

import json
import os

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from distro.cli import EXIT_OK, EXIT_SERVER_ERROR, EXIT_UNREACHABLE, EXIT_USAGE
from distro.client import NotConnected, Service, ServiceSummary, connect
from distro.client.blocking import BlockingClient

from tests._ports import freePorts
from tests._process import DISTRO, NodeProcess, ProcessTestCase, waitFor

# The --timeout of each command (connect and request), and how long a command
# may take to end by itself.
CLI_TIMEOUT = 3
RUN_TIMEOUT = 10.0
# How long a change may take to show, polled with fresh commands.
POLL_TIMEOUT = 10.0
POLL_INTERVAL = 0.1
# How long the client library waits for a push or a request.
CLIENT_TIMEOUT = 5.0

ORDERS = Service("orders")
INSTANCE_ID = "10.0.0.5#8080#DEFAULT"


class CommandProcess(NodeProcess):
    """
    A C{distro} child process; keeps standard output and standard error apart
    (L{NodeProcess.output} has both).
    """

    def __init__(self):
        super().__init__()
        self.stdout = bytearray()
        self.stderr = bytearray()

    def outReceived(self, data):
        self.output += data
        self.stdout += data

    def errReceived(self, data):
        self.output += data
        self.stderr += data

    def lines(self):
        """
        The complete lines written to standard output so far.
        """
        text = self.stdout.decode("utf-8", "replace")
        lines = text.splitlines()
        return lines if text.endswith("\n") else lines[:-1]

    def describe(self):
        """
        The run's outcome and output, for failure messages.
        """
        return (
            f"exit code {self.exitCode} ({self.reason and self.reason.value!r})\n"
            f"stdout:\n{self.stdout.decode('utf-8', 'replace')}\n"
            f"stderr:\n{self.stderr.decode('utf-8', 'replace')}"
        )


def hostIds(info):
    """
    The instance ids of a view: a L{ServiceInfo} or its JSON form.
    """
    if isinstance(info, dict):
        return [host["instance_id"] for host in info["hosts"]]
    return [host.instance_id for host in info.hosts]


class EndToEndTestCase(ProcessTestCase):
    """
    Starts a node, C{distro} commands and library clients against it.
    """

    timeout = 60

    @defer.inlineCallbacks
    def startServer(self, *args):
        """
        Start a node on 127.0.0.1 port 0.

        @return: a L{Deferred} firing with C{(process, "host:port")}.
        """
        process, host, port = yield self.startNode(*args)
        return process, f"{host}:{port}"

    def command(self, server, *args):
        """
        Start C{distro --server SERVER --timeout CLI_TIMEOUT ARGS}; it is
        stopped in cleanup (SIGTERM, then SIGKILL).

        @return: the L{CommandProcess}.
        """
        process = CommandProcess()
        env = dict(os.environ)
        env.pop("DISTRO_SERVERS", None)
        env.pop("DISTRO_TOKEN", None)
        argv = [DISTRO, "--server", server, "--timeout", str(CLI_TIMEOUT), *args]
        directory = self.tempPath()
        os.makedirs(directory)
        reactor.spawnProcess(process, DISTRO, argv, env=env, path=directory)
        self.addCleanup(process.stop)
        return process

    @defer.inlineCallbacks
    def runCommand(self, server, *args, expect=EXIT_OK):
        """
        Run a C{distro} command to its end and check its exit code.

        @return: a L{Deferred} firing with the ended L{CommandProcess}.
        """
        process = self.command(server, *args)
        yield process.whenEnded(RUN_TIMEOUT)
        self.assertEqual(
            process.exitCode, expect, f"distro {' '.join(args)}: {process.describe()}"
        )
        return process

    @defer.inlineCallbacks
    def runJSON(self, server, *args):
        """
        Run C{distro --json ARGS}, expecting success and one JSON line.

        @return: a L{Deferred} firing with the decoded document.
        """
        process = yield self.runCommand(server, "--json", *args)
        lines = process.lines()
        self.assertEqual(len(lines), 1, process.describe())
        return json.loads(lines[0])

    @defer.inlineCallbacks
    def pollJSON(self, server, args, predicate, what):
        """
        Run C{distro --json ARGS} again until C{predicate} holds for its
        document; fail after L{POLL_TIMEOUT} seconds.

        @return: a L{Deferred} firing with the document.
        """
        deadline = reactor.seconds() + POLL_TIMEOUT
        while True:
            document = yield self.runJSON(server, *args)
            if predicate(document):
                return document
            if reactor.seconds() > deadline:
                raise AssertionError(
                    f"gave up waiting for {what} after {POLL_TIMEOUT}s; last: {document!r}"
                )
            yield deferLater(reactor, POLL_INTERVAL, lambda: None)

    def waitForLines(self, process, count, what):
        """
        Wait until C{process} wrote C{count} lines; fail if it ends first.

        @return: a L{Deferred} firing with the lines.
        """

        def enough():
            lines = process.lines()
            if len(lines) >= count:
                return lines
            if process.ended:
                raise AssertionError(f"distro ended before {what}:\n{process.describe()}")
            return None

        return waitFor(enough, POLL_TIMEOUT, what)

    @defer.inlineCallbacks
    def client(self, server):
        """
        Connect a L{distro.client.DistroClient}; it is closed in cleanup.
        """
        client = yield connect([server], reactor=reactor, timeout=CLIENT_TIMEOUT)
        self.addCleanup(client.close)
        return client


class CommandTests(EndToEndTestCase):
    """
    The C{distro} command against a node process.
    """

    @defer.inlineCallbacks
    def test_registerHoldsUntilSIGTERM(self):
        """
        C{distro register} holds its registration while it runs: other
        commands see it in C{instances} and C{services}, see an operator
        remove it from every view and clear that, and see it go once SIGTERM
        ends the command, which
        says C{bye} and exits 0. Usage and node errors have their exit codes.
        """
        node, server = yield self.startServer("--disconnect-grace-ms", "60000")

        # A service nobody registered is an empty view, not an error.
        empty = yield self.runJSON(server, "instances", "orders")
        self.assertEqual(hostIds(empty), [])
        self.assertEqual(empty["service"], ORDERS.as_wire())

        register = self.command(
            server, "--json", "register", "orders", "10.0.0.5", "8080",
            "--metadata", "zone=a", "--weight", "2.5",
        )
        view = yield self.pollJSON(
            server, ["instances", "orders"], hostIds, "the registration to show"
        )
        [host] = view["hosts"]
        self.assertEqual(host["instance_id"], INSTANCE_ID)
        self.assertEqual(
            (host["ip"], host["port"], host["cluster"]), ("10.0.0.5", 8080, "DEFAULT")
        )
        self.assertEqual((host["weight"], host["metadata"]), (2.5, {"zone": "a"}))
        self.assertIs(host["healthy"], True)
        [line] = yield self.waitForLines(register, 1, "the registered line")
        self.assertEqual(
            json.loads(line)["registered"]["service"], ORDERS.as_wire(), register.describe()
        )

        listing = yield self.runJSON(server, "services")
        entry = {"group": "DEFAULT_GROUP", "name": "orders", "instances": 1}
        self.assertEqual(listing, {"count": 1, "services": [entry]})
        text = yield self.runCommand(server, "services")
        self.assertIn("orders", text.stdout.decode())

        # An operator (on loopback) removes it from every view, then clears
        # that: it is shown again.
        removed = yield self.runJSON(server, "remove", "orders", "10.0.0.5", "8080")
        self.assertEqual((removed["instance_id"], removed["removed"]), (INSTANCE_ID, True))
        view = yield self.runJSON(server, "instances", "orders")
        self.assertEqual(hostIds(view), [])
        cleared = yield self.runJSON(server, "clear", "orders", "10.0.0.5", "8080")
        self.assertEqual(cleared, {"cleared": True})
        view = yield self.runJSON(server, "instances", "orders")
        self.assertEqual(hostIds(view), [INSTANCE_ID])

        # Exit codes: a usage error, and an error from the node.
        usage = yield self.runCommand(server, "register", "orders", "10.0.0.5", "http",
                                      expect=EXIT_USAGE)
        self.assertIn("not a port number", usage.stderr.decode())
        refused = yield self.runCommand(server, "services", "--size", "5000",
                                        expect=EXIT_SERVER_ERROR)
        self.assertIn("BAD_REQUEST", refused.stderr.decode())

        self.assertFalse(register.ended, register.describe())
        register.signal("TERM")
        yield register.whenEnded(RUN_TIMEOUT)
        self.assertEqual(register.exitCode, EXIT_OK, register.describe())

        # The grace period is 60 s: only bye can have removed it this soon.
        view = yield self.pollJSON(
            server, ["instances", "orders"], lambda view: not hostIds(view),
            "the registration to go",
        )
        self.assertEqual(view["service"], ORDERS.as_wire())
        listing = yield self.runJSON(server, "services")
        self.assertEqual(listing, {"count": 0, "services": []})
        self.assertFalse(node.ended)

    @defer.inlineCallbacks
    def test_watchCount(self):
        """
        C{distro watch SERVICE --count 2} prints the view, then each pushed
        view (a registration made with the client library, then its removal),
        and exits 0 by itself after the second push.
        """
        node, server = yield self.startServer()
        watch = self.command(server, "--json", "watch", "orders", "--count", "2")
        [first] = yield self.waitForLines(watch, 1, "the first view")
        self.assertEqual(hostIds(json.loads(first)), [])

        client = yield self.client(server)
        yield client.register("orders", "10.0.0.5", 8080, metadata={"zone": "a"})
        lines = yield self.waitForLines(watch, 2, "the pushed registration")
        pushed = json.loads(lines[1])
        self.assertEqual(hostIds(pushed), [INSTANCE_ID])
        self.assertEqual(pushed["hosts"][0]["metadata"], {"zone": "a"})
        self.assertFalse(watch.ended, watch.describe())

        removed = yield client.deregister("orders", "10.0.0.5", 8080)
        self.assertTrue(removed)
        yield watch.whenEnded(RUN_TIMEOUT)
        self.assertEqual(watch.exitCode, EXIT_OK, watch.describe())
        lines = watch.lines()
        self.assertEqual(len(lines), 3, watch.describe())
        last = json.loads(lines[2])
        self.assertEqual(hostIds(last), [])
        self.assertGreater(last["revision"], pushed["revision"])

    @defer.inlineCallbacks
    def test_watchText(self):
        """
        Without C{--json}, C{watch} prints each pushed view as a table.
        """
        node, server = yield self.startServer()
        watch = self.command(server, "watch", "orders", "--count", "1")
        yield self.waitForLines(watch, 2, "the first view")
        client = yield self.client(server)
        yield client.register("orders", "10.0.0.5", 8080)
        yield watch.whenEnded(RUN_TIMEOUT)
        self.assertEqual(watch.exitCode, EXIT_OK, watch.describe())
        output = watch.stdout.decode()
        self.assertIn("public/DEFAULT_GROUP/orders", output)
        self.assertIn("0 hosts", output)
        self.assertIn("1 host", output)
        self.assertRegex(output, r"10\.0\.0\.5\s+8080\s+DEFAULT")

    @defer.inlineCallbacks
    def test_jsonObjects(self):
        """
        With C{--json}, every command prints objects: C{members} its list
        under C{"members"}, as the HTTP API's C{GET /v1/members}; the
        registered instance has its C{instance_id}, as a view's hosts.
        """
        node, server = yield self.startServer()
        members = yield self.runJSON(server, "members")
        self.assertEqual(members, {"members": [
            {"node": members["members"][0]["node"], "address": server, "state": "UP",
             "self": True}]})
        register = self.command(server, "--json", "register", "orders", "10.0.0.5", "8080")
        [line] = yield self.waitForLines(register, 1, "the registered line")
        self.assertEqual(json.loads(line)["registered"]["instance"]["instance_id"], INSTANCE_ID)
        watched = yield self.runJSON(server, "watch", "orders", "--count", "0")
        self.assertEqual(hostIds(watched), [INSTANCE_ID])
        listing = yield self.runJSON(server, "services")
        self.assertEqual(listing["services"][0]["instances"], 1)

    @defer.inlineCallbacks
    def test_registerSaysWhatHappens(self):
        """
        C{distro register} says on stderr, one line each, that it lost its
        node (killed), and that it registered again once the node is back
        (restarted, it does not know the session); meanwhile C{distro
        --cache-dir DIR instances} shows the view cached there, saying so.
        """
        port = freePorts(1)[0]
        listen = ("--listen", f"tcp:{port}:interface=127.0.0.1", "--node-id", "n1")
        node, server = yield self.startServer(*listen)
        cache = self.tempPath()
        register = self.command(server, "register", "orders", "10.0.0.5", "8080")
        yield self.waitForLines(register, 1, "the registered line")
        view = yield self.runJSON(server, "--cache-dir", cache, "instances", "orders")
        self.assertEqual(hostIds(view), [INSTANCE_ID])

        node.signal("KILL")
        yield node.whenEnded(RUN_TIMEOUT)
        yield waitFor(lambda: b"lost node" in register.stderr, POLL_TIMEOUT, "the lost line")
        self.assertEqual(register.stderr.decode().splitlines(),
                         ["distro: lost node n1; trying the servers again"])
        cached = yield self.runCommand(server, "--json", "--cache-dir", cache, "instances", "orders")
        self.assertEqual(hostIds(json.loads(cached.lines()[0])), [INSTANCE_ID])
        self.assertEqual(cached.stderr.decode(),
                         f"distro: no node answers; serving the views cached in {cache}\n")

        node, server = yield self.startServer(*listen)
        yield waitFor(lambda: b"registered again" in register.stderr, 2 * POLL_TIMEOUT,
                      "the registered-again line")
        self.assertEqual(register.stderr.decode().splitlines()[-1],
                         "distro: the cluster had let the session go: registered again on node n1")
        view = yield self.runJSON(server, "instances", "orders")
        self.assertEqual(hostIds(view), [INSTANCE_ID])
        register.signal("TERM")
        yield register.whenEnded(RUN_TIMEOUT)
        self.assertEqual(register.exitCode, EXIT_OK, register.describe())

    @defer.inlineCallbacks
    def test_unreachable(self):
        """
        Against ports nothing listens on, a command exits 3 at once, not
        after its C{--timeout} (10 s), in one line naming each address and
        why; a library client's C{connect} fails with L{NotConnected} likewise.
        """
        servers = [f"127.0.0.1:{port}" for port in freePorts(2)]
        started = reactor.seconds()
        process = self.command(",".join(servers), "--timeout", "10", "services")
        yield process.whenEnded(RUN_TIMEOUT)
        elapsed = reactor.seconds() - started
        self.assertEqual(process.exitCode, EXIT_UNREACHABLE, process.describe())
        [line] = process.stderr.decode().splitlines()
        self.assertTrue(line.startswith("distro: cannot connect: "), line)
        for server in servers:
            self.assertIn(f"{server}: connection refused", line)
        self.assertEqual(process.stdout, b"")
        # The interpreter's start is most of it (0.3 s on an idle machine).
        self.assertLess(elapsed, 5.0)

        started = reactor.seconds()
        d = connect(servers, reactor=reactor, timeout=10)
        error = yield self.assertFailure(d.addTimeout(CLIENT_TIMEOUT, reactor), NotConnected)
        self.assertLess(reactor.seconds() - started, 1.0)
        self.assertEqual(error.reasons, {server: "connection refused" for server in servers})


class ClientLibraryTests(EndToEndTestCase):
    """
    L{distro.client} against a node process.
    """

    @defer.inlineCallbacks
    def test_lifecycle(self):
        """
        A subscribed client is pushed a second client's registration and its
        removal; queries agree; C{close} says C{bye}, so the instance goes at
        once (the node's grace period for lost connections is 60 s).
        """
        node, server = yield self.startServer("--disconnect-grace-ms", "60000")
        publisher = yield self.client(server)
        subscriber = yield self.client(server)
        self.assertNotEqual(publisher.client_id, subscriber.client_id)
        self.assertTrue(publisher.connected)

        pushes = defer.DeferredQueue()

        def nextPush():
            return pushes.get().addTimeout(CLIENT_TIMEOUT, reactor)

        info = yield subscriber.subscribe("orders", pushes.put)
        self.assertEqual((info.service, info.hosts), (ORDERS, ()))

        yield publisher.register("orders", "10.0.0.5", 8080, weight=3, metadata={"v": "1"})
        pushed = yield nextPush()
        self.assertEqual(pushed.service, ORDERS)
        [host] = pushed.hosts
        self.assertEqual(host.instance_id, INSTANCE_ID)
        self.assertEqual((host.weight, host.metadata), (3.0, {"v": "1"}))
        self.assertEqual(subscriber.last_service_info("orders"), pushed)

        for client in (publisher, subscriber):
            queried = yield client.query("orders")
            self.assertEqual(hostIds(queried), [INSTANCE_ID])
            self.assertEqual(queried.checksum, pushed.checksum)
        listing = yield subscriber.services()
        self.assertEqual(listing.services, (ServiceSummary(ORDERS, 1),))
        self.assertEqual(list(publisher.registrations()), [ORDERS])

        removed = yield publisher.deregister("orders", "10.0.0.5", 8080)
        self.assertTrue(removed)
        pushed = yield nextPush()
        self.assertEqual(pushed.hosts, ())
        queried = yield subscriber.query("orders")
        self.assertEqual(queried.hosts, ())

        yield publisher.register("orders", "10.0.0.6", 8081)
        pushed = yield nextPush()
        self.assertEqual(hostIds(pushed), ["10.0.0.6#8081#DEFAULT"])

        yield publisher.close().addTimeout(CLIENT_TIMEOUT, reactor)
        self.assertFalse(publisher.connected)
        queried = yield subscriber.query("orders")
        self.assertEqual(queried.hosts, ())
        pushed = yield nextPush()
        self.assertEqual(pushed.hosts, ())
        yield self.assertFailure(publisher.ping(), NotConnected)

        [member] = yield subscriber.members()
        self.assertEqual((member.address, member.is_self), (server, True))
        self.assertFalse(node.ended)

    @defer.inlineCallbacks
    def test_blockingClient(self):
        """
        L{BlockingClient}, used from a worker thread while the reactor runs
        in the test's thread, registers, queries and closes with C{bye}.
        """
        node, server = yield self.startServer("--disconnect-grace-ms", "60000")
        watcher = yield self.client(server)

        def blocking():
            client = BlockingClient([server], timeout=CLIENT_TIMEOUT)
            try:
                client.register("orders", "10.0.0.5", 8080)
                return hostIds(client.query("orders"))
            finally:
                client.close()

        seen = yield deferToThread(blocking).addTimeout(4 * CLIENT_TIMEOUT, reactor)
        self.assertEqual(seen, [INSTANCE_ID])
        info = yield watcher.query("orders")
        self.assertEqual(info.hosts, ())
