"""
Tests for L{distro.overrides} and L{distro.hlc}: the map of operator
overrides (last writer wins by hybrid logical clock, tombstones, expiry) and
the views that show them (L{distro.registry}).
"""

import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from distro.clients import ClientManager
from distro.config import Config
from distro.errors import BadRequest, LimitExceeded
from distro.hlc import MAX_AHEAD_MS, HybridClock
from distro.interfaces import IOverrideObserver, IOverrides
from distro.model import Instance, ServiceKey
from distro.overrides import CHANGES, Overrides, parseChanges, parseInstanceId, parseOverride
from distro.registry import Registry

ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")
IID = "10.0.0.1#8080#DEFAULT"
DAY_MS = 86_400_000


def instance(ip="10.0.0.1", port=8080, weight=1.0, enabled=True, **metadata):
    return Instance(ip, port, "DEFAULT", weight, True, enabled, metadata or {"v": "1"})


def overrides(clock, node="n1", expiryMs=DAY_MS, maxOverrides=100):
    return Overrides(HybridClock(clock, node), maxOverrides=maxOverrides, expiryMs=expiryMs,
                     maxMetadataBytes=1024)


class HybridClockTests(SynchronousTestCase):
    def test_followsTheWallClock(self):
        clock = Clock()
        clock.advance(10)
        hlc = HybridClock(clock, "n1")
        self.assertEqual(hlc.now(), (10_000, 0, "n1"))
        self.assertEqual(hlc.now(), (10_000, 1, "n1"))
        clock.advance(0.001)
        self.assertEqual(hlc.now(), (10_001, 0, "n1"))

    def test_neverBackwards(self):
        """
        A clock set back, or a member's stamp ahead, never makes a stamp
        below one made or seen before.
        """
        clock = Clock()
        clock.advance(100)
        hlc = HybridClock(clock, "n1")
        first = hlc.now()
        hlc.witness((105_000, 7, "n2"))
        clock.rightNow = 50  # the wall clock stepped back
        second = hlc.now()
        self.assertGreater(second, first)
        self.assertGreater(second, (105_000, 7, "n2"))

    def test_farAheadCapped(self):
        """
        A stamp days ahead moves the clock only L{MAX_AHEAD_MS} ahead; a
        write replacing it is still stamped above it, without taking the
        clock there.
        """
        clock = Clock()
        hlc = HybridClock(clock, "n1")
        ahead = (5 * DAY_MS, 0, "n2")
        hlc.witness(ahead)
        self.assertEqual(hlc.now()[0], MAX_AHEAD_MS)
        self.assertGreater(hlc.after(ahead), ahead)
        self.assertEqual(hlc.now()[0], MAX_AHEAD_MS)
        self.assertEqual(hlc.last()[0], MAX_AHEAD_MS)


