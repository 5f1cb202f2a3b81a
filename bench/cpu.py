"""
Server CPU per registration in a three-node cluster, against a bare-Twisted
server doing nothing but answer.

    python bench/cpu.py [-c 20] [--pipeline 8] [-m 500]

Starts three C{twistd distro-node} processes clustered on 127.0.0.1, and,
as the baseline, the bare-Twisted msgpack server of C{bench/register.py}
(the same framing, answering every request with C{ok}). C{-c} connections to
the first node each register C{-m} instances of their own service, with
C{--pipeline} requests in flight; the run ends when the other two nodes show
every instance. The CPU time (user + system, from C{/proc/PID/stat}) the
three nodes used meanwhile, summed, is divided by the registrations; the same
load against the bare server gives its CPU per request. Printed: both, and
their ratio. Traffic goes to loopback only; every wait is bounded.
"""

import argparse
import os
import select
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from largeclient import counted, freePorts  # noqa: E402
from nonreader import request, takeFrames  # noqa: E402
from register import Child, startCeiling  # noqa: E402

from distro import wire  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 30.0


def cpuSeconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def load(address, options, tag):
    """
    Run the registrations against C{address}; return the wall time.
    """
    connections = []
    for n in range(options.connections):
        sock = socket.create_connection(address, timeout=30)
        request(sock, {"op": "hello", "id": 1, "proto": 1})
        sock.setblocking(False)
        connections.append({"sock": sock, "sent": 0, "done": 0, "buffer": bytearray(), "n": n})
    started = time.monotonic()
    deadline = started + options.timeout
    active = list(connections)
    while active:
        if time.monotonic() > deadline:
            raise SystemExit("the load did not finish in time")
        for c in active:
            batch = []
            while c["sent"] < options.requests and c["sent"] - c["done"] < options.pipeline:
                i = c["sent"]
                batch.append(wire.encode({
                    "op": "register", "id": 10 + i, "service": {"name": f"{tag}-{c['n']}"},
                    "instance": {"ip": f"10.{c['n']}.{i // 256}.{i % 256}", "port": 8080,
                                 "metadata": {"zone": "z1"}}}))
                c["sent"] += 1
            if batch:
                c["sock"].sendall(b"".join(batch))
        readable, _, _ = select.select([c["sock"] for c in active], [], [], 1.0)
        for c in [c for c in active if c["sock"] in readable]:
            c["buffer"] += c["sock"].recv(1 << 16)
            for reply in takeFrames(c["buffer"]):
                if reply.get("op") != "ok":
                    raise SystemExit(f"register failed: {reply}")
                c["done"] += 1
        active = [c for c in active if c["done"] < options.requests]
    elapsed = time.monotonic() - started
    for c in connections:
        c["sock"].setblocking(True)
    return elapsed, connections


def startCluster(directory, reactor=None, nacos=False):
    """
    Start three clustered nodes in C{directory} (on twistd's C{reactor} if
    given; with the Nacos gRPC port, on a free port, if C{nacos}); return
    them (L{Child}s) once every one is ready, with their client addresses.
    """
    reactorOption = [f"--reactor={reactor}"] if reactor else []
    nacosListen = "tcp:0:interface=127.0.0.1" if nacos else ""
    peerPorts = freePorts(3)
    clusterConf = os.path.join(directory, "cluster.conf")
    with open(clusterConf, "w") as f:
        f.write("".join(f"127.0.0.1:{p}\n" for p in peerPorts))
    nodes = [Child(f"n{i}", [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", *reactorOption, "distro-node", "--data-dir", "", "--node-id", f"n{i}",
        "--nacos-listen", nacosListen, "--http-listen", "",
        "--listen", "tcp:0:interface=127.0.0.1",
        "--peer-listen", f"tcp:{port}:interface=127.0.0.1", "--cluster", clusterConf,
        "--heartbeat-ms", "600000", "--idle-timeout-ms", "1200000", "--port-file"], directory)
        for i, port in enumerate(peerPorts)]
    try:
        addresses = [node.waitAddress() for node in nodes]
        deadline = time.monotonic() + START_TIMEOUT
        for address in addresses:  # every node ready
            while counted(*address, "none") is None:
                if time.monotonic() > deadline:
                    raise SystemExit("the cluster did not get ready")
                time.sleep(0.05)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes, addresses


def registrations(nodes, addresses, options):
    """
    The registration load at the first node, until the others show every
    instance: C{(wall seconds, CPU seconds of each node)}.
    """
    total = options.connections * options.requests
    startCpu = [cpuSeconds(node.process.pid) for node in nodes]
    elapsed, connections = load(addresses[0], options, "cpu")
    deadline = time.monotonic() + options.timeout
    for address in addresses[1:]:
        while counted(*address, "cpu-") != total:
            if time.monotonic() > deadline:
                raise SystemExit("the other nodes did not get every instance")
            time.sleep(0.01)
    used = [cpuSeconds(node.process.pid) - t for node, t in zip(nodes, startCpu)]
    closeOrderly(connections)
    return elapsed, used


def closeOrderly(connections):
    """
    Say C{bye} on the load's connections and close them: their clients and
    instances go at once, not in the middle of a later phase.
    """
    for c in connections:
        c["sock"].sendall(wire.encode({"op": "bye", "id": 2**31}))
        c["sock"].close()


def loadOptions(parser):
    """
    Add the options of the registration load to C{parser}.
    """
    parser.add_argument("-c", "--connections", type=int, default=20)
    parser.add_argument("--pipeline", type=int, default=8)
    parser.add_argument("-m", "--requests", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--reactor", help="twistd's reactor for the nodes (default: its own)")
    parser.add_argument("--nacos", action="store_true",
                        help="serve the Nacos gRPC port too (idle; it needs the asyncio reactor)")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    loadOptions(parser)
    options = parser.parse_args(argv)
    total = options.connections * options.requests
    directory = tempfile.mkdtemp(prefix="distro-cpu-")
    nodes = []
    ceiling = startCeiling(directory, 1)
    try:
        nodes, addresses = startCluster(directory, options.reactor, options.nacos)
        ceilingAddress = ceiling.waitAddress()
        elapsed, perNode = registrations(nodes, addresses, options)
        used = sum(perNode)
        ceilingBefore = cpuSeconds(ceiling.process.pid)
        ceilingElapsed, connections = load(ceilingAddress, options, "cpu")
        ceilingUsed = cpuSeconds(ceiling.process.pid) - ceilingBefore
        for c in connections:
            c["sock"].close()
    finally:
        for child in nodes + [ceiling]:
            child.stop()
        shutil.rmtree(directory, ignore_errors=True)
    us = 1e6
    print(f"{total} registrations ({options.connections} connections x {options.requests}, "
          f"{options.pipeline} in flight) at one node of three: {total / elapsed:.0f}/s; "
          f"CPU of the three nodes {used:.2f} s = {used / total * us:.1f} us per registration "
          f"(the written-to node {perNode[0] / total * us:.1f} us, the others "
          f"{', '.join(f'{t / total * us:.1f}' for t in perNode[1:])} us)")
    print(f"baseline, bare-Twisted msgpack server, same load: {total / ceilingElapsed:.0f}/s, "
          f"{ceilingUsed / total * us:.1f} us per request")
    print(f"ratio: {used / max(ceilingUsed, 1e-9):.1f}x the bare server's CPU")


if __name__ == "__main__":
    main(sys.argv[1:])
