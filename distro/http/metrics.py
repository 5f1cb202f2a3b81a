# -*- test-case-name: tests.test_metrics -*-
"""
The node's metrics in Prometheus' text format: C{GET /metrics} (distro's
own, C{distro_} names) and C{GET /nacos/actuator/prometheus} (the gauges a
Nacos server shows as C{nacos_monitor}, for dashboards made for Nacos).

A scrape reads counts the node keeps as it changes (L{INode.counts}) and
each port's connection count: it walks no registry and no client.
"""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.process_collector import ProcessCollector

from distro.http.answers import credential, text

# What a member may be (PROTOCOL.md 5.3).
MEMBER_STATES = ("UP", "SUSPICIOUS", "DOWN")

# What a scraper is told it reads: Prometheus' text format 0.0.4.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _buckets(histogram):
    """
    The cumulative buckets of a L{distro.histogram.Histogram}, as
    C{prometheus_client} takes them.
    """
    return [("+Inf" if bound == float("inf") else repr(bound), count)
            for bound, count in histogram.cumulative()]


class NodeCollector:
    """
    distro's gauges of one node.
    """

    def __init__(self, node):
        self.node = node

    def collect(self):
        node = self.node
        counts = node.counts()
        connections = GaugeMetricFamily(
            "distro_connections", "Client connections open, by port.", labels=["port"]
        )
        for port in node.ports():
            connections.add_metric([port.name], port.connectionCount())
        yield connections
        clients = GaugeMetricFamily(
            "distro_clients",
            "Clients held: native (sessions of this node, connected or in their disconnect "
            "grace) and synced (replicated from the member that owns them).",
            labels=["kind"],
        )
        clients.add_metric(["native"], counts["native_clients"])
        clients.add_metric(["synced"], counts["synced_clients"])
        yield clients
        yield GaugeMetricFamily(
            "distro_services", "Services with at least one instance.", value=counts["services"]
        )
        yield GaugeMetricFamily(
            "distro_instances", "Instances held, every client's (one per instance id and service).",
            value=counts["instances"],
        )
        yield GaugeMetricFamily(
            "distro_subscriptions", "Subscriptions of this node's connections.",
            value=counts["subscriptions"],
        )
        yield GaugeMetricFamily(
            "distro_ready", "1 while the node serves reads, 0 while it loads.", value=int(node.ready)
        )
        members = GaugeMetricFamily(
            "distro_member_state",
            "Each member of the cluster as this node sees it (itself included): 1 for its "
            "state, 0 for the others.",
            labels=["member", "state"],
        )
        for member in node.members():
            for state in MEMBER_STATES:
                members.add_metric([member["node"] or "", state], int(member["state"] == state))
        yield members
        pushes = node.pushStats()
        yield CounterMetricFamily(
            "distro_pushes", "Pushes written to subscribers' connections.", value=pushes.sent
        )
        yield CounterMetricFamily(
            "distro_push_changes_coalesced",
            "Changes of a view that joined a push already due (one push for several changes).",
            value=pushes.coalesced,
        )
        yield CounterMetricFamily(
            "distro_pushes_failed",
            "Pushes a port could not deliver (the subscriber could not take the view, or did "
            "not acknowledge it).",
            value=pushes.failed,
        )
        latency = HistogramMetricFamily(
            "distro_push_latency_seconds", "From a view's change to its push written."
        )
        latency.add_metric([], _buckets(pushes.latency), pushes.latency.total)
        yield latency


class RequestCollector:
    """
    The requests every port served (L{distro.interfaces.IRequestStats}):
    counts by port, op and code, and each op's durations as a histogram.
    """

    def __init__(self, requests):
        self.requests = requests

    def collect(self):
        served = CounterMetricFamily(
            "distro_requests",
            "Requests answered, by port (distro, nacos, http), op (the request's op, Nacos "
            "request type or HTTP route; unknown for any other) and code (OK or the error code; "
            "Nacos' errorCode, 200 for a success; the HTTP status).",
            labels=["port", "op", "code"],
        )
        durations = HistogramMetricFamily(
            "distro_request_duration_seconds",
            "From a request read to its answer written, by port and op.",
            labels=["port", "op"],
        )
        for port, op, codes, histogram in self.requests.served():
            for code, count in sorted(codes.items(), key=lambda item: str(item[0])):
                served.add_metric([port, op, str(code)], count)
            durations.add_metric([port, op], _buckets(histogram), histogram.total)
        yield served
        yield durations


