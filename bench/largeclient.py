"""
One client at the limits, replicated: C{max_instances_per_client} (10,000)
instances with metadata just under C{max_metadata_bytes} (8 KiB), some 80 MB,
more than a peer frame (C{peer_max_frame}, 64 MiB) can carry.

    python bench/largeclient.py [--instances 10000] [--metadata 8000] [--timeout 120]

Starts two C{twistd distro-node} processes clustered on 127.0.0.1. A client
of A registers the instances with C{batch_register} (C{--per-batch} per
service, each request under the client port's C{max_frame}) and stays
connected. Measured: the time until B's C{services} counts show every
instance, then, after B is restarted, the time until it is ready and shows
them all again (its snapshot from A, in pieces). The baseline is the time
the same publication takes to be visible at A itself. Traffic goes to
loopback only; every wait is bounded by C{--timeout}.
"""

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The tests' free ports: below the ephemeral range, where no outgoing
# connection takes them before a node listens.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests._ports import freePorts  # noqa: E402,F401

from nonreader import request  # noqa: E402
from register import Child  # noqa: E402


def counted(host, port, prefix, token=None):
    """
    How many instances a fresh connection's C{services} page counts in the
    services named C{prefix}-*, or C{None} while the node is not ready.
    """
    sock = socket.create_connection((host, port), timeout=30)
    try:
        hello = request(sock, dict({"op": "hello", "id": 1, "proto": 1}, **({"token": token} if token else {})))
        if not hello.get("ready"):
            return None
        page = request(sock, {"op": "services", "id": 2, "size": 1000})
        return sum(s["instances"] for s in page["services"] if s["name"].startswith(prefix))
    finally:
        sock.close()


def waitCount(host, port, prefix, expected, deadline):
    while time.monotonic() < deadline:
        try:
            if counted(host, port, prefix) == expected:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{host}:{port} did not show {expected} instances in time")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--metadata", type=int, default=8000)
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=120.0)
    options = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="distro-large-")
    peerA, peerB = freePorts(2)
    clusterConf = os.path.join(directory, "cluster.conf")
    with open(clusterConf, "w") as f:
        f.write(f"127.0.0.1:{peerA}\n127.0.0.1:{peerB}\n")

    def start(name, peerPort):
        return Child(name, [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "", "--node-id", name,
            "--listen", "tcp:0:interface=127.0.0.1",
            "--peer-listen", f"tcp:{peerPort}:interface=127.0.0.1",
            "--cluster", clusterConf, "--heartbeat-ms", "600000",
            "--idle-timeout-ms", "1200000", "--port-file"], directory)

    a, b = start("a", peerA), start("b", peerB)
    deadline = time.monotonic() + options.timeout
    try:
        hostA, portA = a.waitAddress()
        hostB, portB = b.waitAddress()
        publisher = socket.create_connection((hostA, portA), timeout=options.timeout)
        request(publisher, {"op": "hello", "id": 1, "proto": 1})
        blob = "x" * options.metadata
        started = time.monotonic()
        for n, first in enumerate(range(0, options.instances, options.per_batch)):
            batch = [{"ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "port": 8080,
                      "metadata": {"blob": blob}}
                     for i in range(first, min(first + options.per_batch, options.instances))]
            request(publisher, {"op": "batch_register", "id": 10 + n,
                                "service": {"name": f"large-{n}"}, "instances": batch})
        atA = waitCount(hostA, portA, "large-", options.instances, deadline) - started
        atB = waitCount(hostB, portB, "large-", options.instances, deadline) - started
        print(f"one client, {options.instances} instances of {options.metadata} B metadata: "
              f"visible at A after {atA:.2f} s (baseline), at B after {atB:.2f} s "
              f"(ratio {atB / atA:.2f}x)", flush=True)
        b.stop()
        restarted = time.monotonic()
        b = start("b2", peerB)
        hostB, portB = b.waitAddress()
        caught = waitCount(hostB, portB, "large-", options.instances, deadline) - restarted
        print(f"B restarted: ready with all {options.instances} instances after {caught:.2f} s",
              flush=True)
        publisher.close()
    finally:
        a.stop()
        b.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
