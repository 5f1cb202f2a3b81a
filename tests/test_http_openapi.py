"""
Tests for L{distro.http.openapi}: Nacos' open API for heartbeat clients'
writes, v1 and the v3 client API, spoken byte by byte to the node's real
HTTP site (L{tests.process.test_heartbeat_clients} drives a real Nacos
client at real nodes).
"""

import json
import urllib.parse

from distro.heartbeats import CHECK_EVERY
from distro.model import ServiceKey

from ._http import Exchange
from .test_http import HttpTestCase

V1 = "/nacos/v1/ns/instance"
BEAT = "/nacos/v1/ns/instance/beat"
V3 = "/nacos/v3/client/ns/instance"
ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")


class OpenApiTestCase(HttpTestCase):
    def start(self, **config):
        super().start(**config)
        self.clock = self.harness.clock
        self.addCleanup(self.node.stop)

    def ask(self, method, path, query=None, **params):
        """
        A request with C{params} as a form body, and C{query} (a dict) as
        its query string.
        """
        if query:
            path += "?" + urllib.parse.urlencode(query)
        body = urllib.parse.urlencode(params).encode()
        code, headers, body = Exchange(self.site).request(method, path, body)
        return code, body

    def hosts(self, service=ORDERS):
        return self.node.serviceInfo(service).hosts

    def wait(self, seconds):
        for _ in range(int(seconds / CHECK_EVERY)):
            self.clock.advance(CHECK_EVERY)


