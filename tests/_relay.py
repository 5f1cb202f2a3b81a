"""
The network between the nodes of a chaos run (L{tests._chaos}): a relay in
front of each node's peer port, which is where every C{cluster.conf} says
the node is, and the faults of each pair of nodes: a cut (both ends see a
reset, and new connections are reset too), a freeze (nothing flows, nobody
is told) or a delay (each way, in order).

A relay learns which node connects from that node's first frame (its
C{peer_hello}), and holds what it sends until then.
"""

from collections import deque

import msgpack
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol


class Timers:
    """
    The delayed calls of a run, so that stopping it leaves none behind.
    """

    def __init__(self):
        self.calls = set()

    def later(self, seconds, f, *args):
        def run():
            self.calls.discard(call)
            f(*args)

        call = reactor.callLater(seconds, run)
        self.calls.add(call)
        return call

    def cancelCall(self, call):
        if call.active():
            call.cancel()
        self.calls.discard(call)

    def sleep(self, seconds):
        d = defer.Deferred()
        self.later(seconds, d.callback, None)
        return d

    def cancel(self):
        for call in list(self.calls):
            if call.active():
                call.cancel()
        self.calls.clear()


class _ToNode(Protocol):
    """
    The relay's connection to the node behind it.
    """

    def __init__(self, pipe):
        self.pipe = pipe

    def connectionMade(self):
        self.pipe.nodeConnected(self.transport)

    def dataReceived(self, data):
        self.pipe.forward(data, towardNode=False)

    def connectionLost(self, reason):
        self.pipe.ended()


class _Pipe(Protocol):
    """
    One peer connection through a relay: from the connecting node (this
    protocol's transport) to the node behind the relay. Until the
    connector's first frame (its C{peer_hello}) names it, what it sends is
    held; then the pair's faults apply.
    """

    def __init__(self, relay):
        self.relay = relay
        self.network = relay.network
        self.source = None
        self.head = bytearray()
        self.nodeTransport = None
        self.toNode = []
        # Each way: (due, data) in the order it came, and the timer of the
        # first one. Nothing overtakes what came before it, whatever the
        # delays were (TCP never reorders).
        self.queues = {True: deque(), False: deque()}
        self.flushTimers = {True: None, False: None}
        self.closing = False
        self.connecting = None

    @property
    def pair(self):
        return (self.source, self.relay.index)

    def connectionMade(self):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.relay.targetPort, timeout=2)
        d = self.connecting = connectProtocol(endpoint, _ToNode(self))
        d.addErrback(lambda _: self.abort())

    def nodeConnected(self, transport):
        if self.closing:
            transport.abortConnection()
            return
        self.nodeTransport = transport
        pending, self.toNode = self.toNode, []
        for data in pending:
            transport.write(data)
        if self.source is not None and self.network.frozen(*self.pair):
            self.freeze(True)

    def dataReceived(self, data):
        if self.source is None:
            self.head += data
            if len(self.head) < 4:
                return
            length = int.from_bytes(self.head[:4], "big")
            if len(self.head) < 4 + length:
                return
            try:
                hello = msgpack.unpackb(bytes(self.head[4 : 4 + length]), raw=False)
                source = self.network.indexOf(hello.get("node"))
            except Exception:
                source = None
            self.source = -1 if source is None else source
            self.network.pipes.add(self)
            if self.network.isCut(*self.pair):
                self.abort()
                return
            if self.network.frozen(*self.pair):
                self.freeze(True)
            data, self.head = bytes(self.head), bytearray()
        self.forward(data, towardNode=True)

    def forward(self, data, towardNode):
        """
        Deliver C{data} one way after the pair's delay, and after everything
        that came before it.
        """
        delay = self.network.delayOf(*self.pair) if self.source is not None else 0
        self.queues[towardNode].append((reactor.seconds() + delay, data))
        self._flush(towardNode)

    def _flush(self, towardNode):
        queue = self.queues[towardNode]
        timer = self.flushTimers[towardNode]
        if timer is not None:
            self.network.timers.cancelCall(timer)
        self.flushTimers[towardNode] = None
        now = reactor.seconds()
        while queue and queue[0][0] <= now:
            self._deliver(queue.popleft()[1], towardNode)
        if queue:
            self.flushTimers[towardNode] = self.network.timers.later(
                queue[0][0] - now, self._flush, towardNode
            )

    def _deliver(self, data, towardNode):
        if self.closing:
            return
        if not towardNode:
            self.transport.write(data)
        elif self.nodeTransport is None:
            self.toNode.append(data)
        else:
            self.nodeTransport.write(data)

    def freeze(self, frozen):
        for transport in (self.transport, self.nodeTransport):
            if transport is None:
                continue
            if frozen:
                transport.pauseProducing()
            else:
                transport.resumeProducing()

    def abort(self):
        if self.closing:
            return
        self.closing = True
        self.network.pipes.discard(self)
        if self.nodeTransport is None:
            self.connecting.cancel()
        self.transport.abortConnection()
        if self.nodeTransport is not None:
            self.nodeTransport.abortConnection()

    def ended(self):
        self.abort()

    def connectionLost(self, reason):
        self.abort()


class Relay(Factory):
    """
    Listens where the cluster file says node C{index} is, and forwards to
    its real peer port.
    """

    noisy = False

    def __init__(self, network, index, targetPort):
        self.network = network
        self.index = index
        self.targetPort = targetPort
        self.port = None

    def buildProtocol(self, addr):
        return _Pipe(self)


class Network:
    """
    The relays between the nodes, and the faults of each pair of nodes.
    """

    def __init__(self, timers):
        self.timers = timers
        self.nodeIds = {}
        self.pipes = set()
        self.cuts = set()
        self.frozenPairs = set()
        self.delays = {}
        self.relays = []

    @staticmethod
    def key(a, b):
        return frozenset((a, b))

    def indexOf(self, nodeId):
        return self.nodeIds.get(nodeId)

    def isCut(self, a, b):
        return self.key(a, b) in self.cuts

    def frozen(self, a, b):
        return self.key(a, b) in self.frozenPairs

    def delayOf(self, a, b):
        return self.delays.get(self.key(a, b), 0)

    def _pipes(self, a, b):
        return [p for p in list(self.pipes) if self.key(*p.pair) == self.key(a, b)]

    def cut(self, a, b):
        self.cuts.add(self.key(a, b))
        for pipe in self._pipes(a, b):
            pipe.abort()

    def freeze(self, a, b):
        self.frozenPairs.add(self.key(a, b))
        for pipe in self._pipes(a, b):
            pipe.freeze(True)

    def delay(self, a, b, seconds):
        self.delays[self.key(a, b)] = seconds

    def restore(self, a, b):
        key = self.key(a, b)
        self.cuts.discard(key)
        self.delays.pop(key, None)
        if key in self.frozenPairs:
            self.frozenPairs.discard(key)
            for pipe in self._pipes(a, b):
                pipe.freeze(False)

    def heal(self):
        for key in list(self.cuts | self.frozenPairs | set(self.delays)):
            self.restore(*key)
