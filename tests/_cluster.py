"""
An in-process cluster of real nodes for cluster tests: N L{distro.node.Node}s,
each with its real L{distro.cluster.service.Cluster}, on one shared
L{twisted.internet.task.Clock}, their peer links and client connections made
of L{twisted.test.iosim} transports and pumps.

Nothing here touches the global reactor or a socket; every wait is the clock.

What the harness can do to the network and the nodes:

  - L{FakeCluster.cut} / L{FakeCluster.restore}: the links between two nodes
    break (both ends see the connection reset) or, with C{silent=True},
    freeze (a partition: nothing flows, nobody is told); connects between
    them are refused while cut.
  - L{FakeCluster.crash}: a node's process vanishes: its timers never run,
    its connections are reset (or, with C{silent=True}, simply go quiet, as
    with a host that lost power), connects to it are refused.
  - L{FakeCluster.restart}: a fresh L{Node} and L{Cluster} at the same
    address, with a new boot id.
  - L{FakeCluster.stall}: SIGSTOP: the node reads nothing, sends nothing,
    accepts nothing and runs no timer until L{FakeCluster.unstall}, when its
    overdue timers run first (as a reactor does), then its I/O.
  - L{FakeCluster.delay}: what flows between two nodes arrives some time
    after it was sent (a slow or congested path), in order.
  - L{FakeCluster.intercept}: look at, drop or hold frames on peer links.

Transports have a send buffer limit: past it they pause their producer (the
outbound peer link, or a client session), and resume it once drained, as
Twisted's TCP transports do; a peer that does not read therefore fills the
buffer and stops the writer, exactly as over a socket.
"""

import bisect
import gc
import itertools
import random

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from distro import config as _config
from distro import wire
from distro.cluster.service import Cluster, ClusterSettings
from distro.model import ServiceKey
from distro.node import Node
from distro.native.session import ClientPortFactory

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

DROP = "drop"
HOLD = "hold"


def peerAddress(index):
    return f"127.0.0.1:{9101 + index}"


def clientAddress(index):
    return f"127.0.0.1:{8101 + index}"


def serviceKey(name):
    if isinstance(name, ServiceKey):
        return name
    return ServiceKey("public", "DEFAULT_GROUP", name)


def serviceWire(name):
    return {"name": name}


def instance(ip="10.1.0.1", port=8080, **fields):
    """
    An instance map for a request.
    """
    result = {"ip": ip, "port": port}
    result.update(fields)
    return result


# Time


class SharedClock(Clock):
    """
    A L{Clock} that keeps its calls sorted as they are added, instead of
    sorting them all again on every C{callLater} and every call run (a
    cluster schedules many timers).

    Like a reactor's turn, one L{advance} runs only the calls that were
    due when it began: a call made meanwhile for "now" waits for the next
    one, so the network is pumped in between (what a reactor reads between
    two runs of its timers).
    """

    _turn = 0

    def _sortCalls(self):
        pass

    def advance(self, amount):
        self.rightNow += amount
        self._turn += 1
        turn = self._turn
        now = self.seconds()
        while True:
            for call in self.calls:
                if call.getTime() > now:
                    return
                if call.turn < turn:
                    break
            else:
                return
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)

    def _resorted(self, call):
        # reset() or delay() moved a call.
        self.calls.sort(key=DelayedCall.getTime)

    def callLater(self, delay, callable, *args, **kw):
        call = DelayedCall(
            self.seconds() + delay,
            callable,
            args,
            kw,
            self.calls.remove,
            self._resorted,
            self.seconds,
        )
        call.turn = self._turn
        bisect.insort_right(self.calls, call, key=DelayedCall.getTime)
        return call


