"""
Tests for the metrics of a node's links with the other members and of its
replication (L{distro.interfaces.ICluster.links},
L{distro.interfaces.ICluster.replication}, L{distro.cluster.stats}), read
at C{GET /metrics} from real nodes in memory: bytes and frames each way,
link states, backlog and lag, snapshots and digest repairs, each counted
where it happens.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro.http.service import HttpService
from tests._cluster import DROP, FakeCluster
from tests._http import Exchange
from tests._node import NodeHarness
from tests.test_metrics import samples


class _Metrics:
    """
    A cluster of C{size} real nodes in memory, and their metrics.
    """

    size = 2

    def setUp(self):
        self.cluster = FakeCluster(self.size)
        self.addCleanup(self.cluster.close)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def scrape(self, index):
        """
        C{{(name, labels...): value}} of node C{index}'s C{/metrics}.
        """
        service = HttpService(self.cluster.node(index), None)
        return samples(Exchange(service.site).request("GET", "/metrics")[2])

    def peer(self, index, member):
        """
        C{{name: value}} of node C{index}'s per member metrics of C{member}
        (a link's state as C{link_up_<direction>}).
        """
        found = {}
        for (name, *labels), value in self.scrape(index).items():
            labels = dict(labels)
            if labels.get("member") != member or not name.startswith("distro_peer_"):
                continue
            if "direction" in labels:
                name = f"{name}_{labels['direction']}"
            found[name[len("distro_peer_"):]] = value
        return found

    def replication(self, index):
        found = self.scrape(index)
        return {
            "snapshots_sent": found[("distro_snapshots_total", ("direction", "sent"))],
            "snapshots_received": found[("distro_snapshots_total", ("direction", "received"))],
            "digest_mismatches": found[("distro_digest_mismatches_total",)],
            "digest_repairs": found[("distro_digest_repairs_total",)],
            "digest_repaired_clients": found[("distro_digest_repaired_clients_total",)],
        }


class LinkMetricsTests(_Metrics, SynchronousTestCase):
    def test_standalone(self):
        """
        A node without a cluster shows no links, and no replication.
        """
        found = samples(Exchange(HttpService(NodeHarness().node, None).site)
                        .request("GET", "/metrics")[2])
        self.assertEqual([k for k in found if k[0].startswith("distro_peer_")], [])
        self.assertEqual(found[("distro_snapshots_total", ("direction", "sent"))], 0)
        self.assertEqual(found[("distro_digest_repairs_total",)], 0)

    def test_trafficEachWay(self):
        """
        A registration's record goes from its node to the other as one
        frame: the writer's bytes and frames sent to the member move by
        what the member's received from it move.
        """
        before0, before1 = self.peer(0, "n1"), self.peer(1, "n0")
        self.assertGreater(before0["sent_frames_total"], 0)  # the snapshot, pings
        self.assertGreater(before1["received_bytes_total"], 0)
        self.cluster.client(0).register("orders", "10.1.0.1")
        self.cluster.flush()
        after0, after1 = self.peer(0, "n1"), self.peer(1, "n0")
        self.assertEqual(after0["sent_frames_total"] - before0["sent_frames_total"], 1)
        self.assertEqual(after1["received_frames_total"] - before1["received_frames_total"], 1)
        sent = after0["sent_bytes_total"] - before0["sent_bytes_total"]
        self.assertGreater(sent, 50)
        self.assertEqual(after1["received_bytes_total"] - before1["received_bytes_total"], sent)
        # Nothing came back for it.
        self.assertEqual(after0["received_frames_total"], before0["received_frames_total"])

    def test_linkStateFollowsMemberDown(self):
        """
        Both links with a member are up while it runs; once it crashed,
        both are down, and the member is behind for as long as they are;
        once it is back, a snapshot catches it up.
        """
        self.assertEqual(self.peer(0, "n1")["link_up_outbound"], 1)
        self.assertEqual(self.peer(0, "n1")["link_up_inbound"], 1)
        self.assertEqual(self.peer(0, "n1")["behind_seconds"], 0)
        self.cluster.crash(1)
        self.cluster.advance(3)
        down = self.peer(0, "n1")
        self.assertEqual((down["link_up_outbound"], down["link_up_inbound"]), (0, 0))
        self.assertGreater(down["behind_seconds"], 2)
        self.cluster.advance(1)
        self.assertAlmostEqual(self.peer(0, "n1")["behind_seconds"], down["behind_seconds"] + 1)
        sent = self.replication(0)["snapshots_sent"]
        self.cluster.restart(1)
        back = self.peer(0, "n1")
        self.assertEqual((back["link_up_outbound"], back["link_up_inbound"]), (1, 1))
        self.assertEqual(back["behind_seconds"], 0)
        self.assertEqual(self.replication(0)["snapshots_sent"], sent + 1)

    def test_backlog(self):
        """
        While a member's link cannot take more, the clients that changed
        wait, counted, and the member is behind from the first; once the
        link drains they go and it has caught up.
        """
        feed = self.cluster.feed(0, 1)
        feed.pause()
        self.cluster.client(0).register("orders", "10.1.0.1")
        self.cluster.client(0).register("pay", "10.1.0.2")
        self.cluster.flush()
        self.cluster.clock.advance(0.25)
        waiting = self.peer(0, "n1")
        self.assertEqual(waiting["backlog_clients"], 2)
        self.assertEqual(waiting["behind_seconds"], 0.25)
        feed.resume()
        self.cluster.flush()
        caughtUp = self.peer(0, "n1")
        self.assertEqual((caughtUp["backlog_clients"], caughtUp["behind_seconds"]), (0, 0))
        self.assertEqual(len(self.cluster.hosts(1, "orders")), 1)


class ReplicationMetricsTests(_Metrics, SynchronousTestCase):
    size = 3

    def test_snapshots(self):
        """
        Each node sent its snapshot to both others, and loaded theirs.
        """
        for index in range(3):
            counts = self.replication(index)
            self.assertEqual((counts["snapshots_sent"], counts["snapshots_received"]), (2, 2))

    def test_digestRepair(self):
        """
        A record lost on its way is repaired by the next digest, counted on
        the member that lacked it: one repair, of one client. Members that
        lacked nothing count none.
        """
        def lose(src, dst, message):
            if (src, dst) == (0, 1) and message.get("op") == "client_state":
                return DROP

        remove = self.cluster.intercept(lose)
        self.cluster.client(0).register("orders", "10.1.0.1")
        self.cluster.flush()
        remove()
        self.assertEqual(self.cluster.hosts(1, "orders"), [])
        self.cluster.advance(1.5)  # a digest
        self.assertEqual(len(self.cluster.hosts(1, "orders")), 1)
        repaired = self.replication(1)
        self.assertEqual((repaired["digest_repairs"], repaired["digest_repaired_clients"]), (1, 1))
        self.assertEqual(self.replication(2)["digest_repairs"], 0)
        self.assertEqual(self.replication(0)["digest_repairs"], 0)


class ForwardedRequestTests(_Metrics, SynchronousTestCase):
    def test_answeredLater(self):
        """
        An HTTP registration taken by a member not responsible for its
        client is answered once the responsible member applied it: counted
        then, once, with its status.
        """
        taker = self.cluster.node(0)
        ip = next(f"10.1.0.{n}" for n in range(1, 250)
                  if taker.cluster.responsibleFor(f"10.1.0.{n}:8080") is not None)
        exchange = Exchange(HttpService(taker, None).site)
        exchange.send(b"POST /nacos/v1/ns/instance?serviceName=orders&ip=" + ip.encode()
                      + b"&port=8080 HTTP/1.1\r\nHost: node\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(exchange.transport.value(), b"")  # forwarded, not answered yet

        def registrations():
            return {tuple(labels): value for (name, *labels), value in self.scrape(0).items()
                    if name == "distro_requests_total" and ("op", "/nacos/v1/ns/instance") in labels}

        self.assertEqual(registrations(), {})
        self.cluster.flush()
        self.assertEqual(exchange.response()[:1], (200,))
        self.assertEqual(registrations(), {(("code", "200"), ("op", "/nacos/v1/ns/instance"),
                                            ("port", "http")): 1})

