"""
The official Nacos SDKs, unmodified (nacos-sdk-python 3.2.0, nacos-sdk-go
v2.3.5, the Java nacos-client 2.5.1 and 3.1.1, the Rust nacos-sdk 0.8.0
through nacos-sdk-rust-binding-py), against a real three-node distro cluster
with auth on, beside distro's own protocol.

Each SDK logs in with a user of C{auth_users}, registers at one node,
subscribes at another, sees it from a distro client at the third and the
other way round; its node is killed and the subscriber never sees its
instance vanish; deregistered and closed, gone everywhere. Then all of them
at once: each sees every other's instance, made at another node; a wrong
password, no credentials and a persistent instance are refused.
"""

import os
import shutil

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from distro.auth import hashPassword

from tests._interop import SDKS, SdkDriver, driverCommand, startDriver
from tests._ports import freePorts
from distro.client import Service

from tests._process import (
    CONVERGE_TIMEOUT,
    DOWN_AFTER_MS,
    ORDERS,
    ClusterTestCase,
    RawClient,
    hostIds,
    instanceId,
    waitFor,
)

# The SDK adds 1000 to the port it is given (where Nacos serves HTTP).
GRPC_OFFSET = 1000
# The cluster's credentials: a user the SDKs log in as, a token for distro's
# own protocol, and the secret that signs login tokens on every node.
USER, PASSWORD = "orders-app", "orders-pw"
TOKEN = "interop-distro-token"
SECRET = "interop-cluster-secret"
PASSWORD_HASH = hashPassword(PASSWORD)


def _nacosPorts():
    """
    A free port P (gRPC) whose P - 1000 (HTTP, where SDKs log in) is free
    too.
    """
    (http,) = freePorts(1, spacing=GRPC_OFFSET)
    return http + GRPC_OFFSET


class SecuredCluster:
    """
    A three-node cluster with auth on: its sample files with a cluster
    secret, a user and a token; each node's Nacos gRPC port, and its HTTP
    port 1000 below, where SDKs log in.
    """

    helloToken = TOKEN

    def nodeArgs(self, member, portFile):
        if not hasattr(member, "nacosPort"):
            member.nacosPort = _nacosPorts()
            member.secured = self.tempPath()
            with open(member.config) as sample, open(member.secured, "w") as f:
                f.write(sample.read())
                f.write(f'\ncluster_secret = "{SECRET}"\n[auth_tokens]\n"{TOKEN}" = ["*"]\n'
                        f'[auth_users.{USER}]\npassword = "{PASSWORD_HASH}"\nnamespaces = ["public"]\n')
        args = super().nodeArgs(member, portFile)
        args[args.index(member.config)] = member.secured
        return args + [
            # The tests follow the SDKs' connections in the nodes' logs.
            "--log-level", "debug",
            "--nacos-listen", f"tcp:{member.nacosPort}:interface=127.0.0.1",
            "--http-listen", f"tcp:{member.nacosPort - GRPC_OFFSET}:interface=127.0.0.1",
        ]

    def sdkServer(self, member):
        return f"127.0.0.1:{member.nacosPort - GRPC_OFFSET}"

    def driver(self, sdk, name, members, **credentials):
        """
        Start C{sdk}'s driver against C{members}, logging in as the user
        unless C{credentials} say otherwise (C{username}, C{password}; none
        at all: C{{}}).
        """
        directory = self.tempPath()
        os.makedirs(directory)
        if not credentials:
            credentials = {"username": USER, "password": PASSWORD}
        credentials = {k: v for k, v in credentials.items() if v is not None}
        return startDriver(self, sdk, name, [self.sdkServer(m) for m in members], directory,
                           **credentials)
PUSH_TIMEOUT = 20.0
# An SDK registers again after it reconnects (its redo task), within the
# orphan grace: the Go and Java SDKs at once; the Rust SDK reconnects after
# some 12 s, and the Python SDK, reconnected at once, registers again
# later than 10 s: for those two the test keeps the default grace.
ORPHAN_GRACE_MS = 10000
SLOW_ORPHAN_GRACE_MS = 30000
RECONNECT_TIMEOUT = 25.0


