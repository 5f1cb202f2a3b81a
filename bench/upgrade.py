"""
A rolling upgrade, from outside: three C{twistd distro-node} processes
clustered on 127.0.0.1, one of them running the code of an earlier checkout
(a C{git worktree} of an earlier commit), the others this checkout's; the
baseline is the same run with three nodes of this checkout.

    python bench/upgrade.py --before CHECKOUT [--clients 30] [--timeout 60]

Clients of this checkout's library connect to each node in turn (each
knowing its node and the next) and register one instance each, every third
one in a cluster whose name has dots (PROTOCOL.md 5.1.1: a member without
the capability is not sent those). Measured:

1. the time until every node shows every instance it may hold (the earlier
   member: all but the dotted ones, unless it has the capability);
2. after three digest intervals, the lines of the nodes' logs that say a
   record was refused or asked for again (0 when the members agree);
3. failover: the first node is killed; its clients resume at the next node,
   and the time until the two left show every instance again (none of the
   killed node's clients' instances missing, at any poll).

Traffic goes to loopback only; every wait is bounded by C{--timeout}.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from largeclient import freePorts  # noqa: E402
from nonreader import request  # noqa: E402
from register import Child  # noqa: E402

import socket  # noqa: E402

from distro.client.blocking import BlockingClient  # noqa: E402

VERIFY_MS = 500
SERVICE = "upgrade"


def startNodes(directory, checkouts):
    """
    One node per entry of C{checkouts} (C{None}: this checkout), clustered;
    return the children and their client addresses once every node is ready.
    """
    ports = freePorts(len(checkouts))
    conf = os.path.join(directory, "cluster.conf")
    with open(conf, "w") as f:
        f.write("".join(f"127.0.0.1:{port}\n" for port in ports))
    nodes = []
    for n, (port, checkout) in enumerate(zip(ports, checkouts)):
        boot = "from twisted.scripts.twistd import run; run()"
        if checkout is not None:
            boot = f"import sys; sys.path.insert(0, {os.path.abspath(checkout)!r}); " + boot
        nodes.append(Child(f"n{n}", [
            sys.executable, "-c", boot, "-n", "--pidfile=", "distro-node",
            "--nacos-listen", "", "--http-listen", "",
            "--listen", "tcp:0:interface=127.0.0.1",
            "--peer-listen", f"tcp:{port}:interface=127.0.0.1", "--cluster", conf,
            "--verify-interval-ms", str(VERIFY_MS), "--peer-timeout-ms", "500",
            "--down-after-ms", "1000", "--orphan-grace-ms", "3000",
            "--port-file"], directory))
    return nodes, [node.waitAddress() for node in nodes]


def shown(address):
    """
    The instance ids node C{address} shows of the service, or C{None} while
    it is not ready (or not reachable).
    """
    try:
        sock = socket.create_connection(address, timeout=10)
    except OSError:
        return None
    try:
        hello = request(sock, {"op": "hello", "id": 1, "proto": 1})
        if not hello.get("ready"):
            return None
        reply = request(sock, {"op": "query", "id": 2, "service": {"name": SERVICE}})
        return {h["instance_id"] for h in reply["service_info"]["hosts"]}
    finally:
        sock.close()


def waitShown(addresses, expected, deadline, never=None):
    """
    Poll until each address shows its expected set; with C{never}, fail if a
    poll ever lacks one of those ids (at a node that showed them once).
    """
    start = time.monotonic()
    lacked = 0
    while time.monotonic() < deadline:
        views = [shown(a) for a in addresses]
        if never is not None:
            lacked += sum(1 for v in views if v is not None and not never <= v)
        if all(v == e for v, e in zip(views, expected)):
            return time.monotonic() - start, lacked
        time.sleep(0.02)
    raise SystemExit(f"not converged: {[len(v or ()) for v in views]} of {[len(e) for e in expected]}")


def refusals(nodes):
    """
    The log lines that say a record was refused or asked for again.
    """
    count = 0
    for node in nodes:
        for line in node.logTail(10**8).splitlines():
            if "rejected" in line or "refused:" in line or "resend" in line:
                count += 1
    return count


def run(checkouts, clients, timeout):
    directory = tempfile.mkdtemp(prefix="distro-upgrade-")
    nodes, addresses = startNodes(directory, checkouts)
    sessions = []
    try:
        deadline = time.monotonic() + timeout
        waitShown(addresses, [set()] * len(nodes), deadline)
        ids, dotted = set(), set()
        for n in range(clients):
            home = n % len(nodes)
            servers = [f"{h}:{p}" for h, p in (addresses[home], addresses[(home + 1) % len(nodes)])]
            client = BlockingClient(servers, timeout=timeout)
            cluster = "eu.west" if n % 3 == 0 else "DEFAULT"
            ip = f"10.9.{n // 250}.{n % 250 + 1}"
            client.register(SERVICE, ip, 8080, cluster=cluster)
            instanceId = f"{ip}#8080#{cluster}"
            ids.add(instanceId)
            if "." in cluster:
                dotted.add(instanceId)
            sessions.append((home, client, instanceId))
        older = [c is not None for c in checkouts]
        expected = [ids - dotted if old else ids for old in older]
        converged, _ = waitShown(addresses, expected, deadline)
        time.sleep(3 * VERIFY_MS / 1000.0)
        refused = refusals(nodes)
        # The first node dies; its clients resume at the next one.
        nodes[0].process.kill()
        nodes[0].process.wait()
        left = addresses[1:]
        moved = {i for home, _, i in sessions if home == 0}
        failover, lacked = waitShown(left, expected[1:], time.monotonic() + timeout,
                                     never=moved - dotted)
        return converged, refused, failover, lacked, len(dotted), len(ids)
    finally:
        for _, client, _ in sessions:
            try:
                client.close()
            except Exception:
                pass
        for node in nodes:
            node.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a checkout of an earlier commit")
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(options.before, "distro", "tap.py")):
        raise SystemExit(f"--before {options.before}: not a checkout of distro")
    results = {}
    for name, checkouts in [("current", [None, None, None]),
                            ("one earlier", [None, None, options.before])]:
        results[name] = run(checkouts, options.clients, options.timeout)
    print(f"{options.clients} clients, one instance each; earlier code: {options.before}")
    for name, (converged, refused, failover, lacked, dotted, total) in results.items():
        print(f"{name:>12}: converged in {converged:.2f} s; refused or re-asked records in the logs: "
              f"{refused}; failover (first node killed) converged in {failover:.2f} s, polls lacking "
              f"a moved client's instance: {lacked}; dotted instances {dotted} of {total}")
    base, mixed = results["current"], results["one earlier"]
    print(f"ratio, one earlier / current: convergence {mixed[0] / base[0]:.2f}x, "
          f"failover {mixed[2] / base[2]:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
