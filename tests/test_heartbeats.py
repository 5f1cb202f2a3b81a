"""
Tests for L{distro.heartbeats}: heartbeat clients on one node (their
writes, beats, health and removal, limits, takeovers); across a cluster:
L{tests.test_forwarding}.
"""

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.errors import LIMIT_EXCEEDED, NOT_FOUND, BAD_REQUEST, RequestError
from distro.heartbeats import (
    BEAT_NOT_FOUND,
    BEAT_OK,
    CHECK_EVERY,
    Write,
    clientIdOf,
    isHeartbeatClient,
)
from distro.interfaces import IClientObserver
from distro.model import Instance, ServiceKey

from ._node import NodeHarness

ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")
PAYMENTS = ServiceKey("public", "DEFAULT_GROUP", "payments")


def instance(ip="10.0.0.1", port=8080, cluster="DEFAULT", healthy=True, **metadata):
    return Instance(ip, port, cluster, 1.0, healthy, True, metadata)


class HeartbeatTests(SynchronousTestCase):
    def setUp(self):
        self.harness = NodeHarness()
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.addCleanup(self.node.stop)

    def write(self, kind, service=ORDERS, ip="10.0.0.1", port=8080, instance=None):
        results = []
        self.node.heartbeatWrite(Write(kind, ip, port, service, instance)).addBoth(results.append)
        (result,) = results
        if isinstance(result, Exception) or hasattr(result, "value"):
            raise result.value
        return result

    def hosts(self, service=ORDERS):
        return [(h.instanceId, h.healthy) for h in self.node.serviceInfo(service).hosts]

    def wait(self, seconds):
        for _ in range(int(seconds / CHECK_EVERY)):
            self.clock.advance(CHECK_EVERY)

    def test_observer(self):
        verifyObject(IClientObserver, self.node.heartbeats)

    def test_clientIds(self):
        """
        A heartbeat client's id is its C{ip:port}, which never holds a
        C{#} as a session's does.
        """
        self.assertEqual(clientIdOf("10.0.0.1", 80), "10.0.0.1:80")
        self.assertTrue(isHeartbeatClient("10.0.0.1:80"))
        self.assertTrue(isHeartbeatClient("::1:80"))
        self.assertFalse(isHeartbeatClient("node-a#b00t#1"))

    def test_register(self):
        """
        A registration makes the native client C{ip:port}, owned here,
        publishing the instance.
        """
        self.assertIsNone(self.write("register", instance=instance()))
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])
        client = self.node.manager.clients["10.0.0.1:8080"]
        self.assertTrue(client.native)
        self.assertEqual(client.owner, self.node.nodeId)
        self.assertEqual(client.resumeTokenHash, "")
        self.assertEqual(self.node.counts()["native_clients"], 1)

    def test_oneInstancePerService(self):
        """
        As in Nacos, a client publishes one instance per service: a second
        registration (another cluster) replaces the first; another service
        is another instance of the same client.
        """
        self.write("register", instance=instance())
        self.write("register", instance=instance(cluster="east"))
        self.write("register", service=PAYMENTS, instance=instance())
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#east", True)])
        self.assertEqual(self.hosts(PAYMENTS), [("10.0.0.1#8080#DEFAULT", True)])
        self.assertEqual(self.node.manager.clients["10.0.0.1:8080"].instanceCount, 2)

    def test_unhealthyThenRemoved(self):
        """
        Without beats an instance is unhealthy after 15 s, and removed
        after 30 s, with its client once it holds nothing.
        """
        self.write("register", instance=instance())
        self.wait(14.5)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])
        self.wait(1)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", False)])
        self.wait(14)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", False)])
        self.wait(0.5)
        self.assertEqual(self.hosts(), [])
        self.assertNotIn("10.0.0.1:8080", self.node.manager.clients)
        self.assertEqual(self.node.counts()["native_clients"], 0)
        # Nothing is left to check: no timer runs for nothing.
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_beatsKeepItAlive(self):
        """
        Beats every 5 s keep an instance healthy as long as they come; a
        beat makes an unhealthy one healthy again.
        """
        self.write("register", instance=instance())
        for _ in range(10):
            self.wait(5)
            self.assertEqual(self.write("beat"), (BEAT_OK, 5000))
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])
        self.wait(16)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", False)])
        self.write("beat")
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])
        self.wait(16)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", False)])

    def test_preservedSettings(self):
        """
        An instance's metadata sets its beat interval, timeout and delete
        timeout (ms), as Nacos' C{preserved.*} keys do; bad values are the
        defaults.
        """
        self.write("register", instance=instance(**{
            "preserved.heart.beat.interval": "1000",
            "preserved.heart.beat.timeout": "2000",
            "preserved.ip.delete.timeout": "4000",
        }))
        self.assertEqual(self.write("beat"), (BEAT_OK, 1000))
        self.wait(2)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", False)])
        self.wait(2)
        self.assertEqual(self.hosts(), [])
        self.write("register", instance=instance(**{"preserved.heart.beat.timeout": "soon"}))
        self.wait(14.5)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])

    def test_beatOfUnknown(self):
        """
        A light beat (no instance) for an instance not held answers
        C{20404} (the client registers again); a beat carrying its
        instance registers it.
        """
        self.assertEqual(self.write("beat"), (BEAT_NOT_FOUND, 5000))
        self.assertNotIn("10.0.0.1:8080", self.node.manager.clients)
        self.assertEqual(self.write("beat", instance=instance()), (BEAT_OK, 5000))
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])

    def test_update(self):
        """
        An update replaces a held instance; of one not held it is refused
        C{NOT_FOUND}.
        """
        e = self.assertRaises(RequestError, self.write, "update", instance=instance())
        self.assertEqual(e.code, NOT_FOUND)
        self.write("register", instance=instance())
        self.write("update", instance=Instance("10.0.0.1", 8080, "DEFAULT", 5.0, True, True, {}))
        self.assertEqual(self.node.serviceInfo(ORDERS).hosts[0].weight, 5.0)

    def test_deregister(self):
        """
        A deregistration removes the instance, and the client once empty;
        of nothing it is no error.
        """
        self.write("deregister")
        self.write("register", instance=instance())
        self.write("register", service=PAYMENTS, instance=instance())
        self.write("deregister")
        self.assertEqual(self.hosts(), [])
        self.assertIn("10.0.0.1:8080", self.node.manager.clients)
        self.write("deregister", service=PAYMENTS)
        self.assertNotIn("10.0.0.1:8080", self.node.manager.clients)
        self.assertEqual((self.node.heartbeats.held, self.node.heartbeats.owned), (set(), set()))

    def test_oneCheckPerInstance(self):
        """
        However often an instance is registered again, updated or beaten,
        one check of it at a time waits (the checks do not pile up).
        """
        self.write("register", instance=instance())
        for _ in range(200):
            self.wait(1)
            self.write("register", instance=instance())
            self.write("update", instance=instance())
            self.write("beat")
        self.assertEqual(self.node.heartbeats.pendingChecks(), 1)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])
        self.wait(16)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", False)])
        self.wait(15)
        self.assertEqual(self.hosts(), [])
        self.assertEqual(self.node.heartbeats.pendingChecks(), 0)

    def test_refusedRegistration(self):
        """
        A registration refused by a limit changes nothing the client holds.
        """
        harness = NodeHarness(max_instances_per_client=1)
        self.addCleanup(harness.node.stop)
        self.node = harness.node
        self.write("register", instance=instance())
        e = self.assertRaises(RequestError, self.write, "register", service=PAYMENTS, instance=instance())
        self.assertEqual(e.code, LIMIT_EXCEEDED)
        self.assertEqual(self.hosts(), [("10.0.0.1#8080#DEFAULT", True)])
        self.write("deregister")
        self.assertEqual(self.node.manager.clients, {})

    def test_badKind(self):
        e = self.assertRaises(RequestError, self.write, "poke")
        self.assertEqual((e.code, e.field), (BAD_REQUEST, "kind"))

    def test_limit(self):
        """
        A node owns at most C{max_heartbeat_clients}: past it a new client
        is refused; the ones it owns go on.
        """
        harness = NodeHarness(max_heartbeat_clients=2)
        self.addCleanup(harness.node.stop)
        self.node = harness.node
        self.write("register", ip="10.0.0.1", instance=instance("10.0.0.1"))
        self.write("register", ip="10.0.0.2", instance=instance("10.0.0.2"))
        e = self.assertRaises(RequestError, self.write, "register", ip="10.0.0.3",
                              instance=instance("10.0.0.3"))
        self.assertEqual(e.code, LIMIT_EXCEEDED)
        self.assertIn("max_heartbeat_clients", e.message)
        self.write("register", ip="10.0.0.2", instance=instance("10.0.0.2", cluster="b"))
        self.write("deregister", ip="10.0.0.1")
        self.write("register", ip="10.0.0.3", instance=instance("10.0.0.3"))


