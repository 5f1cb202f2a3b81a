"""
Tests for L{distro.http}: the HTTP port's requests, spoken byte by byte to
its real site over a L{StringTransport} on the node's clock (a real node
process answering over a socket: L{tests.process.test_http}).
"""

import json
import urllib.parse

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.auth import hashPassword
from distro.http.channel import MAX_BODY
from distro.http.service import HttpService
from distro.interfaces import IFrontEnd

from ._http import Exchange
from ._node import NodeHarness

USERS = {
    "app": {"password": hashPassword("app-pw", n=4), "namespaces": ["public"]},
    "root": {"password": hashPassword("root-pw", n=4), "namespaces": ["*"], "admin": True},
}


class HttpTestCase(SynchronousTestCase):
    def setUp(self):
        self.start()

    def start(self, **config):
        self.harness = NodeHarness(**config)
        self.node = self.harness.node
        self.service = HttpService(self.node, None)
        self.site = self.service.site

    def startHashingLater(self, **config):
        """
        Like L{start}, with password checks that end when the test fires
        the L{Deferred}s of C{self.hashing}.
        """
        self.hashing = []

        def later(function, *args):
            d = defer.Deferred()
            self.hashing.append((d, function, args))
            return d

        self.harness = NodeHarness(hasher=later, **config)
        self.node = self.harness.node
        self.service = HttpService(self.node, None)
        self.site = self.service.site

    def ask(self, method, path, body=b"", **params):
        if params:
            encoded = urllib.parse.urlencode(params)
            if method == "GET":
                path += "?" + encoded
            else:
                body = encoded.encode()
        return Exchange(self.site).request(method, path, body)

    def document(self, method, path, status=200, **params):
        code, headers, body = self.ask(method, path, **params)
        self.assertEqual(code, status, body)
        self.assertTrue(headers["Content-Type"].startswith("application/json"), headers)
        return json.loads(body)


class HealthTests(HttpTestCase):
    def test_frontEnd(self):
        verifyObject(IFrontEnd, self.service)
        self.assertEqual(self.service.connectionCount(), 0)
        Exchange(self.site)
        self.assertEqual(self.service.connectionCount(), 1)

    def test_health(self):
        self.assertEqual(self.document("GET", "/health")["status"], "UP")
        self.node.portOpened(self.service)
        # Each exchange is a connection kept open: this one and the first.
        self.assertEqual(
            self.document("GET", "/health")["ports"],
            [{"name": "http", "address": None, "connections": 2}],
        )
        self.assertEqual(self.document("GET", "/nacos/v1/ns/operator/metrics"), {"status": "UP"})
        self.assertEqual(self.document("GET", "/nacos/v3/admin/core/state/liveness")["data"], "ok")

    def test_healthWithAuthListsNoPorts(self):
        """
        On a node with auth, health (which anyone may ask) does not say where
        the ports are nor how busy.
        """
        self.start(auth_tokens={"s3cret": ["public"]})
        self.node.portOpened(self.service)
        self.assertEqual(self.document("GET", "/health"), {"status": "UP", "node": self.node.nodeId})

    def test_ready(self):
        """
        While the node loads cluster data, C{/ready} is 503 with the reason
        (and Nacos' readiness 500); then 200.
        """
        self.node.ready = False
        document = self.document("GET", "/ready", 503)
        self.assertEqual((document["status"], document["reason"]), ("DOWN", "loading cluster data"))
        self.assertIn("not ready", self.document("GET", "/nacos/v3/admin/core/state/readiness", 500)["message"])
        self.node.ready = True
        self.assertEqual(self.document("GET", "/ready")["status"], "UP")
        self.assertEqual(self.document("GET", "/nacos/v3/admin/core/state/readiness")["data"], "ok")

    def test_draining(self):
        """
        A draining node (stopping) is not ready: C{/ready} is 503 with the
        reason, Nacos' readiness 500, though it still serves reads.
        """
        self.successResultOf(self.node.drain())  # no session: at once
        document = self.document("GET", "/ready", 503)
        self.assertEqual((document["status"], document["reason"]), ("DOWN", "draining"))
        self.assertIn("draining", self.document("GET", "/nacos/v3/admin/core/state/readiness", 500)["message"])
        self.assertTrue(self.node.ready)

    def test_unknown(self):
        self.assertEqual(self.document("GET", "/nope", 404)["code"], 404)
        code, headers, _ = self.ask("DELETE", "/health")
        self.assertEqual((code, headers["Allow"]), (405, "GET, HEAD"))

    def test_head(self):
        """
        C{HEAD} is answered as C{GET}, without the body (load balancers'
        probes; found in review).
        """
        exchange = Exchange(self.site)
        exchange.send(b"HEAD /health HTTP/1.1\r\nHost: n\r\n\r\n")
        raw = exchange.transport.value()
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n"), raw)