class V1Tests(OpenApiTestCase):
    def test_registerAsTheSdkSends(self):
        """
        What nacos-sdk-python 1.0 sends (Python's C{True}, C{enable},
        C{metadata} as JSON, the unset cluster as C{None}) registers the
        instance; the answer is Nacos' C{ok}.
        """
        code, body = self.ask("POST", V1, query=dict(
            ip="10.0.0.1", port=8080, serviceName="orders", weight=2.5, enable=True, healthy=True,
            clusterName=None, ephemeral=True, groupName="DEFAULT_GROUP",
            metadata=json.dumps({"zone": "a", "n": 1})))
        self.assertEqual((code, body), (200, b"ok"))
        (host,) = self.hosts()
        self.assertEqual((host.ip, host.port, host.cluster, host.weight, host.healthy, host.enabled),
                         ("10.0.0.1", 8080, "None", 2.5, True, True))
        self.assertEqual(host.metadata, {"zone": "a", "n": "1"})

    def test_spellings(self):
        """
        C{group@@name}, C{namespaceId}, C{cluster} for C{clusterName},
        C{enabled} before C{enable}, Nacos' boolean words in any case,
        metadata as C{k=v,k=v}.
        """
        code, _ = self.ask("POST", V1, serviceName="pay@@orders", namespaceId="dev", ip="10.0.0.2",
                           port="81", cluster="east", enabled="ON", enable="false", healthy="n",
                           metadata="a=1, b = 2")
        self.assertEqual(code, 200)
        (host,) = self.hosts(ServiceKey("dev", "pay", "orders"))
        self.assertEqual((host.cluster, host.enabled, host.healthy, host.metadata),
                         ("east", True, False, {"a": "1", "b": "2"}))
        # Disabled: held, shown to nobody.
        self.ask("POST", V1, serviceName="pay@@orders", namespaceId="dev", ip="10.0.0.2", port="81",
                 enable="False")
        self.assertEqual(self.hosts(ServiceKey("dev", "pay", "orders")), [])
        self.assertEqual(self.node.counts()["instances"], 1)

    def test_updateAndDeregisterWithFormBodies(self):
        """
        C{PUT} and C{DELETE} read a form body as C{POST} does.
        """
        self.ask("POST", V1, serviceName="orders", ip="10.0.0.1", port="80")
        self.assertEqual(self.ask("PUT", V1, serviceName="orders", ip="10.0.0.1", port="80", weight="7"),
                         (200, b"ok"))
        self.assertEqual(self.hosts()[0].weight, 7.0)
        self.assertEqual(self.ask("DELETE", V1, serviceName="orders", ip="10.0.0.1", port="80"), (200, b"ok"))
        self.assertEqual(self.hosts(), [])
        # Deregistering what is not there is no error, as in Nacos.
        self.assertEqual(self.ask("DELETE", V1, serviceName="orders", ip="10.0.0.1", port="80"), (200, b"ok"))

    def test_updateOfUnknown(self):
        code, body = self.ask("PUT", V1, serviceName="orders", ip="10.0.0.1", port="80")
        self.assertEqual(code, 404)
        self.assertIn(b"not registered", body)

    def test_beatAsTheSdkSends(self):
        """
        The SDK's beat (its instance as JSON in C{beat}, the service as
        C{group@@name}) answers Nacos' beat document; for an instance the
        client does not hold, it registers it.
        """
        beat = json.dumps({"serviceName": "DEFAULT_GROUP@@orders", "ip": "10.0.0.1", "port": 8080,
                           "weight": 1.0, "ephemeral": True, "metadata": {"k": "v"}})
        code, body = self.ask("PUT", BEAT, query=dict(serviceName="DEFAULT_GROUP@@orders", beat=beat,
                                                      groupName="DEFAULT_GROUP"))
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body), {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True})
        (host,) = self.hosts()
        self.assertEqual((host.ip, host.metadata), ("10.0.0.1", {"k": "v"}))

    def test_lightBeat(self):
        """
        A beat naming C{ip} and C{port} keeps the instance healthy; of an
        instance not held it answers C{20404}, so the client registers
        again.
        """
        code, body = self.ask("PUT", BEAT, serviceName="orders", ip="10.0.0.1", port="80")
        self.assertEqual(json.loads(body)["code"], 20404)
        self.ask("POST", V1, serviceName="orders", ip="10.0.0.1", port="80",
                 metadata=json.dumps({"preserved.heart.beat.interval": "1000"}))
        for _ in range(5):
            self.wait(10)
            code, body = self.ask("PUT", BEAT, serviceName="orders", ip="10.0.0.1", port="80")
            self.assertEqual(json.loads(body), {"clientBeatInterval": 1000, "code": 10200,
                                                "lightBeatEnabled": True})
        self.assertTrue(self.hosts()[0].healthy)
        self.wait(30)
        self.assertEqual(self.hosts(), [])

    def test_badParameters(self):
        """
        Every bad parameter is a 400 naming it, as text (Nacos' v1); nothing
        is registered.
        """
        good = dict(serviceName="orders", ip="10.0.0.1", port="80")
        for change, named in (
            ({"serviceName": None}, b"serviceName"), ({"serviceName": ""}, b"serviceName"),
            ({"ip": None}, b"ip"), ({"ip": "300.1.1.1"}, b"ip"), ({"port": "x"}, b"port"),
            ({"port": "70000"}, b"port"), ({"port": None}, b"port"), ({"port": "\u0661"}, b"port"),
            ({"weight": "heavy"}, b"weight"),
            ({"weight": "-1"}, b"weight"), ({"healthy": "maybe"}, b"healthy"),
            ({"enabled": "2"}, b"enabled"), ({"ephemeral": "maybe"}, b"ephemeral"),
            ({"ephemeral": "false"}, b"ephemeral"), ({"metadata": "[1,2]"}, b"metadata"),
            ({"metadata": "{\"a\": \"" + "x" * 9000 + "\"}"}, b"max_metadata_bytes"),
            ({"clusterName": "a b"}, b"cluster"), ({"groupName": "@@"}, b"group"),
        ):
            params = {k: v for k, v in dict(good, **change).items() if v is not None}
            code, body = self.ask("POST", V1, **params)
            self.assertIn(code, (400, 503), (change, body))
            self.assertIn(named, body, change)
        for change, named in (({"beat": "{"}, b"beat"), ({"beat": "[]"}, b"beat"),
                              ({"beat": json.dumps({"ip": "10.0.0.1", "port": 0})}, b"port"),
                              ({"beat": json.dumps({"ip": "10.0.0.1", "port": 1, "metadata": 3})},
                               b"metadata")):
            code, body = self.ask("PUT", BEAT, serviceName="orders", **change)
            self.assertEqual(code, 400, change)
            self.assertIn(named, body, change)
        self.assertEqual(self.node.counts()["instances"], 0)