@implementer(IOverrideObserver)
class OverridesTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.map = overrides(self.clock)
        self.seen = []
        self.map.addObserver(self)

    def overrideChanged(self, override, written):
        self.seen.append((override.changes(), override.cleared, written))

    def overridesForgotten(self, keys):
        self.seen.append(("forgotten", keys))

    def test_interfaces(self):
        verifyObject(IOverrides, self.map)
        verifyObject(IOverrideObserver, self)
        verifyObject(IOverrideObserver, Registry())

    def test_writeMergesFields(self):
        """
        A write changes the fields it names and keeps the others; nil
        removes one; with nothing left the entry is a tombstone.
        """
        self.map.write(ORDERS, IID, {"enabled": False}, who="ops", why="disk full")
        entry = self.map.write(ORDERS, IID, {"weight": 5}, who="ops2", why="")
        self.assertEqual(entry.changes(), {"enabled": False, "weight": 5.0})
        self.assertEqual((entry.who, entry.why), ("ops2", ""))
        entry = self.map.write(ORDERS, IID, {"enabled": None, "weight": None}, who="ops", why="")
        self.assertTrue(entry.cleared)
        self.assertEqual(self.map.live(), [])
        self.assertIsNone(self.map.of(ORDERS))
        self.assertEqual([s[2] for s in self.seen], [True, True, True])

    def test_clear(self):
        self.assertIsNone(self.map.clear(ORDERS, IID, who="ops", why=""))
        self.map.write(ORDERS, IID, {"removed": True}, who="ops", why="zombie")
        tombstone = self.map.clear(ORDERS, IID, who="ops", why="back")
        self.assertTrue(tombstone.cleared)
        self.assertEqual(tombstone.changes(), {})
        self.assertEqual(self.map.live(), [])

    def test_lastWriterWinsInAnyOrder(self):
        """
        Members told the same entries in any order, any number of times,
        hold the same map, with the same digest.
        """
        writers = [overrides(self.clock, f"n{n}") for n in range(3)]
        entries = []
        for n, step in enumerate(range(30)):
            writer = writers[n % 3]
            iid = f"10.0.0.{n % 4 + 1}#8080#DEFAULT"
            if n % 5 == 4:
                entry = writer.clear(ORDERS, iid, who="ops", why="") or writer.write(
                    ORDERS, iid, {"weight": n}, who="ops", why="")
            else:
                entry = writer.write(ORDERS, iid, {"weight": n, "enabled": n % 2 == 0}, who="ops", why="")
            entries.append(entry)
            for other in writers:
                if other is not writer and n % 3:
                    other.merge(entry)  # some reach the others at once
            self.clock.advance(0.0005 * (n % 3))
        random.seed(7)
        results = []
        for _ in range(4):
            target = overrides(self.clock, "nx")
            shuffled = entries * 2
            random.shuffle(shuffled)
            for entry in shuffled:
                target.merge(entry)
            results.append((sorted((k, o.stamp, o.cleared) for k, o in target.entries.items()), target.digest))
        for writer in writers:
            for entry in entries:
                writer.merge(entry)
            results.append((sorted((k, o.stamp, o.cleared) for k, o in writer.entries.items()), writer.digest))
        self.assertEqual(len({repr(r) for r in results}), 1)

    def test_olderIgnored(self):
        older = self.map.write(ORDERS, IID, {"weight": 1}, who="ops", why="")
        newer = self.map.write(ORDERS, IID, {"weight": 2}, who="ops", why="")
        self.assertFalse(self.map.merge(older))
        self.assertFalse(self.map.merge(newer))
        self.assertEqual(self.map.get(ORDERS, IID).weight, 2.0)

    def test_nothingToChange(self):
        """
        A write that sets nothing on an instance without an override is
        refused; no tombstone is made.
        """
        for changes in ({"enabled": None}, {"removed": False}):
            with self.assertRaises(BadRequest) as e:
                self.map.write(ORDERS, IID, changes, who="ops", why="")
            self.assertEqual(e.exception.field, "override")
        self.assertEqual(self.map.entries, {})

    def test_textChecked(self):
        """
        A C{who} or C{why} that members or disk would refuse (a lone
        surrogate, a control character, too long) is refused at the write,
        before anything is kept.
        """
        for who, why, field in (("ops", "\ud800", "override.why"), ("ops", "a\nb", "override.why"),
                                ("o" * 129, "", "override.who")):
            with self.assertRaises(BadRequest) as e:
                self.map.write(ORDERS, IID, {"weight": 2}, who=who, why=why)
            self.assertEqual(e.exception.field, field)
        self.assertEqual(self.map.entries, {})

    def test_tombstonesBounded(self):
        """
        Cleared overrides do not count against C{max_overrides}; at most as
        many are kept, the oldest forgotten first.
        """
        small = overrides(self.clock, maxOverrides=2)
        small.addObserver(self)
        ids = [f"10.0.0.{n}#8080#DEFAULT" for n in range(1, 5)]
        for iid in ids:
            small.write(ORDERS, iid, {"enabled": False}, who="ops", why="")
            small.clear(ORDERS, iid, who="ops", why="")
            self.clock.advance(1)
        self.assertEqual(sorted(k[1] for k in small.entries), ids[2:])
        forgotten = [s for s in self.seen if s[0] == "forgotten"]
        self.assertEqual([k[1] for s in forgotten for k in s[1]], ids[:2])
        small.write(ORDERS, ids[0], {"enabled": False}, who="ops", why="")
        small.write(ORDERS, ids[1], {"enabled": False}, who="ops", why="")

    def test_mergesBounded(self):
        """
        A member sending more than twice C{max_overrides} entries has the
        rest refused.
        """
        small = overrides(self.clock, maxOverrides=2)
        other = overrides(self.clock, "n2", maxOverrides=10)
        entries = [other.write(ORDERS, f"10.0.0.{n}#8080#DEFAULT", {"weight": 1}, who="ops", why="")
                   for n in range(1, 7)]
        self.assertEqual([small.merge(e) for e in entries], [True] * 4 + [False] * 2)

    def test_limit(self):
        small = overrides(self.clock, maxOverrides=2)
        for n in (1, 2):
            small.write(ORDERS, f"10.0.0.{n}#8080#DEFAULT", {"enabled": False}, who="ops", why="")
        with self.assertRaises(LimitExceeded) as e:
            small.write(ORDERS, "10.0.0.3#8080#DEFAULT", {"enabled": False}, who="ops", why="")
        self.assertEqual(e.exception.message.split(":")[0], "max_overrides")
        # One held can still change.
        small.write(ORDERS, "10.0.0.1#8080#DEFAULT", {"weight": 3}, who="ops", why="")

    def test_expiry(self):
        """
        An override whose instance no client published for
        C{override_expiry_ms} is cleared (by C{distro}, replicated as any
        clear); its tombstone is forgotten as long after.
        """
        published = {True}
        self.map.write(ORDERS, IID, {"enabled": False}, who="ops", why="")
        self.map.expire(lambda service, iid: True in published)
        published.clear()
        self.map.expire(lambda service, iid: False)  # gone from now
        self.clock.advance(DAY_MS / 1000 - 1)
        self.map.expire(lambda service, iid: False)
        self.assertEqual(len(self.map.live()), 1)
        self.clock.advance(1)
        self.map.expire(lambda service, iid: False)
        entry = self.map.get(ORDERS, IID)
        self.assertTrue(entry.cleared)
        self.assertEqual(entry.who, "distro")
        self.assertIn("expired", entry.why)
        self.assertEqual(self.seen[-1], ({}, True, True))
        self.clock.advance(DAY_MS / 1000)
        self.assertEqual(self.map.expire(lambda service, iid: False), [(ORDERS, IID)])
        self.assertEqual(self.map.entries, {})
        self.assertEqual(self.map.digest, 0)
        # A member's copy of the forgotten tombstone is not taken back.
        self.assertFalse(self.map.merge(entry))

    def test_rewriteCountsAnew(self):
        """
        An override written again counts its instance's absence from then.
        """
        self.map.write(ORDERS, IID, {"enabled": False}, who="ops", why="")
        self.map.expire(lambda service, iid: False)
        self.clock.advance(DAY_MS / 1000 - 1)
        self.map.write(ORDERS, IID, {"weight": 2}, who="ops", why="")
        self.clock.advance(1)
        self.map.expire(lambda service, iid: False)
        self.assertEqual(len(self.map.live()), 1)

    def test_republishedNotExpired(self):
        gone = [True]
        self.map.write(ORDERS, IID, {"enabled": False}, who="ops", why="")
        self.map.expire(lambda service, iid: not gone[0])
        self.clock.advance(DAY_MS / 2000)
        gone[0] = False
        self.map.expire(lambda service, iid: not gone[0])
        gone[0] = True
        self.clock.advance(DAY_MS / 2000 + 1)
        self.map.expire(lambda service, iid: not gone[0])
        self.assertEqual(len(self.map.live()), 1)  # gone again only since now


