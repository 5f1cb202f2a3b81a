# -*- test-case-name: tests.test_model -*-
"""
Tests for L{distro.model}: validation and checksums.
"""

from functools import partial

from twisted.trial.unittest import SynchronousTestCase

from distro import model
from distro.errors import BAD_REQUEST, LIMIT_EXCEEDED, RequestError
from tests import _factories


# A valid instance map with FIELDS changed.
instance = partial(_factories.instance, ip="10.0.0.1")


class ServiceKeyTests(SynchronousTestCase):
    """
    L{model.parseService}.
    """

    def test_defaults(self):
        """
        Namespace and group default to C{public} and C{DEFAULT_GROUP}.
        """
        self.assertEqual(
            model.parseService({"name": "orders"}),
            model.ServiceKey("public", "DEFAULT_GROUP", "orders"),
        )

    def assertField(self, value, field):
        e = self.assertRaises(RequestError, model.parseService, value)
        self.assertEqual(e.code, BAD_REQUEST)
        self.assertTrue(e.message.startswith(field + ":"), e.message)

    def test_badFields(self):
        """
        Each bad part is reported under its own field name.
        """
        self.assertField("orders", "service")
        self.assertField({}, "service.name")
        self.assertField({"name": ""}, "service.name")
        self.assertField({"name": 5}, "service.name")
        self.assertField({"name": "a@@b"}, "service.name")
        self.assertField({"name": "a", "group": "g@@"}, "service.group")
        self.assertField({"name": "a", "namespace": "x" * 257}, "service.namespace")
        self.assertField({"name": "a\nb"}, "service.name")

    def test_asciiNames(self):
        """
        ASCII names (read without encoding them) are held to the same
        rules: every control character refused, 256 bytes at most.
        """
        for control in [*map(chr, range(0x20)), "\x7f"]:
            self.assertField({"name": f"a{control}b"}, "service.name")
        self.assertEqual(model.parseService({"name": " ~!x" * 64}).name, " ~!x" * 64)
        self.assertField({"name": "x" * 257}, "service.name")
        self.assertEqual(model.parseService({"name": "a\x80b"}).name, "a\x80b")  # not ASCII: checked in full

    def test_utf8Length(self):
        """
        The 256 limit counts UTF-8 bytes, not characters.
        """
        self.assertEqual(model.parseService({"name": "é" * 128}).name, "é" * 128)
        self.assertField({"name": "é" * 129}, "service.name")


class InstanceTests(SynchronousTestCase):
    """
    L{model.parseInstance}.
    """

    def assertField(self, value, field, code=BAD_REQUEST, **kw):
        e = self.assertRaises(RequestError, model.parseInstance, value, **kw)
        self.assertEqual(e.code, code)
        self.assertIn(field, e.message)
        return e

    def test_defaults(self):
        """
        cluster, weight, healthy, enabled and metadata take their defaults.
        """
        i = model.parseInstance(instance())
        self.assertEqual(
            (i.cluster, i.weight, i.healthy, i.enabled, i.metadata, i.instanceId),
            ("DEFAULT", 1.0, True, True, {}, "10.0.0.1#8080#DEFAULT"),
        )

    def test_addresses(self):
        """
        IPv6 literals are normalised, host names lower-cased, junk refused.
        """
        self.assertEqual(model.parseInstance(instance(ip="0:0::1")).ip, "::1")
        self.assertEqual(model.parseInstance(instance(ip="Svc-1.Example.COM")).ip, "svc-1.example.com")
        self.assertEqual(model.parseInstance(instance(ip="host-1.10.example")).ip, "host-1.10.example")
        # A name whose last label is all digits is a mistyped address.
        for bad in ("", "-bad.example", "a b", "x" * 300, 5, None, "1.2.3.4.5", "300.1.1.1", "10.0.0.256"):
            self.assertField(instance(ip=bad), "instance.ip")

    def test_ranges(self):
        """
        port, weight and cluster are range-checked; booleans are not integers.
        """
        for port in (0, 65536, "80", True, 1.5):
            self.assertField(instance(port=port), "instance.port")
        for weight in (-1, 10000.5, float("nan"), float("inf"), "1"):
            self.assertField(instance(weight=weight), "instance.weight")
        self.assertEqual(model.parseInstance(instance(weight=10000)).weight, 10000.0)
        for cluster in ("", "a b", "x" * 65, 7):
            self.assertField(instance(cluster=cluster), "instance.cluster")
        self.assertField(instance(healthy="yes"), "instance.healthy")
        self.assertField(instance(enabled=1), "instance.enabled")

    def test_metadata(self):
        """
        Metadata maps strings to strings, within C{max_metadata_bytes}.
        """
        self.assertField(instance(metadata=[]), "instance.metadata")
        self.assertField(instance(metadata={"a": 1}), "instance.metadata")
        self.assertField(instance(metadata={"a": ["1"]}), "instance.metadata")
        self.assertField(instance(metadata={1: "a"}), "instance.metadata")
        # Equal to a map already accepted is not enough for another kind:
        model.parseInstance(instance(metadata={"a": "1"}))
        self.assertField(instance(metadata={"a": b"1"}), "instance.metadata")
        e = self.assertField(
            instance(metadata={"k": "v" * 200}), "max_metadata_bytes", LIMIT_EXCEEDED,
            maxMetadataBytes=100,
        )
        self.assertIn("instance.metadata", e.message)

    def test_sameContentIgnoresWriteTs(self):
        """
        Two publications of the same content at different times look the same.
        """
        a = model.parseInstance(instance(metadata={"a": "1"}), writeTs=1)
        b = model.parseInstance(instance(metadata={"a": "1"}), writeTs=2)
        c = model.parseInstance(instance(metadata={"a": "2"}), writeTs=2)
        self.assertTrue(a.sameContent(b))
        self.assertFalse(a.sameContent(c))
        self.assertFalse(a.sameContent(None))

    def test_clusters(self):
        """
        A cluster filter becomes a sorted tuple without duplicates.
        """
        self.assertEqual(model.parseClusters(["b", "a", "b"]), ("a", "b"))
        self.assertIsNone(model.parseClusters(None))
        e = self.assertRaises(RequestError, model.parseClusters, ["ok", "no way"])
        self.assertIn("clusters[1]", e.message)


