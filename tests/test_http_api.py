"""
Tests for L{distro.http.api}: distro's JSON API, spoken byte by byte to the
HTTP port's real site over a L{StringTransport} on the node's clock, with
instances registered through distro's own port of the same node (real
nodes over sockets: L{tests.process.test_http_api}).
"""

import json
import urllib.parse

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from distro import model
from distro.auth import hashPassword
from distro.http.api import KEEPALIVE, MAX_WAIT, parseWait
from distro.http.answers import HttpError
from distro.model import ServiceKey
from distro.turns import Turns

from ._factories import instance
from ._http import Exchange
from ._node import ADVERTISE, NODE_ID, service
from ._turns import TickingTimer, nextTurn
from .test_http import HttpTestCase

ORDERS = "/v1/services/public/DEFAULT_GROUP/orders"


def dechunk(raw):
    """
    The body of a chunked response written so far (its whole chunks).
    """
    body = b""
    while raw:
        size, _, rest = raw.partition(b"\r\n")
        if not size or len(rest) < int(size, 16) + 2:
            break
        length = int(size, 16)
        if not length:
            break
        body += rest[:length]
        raw = rest[length + 2:]
    return body


class Stream:
    """
    One Server-Sent Events stream, read as it is written.
    """

    def __init__(self, site, path, ip="10.0.0.7", headers=("Accept: text/event-stream",), clock=None):
        self.clock = clock
        self.exchange = Exchange(site, ip)
        head = [f"GET {path} HTTP/1.1", "Host: node", *headers]
        self.exchange.send(("\r\n".join(head) + "\r\n\r\n").encode())
        raw = self.exchange.transport.value()
        head, _, _ = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = dict(line.split(": ", 1) for line in lines[1:])
        self._taken = 0

    def body(self):
        if self.clock is not None:
            self.clock.advance(0)
        raw = self.exchange.transport.value()
        return dechunk(raw.partition(b"\r\n\r\n")[2])

    def items(self):
        """
        The events and comments written since the last call: an event as
        C{{field: value}}, a comment as its text.
        """
        body = self.body()
        blocks = body[self._taken:].split(b"\n\n")[:-1]
        self._taken = len(body) - len(body[self._taken:].split(b"\n\n")[-1])
        items = []
        for block in blocks:
            text = block.decode("utf-8")
            if text.startswith(":"):
                items.append(text)
                continue
            fields = dict(line.split(": ", 1) for line in text.split("\n"))
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
            items.append(fields)
        return items

    def views(self):
        """
        The views of the events written since the last call.
        """
        items = self.items()
        for item in items:
            if not isinstance(item, dict) or item["event"] != "view":
                raise AssertionError(f"not a view: {item!r}")
            if int(item["id"]) != item["data"]["revision"]:
                raise AssertionError(f"id is not the revision: {item!r}")
        return [item["data"] for item in items]

    def leave(self):
        self.exchange.channel.connectionLost(Failure(ConnectionDone()))


def hostIds(view):
    return [host["instance_id"] for host in view["hosts"]]


class ApiTestCase(HttpTestCase):
    """
    A node's HTTP port in memory, instances registered through distro's
    own port of the node.
    """

    def start(self, **config):
        super().start(**config)
        self.clock = self.harness.clock
        self.publisher = None

    def register(self, ip="10.1.0.1", port=8080, name="orders", namespace=None, group=None, **fields):
        """
        Register an instance through distro's own port (one connection
        for the test).
        """
        if self.publisher is None:
            self.publisher = self.harness.client(host="10.9.9.9")
        key = service(name)
        if namespace is not None:
            key["namespace"] = namespace
        if group is not None:
            key["group"] = group
        self.publisher.ok("register", service=key, instance=instance(ip, port, **fields))

    def deregister(self, ip="10.1.0.1", port=8080, cluster="DEFAULT", name="orders"):
        self.publisher.ok("deregister", service=service(name),
                          instance={"ip": ip, "port": port, "cluster": cluster})

    def get(self, path, ip="10.0.0.7", headers=(), **params):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        return Exchange(self.site, ip).request("GET", path, headers=list(headers))

    def refused(self, path, status, named, **params):
        """
        C{path} is refused with C{status}, its message starting with
        C{named}.
        """
        document = self.document("GET", path, status, **params)
        self.assertEqual(document["code"], status)
        self.assertTrue(document["message"].startswith(named), (params, document))
        return document

    def nativeView(self, name="orders", **fields):
        """
        What distro's own port answers to a query.
        """
        return self.harness.query(name, **fields)

    def stream(self, path=ORDERS + "/watch", ip="10.0.0.7", **kwargs):
        return Stream(self.site, path, ip, clock=self.clock, **kwargs)

    def subscriptions(self):
        return self.node.counts()["subscriptions"]


