"""
A C{services} page over big views after churn.

    python bench/services.py [--services 200] [--instances 1000] [--pages 50]

In this process: a real L{distro.node.Node} with its client port protocol
over in-memory transports. One publisher per service holds C{--instances}
instances; then one instance of every service changes (churn: every cached
view is stale), and a client asks for the page of all C{--services}
services, again after each round of churn. Printed: the mean and worst time
of a page, and, as the baseline, of a C{ping} on the same connection.
"""

import argparse
import os
import statistics
import sys
import time

from twisted.internet.task import Clock

from distro import config
from distro.node import Node
from distro.native.session import ClientPortFactory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from viewchange import _Connection  # noqa: E402


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--pages", type=int, default=50)
    options = parser.parse_args(argv)
    clock = Clock()
    node = Node(config.build(overrides={"node_id": "bench", "advertise": "127.0.0.1:1"}),
                clock, "boot")
    factory = ClientPortFactory(node)
    publishers = []
    for s in range(options.services):
        publisher = _Connection(factory, s)
        publisher.send("hello", proto=1)
        publisher.send("batch_register", service={"name": f"svc-{s:04d}"}, instances=[
            {"ip": f"10.{s}.{i // 256}.{i % 256}", "port": 8080} for i in range(options.instances)])
        publishers.append(publisher)
    reader = _Connection(factory, options.services)
    reader.send("hello", proto=1)
    pages, pings = [], []
    for round in range(options.pages):
        for s, publisher in enumerate(publishers):
            publisher.send("register", service={"name": f"svc-{s:04d}"},
                           instance={"ip": f"10.{s}.0.1", "port": 8080, "weight": float(round)})
        clock.advance(0)
        started = time.perf_counter()
        reader.send("services", size=options.services)
        pages.append(time.perf_counter() - started)
        started = time.perf_counter()
        reader.send("ping")
        pings.append(time.perf_counter() - started)
    ms = 1000
    print(f"services page of {options.services} services x {options.instances} instances, "
          f"after churn, {options.pages} times: mean {statistics.mean(pages) * ms:.3f} ms, "
          f"worst {max(pages) * ms:.3f} ms")
    print(f"baseline, a ping: mean {statistics.mean(pings) * ms:.3f} ms; "
          f"ratio {statistics.mean(pages) / statistics.mean(pings):.0f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