class ChecksumTests(SynchronousTestCase):
    """
    L{model.checksum}.
    """

    def test_orderIndependent(self):
        """
        The checksum depends on content, not on order or write time.
        """
        a = model.parseInstance(instance(port=1), writeTs=5)
        b = model.parseInstance(instance(port=2, metadata={"x": "y", "a": "b"}))
        b2 = model.parseInstance(instance(port=2, metadata={"a": "b", "x": "y"}), writeTs=9)
        self.assertEqual(model.checksum([a, b]), model.checksum([b2, a]))

    def test_contentSensitive(self):
        """
        Any change a subscriber could see changes the checksum.
        """
        base = model.checksum([model.parseInstance(instance())])
        for change in ({"weight": 2}, {"healthy": False}, {"enabled": False},
                       {"metadata": {"a": "b"}}, {"cluster": "C"}, {"port": 1}):
            self.assertNotEqual(model.checksum([model.parseInstance(instance(**change))]), base)
        self.assertNotEqual(model.checksum([]), base)


class SharingTests(SynchronousTestCase):
    """
    Instances parsed alike share what they can: equal metadata maps, cluster
    names, port numbers and the usual weights are one object each, not one
    per instance.
    """

    def test_shared(self):
        a = model.parseInstance({"ip": "10.0.0.1", "port": 8080, "cluster": "c" + "1",
                                 "metadata": {"zone": "a", "v": "1"}})
        b = model.parseInstance({"ip": "10.0.0.2", "port": 8000 + 80, "cluster": "".join("c1"),
                                 "weight": 1, "metadata": {"zone": "a", "v": "1"}})
        self.assertIs(a.metadata, b.metadata)
        self.assertIs(a.cluster, b.cluster)
        self.assertIs(a.port, b.port)
        self.assertIs(a.weight, b.weight)
        other = model.parseInstance({"ip": "10.0.0.3", "port": 1, "metadata": {"v": "1", "zone": "a"}})
        self.assertIsNot(other.metadata, a.metadata)
        self.assertEqual(other.metadata, a.metadata)

    def test_largeMetadataNotShared(self):
        metadata = {f"k{n}": "v" for n in range(9)}
        a = model.parseInstance({"ip": "10.0.0.1", "port": 1, "metadata": dict(metadata)})
        b = model.parseInstance({"ip": "10.0.0.2", "port": 1, "metadata": dict(metadata)})
        self.assertIsNot(a.metadata, b.metadata)

    def test_serviceKeysShared(self):
        """
        A service named again gets the same key object (validated once);
        bad names are still refused, unhashable ones included.
        """
        a = model.parseService({"name": "orders"})
        b = model.parseService({"name": "orders", "group": "DEFAULT_GROUP", "namespace": "public"})
        self.assertIs(a, b)
        for bad, field in (({"name": "a@@b"}, "service.name"), ({"name": ["x"]}, "service.name"),
                           ({"name": "orders", "group": {}}, "service.group")):
            error = self.assertRaises(RequestError, model.parseService, bad)
            self.assertTrue(error.message.startswith(field), error.message)

    def test_namespaceAndGroupShared(self):
        """
        The services of a namespace and group share one string of each,
        however the requests spelled them (each request's JSON makes its
        own: 110 bytes a service kept for nothing).
        """
        a = model.parseService({"name": "a", "group": "".join("DEFAULT_GROUP"), "namespace": "".join("ns1")})
        b = model.parseService({"name": "b", "group": "".join(["DEFAULT_", "GROUP"]),
                                "namespace": "".join(["ns", "1"])})
        self.assertIs(a.group, b.group)
        self.assertIs(a.namespace, b.namespace)


class NamespaceTests(SynchronousTestCase):
    def test_emptyIsPublic(self):
        """
        C{""} names the C{public} namespace, as in Nacos, in a service key
        and in a namespace filter alike.
        """
        self.assertEqual(model.parseService({"namespace": "", "name": "orders"}),
                         model.parseService({"namespace": "public", "name": "orders"}))
        self.assertEqual(model.parseNamespace(""), "public")
