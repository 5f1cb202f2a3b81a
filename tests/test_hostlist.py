"""
Tests for L{distro.hostlist}: the shown hosts of a view, packed and sorted
in chunks, with the checksum kept as a sum; and the L{ServiceInfo} made of
them (PROTOCOL.md 3).
"""

import random

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from distro import hostlist, registry
from distro.hostlist import CHUNK, HostList
from distro.model import ServiceKey, checksum, parseInstance
from distro.native import views
from distro.registry import ServiceInfo, ServiceView
from tests._factories import modelInstance

SERVICE = ServiceKey("public", "DEFAULT_GROUP", "orders")


def instance(n, weight=1.0, **fields):
    return modelInstance(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", 8080, weight=weight, **fields)


class ChecksumTests(SynchronousTestCase):
    def test_vector(self):
        """
        The checksum of PROTOCOL.md 3, on known hosts: a node written from
        the page computes the same.
        """
        a = parseInstance({"ip": "10.0.0.1", "port": 8080, "metadata": {"zone": "a", "v": "1"}})
        b = parseInstance({"ip": "10.0.0.2", "port": 8080})
        self.assertEqual(checksum([a]), "a969b94760ff10bfc1212e1f126c8b13")
        self.assertEqual(checksum([a, b]), "6e03c8bda67542fa70eb377a74aafe28")
        self.assertEqual(checksum([b, a]), checksum([a, b]))
        self.assertEqual(checksum([]), "0" * 32)


class HostListTests(SynchronousTestCase):
    def test_againstAModel(self):
        """
        Whatever is put and discarded, in any order, the list shows the
        model's hosts in instance id order, with its count and checksum,
        across chunk splits and emptied chunks.
        """
        rng = random.Random(7)
        shown = HostList()
        model = {}
        for step in range(6 * CHUNK * 4):
            n = rng.randrange(3 * CHUNK * 4)
            if rng.random() < 0.7:
                host = instance(n, weight=float(rng.randrange(5)))
                shown.put(host)
                model[host.instanceId] = host
            else:
                iid = instance(n).instanceId
                shown.discard(iid)
                model.pop(iid, None)
            if step % 500 == 0 or step == 6 * CHUNK * 4 - 1:
                hosts = [h for group in shown.parts() for h in group.hosts]
                self.assertEqual([h.instanceId for h in hosts], sorted(model))
                self.assertEqual(hosts, [model[iid] for iid in sorted(model)])
                self.assertEqual(shown.count, len(model))
                self.assertEqual(shown.checksum(), checksum(model.values()))
        self.assertGreater(len(shown.parts()), 2)

    def test_manyChangesUnread(self):
        """
        However many changes pass between two reads of the checksum, it is
        right at the read.
        """
        shown = HostList()
        hosts = [instance(n) for n in range(3000)]
        for host in hosts:
            shown.put(host)
        self.assertEqual(shown.checksum(), checksum(hosts))
        for host in hosts[:2500]:
            shown.discard(host.instanceId)
        shown.put(instance(2999, weight=5.0))
        self.assertEqual(shown.checksum(), checksum(hosts[2500:2999] + [instance(2999, weight=5.0)]))
        self.assertEqual(shown.count, 500)

    def test_partsAreSnapshots(self):
        """
        Parts taken before a change keep showing what was there; only the
        changed chunk is made again.
        """
        shown = HostList()
        for n in range(3 * CHUNK):
            shown.put(instance(n))
        before = shown.parts()
        shown.put(instance(5, weight=9.0))
        after = shown.parts()
        iid = instance(5).instanceId

        def weight(parts):
            (host,) = [h for group in parts for h in group.hosts if h.instanceId == iid]
            return host.weight

        self.assertEqual((weight(before), weight(after)), (1.0, 9.0))
        self.assertEqual(sum(a is not b for a, b in zip(before, after)), 1)


class ServiceInfoTests(SynchronousTestCase):
    def view(self, count):
        view = ServiceView(SERVICE)
        for n in range(count):
            view.put("c1", instance(n, cluster="A" if n % 2 else "B", healthy=n % 3 != 0))
        view.put("c1", instance(count, enabled=False))
        view.changed(7)
        return view

    def test_packedIsWire(self):
        """
        The packed pieces of a view's info, joined, are the msgpack of its
        map form, for large and small views, filtered or not.
        """
        for count in (0, 3, 20, 3 * CHUNK):
            view = self.view(count)
            for clusters, healthyOnly in ((None, False), (frozenset(["A"]), False), (None, True)):
                info = view.info(clusters, healthyOnly)
                self.assertEqual(msgpack.unpackb(views.packed(info), raw=False), views.wireMap(info))
                self.assertEqual(views.packedSize(info), len(views.packed(info)))
                self.assertEqual(info.count, len(info.hosts))
                self.assertEqual(info.checksum, checksum(info.hosts))
            self.assertEqual(view.info().count, count)
            self.assertEqual(view.visibleCount(), count)

    def test_sameAsBuiltFromHosts(self):
        """
        The kept-up-to-date info equals the one built from the hosts.
        """
        view = self.view(2 * CHUNK + 5)
        info = view.info()
        built = ServiceInfo.ofHosts(SERVICE, None, info.hosts, info.revision)
        self.assertEqual(views.packed(info), views.packed(built))
        self.assertEqual(info.checksum, built.checksum)

    def test_filteredKeptUpToDate(self):
        """
        A filtered view, once asked for, is kept up to date change by
        change: after any changes it equals the view built from scratch,
        whatever instances were added, removed, disabled or made unhealthy,
        by one client or several.
        """
        rng = random.Random(11)
        view = ServiceView(SERVICE)
        filters = [(frozenset(["A"]), False), (None, True), (frozenset(["A", "B"]), True)]
        revision = 0
        for step in range(3000):
            n = rng.randrange(600)
            client = rng.choice(["c1", "c2"])
            if rng.random() < 0.75:
                view.put(client, instance(
                    n, weight=float(rng.randrange(3)), cluster=rng.choice("ABC"),
                    healthy=rng.random() < 0.7, enabled=rng.random() < 0.9))
            else:
                view.remove(client, instance(n).instanceId)
            if step % 300 == 0:
                revision += 1
                view.changed(revision)
                for clusters, healthyOnly in filters:
                    info = view.info(clusters, healthyOnly)
                    hosts = sorted(
                        (i for i in view.chosen() if i.enabled
                         and (clusters is None or i.cluster in clusters)
                         and (i.healthy or not healthyOnly)),
                        key=lambda i: i.instanceId)
                    built = ServiceInfo.ofHosts(SERVICE, clusters, hosts, revision)
                    self.assertEqual(views.packed(info), views.packed(built))
                    self.assertEqual(info.checksum, built.checksum)


class ViewModelTests(SynchronousTestCase):
    """
    A view against a brute-force model of the dedup rule and the filters,
    with tiny chunks, few cached filters and every pending limit, over
    random put/remove sequences: what it shows, counts, checksums and packs
    is the model's, and every info handed out stays as it was.
    """

    FILTERS = [(None, False), (None, True), (("A",), False), (("A", "B"), True), ((), False)]

    @staticmethod
    def expected(model, clusters, healthyOnly):
        chosen = [byClient[max(byClient, key=lambda c: (byClient[c].writeTs, c))]
                  for byClient in model.values() if byClient]
        return sorted(
            (i for i in chosen if i.enabled and (clusters is None or i.cluster in clusters)
             and (i.healthy or not healthyOnly)),
            key=lambda i: i.instanceId)

    def test_againstModel(self):
        self.patch(hostlist, "CHUNK", 2)
        self.patch(registry, "_MAX_CACHED_FILTERS", 2)
        for seed in range(12):
            rng = random.Random(seed)
            self.patch(hostlist, "_PENDING_LIMIT", rng.choice([1, 3, 1024]))
            view = ServiceView(SERVICE)
            model = {}
            handed = []
            revision = 0
            for _ in range(400):
                n = rng.randrange(12)
                cluster = "ABC"[n % 3]
                iid = f"10.0.0.{n}#80#{cluster}"
                client = rng.choice(["c1", "c2", "c3"])
                if rng.random() < 0.65:
                    host = parseInstance(
                        {"ip": f"10.0.0.{n}", "port": 80, "cluster": cluster,
                         "weight": float(rng.randrange(3)), "healthy": rng.random() < 0.7,
                         "enabled": rng.random() < 0.8,
                         "metadata": rng.choice([{}, {"k": "v"}, {"k": "w"}])},
                        writeTs=rng.randrange(5))
                    model.setdefault(iid, {})[client] = host
                    changed = view.put(client, host)
                else:
                    model.get(iid, {}).pop(client, None)
                    changed = view.remove(client, iid)
                if changed:
                    revision += 1
                    view.changed(revision)
                for clusters, healthyOnly in rng.sample(self.FILTERS, 3):
                    info = view.info(clusters, healthyOnly)
                    expected = self.expected(model, clusters, healthyOnly)
                    self.assertEqual([h.content() for h in info.hosts],
                                     [h.content() for h in expected])
                    self.assertEqual((info.count, info.checksum), (len(expected), checksum(expected)))
                    packed = msgpack.unpackb(views.packed(info), raw=False)
                    self.assertEqual([h["instance_id"] for h in packed["hosts"]],
                                     [h.instanceId for h in expected])
                    handed.append((info, views.packed(info), info.checksum))
            for info, packed, sum_ in handed:
                self.assertEqual((views.packed(info), info.checksum), (packed, sum_))