class LoginTests(HttpTestCase):
    PATHS = ("/nacos/v1/auth/users/login", "/nacos/v3/auth/user/login")

    def test_open(self):
        """
        A node without credentials answers any login, so that SDKs
        configured with a user start quietly.
        """
        for path in self.PATHS:
            document = self.document("POST", path, username="nacos", password="nacos")
            self.assertEqual((document["tokenTtl"], document["globalAdmin"]), (18000, True))

    def test_login(self):
        """
        A user's login answers a token every port accepts, with its
        lifetime in seconds and whether the user is an administrator, from
        the form body or the query string.
        """
        self.start(auth_users=USERS)
        for path in self.PATHS:
            document = self.document("POST", path, username="app", password="app-pw")
            self.assertEqual((document["tokenTtl"], document["globalAdmin"]), (18000, False))
            self.assertEqual(self.node.authority.grant(document["accessToken"]).subject, "app")
        code, _, body = Exchange(self.site).request(
            "POST", "/nacos/v1/auth/users/login?username=root&password=root-pw")
        self.assertEqual((code, json.loads(body)["globalAdmin"]), (200, True))

    def test_refused(self):
        """
        A wrong password or user is 403; a missing or undecodable
        parameter 400 naming it. v1 answers in text as Nacos does, v3 in
        JSON.
        """
        self.start(auth_users=USERS)
        code, headers, body = self.ask("POST", self.PATHS[0], username="app", password="wrong")
        self.assertEqual((code, headers["Content-Type"][:10]), (403, "text/plain"))
        self.assertNotIn(b"wrong", body)
        self.assertEqual(self.document("POST", self.PATHS[1], 403, username="x", password="y")["code"], 403)
        for path in self.PATHS:
            self.assertIn(b"password: is required", self.ask("POST", path, username="app")[2])
            self.assertIn(b"username: is required", self.ask("POST", path, password="app-pw")[2])
        code, _, body = Exchange(self.site).request("POST", self.PATHS[0], b"username=%ff&password=x")
        self.assertEqual((code, body), (400, b"username: is not UTF-8"))

    def test_pipelinedLoginNotCutOff(self):
        """
        A pipelined request being handled (a login checking its password)
        is not held to the next request's deadline (found in review).
        """
        self.startHashingLater(auth_users=USERS)
        exchange = Exchange(self.site)
        login = (b"POST /nacos/v1/auth/users/login?username=app&password=app-pw HTTP/1.1\r\n"
                 b"Host: n\r\nContent-Length: 0\r\n\r\n")
        exchange.send(login + login.replace(b"app-pw", b"other"))
        d, function, args = self.hashing.pop(0)
        d.callback(function(*args))
        self.harness.clock.advance(self.node.config.handshake_timeout_ms / 1000.0 + 1)
        self.assertFalse(exchange.transport.disconnected)
        d, function, args = self.hashing.pop(0)
        d.callback(function(*args))
        self.assertIn(b" 403 ", exchange.transport.value())

    def test_loginsPerAddress(self):
        """
        At most C{MAX_LOGINS_PER_IP} logins of one address are checked at
        once; past it 503, while other addresses log in.
        """
        from distro.http.logins import MAX_LOGINS_PER_IP

        self.startHashingLater(auth_users=USERS)
        login = (b"POST /nacos/v1/auth/users/login?username=app&password=x HTTP/1.1\r\n"
                 b"Host: n\r\nContent-Length: 0\r\n\r\n")
        for _ in range(MAX_LOGINS_PER_IP):
            Exchange(self.site).send(login)
        refused = Exchange(self.site)
        refused.send(login)
        self.assertEqual(refused.response()[0], 503)
        Exchange(self.site, "10.0.0.8").send(login)
        self.assertEqual(len(self.hashing), MAX_LOGINS_PER_IP + 1)
        d, function, args = self.hashing.pop(0)
        d.callback(function(*args))
        again = Exchange(self.site)
        again.send(login)
        self.assertEqual(len(self.hashing), MAX_LOGINS_PER_IP + 1)

    def test_clientLeftDuringLogin(self):
        """
        A client that leaves while its password is checked is written
        nothing, and the login's end harms nothing; another waits for its
        own.
        """
        self.startHashingLater(auth_users=USERS)
        leaving, staying = Exchange(self.site), Exchange(self.site)
        for exchange in (leaving, staying):
            exchange.send(b"POST /nacos/v1/auth/users/login?username=app&password=app-pw HTTP/1.1\r\n"
                          b"Host: n\r\nContent-Length: 0\r\n\r\n")
        leaving.channel.connectionLost(Failure(ConnectionDone()))
        for d, function, args in self.hashing:
            d.callback(function(*args))
        self.assertEqual(leaving.transport.value(), b"")
        self.assertEqual(staying.response()[0], 200)