def infos(events):
    return [formatEvent(e) for e in events if e["log_level"] == LogLevel.info]


class TakeoverTests(SynchronousTestCase):
    """
    L{Heartbeats.takeOver}: the synced heartbeat clients this node is now
    responsible for become its own; the others, and sessions' clients,
    stay their owners'.
    """

    def setUp(self):
        self.harness = NodeHarness()
        self.node = self.harness.node
        self.addCleanup(self.node.stop)
        self.mine = set()
        self.node.heartbeats.responsible = lambda clientId: clientId in self.mine

    def synced(self, clientId, ip=None):
        published = instance(ip or clientId.split(":")[0])
        return self.node.manager.syncState(clientId, "node-b", 3, 1, "",
                                           {ORDERS: {published.instanceId: published}})

    def test_sweep(self):
        ids = [f"10.0.{n // 250}.{n % 250 + 1}:8080" for n in range(1200)]
        self.node.heartbeats.responsible = lambda clientId: False  # none taken as they arrive
        for clientId in ids:
            self.synced(clientId)
        self.synced("node-b#boot#1", "10.9.9.9")
        self.harness.clock.advance(0)
        self.mine = set(ids[::2]) | {"node-b#boot#1"}
        self.node.heartbeats.responsible = lambda clientId: clientId in self.mine
        with capturedLogs() as events:
            self.node.heartbeats.takeOver()
            # A sweep runs in slices over the coming turns.
            for _ in range(100):
                self.harness.clock.advance(0)
        # Told once, at info, however many slices it took.
        self.assertEqual(infos(events), ["took over 600 heartbeat clients: this member is responsible for them now"])
        clients = self.node.manager.clients
        self.assertEqual({c for c in ids if clients[c].native}, set(ids[::2]))
        self.assertEqual({clients[c].epoch for c in ids[::2]}, {4})
        self.assertFalse(clients["node-b#boot#1"].native)
        self.assertEqual(self.node.heartbeats.owned, set(ids[::2]))
        self.assertEqual(len(self.node.serviceInfo(ORDERS).hosts), 1201)

    def test_takenOnArrival(self):
        """
        A record of a client this node is responsible for (sent to a
        member that restarted) is taken over in the next turn; not again
        within L{RETAKE_AFTER} of a takeover.
        """
        self.mine = {"10.0.0.1:8080"}
        self.synced("10.0.0.1:8080")
        self.assertFalse(self.node.manager.clients["10.0.0.1:8080"].native)
        self.harness.clock.advance(0)
        self.assertTrue(self.node.manager.clients["10.0.0.1:8080"].native)
        # Another member takes it back at once (its view differs): left to it.
        self.node.manager.syncState("10.0.0.1:8080", "node-b", 9, 1, "",
                                    {ORDERS: {"10.0.0.1#8080#DEFAULT": instance()}})
        self.harness.clock.advance(0)
        self.assertFalse(self.node.manager.clients["10.0.0.1:8080"].native)

    def test_takenByAWrite(self):
        """
        A write for a client another member owns, applied here because that
        member is unreachable, takes it over, told at info in one line per
        turn however many came in it.
        """
        for n in (1, 2):
            self.synced(f"10.0.0.{n}:8080")
        with capturedLogs() as events:
            for n in (1, 2):
                self.node.heartbeats.apply(Write("beat", f"10.0.0.{n}", 8080, ORDERS, None))
            self.assertEqual(infos(events), [])
            self.harness.clock.advance(0)
        self.assertTrue(self.node.manager.clients["10.0.0.1:8080"].native)
        self.assertEqual(infos(events), [
            "took over 2 heartbeat clients: a write came while its responsible member is unreachable"
        ])