@implementer(IDelayedCall)
class _NodeCall:
    """
    A delayed call of one node, on the shared clock: it does not run while
    its node is stalled (it waits for L{NodeClock.unstall}) nor once the node
    crashed. It stays L{active} while held, so it can still be cancelled.
    """

    def __init__(self, owner, delay, f, args, kw):
        self.owner = owner
        self.f = f
        self.args = args
        self.kw = kw
        self.held = False
        self.called = False
        self.cancelled = False
        self.inner = owner.clock.callLater(delay, self._fire)

    def _fire(self):
        owner = self.owner
        if owner.dead:
            return
        if owner.stalled:
            self.held = True
            owner.held.append(self)
            return
        self._run()

    def _run(self):
        self.called = True
        self.owner.calls.discard(self)
        self.f(*self.args, **self.kw)

    def getTime(self):
        return self.inner.getTime()

    def active(self):
        return not (self.called or self.cancelled)

    def cancel(self):
        if self.cancelled:
            raise error.AlreadyCancelled()
        if self.called:
            raise error.AlreadyCalled()
        self.cancelled = True
        self.owner.calls.discard(self)
        if self.held:
            self.owner.held.remove(self)
        else:
            self.inner.cancel()

    def reset(self, secondsFromNow):
        self.inner.reset(secondsFromNow)

    def delay(self, secondsLater):
        self.inner.delay(secondsLater)

    def __repr__(self):
        return f"<_NodeCall {getattr(self.f, '__qualname__', self.f)} at {self.getTime()}>"


@implementer(IReactorTime)
class NodeClock:
    """
    One node's view of the shared clock: the same time, its own timers.
    """

    def __init__(self, clock):
        self.clock = clock
        self.calls = set()
        self.held = []
        self.stalled = False
        self.dead = False

    def seconds(self):
        return self.clock.seconds()

    def callLater(self, delay, f, *args, **kw):
        now = self.clock.seconds()
        if delay > 0 and now + delay <= now:
            # A positive delay below the clock's resolution: a real reactor
            # runs it on a later turn, when time has moved on; on a Clock
            # it would run at once, and a timer that re-arms itself for
            # "the rest of its period" (the peer watchdog, the client idle
            # check) would spin forever at one instant.
            delay = 1e-9
        call = _NodeCall(self, delay, f, args, kw)
        if not self.dead:
            self.calls.add(call)
        return call

    def getDelayedCalls(self):
        return [c for c in self.calls if c.active()]

    def unstall(self):
        """
        Run the timers that came due while stalled, oldest first.
        """
        self.stalled = False
        while self.held and not self.stalled and not self.dead:
            self.held.sort(key=lambda c: c.getTime())
            self.held.pop(0)._run()

    def kill(self):
        """
        The process is gone: no timer of it ever runs again.
        """
        self.dead = True
        for call in list(self.calls):
            if call.active():
                call.cancel()
        self.calls.clear()
        self.held = []


# The network


class Transport(iosim.FakeTransport):
    """
    One end of a connection: what its protocol writes waits in L{stream}
    until the pump moves it. Past C{bufferSize} bytes waiting, a registered
    streaming producer is paused; it is resumed once everything was sent.
    """

    def __init__(self, protocol, isServer, hostAddress, peerAddress, bufferSize):
        super().__init__(protocol, isServer, hostAddress, peerAddress)
        self.bufferSize = bufferSize
        self.size = 0
        self.maxSize = 0
        self.producerPaused = False
        self.readPaused = False
        self.aborted = False

    def write(self, data):
        if self.disconnecting:
            return
        self.stream.append(data)
        self.size += len(data)
        self.maxSize = max(self.maxSize, self.size)
        if (
            self.producer is not None
            and self.streamingProducer
            and not self.producerPaused
            and self.size > self.bufferSize
        ):
            self.producerPaused = True
            self.producer.pauseProducing()

    def takeOut(self):
        data = b"".join(self.stream)
        self.stream = []
        self.size = 0
        return data

    def drained(self):
        if self.producerPaused and self.size == 0 and not self.disconnecting:
            self.producerPaused = False
            if self.producer is not None:
                self.producer.resumeProducing()

    def abortConnection(self):
        if self.disconnected:
            return
        self.disconnecting = True
        self.aborted = True
        self.stream = []
        self.size = 0

    # The protocol asks its transport to stop/start reading.

    def pauseProducing(self):
        self.readPaused = True

    def resumeProducing(self):
        self.readPaused = False

    def stopProducing(self):
        self.loseConnection()