class ParseTests(SynchronousTestCase):
    def test_roundTrip(self):
        clock = Clock()
        entry = overrides(clock).write(ORDERS, IID, {"enabled": False, "weight": 2.5,
                                                     "metadata": {"zone": "b", "old": None}},
                                       who="ops", why="maintenance")
        parsed = parseOverride(entry.toWire(), 1024)
        self.assertEqual(parsed.toWire(), entry.toWire())

    def test_badFields(self):
        good = overrides(Clock()).write(ORDERS, IID, {"enabled": False}, who="ops", why="").toWire()
        cases = [
            ({"instance_id": "10.0.0.1:8080"}, "override.instance_id"),
            ({"instance_id": "10.0.0.1#08080#DEFAULT"}, "override.instance_id"),
            ({"enabled": "no"}, "override.enabled"),
            ({"weight": -1}, "override.weight"),
            ({"weight": float("nan")}, "override.weight"),
            ({"metadata": {"a": 1}}, "override.metadata"),
            ({"stamp": [1, 2]}, "override.stamp"),
            ({"who": None}, "override.who"),
            ({"why": "x" * 513}, "override.why"),
            ({"cleared": True}, "override.cleared"),
            ({"service": {"namespace": "public"}}, "override.service.name"),
        ]
        for change, field in cases:
            with self.assertRaises(BadRequest) as e:
                parseOverride(dict(good, **change), 1024)
            self.assertEqual(e.exception.field, field, change)
        with self.assertRaises(LimitExceeded):
            parseChanges({"metadata": {"k": "v" * 2000}}, 1024)

    def test_instanceId(self):
        self.assertEqual(parseInstanceId("fe80::1#80#DEFAULT"), "fe80::1#80#DEFAULT")
        with self.assertRaises(BadRequest):
            parseInstanceId("10.0.0.1#80#bad cluster")

    def test_changesOnly(self):
        self.assertEqual(set(parseChanges({n: None for n in CHANGES} | {"other": 1}, 10)), set(CHANGES))


