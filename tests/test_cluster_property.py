"""
A property of the cluster (PROTOCOL.md 5): whatever clients do on whatever
nodes, and whatever happens to the links and nodes meanwhile, once the
network heals and the clock passes every grace period, every node's view of
every service holds exactly the instances of the clients still connected,
with the same checksum everywhere.

Schedules are random: client connects, writes (register, deregister,
batch_register), departures (bye, a dropped connection), failovers to
another node with C{resume} (and the re-registration of 6), link cuts
(reset or silent), node crashes (reset or silent), restarts, stalls, and
waits. Each runs on the in-process cluster of L{tests._cluster}.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests._cluster import FakeCluster, instance, serviceKey

NODES = 3
SERVICES = ("orders", "users")
PORTS = (80, 81, 82)
WEIGHTS = (1.0, 2.0, 5.0)

# Longer than: the slowest reconnect (3 s + jitter), a snapshot, two
# digests (2 s), disconnect_grace_ms (0.5 s), down_after_ms + orphan_grace_ms
# (2.6 s) for a member that stays down.
SETTLE = 10.0

node = st.integers(0, NODES - 1)
pick = st.integers(0, 10_000)
service = st.sampled_from(SERVICES)
port = st.sampled_from(PORTS)
weight = st.sampled_from(WEIGHTS)

connect = st.tuples(st.just("connect"), node)
register = st.tuples(st.just("register"), pick, service, port, weight)
deregister = st.tuples(st.just("deregister"), pick, service, port)
batch = st.tuples(st.just("batch"), pick, service, st.frozensets(port, max_size=3), weight)
failover = st.tuples(st.just("failover"), pick, node)
wait = st.tuples(st.just("wait"), st.sampled_from([0.05, 0.3, 0.7, 1.5, 3.0]))

# one_of picks a branch uniformly: repeats weigh the mix towards clients
# that connect and write, so that most schedules end with data to check.
step = st.one_of(
    connect, connect, connect,
    register, register, register, register, register,
    deregister, batch, batch,
    st.tuples(st.just("bye"), pick),
    st.tuples(st.just("drop"), pick),
    failover, failover,
    st.tuples(st.just("cut"), node, node, st.booleans()),
    st.tuples(st.just("cut"), node, node, st.booleans()),
    st.tuples(st.just("restore"), node, node),
    st.tuples(st.just("crash"), node, st.booleans()),
    st.tuples(st.just("restart"), node),
    st.tuples(st.just("stall"), node),
    st.tuples(st.just("unstall"), node),
    wait, wait,
)


class ModelClient:
    """
    What one client (a client library, say) believes it published: per
    service, port -> weight. Its ip is its own, so no two clients publish
    the same instance.
    """

    def __init__(self, number, connection, generation):
        self.number = number
        self.ip = f"10.9.{number}.1"
        self.connection = connection
        self.generation = generation
        self.instances = {}

    def wire(self, service):
        return [
            instance(self.ip, p, weight=w) for p, w in sorted(self.instances.get(service, {}).items())
        ]


class Run:
    """
    One schedule applied to a cluster and its model.
    """

    def __init__(self):
        self.cluster = FakeCluster(NODES)
        self.cluster.start()
        self.clients = []
        self.numbers = iter(range(1, 250))
        self.log = []

    def populate(self, perNode=2):
        """
        Start with C{perNode} clients on each node, each with an instance
        in each service, so that every step has something to act on.
        """
        for index in range(NODES):
            for _ in range(perNode):
                client = self.connect(index)
                for name in SERVICES:
                    client.instances[name] = {PORTS[0]: WEIGHTS[0]}
                    self.write(client, "batch_register", service={"name": name},
                               instances=client.wire(name))

    def usable(self, index):
        slot = self.cluster.slots[index]
        return slot.alive and not slot.stalled

    def alive(self, client):
        """
        Whether C{client}'s session is still there: its connection open, to
        the boot of the node it said hello to.
        """
        slot = self.cluster.slots[client.connection.node]
        return (
            client.connection.connected
            and slot.alive
            and slot.generation == client.generation
        )

    def connected(self):
        return [c for c in self.clients if self.alive(c)]

    def choose(self, candidates, n):
        return candidates[n % len(candidates)] if candidates else None

    def write(self, client, op, **fields):
        reply = client.connection.request(op, **fields)
        # No reply: the node is stalled; the request waits in the network.
        if reply is not None and reply["op"] != "ok" and self.alive(client):
            raise AssertionError(f"{op} {fields} refused: {reply}")

    def connect(self, index):
        cluster = self.cluster
        connection = cluster.client(index)
        client = ModelClient(next(self.numbers), connection, cluster.slots[index].generation)
        self.clients.append(client)
        return client

    def apply(self, step):
        self.log.append(step)
        cluster = self.cluster
        kind = step[0]
        if kind == "connect":
            if self.usable(step[1]):
                self.connect(step[1])
        elif kind in ("register", "deregister", "batch", "bye", "drop"):
            client = self.choose(self.connected(), step[1])
            if client is None:
                return
            if kind == "register":
                _, _, name, p, w = step
                client.instances.setdefault(name, {})[p] = w
                self.write(client, "register", service={"name": name},
                           instance=instance(client.ip, p, weight=w))
            elif kind == "deregister":
                _, _, name, p = step
                client.instances.setdefault(name, {}).pop(p, None)
                self.write(client, "deregister", service={"name": name},
                           instance={"ip": client.ip, "port": p})
            elif kind == "batch":
                _, _, name, ports, w = step
                client.instances[name] = dict.fromkeys(ports, w)
                self.write(client, "batch_register", service={"name": name},
                           instances=client.wire(name))
            elif kind == "bye":
                self.clients.remove(client)
                client.connection.request("bye")
                client.connection.drop()
            else:
                self.clients.remove(client)
                client.connection.drop()
        elif kind == "failover":
            # The client library moves to another node and resumes there,
            # then re-sends every registration (PROTOCOL.md 6): for every
            # service it ever wrote, emptied ones included.
            _, n, target = step
            client = self.choose(self.clients, n)
            if client is None or not self.usable(target):
                return
            if client.connection.connected:
                client.connection.drop()
            old = client.connection
            connection = cluster.client(target, resume=(old.clientId, old.resumeToken))
            client.connection = connection
            client.generation = cluster.slots[target].generation
            for name in sorted(client.instances):
                self.write(client, "batch_register", service={"name": name},
                           instances=client.wire(name))
        elif kind == "cut":
            _, a, b, silent = step
            if a != b:
                cluster.cut(a, b, silent)
        elif kind == "restore":
            _, a, b = step
            cluster.restore(a, b)
        elif kind == "crash":
            _, index, silent = step
            if cluster.slots[index].alive:
                cluster.crash(index, silent)
        elif kind == "restart":
            if not cluster.slots[step[1]].alive:
                cluster.restart(step[1])
        elif kind == "stall":
            if cluster.slots[step[1]].alive:
                cluster.stall(step[1])
        elif kind == "unstall":
            if cluster.slots[step[1]].stalled:
                cluster.unstall(step[1])
        elif kind == "wait":
            cluster.advance(step[1])

    def expected(self, name):
        """
        Instance id -> weight of the clients still connected.
        """
        result = {}
        for client in self.connected():
            for p, w in client.instances.get(name, {}).items():
                result[f"{client.ip}#{p}#DEFAULT"] = w
        return result

    def check(self):
        cluster = self.cluster
        live = cluster.live()
        clientIds = {c.connection.clientId for c in self.connected()}
        for name in SERVICES:
            expected = self.expected(name)
            checksums = set()
            for i in live:
                info = cluster.view(i, name)
                held = {h.instanceId: h.weight for h in info.hosts}
                if held != expected:
                    raise AssertionError(
                        f"n{i}'s view of {name} is {sorted(held.items())}, "
                        f"expected {sorted(expected.items())}"
                    )
                checksums.add(info.checksum)
            if len(checksums) != 1:
                raise AssertionError(f"checksums of {name} differ: {checksums}")
        for i in live:
            manager = cluster.node(i).manager
            ghosts = {
                cid: c for cid, c in manager.clients.items()
                if c.instanceCount and cid not in clientIds
            }
            if ghosts:
                raise AssertionError(f"n{i} holds clients no one is connected as: {ghosts}")
            for c in self.connected():
                if any(c.instances.values()):
                    record = manager.clients.get(c.connection.clientId)
                    if record is None:
                        raise AssertionError(f"n{i} lacks {c.connection.clientId}")
            if not cluster.node(i).ready:
                raise AssertionError(f"n{i} is not ready")
        for name in SERVICES:
            key = serviceKey(name)
            owners = set()
            for i in live:
                for record in cluster.node(i).manager.clients.values():
                    if key in record.services:
                        owners.add((record.clientId, record.owner, record.epoch, record.revision))
            by = {}
            for clientId, owner, epoch, revision in owners:
                by.setdefault(clientId, set()).add((owner, epoch, revision))
            split = {c: v for c, v in by.items() if len(v) > 1}
            if split:
                raise AssertionError(f"nodes disagree on clients of {name}: {split}")


class ConvergenceTests(SynchronousTestCase):
    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(step, min_size=3, max_size=40))
    def test_converges(self, steps):
        """
        After any schedule, healing and settling, every node's views hold
        exactly the instances of the connected clients, with equal
        checksums, and no node holds a client nobody is connected as.
        """
        run = Run()
        try:
            run.populate()
            for s in steps:
                run.apply(s)
            run.cluster.heal()
            run.cluster.advance(SETTLE)
            run.check()
            run.cluster.close()
        except Exception as e:
            raise AssertionError(f"{e}\nschedule: {run.log}") from e
        finally:
            run.cluster.stopObserving()

    def test_partitionHealsByDigestAndSnapshot(self):
        """
        A fixed schedule with everything at once: a client on each side of
        a silent partition writes, one fails over across it, one node
        crashes silently and comes back.
        """
        run = Run()
        steps = [
            ("connect", 0), ("connect", 1), ("connect", 2),
            ("register", 0, "orders", 80, 1.0),
            ("register", 1, "orders", 81, 2.0),
            ("cut", 0, 1, True), ("cut", 0, 2, True),
            ("register", 2, "users", 82, 5.0),
            ("batch", 0, "orders", frozenset([80, 82]), 2.0),
            ("wait", 3.0),
            ("failover", 0, 1),
            ("crash", 2, True),
            ("wait", 0.7),
            ("restart", 2),
            ("deregister", 1, "orders", 81),
            ("wait", 0.3),
        ]
        self.addCleanup(run.cluster.close)
        for s in steps:
            run.apply(s)
        run.cluster.heal()
        run.cluster.advance(SETTLE)
        run.check()