class FormTests(HttpTestCase):
    def test_formBodyOfEveryMethod(self):
        """
        A form body is read whatever the method (Twisted reads a POST's
        alone; Nacos' SDKs send PUT and DELETE forms, scripts even GET
        ones), after the query string's values.
        """
        from twisted.web import server

        seen = []
        # What the request's resource is given (the site's own processing
        # replaced by a look at it).
        self.patch(server.Request, "process", lambda request: seen.append(dict(request.args)))
        for method in ("PUT", "DELETE", "GET", "PATCH"):
            exchange = Exchange(self.site)
            exchange.send(f"{method} /x?a=1 HTTP/1.1\r\nHost: n\r\nContent-Type: application/x-www-form-urlencoded;"
                          " charset=UTF-8\r\nContent-Length: 10\r\n\r\na=2&b=3&c=".encode())
            self.assertEqual(seen.pop(), {b"a": [b"1", b"2"], b"b": [b"3"], b"c": [b""]}, method)


class BoundsTests(HttpTestCase):
    """
    Nothing a client sends makes the port hold memory or a connection
    without bound.
    """

    def test_largeBody(self):
        exchange = Exchange(self.site)
        exchange.send(b"POST /nacos/v1/auth/users/login HTTP/1.1\r\nHost: n\r\n"
                      b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        code, _, body = exchange.response()
        self.assertEqual((code, exchange.transport.disconnecting), (413, True))
        self.assertIn(b"request body", body)

    def test_largeBodyExpectingContinue(self):
        """
        A client that asks to send a body too large is refused, and not
        then told to go on (found in review).
        """
        exchange = Exchange(self.site)
        exchange.send(b"POST /nacos/v1/auth/users/login HTTP/1.1\r\nHost: n\r\nExpect: 100-continue\r\n"
                      b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        raw = exchange.transport.value()
        self.assertTrue(raw.startswith(b"HTTP/1.1 413"), raw)
        self.assertNotIn(b"100 Continue", raw)

    def test_largeChunkedBody(self):
        exchange = Exchange(self.site)
        exchange.send(b"POST /nacos/v1/auth/users/login HTTP/1.1\r\nHost: n\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        for _ in range(MAX_BODY // len(chunk) + 1):
            exchange.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.assertEqual((exchange.response()[0], exchange.transport.disconnecting), (413, True))

    def test_slowRequest(self):
        """
        A request that has not arrived whole within C{handshake_timeout_ms}
        (a slowloris trickling its headers) is dropped; a keep-alive
        connection gets the same time for each request.
        """
        exchange = Exchange(self.site)
        self.assertEqual(exchange.request("GET", "/health")[0], 200)
        step = self.node.config.handshake_timeout_ms / 10000.0
        exchange.send(b"GET /health HTTP/1.1\r\n")
        for n in range(9):
            self.harness.clock.advance(step)
            exchange.send(b"X-%d: y\r\n" % n)
        self.assertFalse(exchange.transport.disconnected)
        self.harness.clock.advance(step)
        self.assertTrue(exchange.transport.disconnected)

    def test_connectionsPerIp(self):
        self.start(max_connections_per_ip=2)
        first, second = Exchange(self.site), Exchange(self.site)
        self.assertIsNone(Exchange(self.site).channel)
        self.assertIsNotNone(Exchange(self.site, "10.0.0.8").channel)
        first.channel.connectionLost(None)
        self.assertIsNotNone(Exchange(self.site).channel)
        self.assertEqual(second.request("GET", "/health")[0], 200)
