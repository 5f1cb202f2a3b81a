"""
Tests for L{distro.nacos.naming}: Nacos naming JSON to and from distro's
model, without sockets. The request bodies are shaped as the Java, Go and
Python SDKs send them (docs/nacos.md).
"""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from distro import model
from distro.nacos import naming
from distro.nacos.naming import BAD_GATEWAY, INVALID_PARAM, NacosError
from distro.registry import ServiceInfo

from tests._turns import finish

# The longest value parseBodyInSlices reads here.
LIMIT = 1 << 20

# An InstanceRequest as the Java SDK sends it (Go sends zero values instead
# of omitting; Python adds requestId, module "").
JAVA_REGISTER = {
    "headers": {},
    "namespace": "public",
    "serviceName": "orders",
    "groupName": "DEFAULT_GROUP",
    "type": "registerInstance",
    "instance": {
        "ip": "10.0.0.7",
        "port": 8080,
        "weight": 2.0,
        "healthy": True,
        "enabled": True,
        "ephemeral": True,
        "clusterName": "c.1",
        "metadata": {"zone": "a"},
        "instanceHeartBeatInterval": 5000,
    },
    "module": "naming",
}


class RequestTests(SynchronousTestCase):
    def assertRefused(self, code, prefix, f, *args):
        error = self.assertRaises(NacosError, f, *args)
        self.assertEqual(error.code, code)
        self.assertTrue(error.message.startswith(prefix), error.message)
        return error

    def test_body(self):
        self.assertEqual(naming.parseBody(json.dumps(JAVA_REGISTER).encode()), JAVA_REGISTER)
        for bad in (b"{", b"[1]", b"\xff", b"null", b"", b"[" * 100000):
            self.assertRefused(BAD_GATEWAY, "body:", naming.parseBody, bad)

    def test_serviceKey(self):
        """
        An empty namespace is C{public}, an empty or missing group
        C{DEFAULT_GROUP}; a grouped service name names its group.
        """
        key = model.ServiceKey
        self.assertEqual(naming.serviceKey(JAVA_REGISTER), key("public", "DEFAULT_GROUP", "orders"))
        self.assertEqual(
            naming.serviceKey({"namespace": "", "groupName": "", "serviceName": "orders"}),
            key("public", "DEFAULT_GROUP", "orders"),
        )
        self.assertEqual(
            naming.serviceKey({"namespace": "dev", "serviceName": "shop@@orders"}),
            key("dev", "shop", "orders"),
        )
        self.assertRefused(INVALID_PARAM, "serviceName:", naming.serviceKey, {"serviceName": ""})
        self.assertRefused(INVALID_PARAM, "serviceName:", naming.serviceKey, {})
        self.assertRefused(INVALID_PARAM, "groupName:", naming.serviceKey,
                           {"serviceName": "a", "groupName": 5})
        self.assertRefused(INVALID_PARAM, "namespace:", naming.serviceKey,
                           {"serviceName": "a", "namespace": ["x"]})

    def test_instance(self):
        instance = naming.parseInstance(JAVA_REGISTER["instance"])
        self.assertEqual(
            (instance.ip, instance.port, instance.cluster, instance.weight, instance.healthy,
             instance.enabled, instance.metadata),
            ("10.0.0.7", 8080, "c.1", 2.0, True, True, {"zone": "a"}),
        )

    def test_instanceDefaults(self):
        """
        What a client leaves out takes Nacos' defaults: cluster C{DEFAULT},
        weight 1, healthy, enabled, no metadata. Go's zero values are kept
        as sent (a Go client sends its user's values, zeros included).
        """
        instance = naming.parseInstance({"ip": "10.0.0.7", "port": 1})
        self.assertEqual(
            (instance.cluster, instance.weight, instance.healthy, instance.enabled, instance.metadata),
            ("DEFAULT", 1.0, True, True, {}),
        )
        go = naming.parseInstance({"instanceId": "", "ip": "10.0.0.7", "port": 1, "weight": 0,
                                   "healthy": False, "enabled": False, "ephemeral": True,
                                   "clusterName": "", "serviceName": "", "metadata": {}})
        self.assertEqual((go.cluster, go.weight, go.healthy, go.enabled), ("DEFAULT", 0.0, False, False))

    def test_badInstances(self):
        good = {"ip": "10.0.0.7", "port": 8080}
        for change, prefix in (
            ({"ip": ""}, "instance.ip:"),
            ({"port": 0}, "instance.port:"),
            ({"port": "80"}, "instance.port:"),
            ({"clusterName": "a b"}, "instance.clusterName:"),
            ({"weight": -1}, "instance.weight:"),
            ({"healthy": "yes"}, "instance.healthy:"),
            ({"metadata": {"k": 1}}, "instance.metadata:"),
            ({"ephemeral": False}, "instance.ephemeral:"),
        ):
            self.assertRefused(INVALID_PARAM, prefix, naming.parseInstance, dict(good, **change))
        self.assertRefused(INVALID_PARAM, "instance:", naming.parseInstance, [1])
        error = self.assertRaises(
            NacosError, naming.parseInstance, dict(good, metadata={"k": "v" * 100}), "instance", 50
        )
        self.assertEqual(error.code, INVALID_PARAM)
        self.assertIn("instance.metadata", error.message)

    def test_instances(self):
        """
        A batch's instances are read a slice at a time.
        """
        def read(values, **kwargs):
            return finish(naming.parseInstancesInSlices(values, **kwargs))[0]

        instances = read([{"ip": "10.0.0.1", "port": 1}, {"ip": "10.0.0.2", "port": 1}])
        self.assertEqual([i.ip for i in instances], ["10.0.0.1", "10.0.0.2"])
        self.assertRefused(INVALID_PARAM, "instances:", read, {})
        self.assertRefused(INVALID_PARAM, "instances[1].port:", read,
                           [{"ip": "10.0.0.1", "port": 1}, {"ip": "10.0.0.2"}])
        many = [{"ip": f"10.0.{i // 256}.{i % 256}", "port": 1} for i in range(1000)]
        instances, pauses = finish(naming.parseInstancesInSlices(many, sliceItems=100))
        self.assertEqual((len(instances), pauses), (1000, 10))

    def test_clusters(self):
        """
        A filter is distro's sorted tuple, and the text echoed back is the
        names as listed, without padding.
        """
        self.assertEqual(naming.parseClusters(""), (None, ""))
        self.assertEqual(naming.parseClusters(None), (None, ""))
        self.assertEqual(naming.parseClusters("b,a,b"), (("a", "b"), "b,a,b"))
        self.assertEqual(naming.parseClusters(" ,b, , a,"), (("a", "b"), "b,a"))
        self.assertRefused(INVALID_PARAM, "clusters", naming.parseClusters, "a b")
        self.assertRefused(INVALID_PARAM, "clusters:", naming.parseClusters, ["a"])

    def test_clustersBounded(self):
        """
        A filter text longer than 1024 names could be is refused before it
        is split (found from outside: 7 MB of " ," naming one cluster was
        kept per subscription and sent in every push).
        """
        self.assertRefused(INVALID_PARAM, "clusters: longer", naming.parseClusters, " ," * 3_500_000 + "DEFAULT")
        names = ",".join(f"c{n}" for n in range(1025))
        self.assertRefused(INVALID_PARAM, "clusters: lists more than 1024", naming.parseClusters, names)

    def test_bodyItemsBounded(self):
        """
        A body of more items than a full batch could hold is refused before
        it is parsed (found from outside: 3M numbers in 8 MB held the
        reactor 122 ms).
        """
        self.assertRefused(INVALID_PARAM, "body: more than", naming.parseBody,
                           b'{"x": [' + b"1," * 3_000_000 + b"1]}")
        batch = {"instances": [{"ip": f"10.0.{i // 256}.{i % 256}", "port": 1, "weight": 1.0,
                                "metadata": {"a": "b", "c": "d"}} for i in range(10000)]}
        self.assertEqual(len(finish(naming.parseBodyInSlices(json.dumps(batch).encode(), LIMIT))[0]["instances"]),
                         10000)

    def test_bodyBounded(self):
        """
        A body longer than any request but a batch needs is refused unread.
        """
        limit = naming.maxBody(8192)
        body = json.dumps({"serviceName": "s", "pad": "x" * limit}).encode()
        self.assertRefused(INVALID_PARAM, f"body: more than {limit} bytes", naming.parseBody, body, limit)
        self.assertEqual(naming.parseBody(body)["serviceName"], "s")

    def test_bodyInSlices(self):
        """
        A batch's body is parsed a slice of its arrays at a time, to what
        json.loads makes of it, and refused as parseBody refuses.
        """
        batch = {"type": "batchRegisterInstance", "serviceName": "s", "empty": [], "nested": {"a": [1, 2]},
                 "instances": [{"ip": f"10.0.{i // 256}.{i % 256}", "port": 1, "metadata": {"k": [i]}}
                               for i in range(1000)], "n": None, "t": True, "f": -1.5e3, "u": "é\u2028"}
        for text in (json.dumps(batch), json.dumps(batch, indent=2), json.dumps(batch, separators=(",", ":")),
                     " \r\n\t{}\n", '{"a":[ ] , "b" : [ 1 ,2 ] }', '{"dup": 1, "dup": [2]}'):
            value, pauses = finish(naming.parseBodyInSlices(text.encode(), LIMIT, sliceItems=100))
            self.assertEqual(value, json.loads(text))
        self.assertEqual(finish(naming.parseBodyInSlices(json.dumps(batch).encode(), LIMIT, sliceItems=100))[1], 10)
        for bad in (b"", b"[1]", b'"x"', b"{", b'{"a": 1', b'{"a": 1,}', b'{"a": [1,]}', b'{"a": [1 2]}',
                    b'{"a" 1}', b"{a: 1}", b'{"a": 1} x', b'{"a": [1]]}', b"\xff{}", b'{"a": [1, 2}'):
            self.assertRefused(BAD_GATEWAY, "body:", lambda b: finish(naming.parseBodyInSlices(b, LIMIT)), bad)
        self.assertRefused(INVALID_PARAM, "body: more than", lambda b: finish(naming.parseBodyInSlices(b, LIMIT)),
                           b'{"x": [' + b"1," * 3_000_000 + b"1]}")

    def test_bodyInSlicesValuesBounded(self):
        """
        No value of a batch's body, nor element of its arrays, is longer
        than the limit (found in review: one element of 262k keys was
        parsed at once, 120 ms); values around the window first read are
        parsed whole.
        """
        limit = 10_000
        huge = b'{"instances": [{' + b",".join(b'"k%d": 1' % i for i in range(2000)) + b"}]}"
        self.assertRefused(BAD_GATEWAY, "body: not valid UTF-8 JSON, or a value of it longer than 10000",
                           lambda b: finish(naming.parseBodyInSlices(b, limit)), huge)
        self.assertRefused(BAD_GATEWAY, "body:", lambda b: finish(naming.parseBodyInSlices(b, limit)),
                           b'{"junk": [[' + b"1," * 6000 + b'1]], "x": 1}')
        for size in (2000, 2040, 2050, 4000, 9990):
            text = json.dumps({"instances": [{"m": "x" * size}, {"n": 1}], "s": "y" * size, "tail": [1]})
            self.assertEqual(finish(naming.parseBodyInSlices(text.encode(), limit))[0], json.loads(text))
        number = '{"a": [' + "1" * 3000 + ', 2]}'
        self.assertEqual(finish(naming.parseBodyInSlices(number.encode(), limit))[0], json.loads(number))

    def test_bodyUtf8Only(self):
        """
        A body is UTF-8 JSON; UTF-16 and UTF-32 are refused (json would take
        them).
        """
        self.assertEqual(naming.parseBody('{"a": "é"}'.encode()), {"a": "é"})
        for encoding in ("utf-16", "utf-32", "utf-16-le"):
            self.assertRefused(BAD_GATEWAY, "body: not valid UTF-8", naming.parseBody, '{"a": 1}'.encode(encoding))

    def test_bodyAsLenientAsBefore(self):
        """
        What Python's json reads besides strict JSON (which the fast reader
        refuses) is read as before: NaN and infinities, a lone surrogate's
        escape; nesting deeper than the fast reader's limit.
        """
        self.assertEqual(repr(naming.parseBody(b'{"w": NaN, "x": -Infinity}')), "{'w': nan, 'x': -inf}")
        self.assertEqual(naming.parseBody(b'{"s": "\\ud800"}'), {"s": "\ud800"})
        self.assertEqual(naming.parseBody(b'{"big": 1e400}'), {"big": float("inf")})
        nested = b'{"a": ' + b"[" * 500 + b"]" * 500 + b"}"
        self.assertTrue(naming.parseBody(nested) == json.loads(nested))
        # Deeper than either reader goes: refused, as before.
        self.assertRefused(BAD_GATEWAY, "body:", naming.parseBody, b'{"a": ' + b"[" * 1100 + b"]" * 1100 + b"}")

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(st.recursive(
        st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(), lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
        max_leaves=20))
    def test_bodyReadAsJsonReadsIt(self, value):
        """
        Any JSON object's body is read to what C{json.loads} makes of it.
        """
        text = json.dumps({"v": value}, ensure_ascii=False)
        self.assertEqual(naming.parseBody(text.encode()), json.loads(text))

    def test_healthyOnly(self):
        """
        Java and Go say C{healthyOnly}, Python C{healthOnly}.
        """
        self.assertTrue(naming.healthyOnly({"healthyOnly": True}))
        self.assertTrue(naming.healthyOnly({"healthOnly": True}))
        self.assertFalse(naming.healthyOnly({}))
        self.assertFalse(naming.healthyOnly({"healthyOnly": "true"}))


