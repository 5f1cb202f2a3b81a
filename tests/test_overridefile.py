"""
Tests for L{distro.overridefile}: the operators' overrides on disk.
"""

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from distro.hlc import HybridClock
from distro.model import ServiceKey
from distro.overridefile import (
    FILE_NAME,
    MAGIC,
    OverrideFile,
    OverrideSaver,
    StoredDataError,
    encodeFile,
)
from distro.errors import RequestError
from distro.overrides import Overrides

from ._tempfiles import TempPathMixin

ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")
IID = "10.0.0.1#8080#DEFAULT"


def overrides(clock, node="n1"):
    return Overrides(HybridClock(clock, node), maxOverrides=1000, expiryMs=86_400_000,
                     maxMetadataBytes=1024)


class OverrideFileTests(TempPathMixin, SynchronousTestCase):
    def setUp(self):
        self.dir = self.tempPath()
        self.file = OverrideFile(self.dir)
        self.file.lock()
        self.addCleanup(self.file.unlock)

    def write(self, data):
        with open(os.path.join(self.dir, FILE_NAME), "wb") as f:
            f.write(data)

    def test_none(self):
        self.assertEqual(self.file.load(), ((0, 0), []))

    def test_roundTrip(self):
        entry = overrides(Clock()).write(ORDERS, IID, {"enabled": False}, who="ops", why="x").toWire()
        self.file.save((5, 2), [entry])
        self.assertEqual(self.file.load(), ((5, 2), [entry]))
        self.assertEqual(sorted(os.listdir(self.dir)), sorted([FILE_NAME, "lock"]))  # no temporary left
        self.file.save((6, 0), [])
        self.assertEqual(self.file.load(), ((6, 0), []))

    def assertRefused(self, data, *words):
        self.write(data)
        with self.assertRaises(StoredDataError) as e:
            self.file.load()
        message = str(e.exception)
        self.assertIn(os.path.join(self.dir, FILE_NAME), message)
        for word in words:
            self.assertIn(word, message)
        self.assertNotIn("\n", message)

    def test_foreign(self):
        self.assertRefused(b'{"json": true}', "not a distro overrides file")

    def test_corrupt(self):
        good = encodeFile((1, 0), [])
        self.assertRefused(good[:-1] + bytes([good[-1] ^ 1]), "corrupt", "checksum")
        self.assertRefused(good[: len(MAGIC) + 3], "corrupt")
        self.assertRefused(MAGIC, "corrupt")

    def test_newerVersion(self):
        import msgpack
        from distro.overridefile import _hash

        body = msgpack.packb({"version": 2, "clock": [0, 0], "entries": []})
        self.assertRefused(MAGIC + body + _hash(body), "version 2")

    def test_locked(self):
        """
        A second node on the same C{data_dir} is refused, told the pid of
        the one holding it.
        """
        other = OverrideFile(self.dir)
        with self.assertRaises(StoredDataError) as e:
            other.lock()
        self.assertIn(f"in use by another node (pid {os.getpid()})", str(e.exception))
        self.file.unlock()
        other.lock()
        other.unlock()

    def test_notADirectory(self):
        path = self.tempPath()
        with open(path, "w") as f:
            f.write("x")
        with self.assertRaises(StoredDataError) as e:
            OverrideFile(path).lock()
        self.assertIn(path, str(e.exception))


