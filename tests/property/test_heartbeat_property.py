"""
Properties of heartbeat clients (PROTOCOL.md 5.6), whatever happens to
nodes and links while their beats go on:

  - while it happens, every node that has served reads since the start
    shows every heartbeat client's instance (healthy or not: beats may not
    reach the owner across a partition), never without it (a node that
    restarted loads each member's own clients; those of a member that
    died meanwhile reach it once they are taken over, or registered again
    by their beats);
  - once the network heals and the clock passes every grace, each client is
    owned by exactly one live member, the one every member judges
    responsible, every member holds the same record of it, and its instance
    is healthy everywhere.

Beats are sent as Nacos' v1 SDK sends them: each client beats its current
node once a second and, refused or unanswered (503), moves on to the next
node and tries again. Schedules are random: node crashes (reset or silent),
restarts, stalls, link cuts (reset or silent) and their repairs, waits. Each
runs on the in-process cluster of L{tests._cluster}.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from distro.heartbeats import BEAT_OK, Write
from distro.model import Instance
from tests._cluster import FakeCluster, serviceKey

NODES = 3
CLIENTS = [f"10.7.0.{n}" for n in range(1, 7)]
ORDERS = "orders"
# Longer than a schedule and its settling: a member down that long has its
# clients taken over, not dropped (which would be 5.4's rule, not a bug).
ORPHAN_GRACE_MS = 60_000
# Beats reach the owner within this after the heal: a reconnect (3 s and
# jitter), the members' states, a takeover and a beat.
SETTLE = 12.0
TICK = 0.25

node = st.integers(0, NODES - 1)
step = st.one_of(
    st.tuples(st.just("crash"), node, st.booleans()),
    st.tuples(st.just("restart"), node),
    st.tuples(st.just("stall"), node),
    st.tuples(st.just("unstall"), node),
    st.tuples(st.just("cut"), node, node, st.booleans()),
    st.tuples(st.just("restore"), node, node),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 2.0, 4.0])),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 2.0, 4.0])),
)


class Run:
    def __init__(self):
        self.cluster = FakeCluster(NODES, orphan_grace_ms=ORPHAN_GRACE_MS)
        self.cluster.start()
        self.log = []
        self.problems = []
        # ip -> the node it beats now
        self.at = {ip: n % NODES for n, ip in enumerate(CLIENTS)}
        self.sinceBeat = 0.0
        self.pending = {}

    def serving(self, index):
        slot = self.cluster.slots[index]
        return slot.alive and not slot.stalled and slot.node.ready

    def servedThroughout(self, index):
        """
        Whether node C{index} has served since the start, never restarted.
        """
        return self.serving(index) and self.cluster.slots[index].generation == 1

    def send(self, ip, kind):
        """
        C{ip}'s write to its node, as the SDK sends it: on to the next node
        when refused or unanswered (at most once round, a beat at a time).
        """
        if self.pending.get(ip):
            return  # its last beat is still waiting for an answer
        index = self.at[ip]
        slot = self.cluster.slots[index]
        if not slot.alive or slot.stalled:
            self.at[ip] = (index + 1) % NODES
            return
        write = Write(kind, ip, 8080, serviceKey(ORDERS), Instance(ip, 8080, "DEFAULT", 1.0, True, True, {}))
        self.pending[ip] = True

        def answered(result):
            self.pending[ip] = False
            if isinstance(result, Failure) or result not in (None, (BEAT_OK, 5000)):
                self.at[ip] = (index + 1) % NODES

        slot.node.heartbeatWrite(write).addBoth(answered)

    def beats(self):
        for ip in CLIENTS:
            self.send(ip, "beat")

    def advance(self, seconds):
        for _ in range(int(seconds / TICK)):
            self.sinceBeat += TICK
            if self.sinceBeat >= 1.0:
                self.sinceBeat = 0.0
                self.beats()
            self.cluster.advance(TICK)
            self.check()

    def check(self):
        for index in range(NODES):
            if not self.servedThroughout(index):
                continue
            shown = {h.ip for h in self.cluster.view(index, ORDERS).hosts}
            missing = sorted(set(CLIENTS) - shown)
            if missing:
                self.problems.append(f"n{index} stopped showing {missing} after {self.log}")

    def apply(self, step):
        self.log.append(step)
        cluster = self.cluster
        kind = step[0]
        if kind == "crash":
            if cluster.slots[step[1]].alive and len(cluster.live()) > 1:
                cluster.crash(step[1], step[2])
        elif kind == "restart":
            if not cluster.slots[step[1]].alive:
                cluster.restart(step[1], settle=False)
        elif kind == "stall":
            if cluster.slots[step[1]].alive and len(cluster.live()) > 1:
                cluster.stall(step[1])
        elif kind == "unstall":
            if cluster.slots[step[1]].stalled:
                cluster.unstall(step[1])
        elif kind == "cut":
            if step[1] != step[2]:
                cluster.cut(step[1], step[2], step[3])
        elif kind == "restore":
            cluster.restore(step[1], step[2])
        else:
            self.advance(step[1])

    def settled(self):
        """
        What is wrong once healed and settled.
        """
        problems = []
        live = [i for i in range(NODES) if self.serving(i)]
        for ip in CLIENTS:
            clientId = f"{ip}:8080"
            records = {i: self.cluster.held(i, clientId) for i in live}
            owners = [i for i, r in records.items() if r is not None and r.native]
            responsible = {self.cluster.node(i).cluster.responsibleFor(clientId) for i in live}
            if len(owners) != 1:
                problems.append(f"{clientId}: owned by {owners}")
                continue
            if responsible != {None, self.cluster.slots[owners[0]].address}:
                problems.append(f"{clientId}: owned by n{owners[0]}, responsible {responsible}")
            seen = {(r.owner, r.epoch, r.revision) if r else None for r in records.values()}
            if len(seen) != 1:
                problems.append(f"{clientId}: records differ {seen}")
        for i in live:
            hosts = sorted((h.ip, h.healthy) for h in self.cluster.view(i, ORDERS).hosts)
            if hosts != [(ip, True) for ip in sorted(CLIENTS)]:
                problems.append(f"n{i} shows {hosts}")
        return problems


class HeartbeatPropertyTests(SynchronousTestCase):
    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(step, min_size=2, max_size=16))
    def test_beatsKeepThemEverywhere(self, steps):
        run = Run()
        try:
            for ip in CLIENTS:
                run.send(ip, "register")
            run.cluster.flush()
            run.advance(1.0)
            for s in steps:
                run.apply(s)
            for i in range(NODES):
                if run.cluster.slots[i].stalled:
                    run.cluster.unstall(i)
            run.cluster.heal()
            run.advance(SETTLE)
            problems = run.problems[:3] + run.settled()
            run.cluster.close()
        finally:
            run.cluster.stopObserving()
        self.assertEqual(problems, [], f"schedule: {run.log}")
