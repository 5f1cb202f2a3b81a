"""
Tests for the node's counts (L{distro.node.Node.counts}) and their
Prometheus expositions on the HTTP port (L{distro.http.metrics}): the
counts follow every change without walking anything, and read the same as
a walk of what the node holds.
"""

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from distro.collector import CollectorWatch
from distro.http.service import HttpService
from tests._cluster import FakeCluster, walked
from tests._factories import instance
from tests._gc import Clock, FakeCollector
from tests._http import Exchange
from tests._node import NodeHarness, service


def samples(text):
    """
    C{{(name, labels...): value}} of a Prometheus exposition.
    """
    found = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


class CountsTests(SynchronousTestCase):
    def setUp(self):
        self.harness = NodeHarness()
        self.node = self.harness.node

    def assertCounts(self, **expected):
        counts = self.node.counts()
        self.assertEqual(counts, walked(self.node))
        for key, value in expected.items():
            self.assertEqual(counts[key], value, key)

    def test_followChanges(self):
        """
        Registrations, a subscription, a replaced and a removed instance, a
        batch and a session's end: each count follows.
        """
        self.assertCounts(native_clients=0, services=0, instances=0, subscriptions=0)
        publisher = self.harness.client()
        publisher.ok("register", service=service("orders"), instance=instance("10.0.0.1", 80))
        publisher.ok("register", service=service("orders"), instance=instance("10.0.0.2", 80))
        publisher.ok("register", service=service("pay"), instance=instance("10.0.0.1", 80))
        watcher = self.harness.client()
        watcher.ok("subscribe", service=service("orders"))
        watcher.ok("subscribe", service=service("orders"), clusters=["A"])
        self.assertCounts(native_clients=2, services=2, instances=3, subscriptions=2)
        publisher.ok("register", service=service("orders"),
                     instance=instance("10.0.0.1", 80, weight=2.0))  # replaced
        self.assertCounts(instances=3)
        publisher.ok("deregister", service=service("pay"), instance={"ip": "10.0.0.1", "port": 80})
        self.assertCounts(services=1, instances=2)
        publisher.ok("batch_register", service=service("orders"),
                     instances=[instance("10.0.0.3", 80)])
        self.assertCounts(services=1, instances=1)
        other = self.harness.client()
        other.ok("register", service=service("orders"), instance=instance("10.0.0.3", 80))
        self.assertCounts(native_clients=3, instances=1)  # one id, two publishers
        watcher.ok("unsubscribe", service=service("orders"), clusters=["A"])
        self.assertCounts(subscriptions=1)
        watcher.lose()  # a client without instances goes at once
        self.assertCounts(native_clients=2, subscriptions=0)
        publisher.lose()  # in its disconnect grace
        self.assertCounts(native_clients=2, instances=1)
        self.harness.clock.advance(60)
        self.assertCounts(native_clients=1, instances=1)
        other.ok("bye")
        other.lose(orderly=True)
        self.assertCounts(native_clients=0, services=0, instances=0, subscriptions=0)


class ClusterCountsTests(SynchronousTestCase):
    def setUp(self):
        self.cluster = FakeCluster(2)
        self.addCleanup(self.cluster.close)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def counts(self, index):
        node = self.cluster.node(index)
        counts = node.counts()
        self.assertEqual(counts, walked(node))
        return counts["native_clients"], counts["synced_clients"], counts["instances"]

    def test_memberStates(self):
        """
        Each node's metrics show every member's state as it sees it: a
        crashed member goes DOWN.
        """
        service = HttpService(self.cluster.node(0), None)

        def states():
            found = samples(Exchange(service.site).request("GET", "/metrics")[2])
            return {labels[0][1]: labels[1][1] for (name, *labels), value in found.items()
                    if name == "distro_member_state" and value == 1}

        self.assertEqual(states(), {"n0": "UP", "n1": "UP"})
        self.cluster.crash(1)
        self.cluster.advance(3)
        self.assertEqual(states(), {"n0": "UP", "n1": "DOWN"})

    def test_syncedAndMoved(self):
        """
        A client is native where it connected and synced elsewhere; it
        counts as native where it resumes, and goes from both when it ends.
        """
        cluster = self.cluster
        client = cluster.client(0)
        client.register("orders", "10.1.0.1")
        cluster.flush()
        self.assertEqual((self.counts(0), self.counts(1)), ((1, 0, 1), (0, 1, 1)))
        client.drop()
        moved = cluster.client(1, resume=client.identity)
        moved.redo({"orders": [instance("10.1.0.1")]})
        cluster.advance(3)
        self.assertEqual((self.counts(0), self.counts(1)), ((0, 1, 1), (1, 0, 1)))
        moved.bye()
        cluster.flush()
        self.assertEqual((self.counts(0), self.counts(1)), ((0, 0, 0), (0, 0, 0)))


