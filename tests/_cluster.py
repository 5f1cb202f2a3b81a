"""
An in-process cluster of real nodes for cluster tests: the harness of
L{distro.client._inmemory} (real nodes and clusters on one shared clock,
L{twisted.test.iosim} transports, cuts, crashes, stalls, delays and
interception of peer frames), with the tests' short timeouts, a seeded
random module, a check that nothing failed in the log, and raw test
clients (L{ClusterClient}) speaking the client protocol frame by frame.

Nothing here touches the global reactor or a socket; every wait is the clock.
"""

import gc
import itertools
import random

from twisted.internet import error
from twisted.internet.protocol import Factory
from twisted.logger import globalLogPublisher

from distro import wire
from distro.client._inmemory import (
    DROP,
    HOLD,
    MemoryCluster,
    SharedClock,
    clientAddress,
    peerAddress,
)
from distro.model import ServiceKey
from tests._factories import instance

__all__ = [
    "DROP",
    "HOLD",
    "SECRET",
    "DEFAULTS",
    "FakeCluster",
    "SharedClock",
    "clientAddress",
    "peerAddress",
    "serviceKey",
]

SECRET = b"cluster-test-secret"

# Small timeouts, so that a test's clock spans seconds, not minutes.
DEFAULTS = {
    "heartbeat_ms": 1000,
    # Test clients send no heartbeats: their connections end when a test says.
    "idle_timeout_ms": 3_600_000,
    "disconnect_grace_ms": 500,
    "push_delay_ms": 20,
    "verify_interval_ms": 1000,
    "peer_timeout_ms": 300,
    "down_after_ms": 600,
    "orphan_grace_ms": 2000,
    "load_timeout_ms": 2000,
}

def serviceKey(name):
    if isinstance(name, ServiceKey):
        return name
    return ServiceKey("public", "DEFAULT_GROUP", name)


def serviceWire(name):
    return {"name": name}


# Test clients


class ClientProtocol(wire.FrameProtocol):
    """
    The machine side of a test client: keeps replies by request id, pushes
    in order, and errors that answer no request.
    """

    maxFrame = 64 * 1024 * 1024

    def __init__(self):
        super().__init__()
        self.replies = {}
        self.pushes = []
        self.errors = []
        self.lostReason = None
        # Optional callables, told of every message and of the loss.
        self.onMessage = None
        self.onLost = None

    def messageReceived(self, message):
        if self.onMessage is not None:
            self.onMessage(message)
        if message.get("op") == "push":
            self.pushes.append(message)
        elif message.get("re") is not None:
            self.replies[message["re"]] = message
        else:
            self.errors.append(message)

    def connectionLost(self, reason):
        self.lostReason = reason
        if self.onLost is not None:
            self.onLost()


class ClusterClient:
    """
    A client connected to one node's client port through a L{Pipe}.

    @ivar node: the index of the node it is connected to.
    @ivar clientId: / @ivar resumeToken: from its hello.
    """

    def __init__(self, harness, node, protocol):
        self.harness = harness
        self.node = node
        self.protocol = protocol
        self.clientId = None
        self.resumeToken = None
        self.epoch = None
        self.helloReply = None
        self._ids = itertools.count(1)

    @property
    def connected(self):
        return self.protocol.lostReason is None and not self.protocol.transport.disconnecting

    @property
    def lost(self):
        return self.protocol.lostReason is not None

    def send(self, op, **fields):
        rid = next(self._ids)
        message = {"op": op, "id": rid}
        message.update(fields)
        self.protocol.sendMessage(message)
        return rid

    def request(self, op, **fields):
        """
        Send one request, flush, and return its reply (C{None} if none came).
        """
        rid = self.send(op, **fields)
        self.harness.flush()
        return self.protocol.replies.pop(rid, None)

    def ok(self, op, **fields):
        reply = self.request(op, **fields)
        if reply is None or reply["op"] != "ok":
            raise AssertionError(f"{op} {fields!r} on n{self.node} failed: {reply!r}")
        return reply

    def hello(self, resume=None, **fields):
        """
        Say hello; C{resume} is C{(clientId, token)} or C{(clientId, token,
        epoch)}.
        """
        fields.setdefault("proto", 1)
        fields.setdefault("agent", "tests/1")
        if resume is not None:
            fields["resume"] = {"client_id": resume[0], "resume_token": resume[1]}
            if len(resume) > 2 and resume[2] is not None:
                fields["resume"]["epoch"] = resume[2]
        reply = self.request("hello", **fields)
        if reply is not None and reply["op"] == "ok":
            self.clientId = reply["client_id"]
            self.resumeToken = reply["resume_token"]
            self.epoch = reply.get("epoch")
            self.helloReply = reply
        return reply

    @property
    def identity(self):
        """
        What a resume of this session presents: C{(clientId, token, epoch)}.
        """
        return (self.clientId, self.resumeToken, self.epoch)

    def redo(self, registrations):
        """
        After a resumed hello: re-send C{registrations} (service name ->
        list of instance maps) as one C{batch_register} each, then
        C{redo_done} (PROTOCOL.md 6). Returns the C{redo_done} reply.
        """
        for name, instances in registrations.items():
            self.batch(name, instances)
        reply = self.request("redo_done")
        if reply is not None and reply["op"] == "ok":
            self.epoch = reply.get("epoch", self.epoch)
        return reply

    def register(self, name, ip="10.1.0.1", port=8080, **fields):
        return self.ok("register", service=serviceWire(name), instance=instance(ip, port, **fields))

    def deregister(self, name, ip="10.1.0.1", port=8080, cluster=None):
        ref = {"ip": ip, "port": port}
        if cluster is not None:
            ref["cluster"] = cluster
        return self.ok("deregister", service=serviceWire(name), instance=ref)

    def batch(self, name, instances):
        return self.ok("batch_register", service=serviceWire(name), instances=instances)

    def subscribe(self, name):
        return self.ok("subscribe", service=serviceWire(name))["service_info"]

    def query(self, name):
        return self.request("query", service=serviceWire(name))

    def members(self):
        return self.ok("members")["members"]

    def bye(self):
        reply = self.ok("bye")
        self.harness.flush()
        return reply

    def drop(self):
        """
        The connection breaks without C{bye} (the client's host reset it).
        """
        self.protocol.transport.abortConnection()
        self.harness.flush()

    def takePushes(self):
        pushes, self.protocol.pushes = self.protocol.pushes, []
        return [p["service_info"] for p in pushes]