class ViewTests(SynchronousTestCase):
    """
    Views show the overrides over what clients publish.
    """

    def setUp(self):
        self.clock = Clock()
        self.map = overrides(self.clock)
        self.registry = Registry(self.map)
        self.manager = ClientManager("n1", self.clock, Config())
        self.manager.addObserver(self.registry)
        self.client, _ = self.manager.clientConnected()
        self.changes = []
        self.registry.addViewListener(self)

    def viewChanged(self, service):
        self.changes.append(service)

    def hosts(self, **filters):
        return [(h.instanceId, h.weight, h.enabled, dict(h.metadata))
                for h in self.registry.serviceInfo(ORDERS, **filters).hosts]

    def test_drainHolds(self):
        """
        A drained instance leaves the view; its client registering it again
        does not bring it back; clearing the drain does.
        """
        self.manager.register(self.client, ORDERS, instance())
        self.map.write(ORDERS, IID, {"enabled": False}, who="ops", why="")
        self.assertEqual(self.hosts(), [])
        self.assertEqual(self.changes, [ORDERS, ORDERS])
        self.manager.register(self.client, ORDERS, instance(weight=3.0))
        self.assertEqual(self.hosts(), [])
        self.map.clear(ORDERS, IID, who="ops", why="")
        self.assertEqual(self.hosts(), [(IID, 3.0, True, {"v": "1"})])

    def test_weightAndMetadata(self):
        self.manager.register(self.client, ORDERS, instance(zone="a"))
        self.map.write(ORDERS, IID, {"weight": 0, "metadata": {"zone": "b", "v": None, "new": "x"}},
                       who="ops", why="")
        self.assertEqual(self.hosts(), [(IID, 0.0, True, {"zone": "b", "new": "x"})])
        self.assertEqual(self.hosts(clusters=("DEFAULT",), healthyOnly=True),
                         [(IID, 0.0, True, {"zone": "b", "new": "x"})])

    def test_removed(self):
        self.manager.register(self.client, ORDERS, instance())
        self.manager.register(self.client, ORDERS, instance(ip="10.0.0.2"))
        self.hosts(healthyOnly=True)  # a filtered view, kept up to date
        self.map.write(ORDERS, IID, {"removed": True}, who="ops", why="zombie")
        self.assertEqual([h[0] for h in self.hosts()], ["10.0.0.2#8080#DEFAULT"])
        self.assertEqual([h[0] for h in self.hosts(healthyOnly=True)], ["10.0.0.2#8080#DEFAULT"])
        self.assertTrue(self.registry.published(ORDERS, IID))

    def test_setBeforePublished(self):
        """
        An override set before any client publishes the instance (or the
        service) applies when one does.
        """
        self.map.write(ORDERS, IID, {"weight": 7}, who="ops", why="")
        self.assertEqual(self.changes, [])
        self.manager.register(self.client, ORDERS, instance())
        self.assertEqual(self.hosts(), [(IID, 7.0, True, {"v": "1"})])

    def test_otherInstancesUntouched(self):
        for n in range(1, 4):
            self.manager.register(self.client, ORDERS, instance(ip=f"10.0.0.{n}"))
        before = self.registry.serviceInfo(ORDERS)
        self.map.write(ORDERS, "10.0.0.9#8080#DEFAULT", {"weight": 7}, who="ops", why="")
        self.assertIs(self.registry.serviceInfo(ORDERS), before)  # no change, no new revision
        self.map.write(ORDERS, "10.0.0.2#8080#DEFAULT", {"weight": 7}, who="ops", why="")
        self.assertEqual([h[1] for h in self.hosts()], [1.0, 7.0, 1.0])