class ResponseTests(SynchronousTestCase):
    def info(self):
        service = model.ServiceKey("dev", "shop", "orders")
        hosts = sorted(
            [model.parseInstance({"ip": "10.0.0.2", "port": 80, "metadata": {"v": "1"}}),
             model.parseInstance({"ip": "10.0.0.1", "port": 80, "cluster": "c1", "weight": 3})],
            key=lambda i: i.instanceId,
        )
        return ServiceInfo.ofHosts(service, None, hosts, 7)

    def test_serviceInfo(self):
        """
        A ServiceInfo names its service ungrouped beside its group; its hosts
        name it grouped, with Nacos instance ids; it has no null anywhere.
        """
        info = self.info()
        body = json.loads(naming.encodeBody(naming.serviceInfo(info, "", 1700000000123)))
        self.assertEqual(
            {k: v for k, v in body.items() if k != "hosts"},
            {"name": "orders", "groupName": "shop", "clusters": "", "cacheMillis": 10000,
             "lastRefTime": 1700000000123, "checksum": info.checksum, "allIPs": False,
             "reachProtectionThreshold": False, "valid": True},
        )
        self.assertEqual(body["hosts"], [
            {"instanceId": "10.0.0.1#80#c1#shop@@orders", "ip": "10.0.0.1", "port": 80,
             "weight": 3.0, "healthy": True, "enabled": True, "ephemeral": True,
             "clusterName": "c1", "serviceName": "shop@@orders", "metadata": {}},
            {"instanceId": "10.0.0.2#80#DEFAULT#shop@@orders", "ip": "10.0.0.2", "port": 80,
             "weight": 1.0, "healthy": True, "enabled": True, "ephemeral": True,
             "clusterName": "DEFAULT", "serviceName": "shop@@orders", "metadata": {"v": "1"}},
        ])
        self.assertNotIn(b"null", naming.encodeBody(naming.serviceInfo(info, "", 1)))

    def test_hostsKeptPerChunk(self):
        """
        A view's hosts are encoded per chunk, and a chunk again only when
        one of its hosts changed: the JSON always equals a fresh encoding,
        odd metadata included.
        """
        from distro.registry import ServiceView

        service = model.ServiceKey("public", "DEFAULT_GROUP", "big")
        view = ServiceView(service)
        odd = {"q": 'say "hi"\\', "nul": "a\x00b", "line": "\u2028", "uni": "é"}
        for n in range(1200):
            view.put("c1", model.parseInstance({"ip": f"10.0.{n // 256}.{n % 256}", "port": 80,
                                                "metadata": odd if n == 7 else {}}))

        def fresh(info):
            grouped = naming.groupedName(service)
            return [naming.host(i, grouped) for i in info.hosts]

        view.changed(1)
        first = view.info()
        self.assertGreater(len(first.hostGroups()), 2)
        self.assertEqual(json.loads(naming.hostsJson(first)), fresh(first))
        view.put("c1", model.parseInstance({"ip": "10.0.0.9", "port": 80, "weight": 5}))
        view.changed(2)
        second = view.info()
        same = [a is b for a, b in zip(first.hostGroups(), second.hostGroups())]
        self.assertEqual(same.count(False), 1)  # one chunk changed
        self.assertEqual(json.loads(naming.hostsJson(second)), fresh(second))

    def test_httpHost(self):
        """
        The HTTP form of a host adds what Nacos' HTTP answers show (its
        Instance's getters): the heartbeat settings from the C{preserved.*}
        metadata (all digits, else Nacos' defaults) and the id generator;
        the gRPC form is unchanged, and each form is kept apart.
        """
        service = model.ServiceKey("public", "DEFAULT_GROUP", "orders")
        plain = model.parseInstance({"ip": "10.0.0.1", "port": 80})
        tuned = model.parseInstance({"ip": "10.0.0.2", "port": 80, "metadata": {
            "preserved.heart.beat.interval": "1000", "preserved.heart.beat.timeout": "-1",
            "preserved.ip.delete.timeout": "9" * 19}})
        self.assertEqual(naming.httpHost(plain, "DEFAULT_GROUP@@orders"), dict(
            naming.host(plain, "DEFAULT_GROUP@@orders"), instanceHeartBeatInterval=5000,
            instanceHeartBeatTimeOut=15000, ipDeleteTimeout=30000, instanceIdGenerator="simple"))
        host = naming.httpHost(tuned, "g@@orders")
        self.assertEqual([host[k] for k in ("instanceHeartBeatInterval", "instanceHeartBeatTimeOut",
                                            "ipDeleteTimeout")], [1000, 15000, 30000])
        self.assertNotIn("instanceIdGenerator", host)
        info = ServiceInfo.ofHosts(service, None, [plain, tuned], 1)
        grpc = json.loads(naming.hostsJson(info))
        http = json.loads(naming.hostsJson(info, naming.httpHost))
        self.assertEqual(grpc, [naming.host(i, "DEFAULT_GROUP@@orders") for i in info.hosts])
        self.assertEqual(http, [naming.httpHost(i, "DEFAULT_GROUP@@orders") for i in info.hosts])
        self.assertTrue(naming.hostsEncoded(info, naming.httpHost))

    def test_rawJsonInBodies(self):
        body = {"a": 1, "b": {"c": naming.RawJSON('[{"x":"]"}]'), "d": "e"}}
        self.assertEqual(json.loads(naming.encodeBody(body)), {"a": 1, "b": {"c": [{"x": "]"}], "d": "e"}})
        top = {"a": naming.RawJSON('{"x":[1]}'), "b": None}
        self.assertEqual(naming.encodeBody(top), b'{"a":{"x":[1]},"b":null}')

    def test_plainBodiesAsJson(self):
        """
        A body without raw JSON is written as json writes it, compact (in
        one call: a response's encoding is on every request's path).
        """
        for body in ({"resultCode": 200, "success": True, "message": None, "requestId": "7"},
                     {"a": {"b": [1, "é", {"c": False}]}, "d": 1.5}, {}):
            self.assertEqual(naming.encodeBody(body),
                             json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())

    def test_envelopes(self):
        self.assertEqual(naming.response(), {"resultCode": 200, "errorCode": 0, "success": True})
        self.assertEqual(
            naming.response({"type": "registerInstance"}, requestId="7"),
            {"resultCode": 200, "errorCode": 0, "success": True, "requestId": "7",
             "type": "registerInstance"},
        )
        self.assertEqual(
            naming.errorResponse(302, "no handler for FooRequest"),
            {"resultCode": 500, "errorCode": 302, "success": False,
             "message": "no handler for FooRequest"},
        )
        self.assertEqual(naming.encodeBody({"a": "é"}), '{"a":"é"}'.encode())

    def test_jsonKeptWithItsGroup(self):
        """
        The JSON of a group of hosts is made once and kept with the group
        (found in review: a process-wide cache keyed by id() kept the JSON
        and hosts of replaced chunks until 64 MiB).
        """
        service = model.ServiceKey("public", "DEFAULT_GROUP", "kept")
        hosts = tuple(model.parseInstance({"ip": f"10.1.0.{n}", "port": 80}) for n in range(10))
        info = ServiceInfo.ofHosts(service, None, hosts, 1)
        (group,) = info.hostGroups()
        made = []
        self.assertEqual(naming.hostsJson(info), naming.hostsJson(info))
        text = group.encoded(("nacos", "DEFAULT_GROUP@@kept"), made.append)
        self.assertEqual(made, [])  # kept: not made again
        self.assertEqual(json.loads("[" + text + "]"), [naming.host(h, "DEFAULT_GROUP@@kept") for h in hosts])
