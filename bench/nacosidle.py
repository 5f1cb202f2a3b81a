"""
Many idle Nacos SDK connections on one node (issue 19: a Java fleet opens a
gRPC connection per SDK instance): how long N connections take to set up
at once, what each idle one costs the node in memory, and what the node
spends while they all sit idle.

    python bench/nacosidle.py [--connections 2000] [--idle 10]

A standalone C{twistd distro-node} on 127.0.0.1. First N sessions of
distro's own port (hello, then nothing), the baseline; then, on a fresh
node, N Nacos connections as the SDKs make them (grpcio channels in this
process: the bi-stream's C{ConnectionSetupRequest}, then a
C{HealthCheckRequest} until the node answers it), all at once. Printed per
port: the time until every connection is set up (distro's one after
another, Nacos' all at once), the node's RSS per
connection (RSS with them, less RSS before, over N), and the node's CPU per
second over C{--idle} seconds of idleness (gRPC keepalives only); and the
ratio of the Nacos port's to distro's. Traffic goes to loopback only;
every wait is bounded; each node is stopped at the end of its part.
"""

import argparse
import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cpu import cpuSeconds  # noqa: E402
from nacos import NacosConnection, startNode  # noqa: E402
from nacossdk import rss  # noqa: E402
from nonreader import request  # noqa: E402

SETUP_TIMEOUT = 120


def distroPart(directory, options):
    node, address, _ = startNode(directory, "idle-distro", ["--http-listen", ""])
    sockets = []
    try:
        pid = node.process.pid
        time.sleep(0.5)
        before = rss(pid)
        started = time.monotonic()
        for _ in range(options.connections):
            sock = socket.create_connection(address, timeout=10)
            request(sock, {"op": "hello", "id": 1, "proto": 1})
            sockets.append(sock)
        setup = time.monotonic() - started
        time.sleep(1)
        memory = rss(pid) - before
        cpu = cpuSeconds(pid)
        time.sleep(options.idle)
        idle = (cpuSeconds(pid) - cpu) / options.idle
    finally:
        for sock in sockets:
            sock.close()
        node.stop()
    return setup, memory / options.connections, idle


async def nacosConnections(address, options, node):
    pid = node.process.pid
    await asyncio.sleep(0.5)
    before = rss(pid)
    connections = [NacosConnection(address) for _ in range(options.connections)]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(c.setUp() for c in connections)), SETUP_TIMEOUT)
    setup = time.monotonic() - started
    await asyncio.sleep(1)
    memory = rss(pid) - before
    cpu = cpuSeconds(pid)
    await asyncio.sleep(options.idle)
    idle = (cpuSeconds(pid) - cpu) / options.idle
    for c in connections:
        await c.close()
    return setup, memory / options.connections, idle


def nacosPart(directory, options):
    node, _, nacosAddress = startNode(
        directory, "idle-nacos", ["--http-listen", "", "--max-connections-per-ip", "0"])
    try:
        return asyncio.run(nacosConnections(nacosAddress, options, node))
    finally:
        node.stop()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=10.0)
    options = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="distro-nacosidle-")
    try:
        columns = {"distro port": distroPart(directory, options), "Nacos port": nacosPart(directory, options)}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{options.connections} idle connections per port; {options.idle:g} s idle")
    print(f"{'':<36}{'distro port':>14}{'Nacos port':>14}{'Nacos / distro':>16}")
    rows = [("set up (s)", 0, 1.0, "{:.2f}"),
            ("node RSS per connection (KB)", 1, 1 / 1024, "{:.1f}"),
            ("node CPU while idle (ms/s)", 2, 1000.0, "{:.2f}")]
    for label, at, scale, form in rows:
        a, b = columns["distro port"][at] * scale, columns["Nacos port"][at] * scale
        ratio = f"{b / a:.2f}x" if a else "-"
        print(f"{label:<36}{form.format(a):>14}{form.format(b):>14}{ratio:>16}")


if __name__ == "__main__":
    main(sys.argv[1:])