class MembersTests(ApiTestCase):
    """
    C{GET /v1/members}.
    """

    def test_members(self):
        """
        C{GET /v1/members}: the members as the node sees them.
        """
        self.assertEqual(
            self.document("GET", "/v1/members"),
            {"members": [{"node": NODE_ID, "address": ADVERTISE, "state": "UP", "self": True}]},
        )

    def test_membersAtTheHostReached(self):
        """
        A node whose client port listens on every interface, without
        C{advertise}, is shown at the host the request reached, with its
        client port (not at the machine's host name).
        """
        self.start(advertise="")
        self.node.clientPortBound("0.0.0.0:9850")
        exchange = Exchange(self.site)
        exchange.transport.hostAddr = IPv4Address("TCP", "192.0.2.8", 8848)
        _, _, body = exchange.request("GET", "/v1/members")
        self.assertEqual(json.loads(body)["members"][0]["address"], "192.0.2.8:9850")


class ServicesTests(ApiTestCase):
    """
    C{GET /v1/services}.
    """

    def test_services(self):
        """
        C{GET /v1/services}: a namespace's services with their instance
        counts, in group and name order; one group; one page.
        """
        self.register("10.1.0.1", name="orders")
        self.register("10.1.0.2", name="orders")
        self.register("10.1.0.1", name="stock")
        self.register("10.1.0.1", name="audit", group="ops")
        self.register("10.1.0.1", name="orders", namespace="dev")
        self.assertEqual(self.document("GET", "/v1/services"), {"count": 3, "services": [
            {"group": "DEFAULT_GROUP", "name": "orders", "instances": 2},
            {"group": "DEFAULT_GROUP", "name": "stock", "instances": 1},
            {"group": "ops", "name": "audit", "instances": 1},
        ]})
        self.assertEqual(self.document("GET", "/v1/services", namespace="public"),
                         self.document("GET", "/v1/services", namespace=""))
        self.assertEqual(self.document("GET", "/v1/services", group="ops")["services"],
                         [{"group": "ops", "name": "audit", "instances": 1}])
        self.assertEqual(self.document("GET", "/v1/services", page="2", size="1"), {"count": 3, "services": [
            {"group": "DEFAULT_GROUP", "name": "stock", "instances": 1}]})
        self.assertEqual(self.document("GET", "/v1/services", page="4", size="1"), {"count": 3, "services": []})
        self.assertEqual(self.document("GET", "/v1/services", namespace="dev")["count"], 1)
        self.assertEqual(self.document("GET", "/v1/services", namespace="none"), {"count": 0, "services": []})

    def test_badParameters(self):
        """
        Each bad parameter is a 400 naming it.
        """
        for params, named in (
            ({"page": "0"}, "page: must be a positive integer"),
            ({"page": "x"}, "page: must be a positive integer"),
            ({"page": "-1"}, "page: must be a positive integer"),
            ({"page": "١"}, "page: must be a positive integer"),
            ({"page": str(2**31 + 1)}, "page: must be a positive integer"),
            ({"size": "0"}, "size: must be an integer 1..1000"),
            ({"size": "1001"}, "size: must be an integer 1..1000"),
            ({"namespace": "n" * 300}, "namespace: longer than 256 bytes"),
            ({"group": "a\x01"}, "group: contains a control character"),
        ):
            self.refused("/v1/services", 400, named, **params)
        code, _, body = Exchange(self.site).request("GET", "/v1/services?namespace=%ff")
        self.assertEqual((code, json.loads(body)["message"]), (400, "namespace: is not UTF-8"))


