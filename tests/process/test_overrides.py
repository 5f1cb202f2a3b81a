"""
Operators' overrides on a real three-node cluster (PROTOCOL.md 5.7): one
set at any node holds at every node, through its client registering again
and through a SIGKILL of every node at once; clearing it at another node
shows what the client publishes again, everywhere. Driven through the real
console script (`distro drain`, `undrain`, `overrides`) where the CLI has
the command, else distro's own protocol.
"""

import json
import os
import subprocess
import sys

from twisted.internet import defer, threads

from tests._process import ORDERS, ClusterTestCase, instanceId

APP = ("10.9.0.1", 8080)
OTHER = ("10.9.0.2", 8080)
CLI_TIMEOUT = 30


def cli(member, *args):
    """
    Run the real console script against C{member}, in a thread: C{(exit
    code, stdout, stderr)}.
    """
    command = [os.path.join(os.path.dirname(sys.executable), "distro"), "--server", member.address, *args]

    def run():
        done = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT)
        return done.returncode, done.stdout, done.stderr

    return threads.deferToThread(run)


class OverrideScenarioTests(ClusterTestCase):
    timeout = 120

    @defer.inlineCallbacks
    def overridesAt(self, member):
        reply = yield self.request(member, "overrides")
        self.assertEqual(reply["op"], "ok", reply)
        return reply["overrides"]

    @defer.inlineCallbacks
    def test_scenario(self):
        members = yield self.startCluster()
        n1, n2, n3 = members
        client = yield self.client(members)
        for ip, port in (APP, OTHER):
            yield client.register(ORDERS, ip, port)
        both = [instanceId(*APP), instanceId(*OTHER)]
        yield self.waitHosts(members, ORDERS, both, "both instances everywhere")

        # Drained at node 2: gone from every node's view.
        code, out, err = yield cli(n2, "drain", "orders", *map(str, APP), "--why", "disk failing", "--json")
        self.assertEqual(code, 0, err)
        entry = json.loads(out)
        self.assertEqual((entry["instance_id"], entry["enabled"], entry["why"]),
                         (instanceId(*APP), False, "disk failing"))
        yield self.waitHosts(members, ORDERS, [instanceId(*OTHER)], "the drained instance nowhere")

        # Its client registering it again does not undo it.
        yield client.register(ORDERS, *APP, weight=3.0)
        yield self.waitHosts(members, ORDERS, [instanceId(*OTHER)], "still drained after re-registering")

        # Every node SIGKILLed at once, then restarted: each loads the
        # override from its data_dir; the client registers again.
        yield defer.gatherResults([self.kill(m) for m in members])
        yield defer.gatherResults([self.startMember(m) for m in members])
        for m in members:
            yield self.waitReady(m)
        for m in members:
            listed = yield self.overridesAt(m)
            self.assertEqual([(o["instance_id"], o.get("enabled")) for o in listed],
                             [(instanceId(*APP), False)], m)
        yield self.waitHosts(members, ORDERS, [instanceId(*OTHER)], "drained after every node restarted")

        # Undrained at node 3: back everywhere, as its client publishes it.
        code, out, err = yield cli(n3, "undrain", "orders", *map(str, APP))
        self.assertEqual(code, 0, err)
        self.assertIn("undrained", out)
        views = yield self.waitHosts(members, ORDERS, both, "undrained everywhere")
        weights = {h["instance_id"]: h["weight"] for h in views[0]["hosts"]}
        self.assertEqual(weights[instanceId(*APP)], 3.0)
        code, out, err = yield cli(n1, "overrides", "--json")
        self.assertEqual((code, json.loads(out)), (0, {"overrides": []}), err)
