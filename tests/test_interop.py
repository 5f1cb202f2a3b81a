"""
The official Nacos SDKs, unmodified (nacos-sdk-python 3.2.0, nacos-sdk-go
v2.3.5, the Java nacos-client 2.5.1), against a real three-node distro cluster, beside distro's own
protocol: register at
one node, subscribe at another, see it from a distro client at the third and
the other way round; kill the publisher's node and show the subscriber
never sees its instance vanish; deregister and close, gone everywhere.
"""

import os

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from ._interop import SDKS, SdkDriver, driverCommand, startDriver
from ._ports import freePorts
from .test_cluster_process import (
    CONVERGE_TIMEOUT,
    DOWN_AFTER_MS,
    ORDERS,
    ClusterTestCase,
    hostIds,
    instanceId,
)
from .test_process import waitFor

# The SDK adds 1000 to the port it is given (where Nacos serves HTTP).
GRPC_OFFSET = 1000
PUSH_TIMEOUT = 20.0
# An SDK registers again after it reconnects (its redo task), within the
# default orphan grace, which the test keeps.
ORPHAN_GRACE_MS = 30000


class SdkScenario:
    """
    The scenario, for the SDK of L{sdk}.
    """

    sdk = None
    timeout = 180

    def setUp(self):
        driverCommand(self.sdk)  # skipped (or failed, in CI) before any node starts
        self.clientVersion = SDKS[self.sdk][1].encode()

    def nodeArgs(self, member, portFile):
        if not hasattr(member, "nacosPort"):
            (member.nacosPort,) = freePorts(1)
        return super().nodeArgs(member, portFile) + [
            "--nacos-listen", f"tcp:{member.nacosPort}:interface=127.0.0.1",
        ]

    def sdkServer(self, member):
        return f"127.0.0.1:{member.nacosPort - GRPC_OFFSET}"

    def driver(self, name, members):
        directory = self.tempPath()
        os.makedirs(directory)
        return startDriver(self, self.sdk, name, [self.sdkServer(m) for m in members], directory)

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
        members = yield self.startCluster(orphanGraceMs=ORPHAN_GRACE_MS)
        n3 = members[2]
        subscriber = yield self.driver("subscriber", [n3])
        publisher = yield self.driver("publisher", members[:2])
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
        yield watcher.request("subscribe", service=ORDERS.asWire())
        killed = reactor.seconds()
        yield self.kill(home)
        yield waitFor(
            lambda: away.process.output.count(b"set up (" + self.clientVersion) >= 1,
            CONVERGE_TIMEOUT, "the publisher to reconnect to the other node",
        )
        # Past orphan_grace_ms after the death: the killed node's clients
        # were dropped by now; the publisher's new connection holds it.
        remaining = killed + (DOWN_AFTER_MS + ORPHAN_GRACE_MS) / 1000.0 + 2.0 - reactor.seconds()
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


class GoSdkTests(SdkScenario, ClusterTestCase):
    sdk = "go"


class JavaSdkTests(SdkScenario, ClusterTestCase):
    sdk = "java"


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