class _Side:
    """
    One end of a L{Pipe}: a protocol, its transport, and the node it runs in
    (C{None} for a test client's machine).
    """

    def __init__(self, slot, protocol, transport):
        self.slot = slot
        self.generation = slot.generation if slot is not None else None
        self.protocol = protocol
        self.transport = transport
        self.lost = False
        self.signal = None  # what the network tells the other end: "fin"/"rst"
        self.dead = False

    @property
    def stalled(self):
        return self.slot is not None and self.slot.stalled

    @property
    def index(self):
        return self.slot.index if self.slot is not None else None

    def lose(self, reason):
        self.lost = True
        transport = self.transport
        transport.disconnecting = transport.disconnected = True
        transport.stream = []
        transport.size = 0
        if transport.producer is not None:
            producer, transport.producer = transport.producer, None
            producer.stopProducing()
        self.protocol.connectionLost(Failure(reason))


class Pipe(iosim.IOPump):
    """
    A connection between two protocols, pumped by the harness; an
    L{iosim.IOPump} that knows about stalls, cuts, crashes, send buffers and
    interception. The accepting end is built when its node accepts (at
    once, or when it is no longer stalled).

    @ivar kind: C{"peer"} or C{"client"}.
    """

    def __init__(self, harness, kind, connecting, target, addresses):
        super().__init__(
            connecting.protocol, None, connecting.transport, None, False, clock=harness.clock
        )
        self.harness = harness
        self.kind = kind
        self.connecting = connecting
        self.accepting = None
        self.target = target
        self.targetGeneration = target.generation
        self.addresses = addresses
        self.reset = False
        self._inbox = {}
        self._inFlight = {}

    def sides(self):
        return [s for s in (self.connecting, self.accepting) if s is not None]

    def finished(self):
        return all(s.lost or s.dead for s in self.sides()) and (
            self.accepting is not None or self.connecting.lost or self.connecting.dead
        )

    def between(self, a, b):
        indexes = {s.index for s in self.sides()} | {self.target.index}
        return self.kind == "peer" and indexes == {a, b}

    # Accepting

    def _accept(self):
        target = self.target
        if self.connecting.lost or self.connecting.dead:
            return False
        if target.stalled:
            return False
        factory = target.peerFactory if self.kind == "peer" else target.clientFactory
        if not target.alive or target.generation != self.targetGeneration or factory is None:
            if not target.silentlyDead:
                self.connecting.lose(error.ConnectionRefusedError())
                return True
            return False
        host, peer = self.addresses
        protocol = factory.buildProtocol(peer)
        transport = Transport(protocol, True, host, peer, self.harness.bufferSize)
        self.accepting = _Side(target, protocol, transport)
        self.server = protocol
        self.serverIO = transport
        protocol.makeConnection(transport)
        return True

    # Pumping

    def _silent(self, a, b):
        return self.harness._silentlyCut(a.slot, b.slot)

    def _flows(self, src, dst):
        return not (
            src.dead
            or dst.dead
            or src.lost
            or dst.lost
            or src.stalled
            or dst.stalled
            or src.transport.aborted
            or dst.transport.disconnecting
            or dst.transport.readPaused
            or self._silent(src, dst)
        )

    def _delayed(self, src, dst, data):
        """
        What of C{src}'s output (C{data} just taken from its transport) has
        arrived at C{dst}: data is in flight for the pair's delay, in order.
        """
        delay = self.harness.delayOf(src.index, dst.index) if self.kind == "peer" else 0
        queue = self._inFlight.setdefault(id(src), [])
        if not delay and not queue:
            return data
        now = self.harness.clock.seconds()
        if data:
            due = now + delay
            if queue:
                due = max(due, queue[-1][0])
            queue.append((due, data))
        arrived = []
        while queue and queue[0][0] <= now:
            arrived.append(queue.pop(0)[1])
        return b"".join(arrived)

    def nextArrival(self):
        """
        When the next delayed data arrives, or C{None}.
        """
        times = [queue[0][0] for queue in self._inFlight.values() if queue]
        return min(times) if times else None

    def _move(self, src, dst):
        inbox = self._inbox.setdefault(id(src), bytearray())
        data = self._delayed(src, dst, src.transport.takeOut())
        if self.kind == "peer":
            inbox += data
            data = self._filter(src, dst, inbox)
        elif inbox:
            data = bytes(inbox) + data
            inbox.clear()
        if data:
            dst.protocol.dataReceived(data)
        src.transport.drained()
        return bool(data)

    def _filter(self, src, dst, inbox):
        out = bytearray()
        harness = self.harness
        while len(inbox) >= 4:
            length = int.from_bytes(inbox[:4], "big")
            if len(inbox) < 4 + length:
                break
            frame = bytes(inbox[: 4 + length])
            try:
                message = wire.decode(frame[4:])
            except wire.RequestError:
                message = None
            verdict = harness._verdict(src.index, dst.index, message)
            if verdict == HOLD:
                break
            del inbox[: 4 + length]
            if verdict == DROP:
                harness.dropped.append((src.index, dst.index, message))
                continue
            if harness.frames is not None:
                harness.frames.append((src.index, dst.index, message))
            out += frame
        return bytes(out)

    def _closes(self):
        moved = False
        pairs = [(self.connecting, self.accepting), (self.accepting, self.connecting)]
        for side, other in pairs:
            if side is None or side.lost or side.dead or side.stalled:
                continue
            transport = side.transport
            if self.reset:
                side.signal = "rst"
                side.lose(error.ConnectionLost("the network reset the connection"))
            elif transport.aborted:
                side.signal = "rst"
                side.lose(error.ConnectionAborted())
            elif transport.disconnecting and not transport.stream and not self._inbox.get(id(side)):
                side.signal = "fin"
                side.lose(error.ConnectionDone())
            elif other is not None and other.signal and not self._silent(side, other):
                if other.signal == "fin":
                    if self._inbox.get(id(other)):
                        continue
                    side.lose(error.ConnectionDone())
                else:
                    side.lose(error.ConnectionLost("connection reset by peer"))
            else:
                continue
            self._inbox.pop(id(side), None)
            moved = True
        return moved

    def pump(self, debug=False, advanceClock=False):
        moved = False
        if self.accepting is None:
            moved = self._accept()
        for src, dst in ((self.connecting, self.accepting), (self.accepting, self.connecting)):
            if src is not None and dst is not None and self._flows(src, dst):
                moved = self._move(src, dst) or moved
        return self._closes() or moved

    def flush(self, debug=False, advanceClock=False):
        return self.harness.flush()


