"""
Tests for L{distro.http.naming}: Nacos' open API reads over HTTP, each body
compared field by field with what a Nacos server answers, spoken to the
node's real site over a L{StringTransport} on its clock.
"""

import json
import urllib.parse

from distro.model import ServiceKey

from ._factories import instance
from ._http import Exchange
from ._node import service
from .test_http import HttpTestCase

LIST = "/nacos/v1/ns/instance/list"
DETAIL = "/nacos/v1/ns/instance"
SERVICES = "/nacos/v1/ns/service/list"
LIST_V3 = "/nacos/v3/client/ns/instance/list"
JSON = "application/json; charset=utf-8"


def nacosHost(ip, port, cluster="DEFAULT", grouped="DEFAULT_GROUP@@orders", metadata=None, weight=1.0,
              healthy=True, interval=5000, timeout=15000, delete=30000, generator="simple"):
    """
    A host as a Nacos server's HTTP answers show it (its Instance as
    Jackson writes it, getters included).
    """
    value = {
        "instanceId": f"{ip}#{port}#{cluster}#{grouped}",
        "ip": ip,
        "port": port,
        "weight": weight,
        "healthy": healthy,
        "enabled": True,
        "ephemeral": True,
        "clusterName": cluster,
        "serviceName": grouped,
        "metadata": metadata or {},
        "instanceHeartBeatInterval": interval,
        "instanceHeartBeatTimeOut": timeout,
        "ipDeleteTimeout": delete,
    }
    if generator is not None:
        value["instanceIdGenerator"] = generator
    return value


class NamingTestCase(HttpTestCase):
    """
    A node with its HTTP site, and a msgpack client that publishes.
    """

    def start(self, **config):
        super().start(**config)
        self.publisher = self.harness.client(**({"token": "s3cret"} if "auth_tokens" in config else {}))

    def publish(self, name="orders", **fields):
        """
        Register an instance (L{instance}'s C{fields}) in C{name}, with
        C{group} and C{namespace} among C{fields} naming its service.
        """
        key = {k: fields.pop(k) for k in ("group", "namespace") if k in fields}
        self.publisher.ok("register", service=service(name, **key), instance=instance(**fields))

    def exchange(self, path, method="GET", body=b"", headers=(), **params):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        return Exchange(self.site).request(method, path, body, headers, clock=self.harness.clock)

    def read(self, path, status=200, **params):
        code, headers, body = self.exchange(path, **params)
        self.assertEqual(code, status, body)
        self.assertEqual(headers["Content-Type"], JSON)
        return json.loads(body)

    def refused(self, path, status=400, **params):
        """
        The text of a refusal (Nacos' v1 paths answer in text).
        """
        code, headers, body = self.exchange(path, **params)
        self.assertEqual(code, status, body)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"), headers)
        return body.decode()