class InstancesTests(ApiTestCase):
    """
    C{GET /v1/services/{namespace}/{group}/{name}/instances}.
    """

    def test_view(self):
        """
        A service's instances: the view's hosts (every field of the model,
        as distro's own port names them), checksum and revision, the
        revision in C{X-Distro-Index} too; the same view distro's own port
        answers.
        """
        self.register("10.1.0.2", 80, cluster="east", weight=2.5, metadata={"zone": "a"})
        self.register("10.1.0.1", 80)
        code, headers, body = self.get(ORDERS + "/instances")
        self.assertEqual(code, 200)
        view = json.loads(body)
        native = self.nativeView()
        self.assertEqual(view, native)
        self.assertEqual(view["service"], {"namespace": "public", "group": "DEFAULT_GROUP", "name": "orders"})
        self.assertEqual(view["hosts"][1], {
            "ip": "10.1.0.2", "port": 80, "cluster": "east", "weight": 2.5, "healthy": True,
            "enabled": True, "metadata": {"zone": "a"}, "instance_id": "10.1.0.2#80#east",
        })
        self.assertEqual(headers["X-Distro-Index"], str(view["revision"]))
        self.assertEqual(len(view["checksum"]), 32)

    def test_filters(self):
        """
        C{clusters} (a comma list) and C{healthy=true} filter the view, as
        distro's own port filters it.
        """
        self.register("10.1.0.1", cluster="east")
        self.register("10.1.0.2", cluster="west", healthy=False)
        self.register("10.1.0.3", cluster="north")
        self.register("10.1.0.4", enabled=False)
        view = self.document("GET", ORDERS + "/instances", clusters="west,east")
        self.assertEqual(hostIds(view), ["10.1.0.1#8080#east", "10.1.0.2#8080#west"])
        self.assertEqual(view["clusters"], ["east", "west"])
        self.assertEqual(view, self.nativeView(clusters=["east", "west"]))
        view = self.document("GET", ORDERS + "/instances", healthy="true")
        self.assertEqual(hostIds(view), ["10.1.0.1#8080#east", "10.1.0.3#8080#north"])
        self.assertEqual(view, self.nativeView(healthy_only=True))
        self.assertEqual(self.document("GET", ORDERS + "/instances", healthy="false", clusters=""),
                         self.nativeView())

    def test_unknownService(self):
        """
        An unknown service answers an empty view, as distro's own port
        does: no hosts, the empty checksum, the node's latest revision.
        """
        self.register()
        view = self.document("GET", "/v1/services/public/DEFAULT_GROUP/nope/instances")
        self.assertEqual(view["hosts"], [])
        self.assertEqual(view, self.nativeView("nope"))

    def test_pathDecoded(self):
        """
        The path's parts are percent-decoded; an empty namespace is
        C{public}.
        """
        self.register(name="my orders/v2", group="g 1")
        view = self.document("GET", "/v1/services//g%201/my%20orders%2Fv2/instances")
        self.assertEqual(view["service"], {"namespace": "public", "group": "g 1", "name": "my orders/v2"})
        self.assertEqual(len(view["hosts"]), 1)

    def test_badParameters(self):
        """
        Each bad parameter, and each bad part of the path, is a 400 naming
        it; a path that is not a service's route is a 404.
        """
        for path, params, named in (
            (ORDERS + "/instances", {"clusters": "east,no way"}, "clusters[1]: must match"),
            (ORDERS + "/instances", {"healthy": "yes"}, "healthy: must be true or false"),
            ("/v1/services/public/a@@b/orders/instances", {}, "group: must not contain '@@'"),
            ("/v1/services/public/DEFAULT_GROUP/a@@b/instances", {}, "name: must not contain '@@'"),
            ("/v1/services/public//orders/instances", {}, "group: must not be empty"),
            ("/v1/services/public/DEFAULT_GROUP/%ff/instances", {}, "name: is not UTF-8"),
            ("/v1/services/" + "n" * 300 + "/DEFAULT_GROUP/orders/instances", {},
             "namespace: longer than 256 bytes"),
            (ORDERS + "/watch", {"index": "x"}, "index: must be an integer >= 0"),
            (ORDERS + "/watch", {"index": "-1"}, "index: must be an integer >= 0"),
            (ORDERS + "/watch", {"index": "٣"}, "index: must be an integer >= 0"),
            (ORDERS + "/watch", {"index": str(2**63)}, "index: must be an integer >= 0"),
            (ORDERS + "/watch", {"index": "1", "wait": "soon"}, "wait: must be a duration"),
            (ORDERS + "/watch", {"index": "1", "wait": "5d"}, "wait: must be a duration"),
            (ORDERS + "/watch", {"stream": "websocket"}, "stream: must be sse"),
        ):
            self.refused(path, 400, named, **params)
        for path in (ORDERS, ORDERS + "/nodes", ORDERS + "/instances/x", "/v1/services/a/b"):
            self.refused(path, 404, "path: not /v1/services/", **{})
        self.assertEqual(self.subscriptions(), 0)

    def test_notReady(self):
        """
        A node still loading the cluster's data refuses a view with 503,
        as distro's own port refuses it (C{NOT_READY}).
        """
        self.node.ready = False
        self.refused(ORDERS + "/instances", 503, "node: still loading")
        self.refused(ORDERS + "/watch", 503, "node: still loading", stream="sse")