class OverrideSaverTests(TempPathMixin, SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.dir = self.tempPath()
        self.map = overrides(self.clock)
        self.saver = self.start(self.map)

    def start(self, map):
        file = OverrideFile(self.dir)
        file.lock()
        saver = OverrideSaver(file, map, self.clock)
        self.addCleanup(file.unlock)
        saver.load()
        return saver

    def reload(self):
        self.saver.stop()
        self.map = overrides(self.clock)
        self.saver = self.start(self.map)
        return self.map

    def test_writeSavedThisTurn(self):
        """
        An operator's write is on disk when L{OverrideSaver.durable} fires:
        at the end of the turn, with whatever else this turn changed, in
        one save.
        """
        self.map.write(ORDERS, IID, {"enabled": False}, who="ops", why="disk")
        durable = self.saver.durable()
        self.map.write(ORDERS, "10.0.0.2#8080#DEFAULT", {"weight": 2}, who="ops", why="")
        self.assertNoResult(durable)
        self.assertEqual(OverrideFile(self.dir).load()[1], [])
        saves = []
        original = self.saver.file.write
        self.saver.file.write = lambda data: saves.append(data) or original(data)
        self.clock.advance(0)
        self.successResultOf(durable)
        (clock, entries) = OverrideFile(self.dir).load()
        self.assertEqual(sorted(e.get("enabled", True) for e in entries), [False, True])
        self.assertEqual(clock, self.map.hlc.last())
        self.assertEqual(len(saves), 1)

    def test_expiriesOneSave(self):
        """
        A thousand overrides expiring at once are one save.
        """
        for n in range(1000):
            self.map.write(ORDERS, f"10.0.{n // 250}.{n % 250 + 1}#8080#DEFAULT", {"enabled": False},
                           who="ops", why="")
        self.clock.advance(0)
        saves = []
        original = self.saver.file.write
        self.saver.file.write = lambda data: saves.append(data) or original(data)
        self.map.expire(lambda service, iid: False)
        self.clock.advance(86_400)
        self.map.expire(lambda service, iid: False)
        self.clock.advance(0)
        self.assertEqual(len(saves), 1)
        self.assertEqual(self.map.live(), [])

    def test_mergedSavedPerTurn(self):
        other = overrides(self.clock, "n2")
        entries = [other.write(ORDERS, f"10.0.0.{n}#8080#DEFAULT", {"weight": n}, who="ops", why="")
                   for n in range(1, 4)]
        for entry in entries:
            self.map.merge(entry)
        self.assertEqual(OverrideFile(self.dir).load()[1], [])
        self.clock.advance(0)
        self.assertEqual(len(OverrideFile(self.dir).load()[1]), 3)

    def test_restart(self):
        """
        What was saved is loaded, tombstones too, and the clock goes on
        after the stamps saved.
        """
        self.map.write(ORDERS, IID, {"weight": 3}, who="ops", why="")
        tombstone = self.map.write(ORDERS, "10.0.0.2#8080#DEFAULT", {"removed": True}, who="ops", why="")
        tombstone = self.map.clear(ORDERS, "10.0.0.2#8080#DEFAULT", who="ops", why="")
        self.clock.rightNow -= 500  # the machine's clock stepped back meanwhile
        loaded = self.reload()
        self.assertEqual([o.weight for o in loaded.live()], [3.0])
        self.assertTrue(loaded.get(ORDERS, "10.0.0.2#8080#DEFAULT").cleared)
        self.assertGreater(loaded.hlc.now(), tombstone.stamp)

    def test_stopSavesWhatWaits(self):
        other = overrides(self.clock, "n2")
        self.map.merge(other.write(ORDERS, IID, {"weight": 2}, who="ops", why=""))
        self.assertEqual([o.weight for o in self.reload().live()], [2.0])

    def test_badEntry(self):
        self.saver.stop()
        file = OverrideFile(self.dir)
        file.save((0, 0), [{"service": {"name": "orders"}, "instance_id": "nope"}])
        file.lock()
        self.addCleanup(file.unlock)
        with self.assertRaises(StoredDataError) as e:
            OverrideSaver(file, overrides(self.clock), self.clock).load()
        self.assertIn("corrupt (entries[0].instance_id", str(e.exception))

    def test_saveFails(self):
        """
        A save that fails is logged, the writes that waited for it are
        told (C{INTERNAL}, saying the override holds on every member), and
        it is tried again until it succeeds.
        """
        os.makedirs(os.path.join(self.dir, FILE_NAME + ".tmp"))  # the disk refuses
        self.map.write(ORDERS, IID, {"weight": 3}, who="ops", why="")
        durable = self.saver.durable()
        self.clock.advance(0)
        error = self.failureResultOf(durable, RequestError).value
        self.assertEqual(error.code, "INTERNAL")
        self.assertIn("data_dir: not saved", error.message)
        self.assertEqual(OverrideFile(self.dir).load()[1], [])
        os.rmdir(os.path.join(self.dir, FILE_NAME + ".tmp"))
        self.clock.advance(OverrideSaver.RETRY_AFTER)
        self.assertEqual(len(OverrideFile(self.dir).load()[1]), 1)