class _Port:
    """
    The fake listening port of a node's peer port.
    """

    def __init__(self, slot, factory):
        self.slot = slot
        self.factory = factory

    def getHost(self):
        host, port = self.slot.address.split(":")
        return IPv4Address("TCP", host, int(port))

    def stopListening(self):
        if self.slot.peerFactory is self.factory:
            self.slot.peerFactory = None
        return succeed(None)


class _Endpoint:
    """
    The client endpoint a node's cluster connects to a member with: the
    attempt completes on the next turn of the (node's) clock, refused when
    the member is down or the link cut.
    """

    def __init__(self, harness, slot, generation, address):
        self.harness = harness
        self.slot = slot
        self.generation = generation
        self.address = address

    def connect(self, factory):
        call = []
        d = Deferred(lambda d: call[0].cancel() if call[0].active() else None)
        call.append(self.slot.clock.callLater(0, self._attempt, factory, d))
        return d

    def _attempt(self, factory, d):
        harness = self.harness
        target = harness.byAddress.get(self.address)
        refused = (
            target is None
            or not target.alive
            or target.peerFactory is None
            or harness._cut(self.slot, target)
        )
        harness.connects.append((self.slot.index, target.index if target else None, not refused))
        if refused:
            failure = error.ConnectionRefusedError(self.address)
            if harness.refusalDelay:
                self.slot.clock.callLater(harness.refusalDelay, d.errback, failure)
            else:
                d.errback(failure)
            return
        protocol = harness._open(self.slot, target, "peer", factory)
        if protocol is None:
            d.errback(error.ConnectionRefusedError(self.address))
        else:
            d.callback(protocol)


