"""
Tests for the requests each port served (L{distro.requeststats}), and
their exposition at C{GET /metrics}: every request of every port is counted
once, by op and code, successes and refusals alike, with its duration; ops
a client makes up count as one label.
"""

import json

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.http.service import HttpService
from distro.interfaces import IPortRequests, IRequestStats
from distro.nacos.connection import NacosConnection
from distro.nacos.payload import Payload, encode
from distro.nacos.service import NacosService
from distro.requeststats import UNKNOWN, RequestStats
from distro.turns import Turns
from tests._factories import instance
from tests._h2client import H2Client
from tests._http import Exchange
from tests._node import NodeHarness, service
from tests._turns import TickingTimer, settled
from tests.test_metrics import samples


class RequestStatsTests(SynchronousTestCase):
    def test_interfaces(self):
        """
        L{RequestStats} provides L{IRequestStats}, its ports
        L{IPortRequests}; a node has one.
        """
        stats = RequestStats()
        self.assertTrue(verifyObject(IRequestStats, stats))
        self.assertTrue(verifyObject(IPortRequests, stats.port("distro", {"register"}, "OK")))
        self.assertTrue(verifyObject(IRequestStats, NodeHarness().node.requests))

    def test_countsAndDurations(self):
        """
        Each op counts its codes, and its durations fill one histogram.
        """
        stats = RequestStats()
        port = stats.port("distro", {"register", "query"}, "OK")
        self.assertIs(stats.port("distro", {"other"}, "OK"), port)
        port.record("register", "OK", 0.00002)
        port.record("register", "OK", 0.003)
        port.record("register", "BAD_REQUEST", 0.00001)
        port.record("query", "NOT_READY", 0.0)
        served = {(p, op): (codes, histogram) for p, op, codes, histogram in stats.served()}
        self.assertEqual(sorted(served), [("distro", "query"), ("distro", "register")])
        codes, histogram = served["distro", "register"]
        self.assertEqual(codes, {"OK": 2, "BAD_REQUEST": 1})
        self.assertEqual(histogram.count, 3)
        self.assertAlmostEqual(histogram.total, 0.00303)
        self.assertEqual(served["distro", "query"][0], {"NOT_READY": 1})

    def test_unknownOpsBounded(self):
        """
        Ops outside the port's set, however many, count as one: C{unknown}.
        """
        stats = RequestStats()
        port = stats.port("distro", {"register"}, "OK")
        for n in range(1000):
            port.record(f"op{n}", "UNKNOWN_OP", 0.0)
        port.record(UNKNOWN, "BAD_FRAME", 0.0)
        ((name, op, codes, histogram),) = stats.served()
        self.assertEqual((name, op), ("distro", UNKNOWN))
        self.assertEqual(codes, {"UNKNOWN_OP": 1000, "BAD_FRAME": 1})
        self.assertEqual(histogram.count, 1001)


class _Scraped:
    """
    A node with an HTTP port whose C{/metrics} the test reads.
    """

    def start(self, turns=None, **config):
        self.harness = NodeHarness(turns=turns, **config)
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.http = HttpService(self.node, None)

    def scrape(self):
        return samples(Exchange(self.http.site).request("GET", "/metrics?accessToken=all")[2])

    def requests(self, port):
        """
        C{{(op, code): count}} of C{port}'s C{distro_requests_total}.
        """
        found = {}
        for (name, *labels), value in self.scrape().items():
            labels = dict(labels)
            if name == "distro_requests_total" and labels["port"] == port:
                found[labels["op"], labels["code"]] = value
        return found

    def durations(self, port, op):
        """
        C{(count, sum, {le: count})} of the histogram of C{port}'s C{op}.
        """
        found = self.scrape()
        buckets = {dict(labels)["le"]: value for (name, *labels), value in found.items()
                   if name == "distro_request_duration_seconds_bucket"
                   and dict(labels)["port"] == port and dict(labels)["op"] == op}
        key = (("op", op), ("port", port))
        return (found[("distro_request_duration_seconds_count", *key)],
                found[("distro_request_duration_seconds_sum", *key)], buckets)


class NativePortTests(_Scraped, SynchronousTestCase):
    def setUp(self):
        # Each turn runs one slice of a batch: a large one takes several.
        self.start(turns=lambda clock: Turns(clock, timer=TickingTimer(0.003)))

    def test_successesAndRefusals(self):
        """
        distro's port counts each request by op and code: successes as
        C{OK}, refusals with their error code; the durations fill the op's
        histogram.
        """
        client = self.harness.client()  # hello
        client.ok("register", service=service("orders"), instance=instance())
        client.ok("register", service=service("orders"), instance=instance("10.0.0.2"))
        self.assertEqual(client.request("register", service={"name": ""}, instance=instance())["code"],
                         "BAD_REQUEST")
        client.ok("query", service=service("orders"))
        self.assertEqual(self.requests("distro"), {
            ("hello", "OK"): 1, ("register", "OK"): 2, ("register", "BAD_REQUEST"): 1,
            ("query", "OK"): 1,
        })
        count, total, buckets = self.durations("distro", "register")
        self.assertEqual((count, total), (3, 0.0))  # the clock did not move
        self.assertEqual(buckets["5e-05"], 3)
        self.assertEqual(buckets["+Inf"], 3)

    def test_beforeHello(self):
        """
        A request before C{hello} is counted, with C{HELLO_REQUIRED}.
        """
        connection = self.harness.connect()
        self.assertEqual(connection.request("query", service=service())["code"], "HELLO_REQUIRED")
        self.assertEqual(self.requests("distro"), {("query", "HELLO_REQUIRED"): 1})

    def test_garbageOpsBounded(self):
        """
        Made-up ops, ops that are not strings and undecodable frames all
        count as the one op C{unknown}.
        """
        client = self.harness.client()
        for n in range(50):
            self.assertEqual(client.request(f"made-up-{n}")["code"], "UNKNOWN_OP")
        self.assertEqual(client.roundTrip({"op": [1, 2], "id": 99})["code"], "UNKNOWN_OP")
        client.sendRaw(b"\x00\x00\x00\x01\xc1")  # never valid msgpack
        self.assertEqual(client.frames()[0]["code"], "BAD_FRAME")
        self.assertEqual(self.requests("distro"), {
            ("hello", "OK"): 1, (UNKNOWN, "UNKNOWN_OP"): 51, (UNKNOWN, "BAD_FRAME"): 1,
        })

    def test_answeredLater(self):
        """
        A batch answered over several turns is counted once, when it is
        answered, with the time it took.
        """
        client = self.harness.client()
        instances = [instance(f"10.0.{n // 250}.{n % 250}") for n in range(1000)]
        client.send({"op": "batch_register", "id": 7, "service": service("big"), "instances": instances})
        self.assertEqual(self.requests("distro"), {("hello", "OK"): 1})
        for _ in range(20):
            self.clock.advance(0.01)  # a turn, 10 ms later
        (reply,) = client.frames()
        self.assertEqual(reply["op"], "ok")
        self.assertEqual(self.requests("distro")["batch_register", "OK"], 1)
        count, total, _ = self.durations("distro", "batch_register")
        self.assertEqual(count, 1)
        self.assertGreater(total, 0)