class ExpositionTests(SynchronousTestCase):
    def start(self, **config):
        self.harness = NodeHarness(**config)
        self.node = self.harness.node
        self.service = HttpService(self.node, None)
        self.node.portOpened(self.service)

    def get(self, path, *headers):
        return Exchange(self.service.site).request("GET", path, headers=headers)

    def test_distroMetrics(self):
        """
        C{GET /metrics} is Prometheus' text format, read by its own parser:
        the node's counts, the ports' connections, readiness and the
        process' own gauges.
        """
        self.start()
        publisher = self.harness.client()
        publisher.ok("register", service=service("orders"), instance=instance())
        publisher.ok("subscribe", service=service("orders"))
        status, headers, body = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        found = samples(body)
        self.assertEqual(found[("distro_clients", ("kind", "native"))], 1)
        self.assertEqual(found[("distro_clients", ("kind", "synced"))], 0)
        self.assertEqual(found[("distro_services",)], 1)
        self.assertEqual(found[("distro_instances",)], 1)
        self.assertEqual(found[("distro_subscriptions",)], 1)
        self.assertEqual(found[("distro_ready",)], 1)
        self.assertEqual(found[("distro_connections", ("port", "http"))], 1)
        self.assertIn(("process_resident_memory_bytes",), found)

    def test_gcPauses(self):
        """
        With the process' collector watch, C{/metrics} shows its pauses as
        a histogram per generation.
        """
        collector, clock = FakeCollector(), Clock()
        watch = CollectorWatch(freeze=False, collector=collector, now=clock)
        watch.start()
        self.harness = NodeHarness()
        self.node = self.harness.node
        self.service = HttpService(self.node, None, collector=watch)
        collector.collect(0, 0.0004, clock)
        collector.collect(2, 0.03, clock)
        found = samples(self.get("/metrics")[2])
        self.assertEqual(found[("distro_gc_pause_seconds_count", ("generation", "0"))], 1)
        self.assertEqual(found[("distro_gc_pause_seconds_bucket", ("generation", "2"), ("le", "0.02"))], 0)
        self.assertEqual(found[("distro_gc_pause_seconds_bucket", ("generation", "2"), ("le", "0.05"))], 1)
        self.assertAlmostEqual(found[("distro_gc_pause_seconds_sum", ("generation", "2"))], 0.03)

    def test_pushes(self):
        """
        Pushes sent, changes coalesced into a push already due, pushes a
        port could not deliver, and the latency from change to push; the
        same in Nacos' gauges (costs in milliseconds).
        """
        self.start(push_delay_ms=100)
        watcher = self.harness.client()
        watcher.ok("subscribe", service=service("orders"))
        publisher = self.harness.client()
        publisher.ok("register", service=service("orders"), instance=instance("10.0.0.1", 80))
        self.harness.clock.advance(0)  # pushed at the end of the turn
        publisher.ok("register", service=service("orders"), instance=instance("10.0.0.2", 80))
        publisher.ok("register", service=service("orders"), instance=instance("10.0.0.3", 80))
        self.harness.clock.advance(0.1)  # one push for both, after push_delay_ms
        self.assertEqual(len(watcher.takePushes()), 2)
        self.node.pushFailed()
        found = samples(self.get("/metrics")[2])
        self.assertEqual(found[("distro_pushes_total",)], 2)
        self.assertEqual(found[("distro_push_changes_coalesced_total",)], 1)
        self.assertEqual(found[("distro_pushes_failed_total",)], 1)
        self.assertEqual(found[("distro_push_latency_seconds_count",)], 2)
        self.assertEqual(found[("distro_push_latency_seconds_bucket", ("le", "0.0005"))], 1)
        self.assertEqual(found[("distro_push_latency_seconds_bucket", ("le", "0.1"))], 2)
        self.assertAlmostEqual(found[("distro_push_latency_seconds_sum",)], 0.1)
        nacos = samples(self.get("/nacos/actuator/prometheus")[2])
        self.assertEqual(nacos[("nacos_monitor", ("module", "naming"), ("name", "totalPush"))], 2)
        self.assertEqual(nacos[("nacos_monitor", ("module", "naming"), ("name", "failedPush"))], 1)
        self.assertAlmostEqual(
            nacos[("nacos_monitor", ("module", "naming"), ("name", "avgPushCost"))], 50)
        self.assertAlmostEqual(
            nacos[("nacos_monitor", ("module", "naming"), ("name", "maxPushCost"))], 100)

    def test_nacosMonitor(self):
        """
        C{GET /nacos/actuator/prometheus} shows Nacos' naming gauges.
        """
        self.start()
        self.harness.client().ok("register", service=service("orders"), instance=instance())
        status, _, body = self.get("/nacos/actuator/prometheus")
        self.assertEqual(status, 200)
        found = samples(body)
        naming = {labels[1][1]: value for (name, *labels), value in found.items()
                  if name == "nacos_monitor"}
        self.assertEqual(naming, {"serviceCount": 1, "ipCount": 1, "subscriberCount": 0,
                                  "totalPush": 0, "failedPush": 0,
                                  "avgPushCost": -1, "maxPushCost": -1})
        self.assertEqual({labels[0] for (name, *labels) in found if name == "nacos_monitor"},
                         {("module", "naming")})

    def test_authRequired(self):
        """
        On a node with auth, metrics need a credential granted every
        namespace, or an admin's: without one they are refused (403, as
        Nacos answers), with one of some namespaces only too.
        """
        self.start(auth_tokens={"all": ["*"], "some": ["public"]})
        for path in ("/metrics", "/nacos/actuator/prometheus"):
            self.assertEqual(self.get(path)[0], 403)
            self.assertEqual(self.get(path, "Authorization: Bearer wrong")[0], 403)
            status, _, body = self.get(path, "Authorization: Bearer some")
            self.assertEqual(status, 403)
            self.assertIn(b"metrics: need a grant of every namespace", body)
            self.assertEqual(self.get(path, "Authorization: Bearer all")[0], 200)
            self.assertEqual(self.get(path + "?accessToken=all")[0], 200)