# Nodes


class NodeSlot:
    """
    One member of the cluster: its address, its current L{Node} and
    L{Cluster} (replaced by L{FakeCluster.restart}), and its state.

    @ivar members: the lines of this node's C{cluster.conf}.
    """

    def __init__(self, harness, index, members):
        self.harness = harness
        self.index = index
        self.address = peerAddress(index)
        self.clientAddress = clientAddress(index)
        self.nodeId = f"n{index}"
        self.members = list(members)
        self.overrides = {}  # this node's configuration over the cluster's
        self.secret = None  # None: the cluster's
        # What it speaks on peer links (a Dialect Offer); None: all it can.
        self.offer = None
        self.generation = 0
        self.alive = False
        self.stalled = False
        self.silentlyDead = False
        self.clock = None
        self.node = None
        self.cluster = None
        self.peerFactory = None
        self.clientFactory = None

    def boot(self):
        harness = self.harness
        self.generation += 1
        self.clock = NodeClock(harness.clock)
        values = {"node_id": self.nodeId, "advertise": self.clientAddress}
        values.update(harness.overrides)
        values.update(self.overrides)
        self.config = _config.build(overrides=values)
        self.node = Node(self.config, self.clock, f"boot{self.generation}")
        self.clientFactory = ClientPortFactory(self.node)
        if len(self.members) > 1:
            self.node.ready = False
        generation = self.generation
        self.cluster = Cluster(
            self.node,
            self.address,
            list(self.members),
            harness.secret if self.secret is None else self.secret,
            self._listen,
            lambda address: _Endpoint(harness, self, generation, address),
            reread=self._reread,
            offer=self.offer,
            settings=ClusterSettings.fromConfig(self.config),
        )
        self.node.cluster = self.cluster
        self.alive = True
        self.stalled = False
        self.silentlyDead = False
        self.cluster.startService()

    def _reread(self):
        if isinstance(self.members, Exception):
            raise self.members
        return list(self.members)

    def _listen(self, factory):
        self.peerFactory = factory
        return succeed(_Port(self, factory))

    def __repr__(self):
        state = "up" if self.alive else "down"
        return f"<NodeSlot {self.nodeId} gen={self.generation} {state}>"


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