class SdkScenario(SecuredCluster):
    """
    The scenario, for the SDK of L{sdk}.
    """

    sdk = None
    timeout = 180
    # The orphan grace the scenario's cluster is given.
    orphanGraceMs = ORPHAN_GRACE_MS

    def setUp(self):
        driverCommand(self.sdk)  # skipped (or failed, in CI) before any node starts
        self.clientVersion = SDKS[self.sdk][1].encode()

    @defer.inlineCallbacks
    def test_scenario(self):
        """
        A Nacos publisher (knowing two nodes) and a Nacos subscriber (on the
        third) see each other's and a distro client's instances. When the
        publisher's node is killed, the SDK reconnects to the other and
        registers again as a new connection: a subscriber on the third node
        is never pushed the view without the instance, not even once the
        killed node's clients are dropped (C{orphan_grace_ms}). Deregistered
        and closed, it is gone everywhere.
        """
        members = yield self.startCluster(orphanGraceMs=self.orphanGraceMs)
        n3 = members[2]
        subscriber = yield self.driver(self.sdk, "subscriber", [n3])
        publisher = yield self.driver(self.sdk, "publisher", members[:2])
        setUp = b"set up (" + self.clientVersion
        yield waitFor(lambda: any(setUp in m.process.output for m in members[:2]),
                      CONVERGE_TIMEOUT, "the publisher to set up")
        home, = [m for m in members[:2] if setUp in m.process.output]
        away, = [m for m in members[:2] if m is not home]
        yield subscriber.command("subscribe", service="orders")
        yield publisher.command("register", service="orders", ip="10.0.0.1", port=80)

        def hosts(*expected):
            expected = sorted([ip, port] for ip, port in expected)
            return lambda e: e["event"] == "push" and e["hosts"] == expected

        yield subscriber.event(hosts(("10.0.0.1", 80)), PUSH_TIMEOUT)
        # distro's own protocol on the other node sees the Nacos instance...
        yield self.waitHosts([away], ORDERS, [instanceId("10.0.0.1", 80)], "distro sees it")
        # ...and the Nacos clients see a distro client's.
        distroClient = yield self.client([away])
        yield distroClient.register(ORDERS, "10.0.0.2", 80)
        yield subscriber.event(hosts(("10.0.0.1", 80), ("10.0.0.2", 80)), PUSH_TIMEOUT)
        both = {instanceId("10.0.0.1", 80), instanceId("10.0.0.2", 80)}
        yield self.waitHosts([home, n3], ORDERS, sorted(both), "both on every node")
        for sdkClient in (publisher, subscriber):  # a query on each node
            listed = yield sdkClient.command("list", service="orders")
            self.assertEqual(listed["hosts"], [["10.0.0.1", 80], ["10.0.0.2", 80]])

        # A distro subscriber on the third node sees every push, empty ones
        # included (the Nacos SDK skips those).
        watcher = yield self.connectObserver(n3)
        yield watcher.request("subscribe", service=ORDERS.as_wire())
        killed = reactor.seconds()
        yield self.kill(home)
        # Within the orphan grace (its instance is kept that long); the
        # Rust SDK takes its time.
        yield waitFor(
            lambda: away.process.output.count(b"set up (" + self.clientVersion) >= 1,
            RECONNECT_TIMEOUT, "the publisher to reconnect to the other node",
        )
        # Past orphan_grace_ms after the death: the killed node's clients
        # were dropped by now; the publisher's new connection holds it.
        remaining = killed + (DOWN_AFTER_MS + self.orphanGraceMs) / 1000.0 + 2.0 - reactor.seconds()
        yield deferLater(reactor, max(0.0, remaining), lambda: None)
        self.assertIn(b"presumed dead", n3.process.output)
        yield self.waitHosts([away, n3], ORDERS, sorted(both), "the instance kept")
        vanished = [p for p in watcher.seen if not both <= set(hostIds(p["service_info"]))]
        self.assertEqual(vanished, [])

        # Deregistered and closed: gone everywhere.
        yield publisher.command("deregister", service="orders", ip="10.0.0.1", port=80)
        yield publisher.command("shutdown")
        yield self.waitHosts([away, n3], ORDERS, [instanceId("10.0.0.2", 80)], "gone everywhere")
        yield subscriber.event(hosts(("10.0.0.2", 80)), PUSH_TIMEOUT)


class PythonSdkTests(SdkScenario, ClusterTestCase):
    sdk = "python"
    orphanGraceMs = SLOW_ORPHAN_GRACE_MS


class GoSdkTests(SdkScenario, ClusterTestCase):
    sdk = "go"


class JavaSdkTests(SdkScenario, ClusterTestCase):
    sdk = "java"


class Java3SdkTests(SdkScenario, ClusterTestCase):
    sdk = "java3"


class RustSdkTests(SdkScenario, ClusterTestCase):
    sdk = "rust"
    orphanGraceMs = SLOW_ORPHAN_GRACE_MS


def hostsOf(*expected):
    """
    A predicate of driver events: a push of exactly C{expected}, C{(ip,
    port)} pairs.
    """
    expected = sorted([ip, port] for ip, port in expected)
    return lambda e: e["event"] == "push" and e["hosts"] == expected


