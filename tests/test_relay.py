"""
The chaos run's relay (L{tests._relay}) keeps each direction of a link in
order, as TCP does, whatever its delays do meanwhile.
"""

import msgpack
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from tests._relay import Network, Relay, Timers


class _Collect(Protocol):
    def __init__(self, received):
        self.received = received

    def dataReceived(self, data):
        self.received.extend(data)


class _Sender(Protocol):
    pass


def _frame(message):
    body = msgpack.packb(message)
    return len(body).to_bytes(4, "big") + body


class RelayOrderTests(TestCase):
    @defer.inlineCallbacks
    def test_delayEndingKeepsOrder(self):
        """
        Bytes sent while a pair is slowed down and bytes sent once it is
        restored arrive in the order they were sent.
        """
        received = bytearray()
        timers = Timers()
        self.addCleanup(timers.cancel)
        network = Network(timers)
        network.nodeIds = {"n0": 0, "n1": 1}
        factory = Factory.forProtocol(lambda: _Collect(received))
        target = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(target.stopListening)
        relay = Relay(network, 1, target.getHost().port)
        port = reactor.listenTCP(0, relay, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port, timeout=2)
        sender = yield connectProtocol(endpoint, _Sender())
        self.addCleanup(lambda: [p.abort() for p in list(network.pipes)])
        self.addCleanup(sender.transport.abortConnection)
        hello = _frame({"op": "peer_hello", "node": "n0"})
        sender.transport.write(hello)
        yield deferLater(0.05)
        network.delay(0, 1, 0.3)
        sender.transport.write(b"first,")
        yield deferLater(0.05)
        network.restore(0, 1)
        sender.transport.write(b"second")
        deadline = reactor.seconds() + 5
        while len(received) < len(hello) + 12 and reactor.seconds() < deadline:
            yield deferLater(0.05)
        self.assertEqual(bytes(received), hello + b"first,second")


def deferLater(seconds):
    return task.deferLater(reactor, seconds, lambda: None)