class V3Tests(OpenApiTestCase):
    def test_registerBeatDeregister(self):
        """
        The v3 client API answers Nacos 3's C{Result}: a register, a beat
        (C{heartBeat=true}), a deregister; a beat of an instance not held
        is C{21003}.
        """
        ok = {"code": 0, "message": "success", "data": "ok"}
        params = dict(serviceName="orders", ip="10.0.0.1", port="80")
        code, body = self.ask("POST", V3, heartBeat="true", **params)
        self.assertEqual((code, json.loads(body)), (200, {"code": 21003, "message": "instance not found",
                                                          "data": None}))
        code, body = self.ask("POST", V3, **params)
        self.assertEqual((code, json.loads(body)), (200, ok))
        self.wait(14)
        code, body = self.ask("POST", V3, heartBeat="true", **params)
        self.assertEqual(json.loads(body), ok)
        self.wait(14)
        self.assertTrue(self.hosts()[0].healthy)
        code, body = self.ask("DELETE", V3, **params)
        self.assertEqual(json.loads(body), ok)
        self.assertEqual(self.hosts(), [])

    def test_badParameters(self):
        """
        A refusal is Nacos 3's, the reason in C{data}: a parameter missing,
        one not valid, a credential refused.
        """
        for params, status, expected in (
            (dict(serviceName="orders", ip="10.0.0.1"), 400,
             {"code": 10000, "message": "parameter missing", "data": "Param 'port' is required."}),
            (dict(serviceName="orders", ip="10.0.0.1", port="x"), 400,
             {"code": 20002, "message": "parameter validate error", "data": "port: must be an integer 1..65535"}),
            (dict(serviceName="orders", ip="10.0.0.1", port="1", namespaceId="dev"), 200, None),
        ):
            for method in ("POST", "DELETE"):
                code, body = self.ask(method, V3, **params)
                self.assertEqual(code, status, body)
                if expected is not None:
                    self.assertEqual(json.loads(body), expected)


class AuthTests(OpenApiTestCase):
    def setUp(self):
        self.start(auth_tokens={"s3cret": ["public"]})

    def test_credentialChecked(self):
        """
        Every write needs a credential granted the namespace: 403 naming
        what was wrong otherwise.
        """
        params = dict(serviceName="orders", ip="10.0.0.1", port="80")
        for path, method in ((V1, "POST"), (V1, "PUT"), (V1, "DELETE"), (BEAT, "PUT"), (V3, "POST"),
                             (V3, "DELETE")):
            for extra, named in (({}, b"accessToken"), ({"accessToken": "nope"}, b"accessToken"),
                                 ({"accessToken": "s3cret", "namespaceId": "dev"}, b"namespaceId")):
                code, body = self.ask(method, path, **params, **extra)
                self.assertEqual(code, 403, (path, method, extra))
                self.assertIn(named, body)
        self.assertEqual(self.ask("POST", V1, accessToken="s3cret", **params), (200, b"ok"))

    def test_headerToken(self):
        """
        The token may come as an C{accessToken} or a bearer header.
        """
        body = b"serviceName=orders&ip=10.0.0.1&port=80"
        for header in ("accessToken: s3cret", "Authorization: Bearer s3cret"):
            self.assertEqual(Exchange(self.site).request("POST", V1, body, [header])[0], 200)
