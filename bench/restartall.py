"""
Whole-cluster restart: how long after the cluster is back are every client's
instances back?

    python bench/restartall.py [--clients 30] [--outage 8] [--runs 1]

Three C{twistd -n distro-node} processes are started as in
C{bench/cluster.py} (sample files, free ports, short failure detection).
C{--clients} library clients (L{distro.client.DistroClient}), spread over the
nodes, each register one instance of the service C{restart}. Then every node
is SIGKILLed at once; the clients keep retrying. After C{--outage} seconds
(long enough for their backoff to reach its longest delay) the three are
started again on the same ports. Measured, from the restart:

- back: when each of the three answers a new connection's C{hello} with
  C{ready: true} (the last of them is "the cluster is back");
- instances: when every node's view of C{restart} holds every client's
  instance again.

The figure that matters is instances - back. The run is bounded; the nodes
are killed at the end.
"""

import argparse
import os
import shutil
import tempfile

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from cluster import Node, connect, now, ok, sleep
from distro.client import DistroClient
from largeclient import freePorts

SERVICE = {"namespace": "public", "group": "DEFAULT_GROUP", "name": "restart"}
CLIENT_TIMEOUT = 3.0
WAIT_TIMEOUT = 60.0


async def readyAt(reactor, node, start, deadline):
    """
    Poll C{node} with new connections until one is told C{ready: true};
    return the time since C{start}.
    """
    while now() < deadline:
        try:
            conn = await connect(reactor, node)
        except Exception:
            await sleep(reactor, 0.02)
            continue
        ready = conn.welcome.get("ready")
        conn.transport.abortConnection()
        if ready:
            return now() - start
        await sleep(reactor, 0.02)
    raise SystemExit(f"node {node.name} not ready after {WAIT_TIMEOUT} s:\n{node.logTail()}")


async def hostsOn(reactor, node):
    conn = await connect(reactor, node)
    try:
        reply = await ok(conn.request("query", service=SERVICE))
        return {h["ip"] for h in reply["service_info"]["hosts"]}
    finally:
        conn.transport.abortConnection()


async def allBackAt(reactor, nodes, expected, start, deadline):
    """
    Poll until every node's view holds C{expected}; return the time since
    C{start}.
    """
    while now() < deadline:
        try:
            views = [await hostsOn(reactor, n) for n in nodes]
        except Exception:
            views = None
        if views is not None and all(v >= expected for v in views):
            return now() - start
        await sleep(reactor, 0.05)
    raise SystemExit(f"instances not back after {WAIT_TIMEOUT} s")


async def run(reactor, args):
    directory = tempfile.mkdtemp(prefix="distro-restartall-")
    ports = freePorts(6)
    clusterFile = os.path.join(directory, "cluster.conf")
    with open(clusterFile, "w") as f:
        for i in range(3):
            f.write(f"127.0.0.1:{ports[2 * i + 1]}\n")
    # A directory per node: each keeps its own data_dir there.
    for name in "ABC":
        os.makedirs(os.path.join(directory, name))
    nodes = [
        Node(name, i + 1, ports[2 * i], ports[2 * i + 1], os.path.join(directory, name), clusterFile)
        for i, name in enumerate("ABC")
    ]
    clients = []
    try:
        portFiles = [n.start() for n in nodes]
        for n, p in zip(nodes, portFiles):
            await n.waitListening(reactor, p)
        deadline = now() + WAIT_TIMEOUT
        for n in nodes:
            await readyAt(reactor, n, now(), deadline)
        addresses = [n.address for n in nodes]
        expected = set()
        for i in range(args.clients):
            client = DistroClient(
                addresses,
                clock=reactor,
                endpoint_factory=lambda host, port: TCP4ClientEndpoint(
                    reactor, host, port, timeout=CLIENT_TIMEOUT
                ),
                agent="bench/restartall",
                timeout=CLIENT_TIMEOUT,
                start_at=i % 3,
            )
            await client.start()
            clients.append(client)
            ip = f"10.9.{i // 250}.{i % 250 + 1}"
            await client.register("restart", ip, 8080)
            expected.add(ip)
        await allBackAt(reactor, nodes, expected, now(), now() + WAIT_TIMEOUT)
        for r in range(args.runs):
            for n in nodes:
                n.kill()
            await sleep(reactor, args.outage)
            start = now()
            portFiles = [n.start() for n in nodes]
            deadline = start + WAIT_TIMEOUT
            for n, p in zip(nodes, portFiles):
                await n.waitListening(reactor, p)
            back = max([await readyAt(reactor, n, start, deadline) for n in nodes])
            instances = await allBackAt(reactor, nodes, expected, start, deadline)
            print(
                f"run {r + 1}: {args.clients} clients; cluster back (every node ready) "
                f"{back:.2f} s after the restart; every instance back on every node "
                f"{instances:.2f} s after it: {instances - back:.2f} s after the cluster was back",
                flush=True,
            )
    finally:
        for client in clients:
            client.close()
        for n in nodes:
            n.stop()
        shutil.rmtree(directory, ignore_errors=True)


def parseArgs(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--outage", type=float, default=8.0, help="seconds every node stays down")
    parser.add_argument("--runs", type=int, default=1)
    return parser.parse_args(argv)


def main(argv=None):
    args = parseArgs(argv)
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