class FakeCluster:
    """
    C{size} nodes, each listing all of them in its C{cluster.conf}.

    @param overrides: configuration keys over L{DEFAULTS}.
    @ivar clock: the shared L{SharedClock}.
    @ivar slots: the L{NodeSlot}s, by index.
    @ivar connects: C{(from, to, succeeded)} of every peer connect attempt.
    @ivar frames: when L{record} was called, C{(from, to, message)} of every
        frame delivered over a peer link.
    @ivar dropped: C{(from, to, message)} of frames dropped by interceptors.
    @ivar refusalDelay: how long a connect attempt to a member that is down
        takes to fail (0: at once); a real one is refused only after the
        address attempts time out (HostnameEndpoint: some 0.3 s).
    """

    maxStep = 0.05
    refusalDelay = 0

    def __init__(self, size=3, secret=SECRET, bufferSize=64 * 1024, seed=0, **overrides):
        # Reconnect delays are jittered with the random module: seeded, a
        # run repeats exactly.
        random.seed(seed)
        self.clock = SharedClock()
        self.secret = secret
        self.bufferSize = bufferSize
        self.overrides = dict(DEFAULTS)
        self.overrides.update(overrides)
        self.pipes = []
        self.cuts = {}
        self.delays = {}
        self.filters = []
        self.frames = None
        self.dropped = []
        self.connects = []
        self.clients = []
        self._ports = itertools.count(40000)
        addresses = [peerAddress(i) for i in range(size)]
        self.slots = [NodeSlot(self, i, addresses) for i in range(size)]
        self.byAddress = {s.address: s for s in self.slots}
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

    def __len__(self):
        return len(self.slots)

    # Life cycle

    def start(self, *indexes, settle=True):
        """
        Boot the nodes (all by default) and, with C{settle}, pump until their
        links are up and their snapshots delivered.
        """
        for i in indexes or range(len(self.slots)):
            self.slots[i].boot()
        if settle:
            self.flush()

    def stop(self):
        """
        Stop every live node's cluster service (an orderly shutdown).
        """
        for slot in self.slots:
            if slot.alive and not slot.stalled:
                slot.cluster.stopService()
                slot.node.stop()
        self.flush()

    def addNode(self, members=None):
        """
        A new slot (not booted) listing C{members} (default: every slot,
        itself included). The other nodes' files are not changed.
        """
        index = len(self.slots)
        slot = NodeSlot(self, index, [])
        self.slots.append(slot)
        self.byAddress[slot.address] = slot
        slot.members = list(members) if members is not None else [s.address for s in self.slots]
        return slot

    def setMembers(self, index, addresses):
        """
        Rewrite node C{index}'s C{cluster.conf}; L{reload} makes it read it.
        An exception instead of addresses is what reading the file raises.
        """
        self.slots[index].members = (
            addresses if isinstance(addresses, Exception) else list(addresses)
        )

    def reload(self, index):
        """
        SIGHUP: node C{index} re-reads its C{cluster.conf}.
        """
        self.slots[index].cluster.reload()
        self.flush()

    # Failures

    def crash(self, index, silent=False):
        """
        Node C{index}'s process vanishes. Its peers see their connections
        reset, or, with C{silent}, nothing at all (they must find out by
        themselves).
        """
        slot = self.slots[index]
        slot.alive = False
        slot.stalled = False
        slot.silentlyDead = silent
        slot.clock.kill()
        slot.peerFactory = None
        slot.clientFactory = None
        for pipe in self.pipes:
            for side in pipe.sides():
                if side.slot is slot and not side.lost:
                    side.dead = True
                    if not silent:
                        side.signal = "rst"
        self.flush()

    def restart(self, index, settle=True):
        """
        Start node C{index} again (crashed or not: a live one crashes
        first), as a new boot.
        """
        if self.slots[index].alive:
            self.crash(index)
        self.slots[index].boot()
        if settle:
            self.flush()

    def stall(self, index):
        """
        Node C{index} stops (SIGSTOP).
        """
        slot = self.slots[index]
        slot.stalled = True
        slot.clock.stalled = True

    def unstall(self, index):
        """
        Node C{index} runs again (SIGCONT): its overdue timers first.
        """
        slot = self.slots[index]
        slot.stalled = False
        slot.clock.unstall()
        # Then a reactor reads what waits in its sockets, before it runs
        # the calls those timers made.
        for pipe in list(self.pipes):
            pipe.pump()
        self.flush()

    def _key(self, a, b):
        return frozenset((a, b))

    def delay(self, a, b, seconds):
        """
        From now on, what nodes C{a} and C{b} send each other arrives
        C{seconds} after it was sent (0: at once again), in order.
        """
        if seconds:
            self.delays[self._key(a, b)] = seconds
        else:
            self.delays.pop(self._key(a, b), None)
        self.flush()

    def delayOf(self, a, b):
        if a is None or b is None:
            return 0
        return self.delays.get(self._key(a, b), 0)

    def cut(self, a, b, silent=False):
        """
        Break the network between nodes C{a} and C{b}: their links are reset
        (both ends see it) or, with C{silent}, frozen; connects between them
        are refused until L{restore}.
        """
        self.cuts[self._key(a, b)] = silent
        if not silent:
            for pipe in self.pipes:
                if pipe.between(a, b):
                    pipe.reset = True
        self.flush()

    def restore(self, a, b):
        self.cuts.pop(self._key(a, b), None)
        self.flush()

    def isolate(self, index, silent=False):
        """
        Cut node C{index} from every other node.
        """
        for other in range(len(self.slots)):
            if other != index:
                self.cut(index, other, silent)

    def heal(self):
        """
        Restore every cut, resume every stalled node, restart every crashed
        one.
        """
        for key in list(self.cuts):
            del self.cuts[key]
        self.delays.clear()
        for i, slot in enumerate(self.slots):
            if slot.stalled:
                self.unstall(i)
        for i, slot in enumerate(self.slots):
            if not slot.alive and slot.generation:
                self.restart(i, settle=False)
        self.flush()

    def _cut(self, slotA, slotB):
        if slotA is None or slotB is None:
            return False
        return self._key(slotA.index, slotB.index) in self.cuts

    def _silentlyCut(self, slotA, slotB):
        if slotA is None or slotB is None:
            return False
        return self.cuts.get(self._key(slotA.index, slotB.index), False)

    # Interception of peer frames

    def record(self):
        """
        Start keeping every frame delivered over a peer link in L{frames}.
        """
        self.frames = []
        return self.frames

    def intercept(self, decide):
        """
        Call C{decide(fromIndex, toIndex, message)} for every frame about to
        be delivered over a peer link: L{DROP} loses it, L{HOLD} keeps it
        (and what follows on that link) in the network, anything else lets
        it through. Return a callable that removes C{decide}.
        """
        self.filters.append(decide)

        def remove():
            if decide in self.filters:
                self.filters.remove(decide)
            self.flush()

        return remove

    def _verdict(self, src, dst, message):
        for decide in self.filters:
            verdict = decide(src, dst, message)
            if verdict in (DROP, HOLD):
                return verdict
        return None

    # Connections

    def _open(self, slot, target, kind, factory):
        port = next(self._ports)
        source = IPv4Address("TCP", "127.0.0.1" if slot is not None else "10.0.0.1", port)
        host, portNumber = (target.address if kind == "peer" else target.clientAddress).split(":")
        destination = IPv4Address("TCP", host, int(portNumber))
        protocol = factory.buildProtocol(destination)
        if protocol is None:
            return None
        transport = Transport(protocol, False, source, destination, self.bufferSize)
        connecting = _Side(slot, protocol, transport)
        pipe = Pipe(self, kind, connecting, target, (destination, source))
        self.pipes.append(pipe)
        # The accepting end is made at the next pump: like a real endpoint,
        # the connect Deferred fires before anything arrives.
        protocol.makeConnection(transport)
        return protocol

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

    def links(self, a, b):
        """
        The live peer pipes between nodes C{a} and C{b}.
        """
        return [p for p in self.pipes if p.between(a, b) and not p.finished()]

    # Time

    def flush(self):
        """
        Run what is due now and pump every connection until nothing moves.
        """
        clock = self.clock
        for _ in range(100_000):
            clock.advance(0)
            moved = False
            for pipe in list(self.pipes):
                if pipe.pump():
                    moved = True
            self.pipes = [p for p in self.pipes if not p.finished()]
            if not moved and not (clock.calls and clock.calls[0].getTime() <= clock.seconds()):
                return
        raise AssertionError("the cluster never went quiet (a message loop?)")

    def advance(self, seconds):
        """
        Move the clock C{seconds} forward, stopping at every timer on the
        way (and at least every L{maxStep}) to pump the network.
        """
        clock = self.clock
        end = clock.seconds() + seconds
        self.flush()
        while clock.seconds() < end:
            now = clock.seconds()
            target = min(end, now + self.maxStep)
            if clock.calls and now < clock.calls[0].getTime() < target:
                target = clock.calls[0].getTime()
            for pipe in self.pipes:
                arrival = pipe.nextArrival()
                if arrival is not None and now < arrival < target:
                    target = arrival
            clock.advance(target - now)
            if clock.seconds() <= now:
                clock.rightNow = target
                clock.advance(0)
            self.flush()

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