def _payload(type_, **body):
    return Payload(type_, {}, "", json.dumps(body).encode())


class NacosPortTests(_Scraped, SynchronousTestCase):
    def setUp(self):
        self.start(auth_tokens={"s3cret": ["public"], "all": ["*"]})
        self.connection = NacosConnection(self.node, "c-1", "10.0.0.7")
        self.connection.send = lambda payload: None
        self.connection.close = lambda: None

    def ask(self, type_, token="s3cret", **body):
        payload = _payload(type_, **body)
        payload.headers["accessToken"] = token
        return json.loads(settled(self.clock, self.connection.request(payload)).body)

    def test_successesAndRefusals(self):
        """
        The Nacos port counts each request by type and C{errorCode}: 200 for
        a success, Nacos' code for a refusal (a request before the set up,
        a credential without a grant, a bad parameter, a type it does not
        serve).
        """
        self.ask("ServerCheckRequest")
        self.assertEqual(self.ask("InstanceRequest")["errorCode"], 301)  # not set up
        self.connection.streamReceived(_payload("ConnectionSetupRequest", labels={"module": "naming"}))
        register = {"serviceName": "orders", "type": "registerInstance",
                    "instance": {"ip": "10.0.0.7", "port": 80}}
        self.assertEqual(self.ask("InstanceRequest", **register)["errorCode"], 0)
        self.assertEqual(self.ask("InstanceRequest", token="wrong", **register)["errorCode"], 403)
        self.assertEqual(self.ask("InstanceRequest", **dict(register, type="bogus"))["errorCode"], 400)
        self.assertEqual(self.ask("ServiceQueryRequest", serviceName="orders")["errorCode"], 0)
        self.assertEqual(self.ask("MadeUpRequest")["errorCode"], 302)
        self.assertEqual(self.requests("nacos"), {
            ("ServerCheckRequest", "200"): 1, ("InstanceRequest", "301"): 1,
            ("InstanceRequest", "200"): 1, ("InstanceRequest", "403"): 1,
            ("InstanceRequest", "400"): 1, ("ServiceQueryRequest", "200"): 1,
            (UNKNOWN, "302"): 1,
        })
        self.assertEqual(self.durations("nacos", "InstanceRequest")[0], 4)


class NacosServiceTests(_Scraped, SynchronousTestCase):
    def test_undecodablePayload(self):
        """
        A unary call whose payload cannot be read (no request type to name)
        is counted as C{unknown}, with C{BAD_GATEWAY} (502, as Nacos
        answers it); a request read through the same service counts under
        its type.
        """
        self.start()
        service = NacosService(self.node, "tcp:0:interface=127.0.0.1", None)
        client = H2Client(service.factory)
        client.unary("/Request/request", b"\x0anot a payload")
        client.unary("/Request/request", encode(_payload("ServerCheckRequest")))
        self.assertEqual(self.requests("nacos"), {(UNKNOWN, "502"): 1, ("ServerCheckRequest", "200"): 1})


class HttpPortTests(_Scraped, SynchronousTestCase):
    def setUp(self):
        self.start()

    def test_routesAndStatuses(self):
        """
        The HTTP port counts each request by route and status: successes,
        a method not allowed, a refusal naming a parameter, and paths that
        are no route (one label however many).
        """
        exchange = Exchange(self.http.site)
        self.assertEqual(exchange.request("GET", "/health")[0], 200)
        self.assertEqual(exchange.request("HEAD", "/ready")[0], 200)
        self.assertEqual(exchange.request("DELETE", "/health")[0], 405)
        self.assertEqual(exchange.request("POST", "/nacos/v1/ns/instance", b"ip=1.2.3.4")[0], 400)
        for n in range(20):
            self.assertEqual(exchange.request("GET", f"/no/such/{n}")[0], 404)
        found = self.requests("http")
        # This scrape is not in its own answer.
        self.assertEqual(found, {
            ("/health", "200"): 1, ("/ready", "200"): 1, ("/health", "405"): 1,
            ("/nacos/v1/ns/instance", "400"): 1, (UNKNOWN, "404"): 20,
        })
        self.assertEqual(self.requests("http")["/metrics", "200"], 1)
        self.assertEqual(self.durations("http", UNKNOWN)[0], 20)
