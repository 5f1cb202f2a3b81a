"""
The client library's operators' overrides (L{DistroClient.set_override},
L{DistroClient.clear_override}, L{DistroClient.overrides}) against real
nodes in memory.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro.client import RESET, DistroError, Override, Service
from distro.client.testing import InMemoryCluster

ORDERS = Service("orders")
IID = "10.0.0.7#8080#DEFAULT"


class ClientOverrideTests(SynchronousTestCase):
    def setUp(self):
        # The in-memory cluster's clients come from 10.0.0.1.
        self.cluster = InMemoryCluster(2, config={"admin_from": "10.0.0.0/24"})
        self.addCleanup(self.cluster.close)
        self.app = self.cluster.client()
        self.result(self.app.register(ORDERS, "10.0.0.7", 8080, weight=2.0))
        self.ops = self.cluster.client(servers=[self.cluster.servers[1]])
        self.cluster.advance(1)

    def result(self, d):
        """
        What C{d} fires with, the in-memory cluster moved on until it does.
        """
        results = []
        d.addBoth(results.append)
        for _ in range(50):
            if results:
                break
            self.cluster.advance(0.01)
        (value,) = results
        if hasattr(value, "raiseException"):
            value.raiseException()
        return value

    def shown(self):
        return [(h.instance_id, h.weight, h.enabled) for h in self.result(self.app.query(ORDERS)).hosts]

    def test_setAndClear(self):
        written = self.result(self.ops.set_override(ORDERS, "10.0.0.7", 8080, weight=0, why="draining slowly"))
        self.assertIsInstance(written, Override)
        self.assertEqual((written.service, written.instance_id, written.weight, written.why),
                         (ORDERS, IID, 0.0, "draining slowly"))
        self.assertEqual(written.who, "anonymous@10.0.0.1")
        self.cluster.advance(1)
        self.assertEqual(self.shown(), [(IID, 0.0, True)])
        self.result(self.ops.set_override(ORDERS, "10.0.0.7", 8080, enabled=False))
        self.cluster.advance(1)
        self.assertEqual(self.shown(), [])
        listed = self.result(self.app.overrides())
        self.assertEqual([o.changes() for o in listed], [{"enabled": False, "weight": 0.0}])
        entry = self.result(self.ops.set_override(ORDERS, "10.0.0.7", 8080, weight=RESET))
        self.assertEqual(entry.changes(), {"enabled": False})
        self.assertTrue(self.result(self.ops.clear_override(ORDERS, "10.0.0.7", 8080)))
        self.assertFalse(self.result(self.ops.clear_override(ORDERS, "10.0.0.7", 8080)))
        self.cluster.advance(1)
        self.assertEqual(self.shown(), [(IID, 2.0, True)])

    def test_refused(self):
        with self.assertRaises(DistroError) as e:
            self.result(self.ops.set_override(ORDERS, "10.0.0.7", 8080))
        self.assertEqual(e.exception.code, "BAD_REQUEST")
        with self.assertRaises(ValueError):
            self.ops.set_override(ORDERS, "not an ip!", 8080, enabled=False)

    def test_asJson(self):
        written = self.result(self.ops.set_override(ORDERS, "10.0.0.7", 8080, removed=True, why="zombie"))
        document = written.as_json()
        self.assertEqual({k: document[k] for k in ("instance_id", "removed", "who", "why")},
                         {"instance_id": IID, "removed": True, "who": "anonymous@10.0.0.1", "why": "zombie"})
        self.assertEqual(document["service"], ORDERS.as_wire())
