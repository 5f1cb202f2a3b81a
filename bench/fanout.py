"""
One connection's subscriptions all changing in one reactor turn: does the
node stall for everybody else?

    python bench/fanout.py [--services 10000]

Starts a fresh C{twistd distro-node} on 127.0.0.1 port 0 (C{push_delay_ms}
500). Two publishers register one instance each in each of C{--services}
services; a subscriber subscribes to all of them. The first publisher says
C{bye}: every view changes in one turn and is pushed at once; once the
subscriber has read those pushes, the second says C{bye}, within
C{push_delay_ms} of them, so that all the subscriptions of the one
connection are scheduled for the end of their window in one turn.
Measured from that second C{bye}: the time until the subscriber has read an
empty view of every service (at least the window), and the
round-trip of C{ping}s sent back to back by a third connection meanwhile
(the longest is how long the node stopped answering anybody). The baseline
is the same ping round-trip on the idle node, measured just before. Traffic
goes to loopback only; every wait is bounded.
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

from nonreader import readFrame, request, takeFrames  # noqa: E402
from register import Child  # noqa: E402

from distro import wire  # noqa: E402


def pipelined(sock, messages):
    """
    Send C{messages} at once and read one reply per message.
    """
    sock.sendall(b"".join(wire.encode(m) for m in messages))
    for _ in messages:
        reply = readFrame(sock)
        if reply.get("op") != "ok":
            raise SystemExit(f"failed: {reply}")


def pings(sock, seconds):
    """
    Round-trips of back-to-back pings for C{seconds}, in seconds.
    """
    times = []
    deadline = time.monotonic() + seconds
    rid = 1000
    while time.monotonic() < deadline:
        rid += 1
        started = time.monotonic()
        request(sock, {"op": "ping", "id": rid})
        times.append(time.monotonic() - started)
    return times


class _PushReader:
    """
    Reads pushes off the subscriber's socket: which services were last
    pushed with how many hosts.
    """

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.hosts = {}

    def read(self):
        self.buffer += self.sock.recv(1 << 20)
        for message in takeFrames(self.buffer):
            if message.get("op") == "push":
                info = message["service_info"]
                self.hosts[info["service"]["name"]] = len(info["hosts"])

    def seen(self, hosts):
        return [name for name, count in self.hosts.items() if count == hosts]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="distro-fanout-")
    node = Child("node", [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "", "--node-id", "fanout",
        "--listen", "tcp:0:interface=127.0.0.1", "--heartbeat-ms", "600000",
        "--idle-timeout-ms", "1200000", "--push-delay-ms", "500",
        "--max-subscriptions-per-client",
        str(max(options.services, 10000)), "--port-file"], directory)
    try:
        address = node.waitAddress()
        connections = []
        for _ in range(4):
            sock = socket.create_connection(address, timeout=options.timeout)
            request(sock, {"op": "hello", "id": 1, "proto": 1})
            connections.append(sock)
        publisher, other, subscriber, pinger = connections
        names = [f"svc-{n}" for n in range(options.services)]
        for port, sock in ((8080, publisher), (8081, other)):
            pipelined(sock, [{"op": "register", "id": 10 + n, "service": {"name": name},
                              "instance": {"ip": "10.0.0.1", "port": port}}
                             for n, name in enumerate(names)])
        pipelined(subscriber, [{"op": "subscribe", "id": 10 + n, "service": {"name": name}}
                               for n, name in enumerate(names)])
        idle = pings(pinger, 1.0)
        subscriber.settimeout(options.timeout)
        reader = _PushReader(subscriber)
        # The first bye: every view pushed at once; read them all.
        publisher.sendall(wire.encode({"op": "bye", "id": 2}))
        deadline = time.monotonic() + options.timeout
        while len(reader.seen(1)) < options.services and time.monotonic() < deadline:
            reader.read()
        # The second, within push_delay_ms of those pushes: every
        # subscription now waits for the end of its window.
        other.sendall(wire.encode({"op": "bye", "id": 2}))
        started = time.monotonic()
        during = []
        while len(reader.seen(0)) < options.services and time.monotonic() < deadline:
            sent = time.monotonic()
            pinger.sendall(wire.encode({"op": "ping", "id": 7}))
            while True:
                readable, _, _ = select.select([subscriber, pinger], [], [], 1.0)
                if subscriber in readable:
                    reader.read()
                if pinger in readable:
                    readFrame(pinger)
                    during.append(time.monotonic() - sent)
                    break
        pushed = reader.seen(0)
        allPushed = time.monotonic() - started
        for sock in connections:
            sock.close()
    finally:
        node.stop()
        shutil.rmtree(directory, ignore_errors=True)
    ms = 1000
    print(f"{options.services} subscriptions of one connection changed by two byes: "
          f"{len(pushed)} empty views pushed in {allPushed * ms:.0f} ms")
    print(f"ping round-trip, idle (baseline): max {max(idle) * ms:.2f} ms over {len(idle)}; "
          f"during the fan-out: max {max(during) * ms:.1f} ms over {len(during)}")
    print(f"ratio of longest round-trips (fan-out / idle): {max(during) / max(idle):.0f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