class InstanceListTests(NamingTestCase):
    """
    C{GET /nacos/v1/ns/instance/list}.
    """

    def test_body(self):
        """
        The body is Nacos' v1 C{ServiceInfo}: C{name} grouped beside
        C{groupName}, and each host with its instance id and heartbeat
        settings (the instance's C{preserved.*} metadata, else Nacos'
        defaults; C{instanceIdGenerator} absent when the metadata is not
        empty and lacks it, as Nacos' getter gives null).
        """
        metadata = {"preserved.heart.beat.interval": "1000", "preserved.heart.beat.timeout": "3000",
                    "preserved.ip.delete.timeout": "x9", "zone": "a"}
        self.publish(ip="10.0.0.1", port=80, cluster="a", metadata=metadata, weight=2.5)
        self.publish(ip="10.0.0.2", port=81, metadata={"preserved.instance.id.generator": "snowflake"})
        self.publish(ip="10.0.0.3", port=82, healthy=False)
        body = self.read(LIST, serviceName="DEFAULT_GROUP@@orders")
        info = self.node.serviceInfo(ServiceKey("public", "DEFAULT_GROUP", "orders"))
        self.assertIsInstance(body.pop("lastRefTime"), int)
        self.assertEqual(body, {
            "name": "DEFAULT_GROUP@@orders",
            "groupName": "DEFAULT_GROUP",
            "clusters": "",
            "cacheMillis": 10000,
            "hosts": [
                nacosHost("10.0.0.1", 80, "a", metadata=metadata, weight=2.5, interval=1000, timeout=3000,
                          generator=None),
                nacosHost("10.0.0.2", 81, metadata={"preserved.instance.id.generator": "snowflake"},
                          generator="snowflake"),
                nacosHost("10.0.0.3", 82, healthy=False),
            ],
            "checksum": info.checksum,
            "allIPs": False,
            "reachProtectionThreshold": False,
            "valid": True,
        })

    def test_lastRefTimeGrows(self):
        """
        Every answer's C{lastRefTime} (milliseconds of the node's clock) is
        above the last one given, whatever the clock says.
        """
        self.harness.clock.advance(5)
        first = self.read(LIST, serviceName="orders")["lastRefTime"]
        second = self.read(LIST, serviceName="orders")["lastRefTime"]
        self.assertEqual(first, 5000)
        self.assertEqual(second, 5001)

    def test_serviceForms(self):
        """
        C{serviceName} names a service as C{group@@name}, or a name in
        C{groupName} (blank: C{DEFAULT_GROUP}), trimmed; C{group@@name}
        wins over C{groupName}. The answer names it grouped.
        """
        self.publish(ip="10.0.0.1", group="g")
        self.publish(ip="10.0.0.2")
        self.publish(ip="10.0.0.3", namespace="dev")
        for params, ip, name in (
            ({"serviceName": "g@@orders"}, "10.0.0.1", "g@@orders"),
            ({"serviceName": "orders", "groupName": "g"}, "10.0.0.1", "g@@orders"),
            ({"serviceName": " g@@orders ", "groupName": "other"}, "10.0.0.1", "g@@orders"),
            ({"serviceName": "orders"}, "10.0.0.2", "DEFAULT_GROUP@@orders"),
            ({"serviceName": "orders", "groupName": " "}, "10.0.0.2", "DEFAULT_GROUP@@orders"),
            ({"serviceName": "orders", "namespaceId": ""}, "10.0.0.2", "DEFAULT_GROUP@@orders"),
            ({"serviceName": "orders", "namespaceId": "public"}, "10.0.0.2", "DEFAULT_GROUP@@orders"),
            ({"serviceName": "orders", "namespaceId": "dev"}, "10.0.0.3", "DEFAULT_GROUP@@orders"),
        ):
            body = self.read(LIST, **params)
            self.assertEqual(body["name"], name, params)
            self.assertEqual(body["groupName"], name.split("@@")[0], params)
            self.assertEqual([h["ip"] for h in body["hosts"]], [ip], params)
            self.assertEqual(body["hosts"][0]["serviceName"], name, params)

    def test_heartbeatClientListed(self):
        """
        An instance registered over HTTP (a heartbeat client) is listed
        like any other, its heartbeat settings from its metadata.
        """
        code, _, body = self.exchange(DETAIL, method="POST", body=urllib.parse.urlencode({
            "serviceName": "g@@orders", "ip": "10.0.0.8", "port": "80",
            "metadata": json.dumps({"preserved.heart.beat.interval": "2000"})}).encode())
        self.assertEqual((code, body), (200, b"ok"))
        [host] = self.read(LIST, serviceName="orders", groupName="g")["hosts"]
        self.assertEqual(host, nacosHost("10.0.0.8", 80, grouped="g@@orders", interval=2000, generator=None,
                                         metadata={"preserved.heart.beat.interval": "2000"}))

    def test_unknownService(self):
        """
        A service nobody publishes is an empty list, not an error.
        """
        body = self.read(LIST, serviceName="nobody", groupName="g")
        self.assertEqual((body["name"], body["groupName"], body["hosts"]), ("g@@nobody", "g", []))

    def test_filters(self):
        """
        C{clusters} (comma-separated, echoed as given) and C{healthyOnly}
        (C{true} in any case, as Java's parseBoolean reads it; anything
        else is false) filter; disabled instances are never listed.
        """
        self.publish(ip="10.0.0.1", cluster="a")
        self.publish(ip="10.0.0.2", cluster="b", healthy=False)
        self.publish(ip="10.0.0.3", cluster="c")
        self.publish(ip="10.0.0.4", cluster="a", enabled=False)
        for params, ips in (
            ({}, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
            ({"clusters": "a,b"}, ["10.0.0.1", "10.0.0.2"]),
            ({"clusters": "a, b"}, ["10.0.0.1", "10.0.0.2"]),
            ({"clusters": "b", "healthyOnly": "true"}, []),
            ({"healthyOnly": True}, ["10.0.0.1", "10.0.0.3"]),
            ({"healthyOnly": "TRUE"}, ["10.0.0.1", "10.0.0.3"]),
            ({"healthyOnly": False}, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
            ({"healthyOnly": "yes"}, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
            ({"healthyOnly": ""}, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        ):
            body = self.read(LIST, serviceName="orders", **params)
            self.assertEqual([h["ip"] for h in body["hosts"]], ips, params)
        self.assertEqual(self.read(LIST, serviceName="orders", clusters="a, b")["clusters"], "a,b")

    def test_formBody(self):
        """
        Parameters come from the query string or a form body, whatever the
        method (a GET with a form, as some clients send); the query
        string's come first.
        """
        self.publish(ip="10.0.0.1", group="g")
        code, _, body = self.exchange(LIST, body=b"serviceName=orders&groupName=g")
        self.assertEqual((code, json.loads(body)["name"]), (200, "g@@orders"))
        code, _, body = self.exchange(LIST + "?groupName=g", body=b"serviceName=orders&groupName=other")
        self.assertEqual((code, json.loads(body)["name"]), (200, "g@@orders"))

    def test_head(self):
        self.assertEqual(self.exchange(LIST, method="HEAD", serviceName="orders")[0], 200)

    def test_badParameters(self):
        """
        Every bad parameter is 400 naming it, in text, with Nacos' texts
        where Nacos has one.
        """
        for params, text in (
            ({}, "Param 'serviceName' is required."),
            ({"serviceName": " "}, "Param 'serviceName' is required."),
            ({"serviceName": "g@@"}, "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'"),
            ({"serviceName": "@@orders"}, "Param 'serviceName' is illegal, groupName can't be empty"),
            ({"serviceName": "g@@a@@b"}, "serviceName: must not contain '@@'"),
            ({"serviceName": "o" * 300}, "serviceName: longer than 256 bytes"),
            ({"serviceName": "orders", "groupName": "g\x01"}, "groupName: contains a control character"),
            ({"serviceName": "orders", "clusters": "a b"}, "clusters[0]: must match"),
            ({"serviceName": "orders", "udpPort": "x"}, "udpPort: must be an integer"),
            ({"serviceName": "orders", "udpPort": "99999999999"}, "udpPort: must be an integer"),
            ({"serviceName": "orders", "udpPort": "70000"}, "udpPort: must be in 0..65535"),
            ({"serviceName": "orders", "udpPort": "4000", "clientIP": "nope"}, "clientIP: must be an IP address"),
        ):
            self.assertIn(text, self.refused(LIST, **params), params)
        code, _, body = Exchange(self.site).request("GET", LIST + "?serviceName=%ff")
        self.assertEqual((code, body), (400, b"serviceName: is not UTF-8"))

    def test_tolerated(self):
        """
        What a Nacos server takes, distro takes: a C{udpPort} of 0 or
        less (no push), C{app}, unknown parameters.
        """
        for params in ({"udpPort": "0"}, {"udpPort": "-1"}, {"udpPort": " "}, {"app": "x", "tenant": "y"}):
            self.read(LIST, serviceName="orders", **params)

    def test_notReady(self):
        """
        While the node loads cluster data, reads are 503.
        """
        self.node.ready = False
        self.assertIn("not ready", self.refused(LIST, 503, serviceName="orders"))
        self.assertIn("not ready", self.refused(SERVICES, 503, pageNo=1, pageSize=1))

    def test_largeView(self):
        """
        A view of many hosts is encoded over turns, and answered whole.
        """
        self.publisher.ok("batch_register", service=service("orders"),
                          instances=[instance(f"10.0.{i // 250}.{i % 250 + 1}", 80) for i in range(3000)])
        body = self.read(LIST, serviceName="orders")
        self.assertEqual(len(body["hosts"]), 3000)
        self.assertEqual(len(self.read(LIST_V3, serviceName="orders")["data"]), 3000)


class AuthTests(NamingTestCase):
    """
    With auth, every read needs a credential granting its namespace.
    """

    def setUp(self):
        self.start(auth_tokens={"s3cret": ["public"]})

    def test_refused(self):
        for path, params in ((LIST, {"serviceName": "orders"}), (DETAIL, {"serviceName": "orders", "ip": "1.1.1.1",
                                                                       "port": "1"}),
                             (SERVICES, {"pageNo": "1", "pageSize": "1"})):
            self.assertIn("accessToken", self.refused(path, 403, **params))
            self.assertIn("accessToken", self.refused(path, 403, accessToken="nope", **params))
            self.assertIn("namespaceId: not granted 'dev'",
                          self.refused(path, 403, accessToken="s3cret", namespaceId="dev", **params))
        body = self.read(LIST_V3, 403, serviceName="orders", namespaceId="dev", accessToken="s3cret")
        self.assertEqual((body["code"], body["message"]), (10001, "access denied"))
        self.assertIn("namespaceId", body["data"])

    def test_granted(self):
        """
        The token may be a parameter or a header.
        """
        self.publish(ip="10.0.0.1")
        self.assertEqual(len(self.read(LIST, serviceName="orders", accessToken="s3cret")["hosts"]), 1)
        for header in ("accessToken: s3cret", "Authorization: Bearer s3cret"):
            code, _, _ = self.exchange(LIST, headers=[header], serviceName="orders")
            self.assertEqual(code, 200, header)
        self.assertEqual(self.read(LIST_V3, serviceName="orders", accessToken="s3cret")["code"], 0)


class InstanceDetailTests(NamingTestCase):
    """
    C{GET /nacos/v1/ns/instance}.
    """

    def test_body(self):
        """
        Nacos' body: the grouped service, the address as asked, the
        cluster, weight, health, instance id and metadata.
        """
        self.publish(ip="10.0.0.1", port=80, cluster="a", weight=3.0, healthy=False, metadata={"k": "v"}, group="g")
        self.publish(ip="10.0.0.1", port=80)
        self.assertEqual(self.read(DETAIL, serviceName="orders", groupName="g", ip="10.0.0.1", port="80",
                                       clusterName="a"), {
            "service": "g@@orders",
            "ip": "10.0.0.1",
            "port": 80,
            "clusterName": "a",
            "weight": 3.0,
            "healthy": False,
            "instanceId": "10.0.0.1#80#a#g@@orders",
            "metadata": {"k": "v"},
        })
        body = self.read(DETAIL, serviceName="DEFAULT_GROUP@@orders", ip="10.0.0.1", port="80")
        self.assertEqual((body["clusterName"], body["instanceId"]),
                         ("DEFAULT", "10.0.0.1#80#DEFAULT#DEFAULT_GROUP@@orders"))

    def test_notFound(self):
        """
        404 with Nacos' texts: no instance at all, or none that matches.
        """
        self.assertEqual(self.refused(DETAIL, 404, serviceName="orders", ip="10.0.0.1", port="80"),
                         "no ips found for cluster DEFAULT in service DEFAULT_GROUP@@orders")
        self.publish(ip="10.0.0.1", port=80, cluster="a")
        for params in ({"port": "81", "clusterName": "a"}, {"port": "80"}, {"port": "80", "ip": "10.0.0.2"}):
            params = dict({"serviceName": "orders", "ip": "10.0.0.1"}, **params)
            self.assertEqual(self.refused(DETAIL, 404, **params), "no matched ip found!", params)

    def test_badParameters(self):
        for params, text in (
            ({"ip": "1.1.1.1", "port": "1"}, "Param 'serviceName' is required."),
            ({"serviceName": "orders", "port": "1"}, "Param 'ip' is required."),
            ({"serviceName": "orders", "ip": "1.1.1.1"}, "Param 'port' is required."),
            ({"serviceName": "orders", "ip": "1.1.1.1", "port": "x"}, "Param 'port' is illegal"),
            ({"serviceName": "orders", "ip": "1.1.1.1", "port": "65536"}, "Param 'port' is illegal"),
            ({"serviceName": "orders", "ip": "1.1.1.1", "port": "1", "clusterName": "a b"}, "clusterName: must match"),
        ):
            self.assertIn(text, self.refused(DETAIL, **params), params)

    def test_writesUntouched(self):
        """
        The reads share their path with Nacos' instance writes: each method
        goes to its own handler.
        """
        code, _, body = self.exchange(DETAIL, method="PUT", body=b"serviceName=orders&ip=10.0.0.1&port=80&ephemeral=false")
        self.assertEqual(code, 400, body)
        self.assertIn(b"ephemeral", body)


class ServiceListTests(NamingTestCase):
    """
    C{GET /nacos/v1/ns/service/list}.
    """

    def test_pages(self):
        """
        C{{"count", "doms"}}: one page of a group's names (C{groupName},
        default C{DEFAULT_GROUP}) in a namespace, with Nacos' paging: a page
        number of 0 or less is the first page, a size of 0 an empty page.
        """
        for name in ("a", "b", "c"):
            self.publish(name)
        self.publish("d", group="g")
        self.publish("e", namespace="dev")
        for params, expected in (
            ({"pageNo": "1", "pageSize": "2"}, {"count": 3, "doms": ["a", "b"]}),
            ({"pageNo": "2", "pageSize": "2"}, {"count": 3, "doms": ["c"]}),
            ({"pageNo": "3", "pageSize": "2"}, {"count": 3, "doms": []}),
            ({"pageNo": "0", "pageSize": "2"}, {"count": 3, "doms": ["a", "b"]}),
            ({"pageNo": "-4", "pageSize": "2"}, {"count": 3, "doms": ["a", "b"]}),
            ({"pageNo": "1", "pageSize": "0"}, {"count": 3, "doms": []}),
            ({"pageNo": "1", "pageSize": "10", "groupName": "g"}, {"count": 1, "doms": ["d"]}),
            ({"pageNo": "1", "pageSize": "10", "namespaceId": "dev"}, {"count": 1, "doms": ["e"]}),
            ({"pageNo": "1", "pageSize": "10", "groupName": "none"}, {"count": 0, "doms": []}),
        ):
            self.assertEqual(self.read(SERVICES, **params), expected, params)

    def test_badParameters(self):
        for params, text in (
            ({"pageSize": "1"}, "Param 'pageNo' is required."),
            ({"pageNo": "1"}, "Param 'pageSize' is required."),
            ({"pageNo": "x", "pageSize": "1"}, "pageNo: must be an integer"),
            ({"pageNo": "1", "pageSize": "1.5"}, "pageSize: must be an integer"),
            ({"pageNo": "1", "pageSize": "-1"}, "pageSize: must not be negative"),
            ({"pageNo": "1", "pageSize": "1", "groupName": "g" * 300}, "groupName: longer than"),
        ):
            self.assertIn(text, self.refused(SERVICES, **params), params)


class InstanceListV3Tests(NamingTestCase):
    """
    C{GET /nacos/v3/client/ns/instance/list}: the v3 client API.
    """

    def test_body(self):
        """
        Nacos 3's C{Result}: code 0, C{success}, and the hosts as Nacos'
        instances. C{clusterName} defaults to C{DEFAULT}, as Nacos 3 fills
        it in: without one, only that cluster is listed.
        """
        self.publish(ip="10.0.0.1", group="g")
        self.publish(ip="10.0.0.2", cluster="a", group="g")
        self.publish(ip="10.0.0.3", cluster="b", group="g", healthy=False)
        self.assertEqual(self.read(LIST_V3, serviceName="orders", groupName="g"), {
            "code": 0, "message": "success", "data": [nacosHost("10.0.0.1", 8080, grouped="g@@orders")],
        })
        for params, ips in (
            ({"clusterName": "a,b"}, ["10.0.0.2", "10.0.0.3"]),
            ({"clusterName": "a,b", "healthyOnly": "true"}, ["10.0.0.2"]),
            ({"clusterName": "b", "namespaceId": "public"}, ["10.0.0.3"]),
            ({"clusterName": "DEFAULT", "namespaceId": "dev"}, []),
        ):
            body = self.read(LIST_V3, serviceName="orders", groupName="g", **params)
            self.assertEqual([h["ip"] for h in body["data"]], ips, params)

    def test_refused(self):
        """
        A refusal is Nacos 3's C{Result} too, with the reason in C{data}.
        """
        self.assertEqual(self.read(LIST_V3, 400), {
            "code": 10000, "message": "parameter missing",
            "data": "Required parameter 'serviceName' type String is not present"})
        body = self.read(LIST_V3, 400, serviceName="orders", clusterName="a b")
        self.assertEqual((body["code"], body["message"]), (20002, "parameter validate error"))
        self.assertIn("clusterName", body["data"])
        self.node.ready = False
        self.assertEqual(self.read(LIST_V3, 503, serviceName="orders")["code"], 30000)
