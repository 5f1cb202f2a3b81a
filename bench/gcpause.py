"""
Garbage collector pauses of a node holding many instances, read from the
node's own log.

    python bench/gcpause.py [--instances 100000] [--clients 100] [--seconds 10]

Starts a fresh C{twistd distro-node} on 127.0.0.1 port 0 twice: first with
C{--gc-freeze false} (the baseline: Python's default collector), then with
the default C{gc_freeze}. Each time it publishes C{--instances} instances from
C{--clients} connections (C{batch_register}, one service each, connections
kept open), then for C{--seconds} opens short-lived connections back to back
(C{hello}, C{register}, C{subscribe}, C{query}, half of them C{bye}, half
just closed) while one publisher keeps changing its instances. The node
times every collection (L{distro.collector}); at SIGTERM it logs how many
there were and the longest pause, which this script prints with the
collections it logged as slow (20 ms or more), and the ratio of the longest
pauses. Traffic goes to loopback only; every wait is bounded.
"""

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nonreader import request  # noqa: E402
from register import Child  # noqa: E402

_SUMMARY = re.compile(r"gc: (\d+) collections, longest pause ([\d.]+) ms")
_SLOW = re.compile(r"gc: generation (\d) collection paused the node ([\d.]+) ms")


def instances(first, count):
    return [{"ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "port": 8080,
             "metadata": {"version": "1.2.3", "zone": f"z{i % 3}"}}
            for i in range(first, first + count)]


def run(directory, options, freeze):
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "", "--node-id", "gc",
            "--listen", "tcp:0:interface=127.0.0.1", "--heartbeat-ms", "600000",
            "--idle-timeout-ms", "1200000", "--gc-freeze", "true" if freeze else "false",
            "--port-file"]
    node = Child(f"node-{freeze}", argv, directory)
    publishers = []
    try:
        host, port = node.waitAddress()
        per = options.instances // options.clients
        for n in range(options.clients):
            sock = socket.create_connection((host, port), timeout=60)
            request(sock, {"op": "hello", "id": 1, "proto": 1})
            request(sock, {"op": "batch_register", "id": 2, "service": {"name": f"svc-{n}"},
                           "instances": instances(n * per, per)})
            publishers.append(sock)
        changer = publishers[0]
        deadline = time.monotonic() + options.seconds
        rid = 10
        churned = 0
        while time.monotonic() < deadline:
            rid += 1
            request(changer, {"op": "register", "id": rid, "service": {"name": "svc-0"},
                              "instance": {"ip": "10.255.0.1", "port": 1 + rid % 1000}})
            sock = socket.create_connection((host, port), timeout=60)
            request(sock, {"op": "hello", "id": 1, "proto": 1})
            request(sock, {"op": "register", "id": 2, "service": {"name": "churn"},
                           "instance": {"ip": "10.254.0.1", "port": 1 + churned % 60000}})
            request(sock, {"op": "subscribe", "id": 3, "service": {"name": f"svc-{churned % 10}"}})
            request(sock, {"op": "query", "id": 4, "service": {"name": "churn"}})
            if churned % 2:
                request(sock, {"op": "bye", "id": 5})
            sock.close()
            churned += 1
        for sock in publishers:
            sock.close()
    finally:
        node.stop()
    with open(node.logPath, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    summary = _SUMMARY.findall(log)
    slow = [(int(g), float(ms)) for g, ms in _SLOW.findall(log)]
    if not summary:
        raise SystemExit(f"the node logged no gc summary:\n{log[-2000:]}")
    collections, longest = int(summary[-1][0]), float(summary[-1][1])
    label = "gc_freeze true (now)" if freeze else "gc_freeze false (baseline)"
    print(f"{label}: {options.instances} instances, {churned} short connections in "
          f"{options.seconds:g} s; {collections} collections, longest pause {longest:.1f} ms, "
          f"{len(slow)} of 20 ms or more {slow[:8]}", flush=True)
    return longest


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="distro-gc-")
    try:
        baseline = run(directory, options, freeze=False)
        now = run(directory, options, freeze=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"ratio of longest pauses (baseline / now): {baseline / max(now, 0.001):.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