class AuthTests(ApiTestCase):
    """
    On a node with auth, every read needs a credential, granted the
    namespace it reads.
    """

    def setUp(self):
        self.start(auth_tokens={"s3cret": ["public"], "ops": ["*"]})

    def test_refused(self):
        """
        Without a credential, with one not accepted, or with one not granted
        the namespace, every route is 403 naming what is wrong, and opens no
        watch.
        """
        for path, params in (
            ("/v1/members", {}),
            ("/v1/services", {}),
            (ORDERS + "/instances", {}),
            (ORDERS + "/watch", {}),
            (ORDERS + "/watch", {"stream": "sse"}),
        ):
            self.refused(path, 403, "accessToken: missing", **params)
            self.refused(path, 403, "accessToken: not accepted", accessToken="nope", **params)
        self.refused("/v1/services", 403, "namespace: not granted 'dev'", namespace="dev", accessToken="s3cret")
        self.refused("/v1/services/dev/DEFAULT_GROUP/orders/instances", 403, "namespace: not granted 'dev'",
                     accessToken="s3cret")
        self.refused("/v1/services/dev/DEFAULT_GROUP/orders/watch", 403, "namespace: not granted 'dev'",
                     accessToken="s3cret", stream="sse")
        self.assertEqual(self.subscriptions(), 0)

    def test_granted(self):
        """
        A credential granted the namespace reads it: as a parameter, an
        C{accessToken} header or a bearer header, for every route.
        """
        self.assertEqual(len(self.document("GET", "/v1/members", accessToken="s3cret")["members"]), 1)
        self.assertEqual(self.document("GET", "/v1/services", accessToken="s3cret")["count"], 0)
        self.assertEqual(self.document("GET", "/v1/services", namespace="dev", accessToken="ops")["count"], 0)
        self.assertEqual(self.document("GET", "/v1/services/dev/DEFAULT_GROUP/orders/instances",
                                       accessToken="ops")["hosts"], [])
        for header in ("accessToken: s3cret", "Authorization: Bearer s3cret"):
            code, _, _ = self.get(ORDERS + "/instances", headers=[header])
            self.assertEqual(code, 200)
        stream = self.stream(headers=("Accept: text/event-stream", "Authorization: Bearer s3cret"))
        self.assertEqual((stream.status, len(stream.views())), (200, 1))


class WaitTests(SynchronousTestCase):
    """
    A blocking query's C{wait}.
    """

    def test_parseWait(self):
        """
        A wait is milliseconds, seconds, minutes, hours or bare seconds,
        cut to L{MAX_WAIT}.
        """
        for text, seconds in (("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1.5", 1.5), ("0", 0.0),
                              ("1h", MAX_WAIT), ("10m", MAX_WAIT), ("0.25s", 0.25)):
            self.assertEqual(parseWait(text), seconds, text)
        for text in ("", "s", "1x", "-1s", "1 s", "1e3", "1m30s", "٣s"):
            self.assertRaises(HttpError, parseWait, text)