class _ClientFactory(Factory):
    protocol = ClientProtocol
    noisy = False


# The cluster


class FakeCluster(MemoryCluster):
    """
    C{size} nodes, each listing all of them in its C{cluster.conf}, with the
    tests' short timeouts (L{DEFAULTS}).

    @param overrides: configuration keys over L{DEFAULTS}.
    @param seed: the seed of the random module, which jitters reconnect
        delays: seeded, a run repeats exactly.
    @ivar clients: the L{ClusterClient}s made by L{connect}.
    """

    def __init__(self, size=3, secret=SECRET, bufferSize=64 * 1024, seed=0, **overrides):
        random.seed(seed)
        values = dict(DEFAULTS)
        values.update(overrides)
        super().__init__(size, secret, bufferSize=bufferSize, **values)
        self.clients = []
        self.errors = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event):
        if "log_failure" in event:
            self.errors.append(event)

    def checkErrors(self):
        """
        Raise if any failure was logged since this cluster was made: an
        exception in a timer (a C{LoopingCall} stops for good) or in a
        Deferred nobody handled, which would otherwise pass unseen.
        """
        gc.collect()
        if self.errors:
            failures = [e["log_failure"].getTraceback() for e in self.errors]
            raise AssertionError("failures were logged:\n" + "\n".join(failures))

    def stopObserving(self):
        globalLogPublisher.removeObserver(self._observe)  # idempotent

    def close(self):
        """
        Stop watching the log; check that nothing failed.
        """
        try:
            self.checkErrors()
        finally:
            self.stopObserving()

    def connect(self, index):
        """
        A new client connection to node C{index}, before hello.
        """
        slot = self.slots[index]
        if not slot.alive or slot.clientFactory is None:
            raise error.ConnectionRefusedError(slot.clientAddress)
        protocol = self._open(None, slot, "client", _ClientFactory())
        client = ClusterClient(self, index, protocol)
        self.clients.append(client)
        self.flush()
        return client

    def client(self, index, resume=None, **hello):
        """
        A new client connection to node C{index} that said hello (resuming
        C{(clientId, token[, epoch])} if given).
        """
        client = self.connect(index)
        reply = client.hello(resume, **hello)
        if reply is None or reply["op"] != "ok":
            raise AssertionError(f"hello to n{index} failed: {reply!r}")
        return client

    # Views

    def slot(self, index):
        return self.slots[index]

    def node(self, index):
        return self.slots[index].node

    def view(self, index, name):
        """
        Node C{index}'s current ServiceInfo (the registry's) of service
        C{name}.
        """
        return self.slots[index].node.registry.serviceInfo(serviceKey(name))

    def hosts(self, index, name):
        """
        The instance ids node C{index}'s view of C{name} holds, sorted.
        """
        return sorted(i.instanceId for i in self.view(index, name).hosts)

    def held(self, index, clientId):
        """
        Node C{index}'s record of client C{clientId}, or C{None}.
        """
        return self.slots[index].node.manager.clients.get(clientId)

    def feed(self, fromIndex, toIndex):
        """
        Node C{fromIndex}'s L{PeerFeed} to node C{toIndex}.
        """
        return self.slots[fromIndex].cluster.replicator.feeds[self.slots[toIndex].address]

    def live(self):
        return [i for i, s in enumerate(self.slots) if s.alive]


def digestProblems(cluster, name):
    """
    Where the digest hashes a node keeps up to date change by change (of
    what it owns, and of what it holds from each member) differ from what
    it holds: a list of descriptions.
    """
    problems = []
    owned = {c.clientId: c.revision for c in cluster.replicator.owned.values()}
    if cluster.replicator.index.revisions() != owned:
        problems.append(f"{name}'s digest of its own clients is not what it owns")
    bySender = {}
    for clientId, client in cluster.node.manager.clients.items():
        if not client.native:
            bySender.setdefault(client.owner, {})[clientId] = client.revision
    senders = set(bySender) | set(cluster.receiver.bySender)
    for sender in senders:
        index = cluster.receiver.digestOf(sender)
        indexed = index.revisions() if index is not None else {}
        if indexed != bySender.get(sender, {}):
            problems.append(f"{name}'s digest of {sender}'s clients is not what it holds")
    return problems


def walked(node):
    """
    The counts, by walking what the node holds.
    """
    clients = list(node.manager.clients.values())
    native = sum(1 for c in clients if c.native)
    views = node.registry.views
    return {
        "native_clients": native,
        "synced_clients": len(clients) - native,
        "services": len(views),
        "instances": sum(len(v.publishers) for v in views.values()),
        # Every session's subscriptions, to services with instances or not.
        "subscriptions": sum(
            len(session.channel.subscriptions)
            for session in node.sessions.values() if session.channel is not None
        ),
    }
