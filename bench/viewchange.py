"""
What one change costs a node, in a view of 10 instances and in one of
C{--instances}, each with C{--subscribers} subscribers.

    python bench/viewchange.py [--instances 10000] [--subscribers 10] [--changes 200]
                               [--filtered]

In this process: a real L{distro.node.Node} with its client port protocol
(L{distro.native.session.ClientSession}) over in-memory transports, on a task clock.
One publisher holds the instances of the service; the subscribers subscribe
to it (with C{--filtered}, with a cluster filter). Each measured change is the publisher re-registering one instance
with a new weight, handled as the node handles a request, then the end of
the reactor turn, which pushes the new view to every subscriber. Printed:
the mean and worst time per change for the small view (the baseline) and the
large one, and their ratio: a change should cost the same in both.
"""

import argparse
import statistics
import sys
import time

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from distro import config, wire
from distro.node import Node
from distro.native.session import ClientPortFactory


class _Sink(StringTransport):
    """
    A transport that takes what is written as a TCP transport does (it
    queues the pieces; the copy to the socket happens later, in the
    reactor's write phase), counting the bytes.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.queued = 0

    def write(self, data):
        self.queued += len(data)

    def writeSequence(self, data):
        self.queued += sum(len(piece) for piece in data)

    def clear(self):
        self.queued = 0


class _Connection:
    def __init__(self, factory, n):
        self.transport = _Sink(peerAddress=IPv4Address("TCP", "10.9.0.1", 40000 + n))
        self.session = factory.buildProtocol(None)
        self.session.makeConnection(self.transport)
        self.ids = iter(range(1, 1 << 30))

    def send(self, op, **fields):
        self.session.dataReceived(wire.encode(dict(fields, op=op, id=next(self.ids))))


def measure(size, options):
    clock = Clock()
    node = Node(config.build(overrides={"node_id": "bench", "advertise": "127.0.0.1:1",
                                        "max_instances_per_client": max(size, 10000)}),
                clock, "boot")
    factory = ClientPortFactory(node)
    publisher = _Connection(factory, 0)
    publisher.send("hello", proto=1)
    service = {"name": "big"}
    instances = [{"ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "port": 8080,
                  "metadata": {"version": "1.2.3", "zone": f"z{i % 3}"}} for i in range(size)]
    publisher.send("batch_register", service=service, instances=instances)
    subscribers = []
    for n in range(options.subscribers):
        subscriber = _Connection(factory, n + 1)
        subscriber.send("hello", proto=1)
        if options.filtered:
            subscriber.send("subscribe", service=service, clusters=["DEFAULT"])
        else:
            subscriber.send("subscribe", service=service)
        subscribers.append(subscriber)
    clock.advance(0)
    times = []
    for change in range(options.changes):
        for connection in [publisher] + subscribers:
            connection.transport.clear()
        instance = dict(instances[change % size], weight=float(2 + change))
        started = time.perf_counter()
        publisher.send("register", service=service, instance=instance)
        clock.advance(0)
        times.append(time.perf_counter() - started)
        if not all(s.transport.queued for s in subscribers):
            raise SystemExit("a subscriber got no push")
    return statistics.mean(times), max(times)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--filtered", action="store_true",
                        help="subscribe with a cluster filter")
    options = parser.parse_args(argv)
    small = measure(10, options)
    large = measure(options.instances, options)
    ms = 1000
    print(f"one change, {options.subscribers} subscribers, mean / worst of {options.changes}:")
    print(f"  view of 10 instances (baseline): {small[0] * ms:.3f} / {small[1] * ms:.3f} ms")
    print(f"  view of {options.instances} instances: {large[0] * ms:.3f} / {large[1] * ms:.3f} ms")
    print(f"ratio (large / small, mean): {large[0] / small[0]:.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
