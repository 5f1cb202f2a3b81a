"""
Unauthenticated connections announcing the largest frame a port takes: how
much memory can they make a node buffer before saying who they are?

    python bench/unauthenticated.py [--connections 8] [--megabytes 48]

Starts a fresh C{twistd distro-node} on 127.0.0.1 (a member of a two-node
cluster whose other member never comes, so that its peer port listens), then opens C{--connections} connections to each port that never do
the handshake: each sends a length prefix just under its port's
C{max_frame} and then up to C{--megabytes} MiB of the body, as fast as the
node takes it. It prints the node's resident memory (VmRSS) before and at its
highest, and the baseline: the bytes those connections tried to make the node
hold. Traffic goes to loopback only; every wait is bounded.
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
from register import Child, residentBytes  # noqa: E402

_MIB = 1024 * 1024


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--megabytes", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=8.0)
    options = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="distro-unauth-")
    ports = freePorts(2)
    peerAddress = ("127.0.0.1", ports[0])
    # A cluster of two whose other member never comes: the peer port listens.
    clusterConf = os.path.join(directory, "cluster.conf")
    with open(clusterConf, "w") as f:
        f.write("".join(f"127.0.0.1:{port}\n" for port in ports))
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "", "--node-id", "unauth",
            "--listen", "tcp:0:interface=127.0.0.1",
            "--peer-listen", f"tcp:{peerAddress[1]}:interface=127.0.0.1",
            "--cluster", clusterConf, "--load-timeout-ms", "0",
            "--port-file"]
    node = Child("node", argv, directory)
    attempted = 0
    try:
        clientAddress = node.waitAddress()
        time.sleep(0.5)
        before = peak = residentBytes(node.process.pid)
        streams = []
        for address, maxFrame in ((clientAddress, 8 * _MIB), (peerAddress, 64 * _MIB)):
            for _ in range(options.connections):
                sock = socket.create_connection(address, timeout=10)
                sock.setblocking(False)
                body = min(maxFrame - 1, options.megabytes * _MIB)
                streams.append([sock, (maxFrame - 1).to_bytes(4, "big") + b"\0" * body, 0])
                attempted += 4 + body
        deadline = time.monotonic() + options.seconds
        while time.monotonic() < deadline:
            progress = False
            for stream in streams:
                sock, data, sent = stream
                if sent < len(data):
                    try:
                        stream[2] += sock.send(data[sent:sent + 1024 * 1024])
                        progress = True
                    except (BlockingIOError, ConnectionError):
                        pass
            peak = max(peak, residentBytes(node.process.pid))
            if not progress:
                time.sleep(0.05)
        accepted = sum(stream[2] for stream in streams)
        for stream in streams:
            stream[0].close()
    finally:
        node.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{options.connections} connections to each port, none authenticated, "
          f"{accepted / _MIB:.0f} MiB taken by the kernel of {attempted / _MIB:.0f} MiB sent")
    print(f"node RSS: {before / _MIB:.1f} MiB before, {peak / _MIB:.1f} MiB at most "
          f"(growth {(peak - before) / _MIB:.1f} MiB)")
    print(f"baseline (what they asked the node to buffer): {attempted / _MIB:.0f} MiB; "
          f"ratio growth / baseline: {(peak - before) / attempted:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
