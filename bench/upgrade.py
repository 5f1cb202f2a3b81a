"""
A rolling upgrade, from outside: three C{twistd distro-node} processes
clustered on 127.0.0.1, one of them running the code of an earlier checkout
(a C{git worktree} of an earlier commit), the others this checkout's; the
baseline is the same run with three nodes of this checkout.

    python bench/upgrade.py --before CHECKOUT [--clients 30] [--timeout 60]

Clients of this checkout's library connect to each node in turn (each
knowing its node and the next) and register one instance each, every third
one in a cluster whose name has dots. Measured:

1. the time until every node shows every instance;
2. after three digest intervals, the lines of the nodes' logs that say a
   record was refused or asked for again (0 when the members agree);
3. failover: the first node is killed; its clients resume at the next node.
   The two left are polled until past the dead node's C{down_after_ms} and
   C{orphan_grace_ms} (when its clients' instances would go, had they not
   been taken over): the polls lacking one of them, and how many are still
   there at the end.

Traffic goes to loopback only; every wait is bounded by C{--timeout}.
"""

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from largeclient import freePorts  # noqa: E402
from nonreader import request  # noqa: E402
from register import Child, dataDirArgs, earlierCheckout  # noqa: E402

from distro.client.blocking import BlockingClient  # noqa: E402

VERIFY_MS = 500
DOWN_AFTER_MS = 1000
ORPHAN_GRACE_MS = 3000
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
            sys.executable, "-c", boot, "-n", "--pidfile=", "distro-node", *dataDirArgs(checkout),
            "--nacos-listen", "", "--http-listen", "",
            "--listen", "tcp:0:interface=127.0.0.1",
            "--peer-listen", f"tcp:{port}:interface=127.0.0.1", "--cluster", conf,
            "--verify-interval-ms", str(VERIFY_MS), "--peer-timeout-ms", "500",
            "--down-after-ms", str(DOWN_AFTER_MS), "--orphan-grace-ms", str(ORPHAN_GRACE_MS),
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


def waitShown(addresses, expected, deadline):
    """
    Poll until each address shows its expected set; return how long it took.
    """
    start = time.monotonic()
    while time.monotonic() < deadline:
        views = [shown(a) for a in addresses]
        if all(v == e for v, e in zip(views, expected)):
            return time.monotonic() - start
        time.sleep(0.02)
    raise SystemExit(f"not converged: {[len(v or ()) for v in views]} of {[len(e) for e in expected]}")


def watchKept(addresses, ids, seconds):
    """
    Poll C{addresses} for C{seconds}: the polls that lacked one of C{ids},
    and how many of them each address shows at the end.
    """
    lacked = 0
    end = time.monotonic() + seconds
    while True:
        views = [shown(a) or set() for a in addresses]
        lacked += sum(1 for v in views if not ids <= v)
        if time.monotonic() >= end:
            return lacked, [len(ids & v) for v in views]
        time.sleep(0.05)


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
        expected = [ids] * len(nodes)
        converged = waitShown(addresses, expected, deadline)
        time.sleep(3 * VERIFY_MS / 1000.0)
        refused = refusals(nodes)
        # The first node dies; its clients resume at the next one.
        nodes[0].process.kill()
        nodes[0].process.wait()
        moved = {i for home, _, i in sessions if home == 0}
        lacked, kept = watchKept(addresses[1:], moved, (DOWN_AFTER_MS + ORPHAN_GRACE_MS) / 1000.0 + 2)
        return converged, refused, lacked, kept, len(moved), len(dotted), len(ids)
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
    parser.add_argument("--before", required=True, type=earlierCheckout,
                        help="a checkout of an earlier commit")
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args(argv)
    results = {}
    for name, checkouts in [("current", [None, None, None]),
                            ("one earlier", [None, None, options.before])]:
        results[name] = run(checkouts, options.clients, options.timeout)
    print(f"{options.clients} clients, one instance each; earlier code: {options.before}")
    for name, (converged, refused, lacked, kept, moved, dotted, total) in results.items():
        print(f"{name:>12}: every node showed all {total} instances ({dotted} in dotted clusters) "
              f"{converged:.2f} s after the last write; refused or re-asked records in the logs: "
              f"{refused}; first node killed: of its clients' {moved} instances, the two left "
              f"show {kept} after its orphan grace, polls lacking one: {lacked}")
    base, mixed = results["current"], results["one earlier"]
    print(f"one earlier against current: refused records {mixed[1]} / {base[1]}, "
          f"polls lacking {mixed[2]} / {base[2]}")

if __name__ == "__main__":
    main(sys.argv[1:])
