"""
The operators' override ops of distro's own port (PROTOCOL.md 4.2 and 5.7):
C{override}, C{override_clear}, C{overrides}; who may use them.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro import wire

from tests._factories import instance
from tests._node import NodeHarness, service
from tests.test_server import ErrorAssertions

IID = "10.1.0.1#8080#DEFAULT"


class OverrideOpsTests(SynchronousTestCase, ErrorAssertions):
    def setUp(self):
        self.harness = NodeHarness()
        self.app = self.harness.client()
        self.app.ok("register", service=service(), instance=instance())
        self.ops = self.harness.client(host="127.0.0.1")

    def hosts(self):
        return [(h["instance_id"], h["enabled"], h["weight"])
                for h in self.app.ok("query", service=service())["service_info"]["hosts"]]

    def test_drainAndBack(self):
        """
        C{override} with C{enabled: false} takes the instance out of every
        view, its client's registering it again does not bring it back;
        C{override_clear} does. The answer is the entry written, naming who
        and why.
        """
        reply = self.ops.ok("override", service=service(), instance={"ip": "10.1.0.1", "port": 8080},
                            enabled=False, why="disk failing")
        entry = reply["override"]
        self.assertEqual((entry["instance_id"], entry["enabled"], entry["why"]),
                         (IID, False, "disk failing"))
        self.assertEqual(entry["who"], "anonymous@127.0.0.1")
        self.assertEqual(self.hosts(), [])
        self.app.ok("register", service=service(), instance=instance(weight=3))
        self.assertEqual(self.hosts(), [])
        self.assertEqual(self.ops.ok("override_clear", service=service(), instance_id=IID)["cleared"], True)
        self.assertEqual(self.hosts(), [(IID, True, 3.0)])
        self.assertEqual(self.ops.ok("override_clear", service=service(), instance_id=IID)["cleared"], False)

    def test_listed(self):
        self.ops.ok("override", service=service(), instance_id=IID, weight=0)
        self.ops.ok("override", service=service(namespace="other"), instance_id=IID, removed=True)
        listed = self.ops.ok("overrides")["overrides"]
        self.assertEqual([(o["service"]["namespace"], o.get("weight"), o.get("removed")) for o in listed],
                         [("other", None, True), ("public", 0.0, None)])
        self.assertEqual(len(self.ops.ok("overrides", namespace="other")["overrides"]), 1)

    def test_fieldsMerge(self):
        self.ops.ok("override", service=service(), instance_id=IID, enabled=False)
        self.ops.ok("override", service=service(), instance_id=IID, weight=2)
        self.assertEqual(self.ops.ok("overrides")["overrides"][0]["enabled"], False)
        # nil removes one field, the rest stays.
        entry = self.ops.ok("override", service=service(), instance_id=IID, enabled=None)["override"]
        self.assertEqual((entry.get("enabled"), entry["weight"]), (None, 2.0))
        self.assertEqual(self.hosts(), [(IID, True, 2.0)])

    def test_badRequests(self):
        cases = [
            (dict(instance_id=IID), "override"),  # nothing to change
            (dict(instance_id="10.1.0.1:8080", enabled=False), "instance_id"),
            (dict(instance={"ip": "10.1.0.1", "port": 0}, enabled=False), "instance.port"),
            (dict(instance_id=IID, enabled="no"), "enabled"),
            (dict(instance_id=IID, weight=10001), "weight"),
            (dict(instance_id=IID, metadata=[]), "metadata"),
            (dict(instance_id=IID, enabled=False, why=3), "why"),
            (dict(instance_id=IID, enabled=False, why="x" * 600), "why"),
        ]
        for fields, field in cases:
            reply = self.ops.request("override", service=service(), **fields)
            self.assertError(reply, wire.BAD_REQUEST)
            self.assertTrue(reply["message"].startswith(field), (fields, reply["message"]))

    def test_notFromAnywhere(self):
        """
        Without credentials configured, operators' ops are taken from
        loopback only (or C{admin_from}); reading the list is not an
        operator's action.
        """
        reply = self.app.request("override", service=service(), instance_id=IID, enabled=False)
        self.assertError(reply, wire.FORBIDDEN)
        self.assertIn("admin_from", reply["message"])
        self.assertError(self.app.request("override_clear", service=service(), instance_id=IID), wire.FORBIDDEN)
        self.app.ok("overrides")
        harness = NodeHarness(admin_from="10.0.0.0/24")
        harness.client(host="10.0.0.1").ok("override", service=service(), instance_id=IID, enabled=False)
        self.assertError(harness.client(host="10.0.1.1").request(
            "override", service=service(), instance_id=IID, enabled=False), wire.FORBIDDEN)

    def test_adminGrant(self):
        """
        With credentials configured, an admin grant is needed, wherever
        the client is; a namespace's token may list its namespace's.
        """
        harness = NodeHarness(auth_tokens={"admin-secret": ["*"], "team-secret": ["public"]})
        team = harness.client(host="127.0.0.1", token="team-secret")
        reply = team.request("override", service=service(), instance_id=IID, enabled=False)
        self.assertError(reply, wire.FORBIDDEN)
        self.assertIn("admin", reply["message"])
        admin = harness.client(host="10.9.9.9", token="admin-secret")
        entry = admin.ok("override", service=service(), instance_id=IID, enabled=False)["override"]
        self.assertEqual(entry["who"], "admi...")
        self.assertEqual(len(team.ok("overrides", namespace="public")["overrides"]), 1)
        self.assertError(team.request("overrides"), wire.FORBIDDEN)

    def test_limit(self):
        harness = NodeHarness(max_overrides=1)
        ops = harness.client(host="127.0.0.1")
        ops.ok("override", service=service(), instance_id=IID, enabled=False)
        reply = ops.request("override", service=service(), instance_id="10.1.0.2#8080#DEFAULT", enabled=False)
        self.assertError(reply, wire.LIMIT_EXCEEDED)
        self.assertTrue(reply["message"].startswith("max_overrides"))
