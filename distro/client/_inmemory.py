# -*- test-case-name: tests.test_client_testing -*-
"""
A cluster of real nodes in one process: N L{distro.node.Node}s, each with its
real L{distro.cluster.service.Cluster}, on one shared
L{twisted.internet.task.Clock}, their peer links and client connections made
of L{twisted.test.iosim} transports and pumps. Nothing here touches the
global reactor or a socket; every wait is the clock.

L{distro.client.testing} builds the double it ships on this; the cluster
tests (C{tests/_cluster.py}) add their own clients and checks.

What it can do to the network and the nodes:

  - L{MemoryCluster.cut} / L{MemoryCluster.restore}: the links between two
    nodes break (both ends see the connection reset) or, with
    C{silent=True}, freeze (a partition: nothing flows, nobody is told);
    connects between them are refused while cut.
  - L{MemoryCluster.crash}: a node's process vanishes: its timers never run,
    its connections are reset (or, with C{silent=True}, simply go quiet, as
    with a host that lost power), connects to it are refused.
  - L{MemoryCluster.restart}: a fresh L{Node} and L{Cluster} at the same
    address, with a new boot id.
  - L{MemoryCluster.stall}: SIGSTOP: the node reads nothing, sends nothing,
    accepts nothing and runs no timer until L{MemoryCluster.unstall}, when
    its overdue timers run first (as a reactor does), then its I/O.
  - L{MemoryCluster.delay}: what flows between two nodes arrives some time
    after it was sent (a slow or congested path), in order.
  - L{MemoryCluster.intercept}: look at, drop or hold frames on peer links.

Transports have a send buffer limit: past it they pause their producer (the
outbound peer link, or a client session), and resume it once drained, as
Twisted's TCP transports do; a peer that does not read therefore fills the
buffer and stops the writer, exactly as over a socket.
"""

import bisect
import itertools

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from distro import config as _config
from distro import wire
from distro.cluster.service import Cluster, ClusterSettings
from distro.native.session import ClientPortFactory
from distro.node import Node

__all__ = ["DROP", "HOLD", "MemoryCluster", "SharedClock", "clientAddress", "peerAddress"]

DROP = "drop"
HOLD = "hold"


def peerAddress(index):
    """
    The peer-port address of node C{index}.
    """
    return f"127.0.0.1:{9101 + index}"


def clientAddress(index):
    """
    The client-port address of node C{index}.
    """
    return f"127.0.0.1:{8101 + index}"


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
        self._requestBytes = bytearray()

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
        if data and self.kind == "client" and src is self.connecting:
            self._recordRequests(dst, data)
        if data:
            dst.protocol.dataReceived(data)
        src.transport.drained()
        return bool(data)

    def _recordRequests(self, dst, data):
        """
        Note the frames a client's C{data} completes in the harness's
        C{requests}, as C{(node index, message)}.
        """
        pending = self._requestBytes
        pending += data
        while len(pending) >= 4:
            length = int.from_bytes(pending[:4], "big")
            if len(pending) < 4 + length:
                break
            try:
                message = wire.decode(bytes(pending[4 : 4 + length]))
            except wire.RequestError:
                message = None
            del pending[: 4 + length]
            self.harness.requests.append((dst.index, message))

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


@implementer(IStreamClientEndpoint)
class _ClientEndpoint:
    """
    A client's endpoint to a node's client port: connected at once (the
    node accepts on the next pump), refused when no live node listens at the
    address.
    """

    def __init__(self, harness, address):
        self.harness = harness
        self.address = address

    def connect(self, protocolFactory):
        """
        Connect a protocol of C{protocolFactory} to the node at this address.
        """
        slot = self.harness.byClientAddress.get(self.address)
        if slot is None or not slot.alive or slot.clientFactory is None:
            return fail(error.ConnectionRefusedError(self.address))
        protocol = self.harness._open(None, slot, "client", protocolFactory)
        if protocol is None:
            return fail(error.ConnectionRefusedError(self.address))
        return succeed(protocol)


# Nodes


class NodeSlot:
    """
    One member of the cluster: its address, its current L{Node} and
    L{Cluster} (replaced by L{MemoryCluster.restart}), and its state.

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


# The cluster


class MemoryCluster:
    """
    C{size} nodes, each listing all of them in its C{cluster.conf}; they are
    booted by L{start}.

    @ivar clock: the shared clock.
    @ivar slots: the L{NodeSlot}s, by index.
    @ivar overrides: the configuration keys every node is built with.
    @ivar connects: C{(from, to, succeeded)} of every peer connect attempt.
    @ivar frames: when L{record} was called, C{(from, to, message)} of every
        frame delivered over a peer link.
    @ivar dropped: C{(from, to, message)} of frames dropped by interceptors.
    @ivar requests: C{(to, message)} of every frame a client sent to a
        node's client port, in order of arrival.
    @ivar refusalDelay: how long a connect attempt to a member that is down
        takes to fail (0: at once); a real one to a host name is refused
        only after the address attempts time out (HostnameEndpoint: some
        0.3 s).
    """

    maxStep = 0.05
    refusalDelay = 0

    def __init__(self, size, secret, clock=None, bufferSize=64 * 1024, **overrides):
        """
        @param size: the number of nodes.
        @param secret: the cluster secret, C{bytes}.
        @param clock: a L{Clock}; a L{SharedClock} if L{None}.
        @param bufferSize: the send buffer of every transport, in bytes.
        @param overrides: configuration keys of every node.
        """
        self.clock = SharedClock() if clock is None else clock
        self.secret = secret
        self.bufferSize = bufferSize
        self.overrides = dict(overrides)
        self.pipes = []
        self.cuts = {}
        self.delays = {}
        self.filters = []
        self.frames = None
        self.dropped = []
        self.connects = []
        self.requests = []
        self._ports = itertools.count(40000)
        addresses = [peerAddress(i) for i in range(size)]
        self.slots = [NodeSlot(self, i, addresses) for i in range(size)]
        self.byAddress = {s.address: s for s in self.slots}
        self.byClientAddress = {s.clientAddress: s for s in self.slots}

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
        self.byClientAddress[slot.clientAddress] = slot
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

    def drain(self, index):
        """
        Node C{index} is stopped as SIGTERM stops it: it drains (its
        sessions are asked to move to the other nodes, L{Node.drain}), then
        its process ends as in L{crash}, once its clients moved or its
        C{drain_timeout_ms} passed.

        @return: a L{Deferred} firing with L{None} once it ended.
        """
        slot = self.slots[index]
        generation = slot.generation

        def ended(_):
            if slot.alive and slot.generation == generation:
                self.crash(index)

        d = slot.node.drain().addCallback(ended)
        self.flush()
        return d

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

    def clientEndpoint(self, host, port):
        """
        An endpoint to the client port at C{host} and C{port}: its connect
        attempt is refused unless a live node listens there.
        """
        return _ClientEndpoint(self, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

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
