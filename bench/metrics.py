"""
The cost of the node's metrics: a scrape at 100k instances, and the
recording of every request.

    python bench/metrics.py [--clients 1000] [--instances 100] [--services 500] [--scrapes 30]

In this process: a real L{distro.node.Node} with its client port protocol
over in-memory transports and its HTTP port's site over a string transport,
on the reactor's clock (not run: its due calls are run by hand; a
C{task.Clock} sorts its calls at each C{callLater}, which would be most of
a scrape's time with a thousand connections' timers).
First, C{GET /metrics} and C{GET /nacos/actuator/prometheus} are scraped
C{--scrapes} times on the empty node: a baseline. Then C{--clients}
clients each register C{--instances} instances (one batch) in one of
C{--services} services and subscribe to it, and each makes two refused
requests too (every request metric has samples); the same scrapes again,
and of a second node where 10 clients did the same with one instance each
(the same requests served, so the same series: the other baseline).
Printed: each scrape's mean and best time, and the ratios to the
baselines' (the best is steadier: a mean takes in what else the machine
ran, and the collector's pauses in a 100k heap).

Second, the recording of a request: C{--registers} msgpack registers (one
client re-registering one instance, its weight changing), timed with the
process' CPU clock, in rounds alternating with the port's recording
replaced by nothing. Printed: the CPU per register either way (best round)
and the difference: what the recording call costs (the two clock reads
around a request, some 0.1 us, stay in both).
"""

import argparse
import gc
import os
import statistics
import sys
import time

from twisted.internet import reactor
from twisted.internet.testing import StringTransport

from distro import config
from distro.http.service import HttpService
from distro.native.session import ClientPortFactory
from distro.node import Node
from distro.requeststats import PortRequests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from viewchange import _Connection  # noqa: E402


def scrape(site, path):
    """
    One C{GET path} on a new connection to C{site}: the seconds it took,
    and the body's size.
    """
    transport = StringTransport()
    channel = site.buildProtocol(None)
    channel.makeConnection(transport)
    started = time.perf_counter()
    channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
    elapsed = time.perf_counter() - started
    response = transport.value()
    if not response.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{path.decode()} answered {response[:100]!r}")
    channel.connectionLost(None)
    return elapsed, len(response)


def scrapes(site, options):
    """
    C{{path: (mean, best, bytes)}} of C{--scrapes} scrapes of each path.
    """
    found = {}
    for path in (b"/metrics", b"/nacos/actuator/prometheus"):
        times, size = [], 0
        for _ in range(options.scrapes):
            elapsed, size = scrape(site, path)
            times.append(elapsed)
        found[path.decode()] = (statistics.mean(times), min(times), size)
    return found


def populate(factory, clients, instances, services):
    """
    C{clients} clients, each registering C{instances} in one of
    C{services} services and subscribing to it, and refused twice.
    """
    connections = []
    for c in range(clients):
        connection = _Connection(factory, c)
        connection.send("hello", proto=1)
        service = {"name": f"svc-{c % services:05d}"}
        connection.send("batch_register", service=service, instances=[
            {"ip": f"10.{c // 256}.{c % 256}.{i % 256}", "port": 8000 + i // 256}
            for i in range(instances)])
        connection.send("subscribe", service=service)
        connection.send("register", service={"name": ""}, instance={})  # BAD_REQUEST
        connection.send(f"no-such-op-{c}")  # UNKNOWN_OP, as unknown
        connection.transport.clear()
        connections.append(connection)
        reactor.runUntilCurrent()
    return connections


def recordingCost(factory, options):
    """
    CPU seconds per register, best round, with the port's recording and
    with it replaced by nothing: C{(recorded, unrecorded)}.
    """
    connection = _Connection(factory, options.clients + 1)
    connection.send("hello", proto=1)
    service = {"name": "recorded"}
    record = PortRequests.record
    rounds = {True: [], False: []}
    weight = 0
    for round in range(options.rounds):
        for recorded in (True, False):
            PortRequests.record = record if recorded else (lambda self, op, code, seconds: None)
            gc.collect()
            started = time.process_time()
            for _ in range(options.registers):
                weight += 1
                connection.send("register", service=service,
                                instance={"ip": "10.255.0.1", "port": 80, "weight": float(weight % 100)})
                connection.transport.clear()
            rounds[recorded].append((time.process_time() - started) / options.registers)
            reactor.runUntilCurrent()
    PortRequests.record = record
    return min(rounds[True]), min(rounds[False])


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="clients of the big node")
    parser.add_argument("--instances", type=int, default=100, help="instances per client")
    parser.add_argument("--services", type=int, default=500, help="services they share")
    parser.add_argument("--scrapes", type=int, default=30, help="scrapes of each path")
    parser.add_argument("--registers", type=int, default=20000,
                        help="registers per round of the recording's cost")
    parser.add_argument("--rounds", type=int, default=5, help="rounds each way")
    options = parser.parse_args(argv)
    small = Node(config.build(overrides={"node_id": "small", "advertise": "127.0.0.1:1"}),
                 reactor, "boot")
    smallSite = HttpService(small, None).site
    node = Node(config.build(overrides={"node_id": "bench", "advertise": "127.0.0.1:1"}),
                reactor, "boot")
    factory = ClientPortFactory(node)
    site = HttpService(node, None).site
    empty = scrapes(site, options)
    populate(ClientPortFactory(small), 10, 1, 10)
    populate(factory, options.clients, options.instances, options.services)
    smallScrapes = scrapes(smallSite, options)
    full = scrapes(site, options)
    counts = node.counts()
    ms = 1000
    print(f"scrapes ({options.scrapes} each) of a node holding {counts['instances']} instances "
          f"of {counts['services']} services, {counts['native_clients']} clients, "
          f"{counts['subscriptions']} subscriptions; baselines: the same node empty, and a node "
          f"of 10 clients of 1 instance (the same requests served: the same series)")
    for path, (mean, best, size) in full.items():
        print(f"  GET {path}: mean {mean * ms:.3f} ms, best {best * ms:.3f} ms, {size} bytes")
        for name, baseline in (("empty", empty), ("10 instances", smallScrapes)):
            baseMean, baseBest, baseSize = baseline[path]
            print(f"    {name}: mean {baseMean * ms:.3f} ms, best {baseBest * ms:.3f} ms, "
                  f"{baseSize} bytes; ratio {mean / baseMean:.2f}x (mean), {best / baseBest:.2f}x (best)")
    recorded, unrecorded = recordingCost(factory, options)
    us = 1e6
    print(f"a msgpack register, CPU (best of {options.rounds} rounds of {options.registers}): "
          f"{recorded * us:.2f} us with its request recorded, {unrecorded * us:.2f} us without; "
          f"the recording {(recorded - unrecorded) * us:.2f} us, "
          f"{(recorded - unrecorded) / unrecorded * 100:.1f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