class EventStreamTests(ApiTestCase):
    """
    C{GET .../watch} as Server-Sent Events.
    """

    def test_firstViewThenChanges(self):
        """
        The whole view first, then the view at each change made through
        the node (one event per push), each with its revision as C{id}.
        """
        self.register("10.1.0.1")
        stream = self.stream()
        self.assertEqual(stream.status, 200)
        self.assertEqual(stream.headers["Content-Type"], "text/event-stream; charset=utf-8")
        self.assertEqual(stream.headers["Cache-Control"], "no-cache")
        [first] = stream.views()
        self.assertEqual(first, self.nativeView())
        self.assertEqual(self.subscriptions(), 1)
        self.register("10.1.0.2")
        [second] = stream.views()
        self.assertEqual(hostIds(second), ["10.1.0.1#8080#DEFAULT", "10.1.0.2#8080#DEFAULT"])
        self.assertGreater(second["revision"], first["revision"])
        self.assertEqual(second, self.nativeView())
        self.deregister("10.1.0.1")
        self.assertEqual([hostIds(v) for v in stream.views()], [["10.1.0.2#8080#DEFAULT"]])
        self.assertEqual(stream.views(), [])

    def test_streamParameter(self):
        """
        C{?stream=sse} asks for events without the C{Accept} header.
        """
        stream = self.stream(ORDERS + "/watch?stream=sse", headers=())
        self.assertEqual(stream.headers["Content-Type"], "text/event-stream; charset=utf-8")
        self.assertEqual(hostIds(stream.views()[0]), [])
        self.register()
        self.assertEqual(hostIds(stream.views()[0]), ["10.1.0.1#8080#DEFAULT"])

    def test_coalesced(self):
        """
        The changes of one reactor turn are one event (the pusher
        coalesces them as it does for every port).
        """
        stream = self.stream()
        stream.views()
        publisher = self.harness.client(host="10.9.9.9")
        for ip in ("10.1.0.1", "10.1.0.2"):
            publisher.send({"op": "register", "id": publisher.nextId(), "service": service(),
                            "instance": instance(ip)})
        [view] = stream.views()
        self.assertEqual(len(view["hosts"]), 2)
        self.assertEqual(self.node.pushStats().coalesced, 1)

    def test_filters(self):
        """
        A watch with C{clusters} and C{healthy=true} is told only of
        changes of what it shows.
        """
        stream = self.stream(ORDERS + "/watch?clusters=east&healthy=true")
        self.assertEqual(stream.views()[0]["clusters"], ["east"])
        self.register("10.1.0.1", cluster="west")
        self.register("10.1.0.2", cluster="east", healthy=False)
        self.assertEqual(stream.views(), [])
        self.register("10.1.0.3", cluster="east")
        [view] = stream.views()
        self.assertEqual(hostIds(view), ["10.1.0.3#8080#east"])
        self.assertEqual(view, self.nativeView(clusters=["east"], healthy_only=True))

    def test_keepAlive(self):
        """
        An idle stream is written a comment every L{KEEPALIVE} seconds, and
        neither the connection's idle timeout nor its request deadline
        ends it.
        """
        stream = self.stream()
        stream.views()
        config = self.node.config
        longest = max(config.idle_timeout_ms, config.handshake_timeout_ms) / 1000.0
        beats = int(longest * 3 // KEEPALIVE) + 1
        for _ in range(beats):
            self.clock.advance(KEEPALIVE)
        self.assertEqual(stream.items(), [": keep-alive"] * beats)
        self.assertFalse(stream.exchange.transport.disconnecting)
        self.register()
        self.assertEqual(len(stream.views()), 1)

    def test_clientLeaves(self):
        """
        A client leaving mid-watch frees everything: its subscription, its
        timers, its count against the address' limit.
        """
        before = len(self.clock.getDelayedCalls())
        stream = self.stream()
        self.assertEqual(self.subscriptions(), 1)
        stream.leave()
        self.assertEqual(self.subscriptions(), 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), before)
        self.register()
        self.clock.advance(KEEPALIVE * 2)
        self.assertEqual(len(self.clock.getDelayedCalls()), before)

    def test_slowReader(self):
        """
        While the connection cannot take more (its producer paused), a
        change waits in the pusher, no keep-alive is written, and what is
        due is sent once it can: the newest view, one event.
        """
        self.start(idle_timeout_ms=60000)
        stream = self.stream()
        stream.views()
        stream.exchange.channel.pauseProducing()
        self.register("10.1.0.1")
        self.register("10.1.0.2")
        self.clock.advance(KEEPALIVE)
        self.assertEqual(stream.items(), [])
        stream.exchange.channel.resumeProducing()
        [view] = stream.views()
        self.assertEqual(len(view["hosts"]), 2)

    def test_stalledReader(self):
        """
        A client that reads nothing for C{idle_timeout_ms} is dropped, and
        its watch freed.
        """
        self.start(idle_timeout_ms=20000)
        stream = self.stream()
        stream.exchange.channel.pauseProducing()
        self.clock.advance(19.9)
        self.assertFalse(stream.exchange.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(stream.exchange.transport.disconnected)
        self.assertEqual(self.subscriptions(), 0)
        stream.leave()

    def test_tokenExpires(self):
        """
        A stream opened with a login token ends when the token expires,
        with an C{end} event saying so.
        """
        users = {"app": {"password": hashPassword("pw", n=4), "namespaces": ["public"]}}
        self.start(auth_users=users, auth_token_ttl_ms=60000)
        login = self.node.authority.login("app", "pw")
        token = self.successResultOf(login).token
        stream = self.stream(ORDERS + f"/watch?stream=sse&accessToken={token}")
        self.assertEqual(len(stream.views()), 1)
        self.clock.advance(59)
        self.assertTrue(all(item == ": keep-alive" for item in stream.items()))
        self.clock.advance(1)
        [end] = stream.items()
        self.assertEqual(end["event"], "end")
        self.assertIn("expired", end["data"]["message"])
        self.assertTrue(stream.exchange.transport.value().endswith(b"0\r\n\r\n"))
        self.assertEqual(self.subscriptions(), 0)

    def test_head(self):
        """
        C{HEAD} opens no stream.
        """
        exchange = Exchange(self.site)
        exchange.send(b"HEAD " + ORDERS.encode() + b"/watch?stream=sse HTTP/1.1\r\nHost: n\r\n\r\n")
        self.assertTrue(exchange.transport.value().startswith(b"HTTP/1.1 200"))
        self.assertEqual(self.subscriptions(), 0)


class BlockingQueryTests(ApiTestCase):
    """
    C{GET .../watch?index=REVISION&wait=DURATION}.
    """

    def hold(self, exchange=None, **params):
        exchange = exchange or Exchange(self.site)
        path = ORDERS + "/watch?" + urllib.parse.urlencode(params)
        exchange.send(f"GET {path} HTTP/1.1\r\nHost: node\r\n\r\n".encode())
        return exchange

    def answer(self, exchange):
        self.clock.advance(0)
        if not exchange.transport.value():
            return None
        code, headers, body = exchange.response()
        self.assertEqual(code, 200, body)
        view = json.loads(body)
        self.assertEqual(headers["X-Distro-Index"], str(view["revision"]))
        # Held or not, the answer says its length (a held one is not chunked).
        self.assertEqual(headers["Content-Length"], str(len(body)))
        return view

    def test_atOnce(self):
        """
        An index that is not the view's revision is answered at once, as
        is a query without an index, or with no wait.
        """
        self.register()
        revision = self.nativeView()["revision"]
        for params in ({"index": revision - 1}, {"index": revision + 5}, {}, {"wait": "10s"},
                       {"index": revision, "wait": "0"}):
            self.assertEqual(self.answer(self.hold(**params)), self.nativeView(), params)
        self.assertEqual(self.subscriptions(), 0)

    def test_afterChange(self):
        """
        An index that is the view's revision is held until the view
        changes, then answered with the new view and its revision.
        """
        self.register("10.1.0.1")
        revision = self.nativeView()["revision"]
        exchange = self.hold(index=revision, wait="1m")
        self.assertIsNone(self.answer(exchange))
        self.assertEqual(self.subscriptions(), 1)
        self.register("10.1.0.2")
        view = self.answer(exchange)
        self.assertEqual(view, self.nativeView())
        self.assertGreater(view["revision"], revision)
        self.assertEqual(self.subscriptions(), 0)
        # The connection serves its next request.
        self.assertEqual(exchange.request("GET", "/health")[0], 200)

    def test_waitElapses(self):
        """
        Unchanged for C{wait}, the view is answered as it is; a wait longer
        than L{MAX_WAIT} is cut to it; neither the connection's idle
        timeout nor its request deadline cuts a wait short.
        """
        self.register()
        view = self.nativeView()
        exchange = self.hold(index=view["revision"], wait="2s")
        self.clock.advance(1.9)
        self.assertIsNone(self.answer(exchange))
        self.clock.advance(0.2)
        self.assertEqual(self.answer(exchange), view)
        self.assertEqual(self.subscriptions(), 0)
        exchange = self.hold(index=view["revision"], wait="1h")
        self.clock.advance(MAX_WAIT - 0.1)
        self.assertIsNone(self.answer(exchange))
        self.assertFalse(exchange.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertEqual(self.answer(exchange), view)

    def test_defaultWait(self):
        """
        Without C{wait}, a query is held 30 seconds.
        """
        view = self.nativeView()
        exchange = self.hold(index=view["revision"])
        self.clock.advance(29.9)
        self.assertIsNone(self.answer(exchange))
        self.clock.advance(0.2)
        self.assertEqual(self.answer(exchange)["revision"], view["revision"])

    def test_tokenExpires(self):
        """
        A query held with a login token is answered, at the latest, when
        the token expires.
        """
        users = {"app": {"password": hashPassword("pw", n=4), "namespaces": ["public"]}}
        self.start(auth_users=users, auth_token_ttl_ms=20000)
        token = self.successResultOf(self.node.authority.login("app", "pw")).token
        self.clock.advance(10)
        revision = self.document("GET", ORDERS + "/instances", accessToken=token)["revision"]
        exchange = self.hold(index=revision, wait="1m", accessToken=token)
        self.clock.advance(9.9)
        self.assertIsNone(self.answer(exchange))
        self.clock.advance(0.1)
        self.assertEqual(self.answer(exchange)["hosts"], [])
        self.assertEqual(self.subscriptions(), 0)

    def test_filteredChange(self):
        """
        A change the filters hide does not answer a held query.
        """
        self.register("10.1.0.1", cluster="east")
        view = self.nativeView(clusters=["east"])
        exchange = self.hold(index=view["revision"], clusters="east", healthy="true", wait="10s")
        self.register("10.1.0.2", cluster="west")
        self.register("10.1.0.3", cluster="east", healthy=False)
        self.assertIsNone(self.answer(exchange))
        self.register("10.1.0.4", cluster="east")
        self.assertEqual(hostIds(self.answer(exchange)), ["10.1.0.1#8080#east", "10.1.0.4#8080#east"])

    def test_clientLeaves(self):
        """
        A client leaving a held query frees its subscription and timer.
        """
        before = len(self.clock.getDelayedCalls())
        exchange = self.hold(index=self.nativeView()["revision"], wait="1m")
        self.assertEqual(self.subscriptions(), 1)
        exchange.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.subscriptions(), 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), before)
        self.register()
        self.clock.advance(120)
        self.assertEqual(exchange.transport.value(), b"")


