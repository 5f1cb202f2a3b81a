"""
Heartbeat clients (PROTOCOL.md 5.6) on a real three-node cluster with auth
on, driven by the v1 client of the official Nacos Python SDK
(nacos-sdk-python 1.0.0, unmodified: Nacos' HTTP open API, beats from its
own threads): it registers at node 1 with its auto-beat, is listed at nodes
2 and 3, seen by a subscriber; the member responsible for it is killed and
the instance stays, healthy; when its beats stop it turns unhealthy, then
is removed, everywhere.
"""

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from distro.cluster.forwarding import responsible

from tests._interop import driverCommand
from tests._process import CONVERGE_TIMEOUT, ORDERS, ClusterTestCase, hostIds, instanceId
from tests.process.test_interop import SecuredCluster

# The instance's own beat settings (ms), short so that the test spans
# seconds: a beat a second, unhealthy after 3 s without, removed after 6 s.
PRESERVED = {
    "preserved.heart.beat.interval": "1000",
    "preserved.heart.beat.timeout": "3000",
    "preserved.ip.delete.timeout": "6000",
}
# How long the instance is watched at the survivors after its responsible
# member is killed: past down_after_ms and the takeover, and past the
# instance's beat timeout counted from then.
WATCH_AFTER_KILL = 6.0
EVENT_TIMEOUT = 20.0


class HeartbeatClientTests(SecuredCluster, ClusterTestCase):
    timeout = 120

    def setUp(self):
        driverCommand("pythonv1")  # skipped (or failed, in CI) before any node starts

    @defer.inlineCallbacks
    def test_scenario(self):
        members = yield self.startCluster()
        n1, n2, n3 = members
        # An address whose responsible member is node 3, not node 1, where
        # the client registers: its writes and beats are forwarded.
        addresses = [m.nodeId for m in members]
        ip = next(f"10.9.0.{n}" for n in range(1, 250)
                  if responsible(f"10.9.0.{n}:8080", addresses) == n3.nodeId)
        publisher = yield self.driver("pythonv1", "v1", [n1])
        yield publisher.command("start", client="b", servers=self.sdkServer(n2), dir=self.tempPath(),
                                username="orders-app", password="orders-pw")
        yield publisher.command("start", client="c", servers=self.sdkServer(n3), dir=self.tempPath(),
                                username="orders-app", password="orders-pw")
        answer = yield publisher.command("register", service="orders", ip=ip, port=8080,
                                         metadata=PRESERVED, heartbeat_interval=1)
        self.assertTrue(answer["registered"])

        def listed(client):
            return publisher.command("list", client=client, service="orders")

        for client in ("b", "c"):
            answer = yield listed(client)
            self.assertEqual(answer["hosts"], [[ip, 8080, True]])
        # The SDK sends its unset cluster as "None", which Nacos keeps.
        self.assertEqual(answer["body"]["hosts"][0]["instanceId"],
                         f"{ip}#8080#None#DEFAULT_GROUP@@orders")
        # distro's own protocol sees it too, owned by node 3.
        yield self.waitHosts(members, ORDERS, [instanceId(ip, 8080, "None")], "every node sees it")

        # A subscriber at node 2 sees a change made at node 1.
        yield publisher.command("subscribe", client="b", service="orders", interval=1)
        yield deferLater(reactor, 1.5, lambda: None)  # its first poll, which notifies nothing
        yield publisher.command("register", service="orders", ip="10.9.1.1", port=8080,
                                metadata=PRESERVED, heartbeat_interval=1)
        yield publisher.event(lambda e: e.get("kind") == "ADDED" and e["ip"] == "10.9.1.1", EVENT_TIMEOUT)

        # The responsible member is killed: the instance stays at the
        # others, healthy (its beats reach the member now responsible).
        watcher = yield self.connectObserver(n2)
        yield watcher.request("subscribe", service=ORDERS.as_wire())
        yield self.kill(n3)
        deadline = reactor.seconds() + WATCH_AFTER_KILL
        while reactor.seconds() < deadline:
            answer = yield listed("b")
            self.assertIn([ip, 8080, True], answer["hosts"])
            yield deferLater(reactor, 0.2, lambda: None)
        vanished = [p for p in watcher.seen if instanceId(ip, 8080, "None") not in hostIds(p["service_info"])]
        self.assertEqual(vanished, [])
        self.assertIn(b"took over", n1.process.output + n2.process.output)

        # Its beats stop: unhealthy, then removed, everywhere.
        yield publisher.command("stop_beats")

        def seenAt(client, expected):
            @defer.inlineCallbacks
            def poll():
                answer = yield listed(client)
                return answer["hosts"] == expected

            return poll

        unhealthy = [[ip, 8080, False], ["10.9.1.1", 8080, False]]
        yield waitForAsync(seenAt("b", unhealthy), CONVERGE_TIMEOUT, "unhealthy at node 2")
        yield waitForAsync(seenAt("b", []), CONVERGE_TIMEOUT, "removed at node 2")
        yield self.waitHosts([n1, n2], ORDERS, [], "removed everywhere")
        yield publisher.event(lambda e: e.get("kind") == "DELETED" and e["ip"] == ip, EVENT_TIMEOUT)


@defer.inlineCallbacks
def waitForAsync(poll, timeout, what):
    """
    L{tests._process.waitFor} of a predicate that answers with a
    L{Deferred}.
    """
    deadline = reactor.seconds() + timeout
    while True:
        if (yield poll()):
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        yield deferLater(reactor, 0.2, lambda: None)

