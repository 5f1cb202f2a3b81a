# -*- test-case-name: tests.test_client_cache -*-
"""
Tests for L{distro.client.ViewCache} and for a L{distro.client.DistroClient}
with a cache directory: views kept across restarts and served while no node
answers.
"""

import json
import os

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro.client import (
    DistroClient,
    DistroError,
    Instance,
    NotConnected,
    RequestTimeout,
    Service,
    ServiceInfo,
)
from distro.client import _cache
from distro.client._cache import IViewCache, ViewCache

from ._memorycluster import ClusterTestMixin
from ._tempfiles import TempPathMixin

ADDRESSES = ["10.0.0.1:9850", "10.0.0.2:9850"]
ORDERS = Service("orders")


def view(service=ORDERS, hosts=("a",), checksum="c1", revision=1, clusters=None):
    """
    A L{ServiceInfo} with one host per ip of C{hosts}.
    """
    return ServiceInfo(
        service,
        tuple(Instance(ip, 80, metadata={"zone": "z"}) for ip in hosts),
        checksum,
        revision,
        clusters=clusters,
    )


def ips(info):
    """
    The ips of a view's hosts.
    """
    return [h.ip for h in info.hosts]


def warnings(events):
    """
    The text of the captured events of level warning and above.
    """
    return [formatEvent(e) for e in events if e["log_level"] >= LogLevel.warn]