class LimitTests(ApiTestCase):
    """
    Every watch held open counts against C{max_watches_per_ip}.
    """

    def setUp(self):
        self.start(max_watches_per_ip=2)

    def test_limit(self):
        """
        Past C{max_watches_per_ip} open watches of an address (streams and
        held queries together), a watch is refused with 429 naming the
        limit; another address is not; a watch ending frees its place.
        """
        revision = self.nativeView()["revision"]
        first = self.stream()
        held = Exchange(self.site)
        held.send(f"GET {ORDERS}/watch?index={revision} HTTP/1.1\r\nHost: n\r\n\r\n".encode())
        third = self.stream()
        self.assertEqual(third.status, 429)
        self.assertIn(b"max_watches_per_ip: 2 watches already open",
                      third.exchange.transport.value())
        self.refused(ORDERS + "/watch", 429, "max_watches_per_ip", index=revision)
        # What is answered at once holds nothing, and counts for nothing.
        self.assertEqual(self.document("GET", ORDERS + "/watch", index=revision + 1)["hosts"], [])
        self.assertEqual(self.stream(ip="10.0.0.8").status, 200)
        first.leave()
        self.assertEqual(self.stream().status, 200)
        self.register()
        self.clock.advance(0)
        self.assertEqual(held.response()[0], 200)
        self.assertEqual(self.stream().status, 200)
        self.assertEqual(self.stream().status, 429)


