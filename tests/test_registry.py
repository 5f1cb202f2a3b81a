# -*- test-case-name: tests.test_registry -*-
"""
Tests for L{distro.registry} fed through a real L{distro.clients.ClientManager}.
"""

import random
import sys
from functools import partial

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from distro.clients import ClientManager
from distro.config import Config
from distro.interfaces import IClientManager, IRegistry, IViewListener
from distro.model import ServiceKey
from distro.native import views
from distro.registry import Registry
from tests._factories import modelInstance

ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")


# An instance on 10.0.0.1:PORT, with FIELDS.
inst = partial(modelInstance, "10.0.0.1")


@implementer(IViewListener)
class Changes:
    """
    A view listener recording which services changed.
    """

    def __init__(self):
        self.services = []

    def viewChanged(self, service):
        self.services.append(service)


class RegistryTests(SynchronousTestCase):
    """
    Views, dedup, listings and change notification.
    """

    def setUp(self):
        self.clock = Clock()
        self.manager = ClientManager("n1", self.clock, Config())
        self.registry = Registry()
        self.manager.addObserver(self.registry)
        self.changes = Changes()
        self.registry.addViewListener(self.changes)
        self.a, _ = self.manager.clientConnected()
        self.b, _ = self.manager.clientConnected()

    def hosts(self, service=ORDERS, **kw):
        return [h.instanceId for h in self.registry.serviceInfo(service, **kw).hosts]

    def test_interfaces(self):
        """
        The registry and manager provide their interfaces.
        """
        verifyObject(IRegistry, self.registry)
        verifyObject(IClientManager, self.manager)
        verifyObject(IViewListener, self.changes)

    def test_unionOfClients(self):
        """
        A view is the union of all clients' instances, sorted by instance id.
        """
        self.manager.register(self.b, ORDERS, inst(2))
        self.manager.register(self.a, ORDERS, inst(1))
        self.assertEqual(self.hosts(), ["10.0.0.1#1#DEFAULT", "10.0.0.1#2#DEFAULT"])
        self.assertEqual(self.changes.services, [ORDERS, ORDERS])

    def test_dedupGreatestWriteTsThenClientId(self):
        """
        The same (ip, port, cluster) from two clients shows once: the newest
        write wins, ties go to the greater client id; removing the winner
        shows the other.
        """
        self.manager.register(self.a, ORDERS, inst(1, weight=3))
        self.clock.advance(1)
        self.manager.register(self.b, ORDERS, inst(1, weight=5))
        (host,) = self.registry.serviceInfo(ORDERS).hosts
        self.assertEqual(host.weight, 5)
        self.clock.advance(1)
        self.manager.register(self.a, ORDERS, inst(1, weight=7))
        (host,) = self.registry.serviceInfo(ORDERS).hosts
        self.assertEqual(host.weight, 7)
        self.manager.deregister(self.a, ORDERS, "10.0.0.1#1#DEFAULT")
        (host,) = self.registry.serviceInfo(ORDERS).hosts
        self.assertEqual(host.weight, 5)

    def test_dedupTie(self):
        """
        At the same write time the greater client id wins, on every node alike.
        """
        self.manager.register(self.a, ORDERS, inst(1, weight=3))
        self.manager.register(self.b, ORDERS, inst(1, weight=5))
        winner = max([(self.a.clientId, 3.0), (self.b.clientId, 5.0)])[1]
        self.assertEqual(self.registry.serviceInfo(ORDERS).hosts[0].weight, winner)

    def test_noChangeNoRevision(self):
        """
        Re-registering the same content changes neither revision nor listeners.
        """
        self.manager.register(self.a, ORDERS, inst(1))
        info = self.registry.serviceInfo(ORDERS)
        self.clock.advance(5)
        self.manager.register(self.a, ORDERS, inst(1))
        self.manager.batchRegister(self.a, ORDERS, [inst(1)])
        self.assertIs(self.registry.serviceInfo(ORDERS), info)
        self.assertEqual(self.changes.services, [ORDERS])

    def test_revisionIncreasesAcrossRecreation(self):
        """
        A view emptied and made again still has a greater revision.
        """
        self.manager.register(self.a, ORDERS, inst(1))
        r1 = self.registry.serviceInfo(ORDERS).revision
        self.manager.deregister(self.a, ORDERS, "10.0.0.1#1#DEFAULT")
        r2 = self.registry.serviceInfo(ORDERS).revision
        self.manager.register(self.a, ORDERS, inst(1))
        r3 = self.registry.serviceInfo(ORDERS).revision
        self.assertTrue(r1 < r2 < r3, (r1, r2, r3))

    def test_filters(self):
        """
        Cluster filters and healthy_only select hosts; disabled ones never show.
        """
        self.manager.batchRegister(self.a, ORDERS, [
            inst(1, cluster="A"), inst(2, cluster="B", healthy=False),
            inst(3, cluster="B", enabled=False), inst(4, cluster="C"),
        ])
        self.assertEqual(len(self.hosts()), 3)
        self.assertEqual(self.hosts(clusters=("B",)), ["10.0.0.1#2#B"])
        self.assertEqual(self.hosts(clusters=("A", "B"), healthyOnly=True), ["10.0.0.1#1#A"])
        info = self.registry.serviceInfo(ORDERS, clusters=("A",))
        self.assertEqual(views.wireMap(info)["clusters"], ["A"])

    def test_checksumFollowsContent(self):
        """
        Equal content gives an equal checksum, whatever the history.
        """
        other = ServiceKey("public", "DEFAULT_GROUP", "other")
        self.manager.register(self.a, ORDERS, inst(1))
        self.manager.register(self.a, ORDERS, inst(2))
        self.manager.register(self.b, other, inst(2))
        self.manager.register(self.b, other, inst(1, weight=9))
        self.manager.register(self.b, other, inst(1))
        self.assertEqual(
            self.registry.serviceInfo(ORDERS).checksum, self.registry.serviceInfo(other).checksum
        )

    def test_clientRemovedTakesItsInstances(self):
        """
        Removing a client removes its instances from every view, once.
        """
        other = ServiceKey("ns2", "G", "other")
        self.manager.register(self.a, ORDERS, inst(1))
        self.manager.register(self.a, other, inst(1))
        self.manager.register(self.b, ORDERS, inst(2))
        del self.changes.services[:]
        self.manager.removeClient(self.a.clientId)
        self.assertEqual(self.hosts(), ["10.0.0.1#2#DEFAULT"])
        self.assertEqual(self.hosts(other), [])
        self.assertEqual(sorted(self.changes.services), sorted([ORDERS, other]))
        self.assertNotIn(other, self.registry.views)

    def test_servicesPaging(self):
        """
        Services are listed per namespace, sorted by group and name, paged.
        """
        for name in ("c", "a", "b"):
            self.manager.register(self.a, ServiceKey("public", "G1", name), inst(1))
        self.manager.register(self.a, ServiceKey("public", "G0", "z"), inst(1))
        self.manager.register(self.a, ServiceKey("other", "G1", "x"), inst(1))
        count, page = self.registry.services("public", None, 1, 2)
        self.assertEqual((count, page), (4, [("G0", "z", 1), ("G1", "a", 1)]))
        count, page = self.registry.services("public", "G1", 2, 2)
        self.assertEqual((count, page), (3, [("G1", "c", 1)]))
        self.assertEqual(self.registry.services("nowhere", None, 1, 10), (0, []))
        self.manager.removeClient(self.a.clientId)
        self.assertEqual(self.registry.services("public", None, 1, 10), (0, []))

    def test_servicesPagesAcrossGroups(self):
        """
        Every page of a namespace's services, across groups of every size,
        is that slice of them all sorted by group and name, counted; so
        after removals.
        """
        rng = random.Random(19)
        services = {(f"G{rng.randrange(6)}", f"s{rng.randrange(400):03d}") for _ in range(500)}
        for group, name in services:
            self.manager.register(self.a, ServiceKey("public", group, name), inst(1))

        def check():
            ordered = sorted(services)
            for size in (1, 7, 50, len(ordered) + 1):
                pages = [self.registry.services("public", None, page, size)
                         for page in range(1, len(ordered) // size + 3)]
                self.assertEqual({count for count, _ in pages}, {len(ordered)})
                self.assertEqual([(g, n) for _, page in pages for g, n, _ in page], ordered)

        check()
        for group, name in rng.sample(sorted(services), 300):
            self.manager.deregister(self.a, ServiceKey("public", group, name), "10.0.0.1#1#DEFAULT")
            services.discard((group, name))
        check()

    def test_firstPagesOfManyGroups(self):
        """
        A page near the start of a namespace of thousands of groups reads
        the groups it lists and no further (walking the rest cost 15 ms a
        page with 20,000 groups): counted as the Python calls it makes.
        """
        for n in range(2000):
            self.manager.register(self.a, ServiceKey("public", f"G{n:04d}", "s"), inst(1))
        calls = []

        def profile(frame, event, arg):
            if event == "call":
                calls.append(frame.f_code.co_name)

        sys.setprofile(profile)
        try:
            count, page = self.registry.services("public", None, 2, 3)
        finally:
            sys.setprofile(None)
        self.assertEqual((count, page), (2000, [(f"G{n:04d}", "s", 1) for n in (3, 4, 5)]))
        self.assertLess(len(calls), 100, sorted(set(calls)))

    def test_instanceCountsVisibleHosts(self):
        """
        The listing counts the instances a plain query would return.
        """
        self.manager.batchRegister(self.a, ORDERS, [inst(1), inst(2, enabled=False)])
        self.assertEqual(self.registry.services("public", None, 1, 10)[1], [("DEFAULT_GROUP", "orders", 1)])