class ViewCacheTests(TempPathMixin, SynchronousTestCase):
    """
    L{ViewCache} on its own.
    """

    def setUp(self):
        self.directory = self.tempPath()
        self.cache = ViewCache(self.directory)

    def files(self):
        """
        The names in the cache directory.
        """
        return sorted(os.listdir(self.directory))

    def reloaded(self):
        """
        A new L{ViewCache} of the same directory, loaded.
        """
        cache = ViewCache(self.directory)
        cache.load()
        return cache

    def test_interface(self):
        """
        L{ViewCache} provides L{IViewCache}; it creates its directory.
        """
        verifyObject(IViewCache, self.cache)
        self.assertTrue(os.path.isdir(self.directory))

    def test_roundTrip(self):
        """
        Views stored by one L{ViewCache} are loaded by the next, each under
        its key, cluster filter included.
        """
        plain = view(hosts=("a", "b"))
        filtered = view(hosts=("c",), checksum="c2", clusters=("C1", "C2"))
        other = view(Service("x", group="g", namespace="ns"), checksum="c3")
        self.assertTrue(self.cache.store(ORDERS, None, plain))
        self.assertTrue(self.cache.store(ORDERS, ("C1", "C2"), filtered))
        self.assertTrue(self.cache.store(other.service, None, other))
        cache = ViewCache(self.directory)
        self.assertIsNone(cache.get(ORDERS, None))
        self.assertEqual(cache.load(), 3)
        self.assertEqual(cache.get(ORDERS, None), plain)
        self.assertEqual(cache.get(ORDERS, ["C2", "C1"]), filtered)
        self.assertEqual(cache.get(other.service, None), other)
        self.assertIsNone(cache.get(ORDERS, ("C1",)))
        self.assertEqual(cache.views(), self.cache.views())
        self.assertEqual(len(self.files()), 3)

    def test_fileContent(self):
        """
        A file is JSON naming its format and version, and holds its key and
        the wire ServiceInfo.
        """
        info = view(clusters=("C1",))
        self.cache.store(ORDERS, ("C1",), info)
        [name] = self.files()
        with open(os.path.join(self.directory, name), "rb") as f:
            document = json.load(f)
        self.assertEqual((document["format"], document["version"]), ("distro-view-cache", 1))
        self.assertEqual(document["key"], {"service": ORDERS.as_wire(), "clusters": ["C1"]})
        self.assertEqual(document["service_info"], info.as_wire())

    def test_anyServiceName(self):
        """
        File names are hashes: names with path separators, dots and non-ASCII
        characters stay inside the directory and load back.
        """
        names = ["../../etc/passwd", "a/b\\c", "..", "zone:\u00e9\u4e2d", "x" * 256]
        for i, name in enumerate(names):
            service = Service(name, group="g/..")
            self.cache.store(service, None, view(service, checksum=str(i)))
        files = self.files()
        self.assertEqual(len(files), len(names))
        for name in files:
            self.assertRegex(name, r"^view-[0-9a-f]{64}\.json$")
        cache = self.reloaded()
        self.assertEqual(
            sorted(key[0].name for key in cache.views()), sorted(names)
        )

    def test_unchangedChecksumNotRewritten(self):
        """
        A view with the checksum already on disk is held in memory but not
        written; a new checksum is.
        """
        self.assertTrue(self.cache.store(ORDERS, None, view(revision=1)))
        [name] = self.files()
        path = os.path.join(self.directory, name)
        before = os.stat(path)
        self.assertFalse(self.cache.store(ORDERS, None, view(revision=2)))
        self.assertEqual(self.cache.get(ORDERS, None).revision, 2)
        after = os.stat(path)
        self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))
        self.assertEqual(self.reloaded().get(ORDERS, None).revision, 1)
        self.assertTrue(self.cache.store(ORDERS, None, view(hosts=("b",), checksum="c2")))
        self.assertEqual(ips(self.reloaded().get(ORDERS, None)), ["b"])

    def test_loadedChecksumNotRewritten(self):
        """
        A view loaded from the disk counts as written.
        """
        self.cache.store(ORDERS, None, view())
        cache = self.reloaded()
        self.assertFalse(cache.store(ORDERS, None, view(revision=7)))

    def test_corruptAndForeignFilesIgnored(self):
        """
        Undecodable, truncated, foreign, newer-format, malformed and misnamed
        files are reported and skipped; the good ones still load.
        """
        self.cache.store(ORDERS, None, view())
        [good] = self.files()
        with open(os.path.join(self.directory, good), "rb") as f:
            data = f.read()
        document = json.loads(data)

        def write(name, content):
            with open(os.path.join(self.directory, name), "wb") as f:
                f.write(content if isinstance(content, bytes) else json.dumps(content).encode())

        bad = {
            "view-" + "1" * 64 + ".json": b"\xff\xfe\x00garbage",
            "view-" + "2" * 64 + ".json": data[: len(data) // 2],
            "view-" + "3" * 64 + ".json": dict(document, version=2),
            "view-" + "4" * 64 + ".json": dict(document, format="something-else"),
            "view-" + "5" * 64 + ".json": [1, 2, 3],
            "view-" + "6" * 64 + ".json": dict(document, service_info={"hosts": 3}),
            # A good entry under another key's name.
            "view-" + "7" * 64 + ".json": document,
        }
        for name, content in bad.items():
            write(name, content)
        malformed = dict(document, service_info=dict(document["service_info"]))
        malformed["service_info"]["service"] = {"name": "payments"}
        os.remove(os.path.join(self.directory, good))
        write(good, malformed)
        write("notes.txt", b"not ours")
        os.mkdir(os.path.join(self.directory, "subdirectory"))
        other = Service("payments")
        self.cache.store(other, None, view(other))

        cache = ViewCache(self.directory)
        with capturedLogs() as events:
            self.assertEqual(cache.load(), 1)
        self.assertEqual(list(cache.views()), [(other, None)])
        reported = warnings(events)
        for name in list(bad) + [good]:
            self.assertEqual(
                len([text for text in reported if name in text]), 1, (name, reported)
            )
        self.assertEqual(len(reported), len(bad) + 1)
        infos = [formatEvent(e) for e in events if e["log_level"] == LogLevel.info]
        self.assertTrue(any("notes.txt" in text for text in infos), infos)

    def test_missingDirectory(self):
        """
        A directory gone at load is reported and means no views.
        """
        os.rmdir(self.directory)
        with capturedLogs() as events:
            self.assertEqual(self.cache.load(), 0)
        self.assertEqual(len(warnings(events)), 1)

    def test_createsParents(self):
        """
        Missing parent directories are created.
        """
        path = os.path.join(self.tempPath(), "a", "b")
        ViewCache(path).store(ORDERS, None, view())
        self.assertEqual(len(os.listdir(path)), 1)

    def test_noTemporaryFilesLeft(self):
        """
        Writes go through a temporary file renamed over the view's file;
        none is left behind, and a half-written file never replaces a view.
        """
        for i in range(5):
            self.cache.store(ORDERS, None, view(checksum=str(i)))
            self.cache.store(Service("s%d" % i), None, view(Service("s%d" % i)))
        self.assertEqual(len(self.files()), 6)
        self.assertTrue(all(name.startswith("view-") for name in self.files()))

        def failingReplace(source, destination):
            raise OSError(28, "No space left on device")

        self.patch(_cache.os, "replace", failingReplace)
        with capturedLogs() as events:
            self.assertFalse(self.cache.store(ORDERS, None, view(hosts=("new",), checksum="x")))
        self.assertIn("No space left", " ".join(warnings(events)))
        self.assertEqual(len(self.files()), 6)
        self.assertTrue(all(name.startswith("view-") for name in self.files()))
        self.assertEqual(ips(self.cache.get(ORDERS, None)), ["new"])
        self.assertEqual(self.reloaded().get(ORDERS, None).checksum, "4")

    def test_failedWriteRetried(self):
        """
        After a failed write, storing the same view again writes it.
        """
        replace = os.replace
        failures = [OSError(5, "I/O error")]

        def flakyReplace(source, destination):
            if failures:
                raise failures.pop()
            replace(source, destination)

        self.patch(_cache.os, "replace", flakyReplace)
        with capturedLogs():
            self.assertFalse(self.cache.store(ORDERS, None, view()))
        self.assertTrue(self.cache.store(ORDERS, None, view()))
        self.assertEqual(self.reloaded().get(ORDERS, None), view())

    def test_fsync(self):
        """
        With C{fsync}, the file is synced before it replaces the old one.
        """
        synced = []
        fsync = os.fsync
        self.patch(_cache.os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
        ViewCache(self.directory, fsync=True).store(ORDERS, None, view())
        self.assertTrue(synced)
        del synced[:]
        self.cache.store(Service("other"), None, view(Service("other")))
        self.assertEqual(synced, [])


class CachedSessionTests(ClusterTestMixin, TempPathMixin, SynchronousTestCase):
    """
    A L{DistroClient} with a cache directory, against two real nodes in
    memory (L{distro.client.testing.InMemoryCluster}).
    """

    nodes = 2

    def setUp(self):
        self.directory = self.tempPath()
        self.useCluster()
        self.other = self.connect(cache_dir=None)

    def makeClient(self, **kwargs):
        """
        An unstarted client of the cluster with the cache directory.
        """
        kwargs.setdefault("cache_dir", self.directory)
        kwargs.setdefault("retry_policy", lambda failures: 1.0)
        kwargs.setdefault("timeout", 5.0)
        kwargs.setdefault("endpoint_factory", self.network.endpoint)
        return DistroClient(
            self.cluster.servers,
            clock=self.clock,
            start_at=0,
            **kwargs,
        )

    def connect(self, **kwargs):
        """
        A connected client.
        """
        client = self.makeClient(**kwargs)
        d = client.start()
        self.cluster.flush()
        self.assertIs(self.successResultOf(d), client)
        return client

    def stored(self, service=ORDERS, clusters=None):
        """
        The view on disk for a key, read by a fresh L{ViewCache}.
        """
        cache = ViewCache(self.directory)
        cache.load()
        return cache.get(service, clusters)

    def allDown(self):
        """
        Make every node unreachable: node 0 stops (the connections to it
        drop), node 1 runs on but refuses the clients, until
        C{self.network.allow(1)}.
        """
        self.network.refuse(1)
        self.cluster.stop_node(0)

    def test_subscriptionViewsStored(self):
        """
        The view of a subscription, and every pushed one, are written.
        """
        client = self.connect()
        self.settle(self.other.register("orders", "a", 1))
        self.settle(client.subscribe("orders", lambda info: None))
        self.assertEqual(ips(self.stored()), ["a"])
        self.settle(self.other.register("orders", "b", 1))
        self.assertEqual(ips(self.stored()), ["a", "b"])
        self.assertEqual(self.stored(), client.last_service_info("orders"))

    def test_queryViewsStored(self):
        """
        Query answers are written under their cluster filter; healthy-only
        answers, which are not the whole view, are not.
        """
        client = self.connect()
        self.settle(self.other.register("orders", "a", 1, cluster="C1"))
        self.settle(self.other.register("orders", "b", 1, cluster="C2", healthy=False))
        self.settle(client.query("orders", clusters=["C2"]))
        self.assertEqual(ips(self.stored(clusters=("C2",))), ["b"])
        self.assertIsNone(self.stored())
        self.settle(client.query("orders", healthy_only=True))
        self.assertIsNone(self.stored())
        self.settle(client.query("orders"))
        self.assertEqual(ips(self.stored()), ["a", "b"])

    def test_samePushNotRewritten(self):
        """
        A push of a view with the checksum already stored (here, by a query
        answered while the nodes' C{push_delay_ms} held the push back)
        writes nothing, though the push is the subscription's last view.
        """
        self.useCluster(push_delay_ms=1000)
        self.other = self.connect(cache_dir=None)
        client = self.connect()
        self.settle(self.other.register("orders", "a", 1))
        self.settle(client.subscribe("orders", lambda info: None))
        self.settle(self.other.register("orders", "b", 1))  # pushed at once
        self.assertEqual(ips(client.last_service_info("orders")), ["a", "b"])
        self.settle(self.other.register("orders", "c", 1))  # pushed in a second
        answer = self.settle(client.query("orders"))
        self.assertEqual(ips(self.stored()), ["a", "b", "c"])
        self.assertEqual(ips(client.last_service_info("orders")), ["a", "b"])
        writes = []
        self.patch(_cache.ViewCache, "_replace", lambda self, *a: writes.append(a))
        self.advance(1)
        self.assertEqual(client.last_service_info("orders").checksum, answer.checksum)
        self.assertEqual(ips(client.last_service_info("orders")), ["a", "b", "c"])
        self.assertEqual(writes, [])
        self.other.register("orders", "d", 1)
        self.advance(1)
        self.assertEqual(len(writes), 1)

    def test_restartDuringOutage(self):
        """
        A client started with a cache directory while no node answers serves
        the stored views: at once for C{last_service_info}, C{query} and
        C{subscribe}; its start succeeds as soon as every server refused
        it (telling the session's listeners C{"offline"}), and it keeps
        trying the servers. When a node answers, the
        subscription is sent and a view that changed meanwhile reaches the
        listener and the disk.
        """
        first = self.connect()
        self.settle(self.other.register("orders", "a", 1, cluster="C1"))
        self.settle(self.other.register("orders", "b", 1, cluster="C2"))
        self.settle(first.subscribe("orders", lambda info: None))
        self.settle(first.close())
        self.allDown()

        client = self.makeClient()
        self.assertEqual(ips(client.last_service_info("orders")), ["a", "b"])
        told = []
        client.add_session_listener(told.append)
        with capturedLogs() as events:
            started = client.start()
        self.assertEqual(told, ["offline"])
        self.assertIn("serving the 1 cached views", " ".join(warnings(events)))
        self.assertIn("connection refused", " ".join(warnings(events)))
        self.assertEqual(ips(self.successResultOf(client.query("orders"))), ["a", "b"])
        only = self.successResultOf(client.query("orders", clusters=["C2"], healthy_only=True))
        self.assertEqual((ips(only), only.clusters), (["b"], ("C2",)))
        views = []
        info = self.successResultOf(client.subscribe("orders", views.append))
        self.assertEqual(ips(info), ["a", "b"])
        unknown = client.query("payments")
        self.assertNoResult(unknown)
        self.assertIs(self.successResultOf(started), client)

        self.advance(*[1] * 5)
        self.failureResultOf(unknown, RequestTimeout)
        self.assertFalse(client.connected)

        # Another client drops an instance; both reconnect to node 1.
        removed = self.other.deregister("orders", "b", 1, cluster="C2")
        self.network.allow(1)
        self.advance(1, 1)
        self.assertTrue(self.successResultOf(removed))
        self.assertTrue(client.connected)
        self.assertEqual(client.node, "n1")
        self.assertIn("subscribe", [m["op"] for m in self.cluster.requests(1)])
        self.assertEqual([ips(v) for v in views], [["a"]])
        self.assertEqual(ips(self.stored()), ["a"])

    def test_uncachedQueryWaits(self):
        """
        While no node answers, a query of a service never seen waits for a
        node and times out.
        """
        self.allDown()
        client = self.makeClient()
        client.start()
        d = client.query("orders")
        self.assertNoResult(d)
        self.advance(*[1] * 5)
        self.failureResultOf(d, RequestTimeout)

    def test_freshViewWins(self):
        """
        Connected, a subscription answers with the node's view, not the
        stored one; the stored one is then replaced.
        """
        self.settle(self.other.register("orders", "a", 1))
        self.settle(self.connect().query("orders"))
        self.settle(self.other.register("orders", "b", 1))
        client = self.connect()
        self.assertEqual(ips(client.last_service_info("orders")), ["a"])
        views = []
        info = self.settle(client.subscribe("orders", views.append))
        self.assertEqual(ips(info), ["a", "b"])
        self.assertEqual(views, [])
        self.assertEqual(ips(self.stored()), ["a", "b"])

    def test_refusedStillFails(self):
        """
        With a cache directory, a node refusing the session (here, for want
        of a token) still fails the start and closes the client.
        """
        self.useCluster(auth_tokens={"s3cret": ["*"]})
        client = self.makeClient()
        d = client.start()
        self.settle()
        self.assertEqual(self.failureResultOf(d, DistroError).value.code, "UNAUTHORIZED")
        self.failureResultOf(client.ping(), NotConnected)
        self.advance(10)
        self.assertEqual(self.network.attempts, self.cluster.servers[:1])

    def test_closedWhileStarting(self):
        """
        Closing a client that waits for its first node (node 0 does not
        answer, node 1 refuses) fails the start, and it tries no more.
        """
        self.network.refuse(1)
        self.cluster.pause_node(0)
        attempts = []

        def endpoint(host, port):
            attempts.append(port)
            return self.network.endpoint(host, port)

        client = self.makeClient(endpoint_factory=endpoint)
        d = client.start()
        self.advance(1)
        self.assertNoResult(d)
        self.successResultOf(client.close())
        self.failureResultOf(d, NotConnected)
        tried = len(attempts)
        self.advance(*[1] * 10)
        self.assertEqual(len(attempts), tried)

    def test_withoutCacheDirectory(self):
        """
        Without a cache directory nothing is written, and an unreachable
        cluster fails the start, as before.
        """
        self.allDown()
        client = self.makeClient(cache_dir=None)
        d = client.start()
        self.advance(*[1] * 5)
        self.failureResultOf(d, NotConnected)
        self.assertFalse(os.path.exists(self.directory))


class ConnectTests(SynchronousTestCase):
    """
    L{distro.client.connect} passes C{cache_dir} on.
    """

    def test_cacheDir(self):
        """
        C{cache_dir} becomes the client's C{cache_dir}.
        """
        from distro.client import _session

        made = []

        class Recorder:
            def __init__(self, servers, **kwargs):
                made.append(kwargs)

            def start(self):
                return "started"

        self.patch(_session, "DistroClient", Recorder)
        result = _session.connect(ADDRESSES, reactor=Clock(), cache_dir="views")
        self.assertEqual(result, "started")
        self.assertEqual(made[0]["cache_dir"], "views")