class EncodedOverTurnsTests(ApiTestCase):
    """
    A view changed much is encoded a chunk per reactor turn, for an answer
    as for a push (each slice here costs more than a turn's budget).
    """

    def setUp(self):
        self.start(turns=lambda clock: Turns(clock, timer=TickingTimer(0.003)))
        self.owner = self.harness.client(host="10.9.9.9").session.client

    def stream(self, path=ORDERS + "/watch", ip="10.0.0.7", **kwargs):
        """
        A stream read without running the clock (the test runs the turns).
        """
        return Stream(self.site, path, ip, **kwargs)

    def publish(self, count, first=0):
        """
        The owner's instances become C{count} new ones, in one step.
        """
        self.node.batchRegister(self.owner, ServiceKey("public", "DEFAULT_GROUP", "orders"), [
            model.parseInstance({"ip": f"10.2.{i // 250}.{i % 250}", "port": 80})
            for i in range(first, first + count)])

    def turnsUntil(self, written):
        """
        Run turns until C{written()} is true; return how many it took.
        """
        for turns in range(1, 50):
            nextTurn(self.clock)
            if written():
                return turns
        self.fail("never written")

    def test_answer(self):
        """
        A service's instances, its view changed much, are answered once
        encoded, over several turns.
        """
        self.publish(3000)
        exchange = Exchange(self.site)
        exchange.send(f"GET {ORDERS}/instances HTTP/1.1\r\nHost: n\r\n\r\n".encode())
        self.assertEqual(exchange.transport.value(), b"")
        self.assertGreater(self.turnsUntil(exchange.transport.value), 3)
        code, headers, body = exchange.response()
        self.assertEqual((code, len(json.loads(body)["hosts"])), (200, 3000))
        self.assertEqual(headers["Content-Length"], str(len(body)))

    def test_clientLeftWhileEncoded(self):
        """
        A client that left while its answer was encoded is written
        nothing, and opens no watch.
        """
        for first, path in ((0, "/instances"), (3000, "/watch?stream=sse")):
            self.publish(3000, first)
            exchange = Exchange(self.site)
            exchange.send(f"GET {ORDERS}{path} HTTP/1.1\r\nHost: n\r\n\r\n".encode())
            nextTurn(self.clock)
            exchange.channel.connectionLost(Failure(ConnectionDone()))
            for _ in range(20):
                nextTurn(self.clock)
            self.assertEqual(exchange.transport.value(), b"")
        self.assertEqual(self.subscriptions(), 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_push(self):
        """
        A change of many hosts is an event once encoded, over several turns.
        """
        stream = self.stream()
        self.assertEqual(len(stream.views()), 1)
        before = stream.body()
        self.publish(3000)
        self.assertGreater(self.turnsUntil(lambda: stream.body() != before), 3)
        [view] = stream.views()
        self.assertEqual(len(view["hosts"]), 3000)

    def test_newerViewSupersedes(self):
        """
        A view given while an older one is encoded is the one sent, alone.
        """
        stream = self.stream()
        stream.views()
        self.publish(3000)
        nextTurn(self.clock)
        nextTurn(self.clock)
        self.assertEqual(stream.items(), [])
        before = stream.body()
        self.publish(600, first=3000)
        self.turnsUntil(lambda: stream.body() != before)
        [view] = stream.views()
        ips = sorted(h["ip"] for h in view["hosts"])
        self.assertEqual((len(ips), ips[0]), (600, "10.2.12.0"))
        for _ in range(20):
            nextTurn(self.clock)
        self.assertEqual(stream.items(), [])

    def test_blockingQuery(self):
        """
        A held query is answered with a view changed much once it is
        encoded, over several turns.
        """
        revision = self.document("GET", ORDERS + "/instances")["revision"]
        exchange = Exchange(self.site)
        exchange.send(f"GET {ORDERS}/watch?index={revision} HTTP/1.1\r\nHost: n\r\n\r\n".encode())
        self.publish(3000)
        self.assertGreater(self.turnsUntil(exchange.transport.value), 3)
        code, _, body = exchange.response()
        self.assertEqual((code, len(json.loads(body)["hosts"])), (200, 3000))
        self.assertEqual(self.subscriptions(), 0)

    def test_waitEndsWhileEncoded(self):
        """
        A held query whose wait ends while a change is encoded is answered
        with the changed view once encoded, once.
        """
        revision = self.document("GET", ORDERS + "/instances")["revision"]
        exchange = Exchange(self.site)
        exchange.send(f"GET {ORDERS}/watch?index={revision}&wait=1s HTTP/1.1\r\nHost: n\r\n\r\n".encode())
        self.publish(3000)
        nextTurn(self.clock)
        # The wait ends: its timer is due in the next turn, with a slice.
        self.clock.rightNow += 1
        nextTurn(self.clock)
        self.assertEqual(exchange.transport.value(), b"")
        self.assertGreater(self.turnsUntil(exchange.transport.value), 2)
        code, _, body = exchange.response()
        self.assertEqual((code, len(json.loads(body)["hosts"])), (200, 3000))
        for _ in range(20):
            nextTurn(self.clock)
        self.assertEqual(exchange.transport.value(), b"")

    def test_streamEndsWhileEncoded(self):
        """
        A stream whose client leaves while a push is encoded writes
        nothing more.
        """
        stream = self.stream()
        stream.views()
        self.publish(3000)
        nextTurn(self.clock)
        nextTurn(self.clock)
        stream.leave()
        before = stream.exchange.transport.value()
        for _ in range(20):
            nextTurn(self.clock)
        self.assertEqual(stream.exchange.transport.value(), before)
        self.assertEqual(self.subscriptions(), 0)