class PeerCollector:
    """
    The links with the other members (L{distro.interfaces.ICluster.links})
    and what replication did (snapshots, digest repairs), counted where
    they happen.
    """

    # (name, help, key) of the per member counters.
    TRAFFIC = (
        ("distro_peer_sent_bytes", "Bytes written to the member, over both links.", "sent_bytes"),
        ("distro_peer_sent_frames", "Frames written to the member, over both links.", "sent_frames"),
        ("distro_peer_received_bytes", "Bytes read from the member, over both links.",
         "received_bytes"),
        ("distro_peer_received_frames", "Frames read from the member, over both links.",
         "received_frames"),
    )

    # (name, help, key) of the replication counters.
    REPLICATION = (
        ("distro_digest_mismatches",
         "Members' digests whose bucket hashes differed from this node's copy (their listing "
         "was asked).", "digest_mismatches"),
        ("distro_digest_repairs",
         "Members' digests that found clients missing here or at another revision (asked "
         "again with resend).", "digest_repairs"),
        ("distro_digest_repaired_clients", "The clients those digests asked again.",
         "digest_repaired_clients"),
    )

    def __init__(self, node):
        self.node = node

    def collect(self):
        links = self.node.peerLinks()
        up = GaugeMetricFamily(
            "distro_peer_link_up",
            "Whether this node's link to the member (outbound: it carries this node's "
            "replication) and the member's to this node (inbound) are up.",
            labels=["member", "direction"],
        )
        for link in links:
            up.add_metric([link["member"], "outbound"], int(link["outbound"]))
            up.add_metric([link["member"], "inbound"], int(link["inbound"]))
        yield up
        for name, documentation, key in self.TRAFFIC:
            family = CounterMetricFamily(name, documentation, labels=["member"])
            for link in links:
                family.add_metric([link["member"]], link[key])
            yield family
        backlog = GaugeMetricFamily(
            "distro_peer_backlog_clients",
            "Clients of this node waiting to be sent to the member (changed while its link "
            "could not take them, or not sent yet by a snapshot).",
            labels=["member"],
        )
        behind = GaugeMetricFamily(
            "distro_peer_behind_seconds",
            "Replication lag: for how long the member has lacked something this node wrote "
            "(its link down, a snapshot or changes waiting); 0 while it has everything.",
            labels=["member"],
        )
        for link in links:
            backlog.add_metric([link["member"]], link["backlog"])
            behind.add_metric([link["member"]], link["behind_seconds"])
        yield backlog
        yield behind
        replication = self.node.replication()
        snapshots = CounterMetricFamily(
            "distro_snapshots",
            "Snapshots streamed whole to members (sent), and members' snapshots loaded here "
            "(received).",
            labels=["direction"],
        )
        snapshots.add_metric(["sent"], replication.get("snapshots_sent", 0))
        snapshots.add_metric(["received"], replication.get("snapshots_received", 0))
        yield snapshots
        for name, documentation, key in self.REPLICATION:
            yield CounterMetricFamily(name, documentation, value=replication.get(key, 0))


class NacosMonitorCollector:
    """
    The naming gauges of a Nacos server (C{nacos_monitor{module="naming",
    name=...}}), of this node's counts.
    """

    def __init__(self, node):
        self.node = node

    def collect(self):
        counts = self.node.counts()
        monitor = GaugeMetricFamily(
            "nacos_monitor", "Nacos' naming gauges, of this node.", labels=["module", "name"]
        )
        monitor.add_metric(["naming", "serviceCount"], counts["services"])
        monitor.add_metric(["naming", "ipCount"], counts["instances"])
        monitor.add_metric(["naming", "subscriberCount"], counts["subscriptions"])
        pushes = self.node.pushStats()
        latency = pushes.latency
        monitor.add_metric(["naming", "totalPush"], pushes.sent)
        monitor.add_metric(["naming", "failedPush"], pushes.failed)
        # In milliseconds, -1 before the first push, as Nacos shows them.
        monitor.add_metric(
            ["naming", "avgPushCost"], latency.total / latency.count * 1000 if latency.count else -1
        )
        monitor.add_metric(
            ["naming", "maxPushCost"], latency.largest * 1000 if latency.count else -1
        )
        yield monitor


class PauseCollector:
    """
    The garbage collector's pauses, per generation, as a histogram (of a
    L{distro.collector.CollectorWatch}'s L{distro.histogram.Histogram}s).
    """

    def __init__(self, watch):
        self.watch = watch

    def collect(self):
        histogram = HistogramMetricFamily(
            "distro_gc_pause_seconds",
            "How long the garbage collector's collections paused the node, per generation.",
            labels=["generation"],
        )
        for generation, pauses in sorted(self.watch.pauses.items()):
            histogram.add_metric([str(generation)], _buckets(pauses), pauses.total)
        yield histogram


class Metrics:
    """
    The two expositions of one node (with C{collector}, the process'
    L{distro.collector.CollectorWatch}, its collections' pauses too).
    """

    def __init__(self, node, *, collector=None):
        self._distro = CollectorRegistry(auto_describe=False)
        self._distro.register(NodeCollector(node))
        self._distro.register(RequestCollector(node.requests))
        self._distro.register(PeerCollector(node))
        if collector is not None:
            self._distro.register(PauseCollector(collector))
        # The process' CPU, memory and descriptors, as process_* gauges.
        ProcessCollector(registry=self._distro)
        self._nacos = CollectorRegistry(auto_describe=False)
        self._nacos.register(NacosMonitorCollector(node))

    def distro(self):
        """
        C{GET /metrics}: the text of distro's metrics.
        """
        return generate_latest(self._distro)

    def nacos(self):
        """
        C{GET /nacos/actuator/prometheus}: the text of Nacos' naming gauges.
        """
        return generate_latest(self._nacos)


class Scrapes:
    """
    The routes of the two expositions. On a node with auth, metrics (counts
    over every namespace) are for a credential granted every namespace, or
    an admin's.
    """

    def __init__(self, node, *, collector=None):
        self.node = node
        self.metrics = Metrics(node, collector=collector)
        self.routes = {
            b"/metrics": {b"GET": self._distro},
            b"/nacos/actuator/prometheus": {b"GET": self._nacos},
        }

    def _allowed(self, request):
        if self.node.authority.enabled:
            self.node.authority.grant(credential(request)).checkEvery("metrics")

    def _distro(self, request):
        self._allowed(request)
        return text(request, 200, self.metrics.distro(), CONTENT_TYPE)

    def _nacos(self, request):
        self._allowed(request)
        return text(request, 200, self.metrics.nacos(), CONTENT_TYPE)