class EverySdkTests(SecuredCluster, ClusterTestCase):
    """
    Every SDK at once, on a cluster with auth on.
    """

    timeout = 300
    sdks = ("python", "go", "java", "java3", "rust")

    def setUp(self):
        for sdk in self.sdks:
            driverCommand(sdk)

    @defer.inlineCallbacks
    def test_everySdkSeesEveryOther(self):
        """
        Each SDK, logged in at its own node, registers and subscribes: each
        is pushed every other SDK's instance and a distro client's, made at
        other nodes; one deregisters, and the others are pushed the view
        without it.
        """
        members = yield self.startCluster()
        drivers = {}
        expected = {("10.0.9.1", 80)}
        for n, sdk in enumerate(self.sdks):
            drivers[sdk] = yield self.driver(sdk, sdk, [members[n % 3]])
            expected.add((f"10.0.2.{n + 1}", 8080))
        for driver in drivers.values():
            yield driver.command("subscribe", service="shared")
        for n, driver in enumerate(drivers.values()):
            yield driver.command("register", service="shared", ip=f"10.0.2.{n + 1}", port=8080)
        distroClient = yield self.client(members)
        yield distroClient.register(Service("shared"), "10.0.9.1", 80)
        for driver in drivers.values():
            yield driver.event(hostsOf(*expected), PUSH_TIMEOUT)
        for driver in drivers.values():
            listed = yield driver.command("list", service="shared")
            self.assertEqual(listed["hosts"], sorted([ip, port] for ip, port in expected))
        first = self.sdks[0]
        yield drivers[first].command("deregister", service="shared", ip="10.0.2.1", port=8080)
        for sdk, driver in drivers.items():
            if sdk != first:
                yield driver.event(hostsOf(*(expected - {("10.0.2.1", 8080)})), PUSH_TIMEOUT)

    @defer.inlineCallbacks
    def test_refused(self):
        """
        A wrong password, or no credentials, and an SDK cannot register
        (whatever its start said); nothing of it is stored. A persistent
        instance is refused with a message naming C{ephemeral}, over gRPC
        and over HTTP alike. distro's own port and the HTTP port refuse a
        request without a token too.
        """
        members = yield self.startCluster()
        for n, sdk in enumerate(self.sdks):
            member = members[n % 3]
            for name, credentials in (("wrong", {"username": USER, "password": "not-" + PASSWORD}),
                                      ("anonymous", {"username": None, "password": None})):
                directory = self.tempPath()
                os.makedirs(directory)
                driver = SdkDriver(f"{sdk}-{name}")
                yield self._startAnyway(driver, sdk, member, directory, credentials)
                answer = yield driver.request("register", service="refused", ip="10.0.3.1", port=80)
                # The Go SDK answers Nacos' refusal with false, no error.
                self.assertFalse(answer.get("ok") and answer.get("registered") is not False,
                                 f"{sdk} {name}: {answer}")
                yield driver.stop()
            driver = yield self.driver(sdk, f"{sdk}-persistent", [member])
            answer = yield driver.request("register", service="refused", ip="10.0.3.2", port=80,
                                          ephemeral=False)
            self.assertFalse(answer.get("ok"), f"{sdk}: {answer}")
            # The Go SDK sends it over HTTP and shows only the status.
            self.assertIn("error code 400" if sdk == "go" else "ephemeral", answer["error"], sdk)
            yield driver.stop()
        yield self.waitHosts(members, Service("refused"), [], "nothing stored")

        # distro's own port without a token: refused at hello.
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", members[0].clientPort, timeout=5)
        raw = yield connectProtocol(endpoint, RawClient()).addTimeout(5, reactor)
        self.addCleanup(raw.transport.loseConnection)
        reply = yield raw.request("hello", proto=1, agent="test_interop/1")
        self.assertEqual((reply["op"], reply.get("code")), ("error", "UNAUTHORIZED"), reply)

    def _startAnyway(self, driver, sdk, member, directory, credentials):
        """
        Start C{driver} whether or not its SDK's start succeeds (some
        refuse a wrong login at start, some only at the first request).
        """
        argv = driverCommand(sdk, directory)
        executable = shutil.which(argv[0]) or argv[0]
        reactor.spawnProcess(driver, executable, argv, env=dict(os.environ), path=directory)
        self.addCleanup(driver.stop)
        fields = {k: v for k, v in credentials.items() if v is not None}
        return driver.request("start", servers=self.sdkServer(member), dir=directory, **fields)


class DriverOutputTests(SynchronousTestCase):
    """
    L{SdkDriver} reads its driver's lines; an SDK printing on the same
    stdout never gets in the way (found in review).
    """

    def test_strayLine(self):
        driver = SdkDriver("d")
        driver.transport = StringTransport()
        answers = []
        driver.command("list").addBoth(answers.append)
        driver.outReceived(b'Error serializing object to JSON: x\n["not", "a map"]\n{"id": 1, "ok": true}\n')
        self.assertEqual(answers, [{"id": 1, "ok": True}])
        self.assertIn(b"stdout: Error serializing", driver.errors)
