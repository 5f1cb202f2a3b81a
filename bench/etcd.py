"""
distro against etcd, in the same run on this machine: a three-member cluster
of each, the same loads.

    python bench/etcd.py [-c 20] [--pipeline 8] [-m 500] [--rate 50] [--seconds 5]

etcd is the real etcd server (C{go.etcd.io/etcd/server/v3} v3.7.3, embedded
in C{bench/etcd/main.go}, built here with C{go build}; the Go module proxy
provides it), three members on 127.0.0.1 with their data in C{/dev/shm} and
fsync off: its best case (distro keeps its data in memory). Its loads are
driven by etcd's own Go client, in the same program. distro is three
C{twistd distro-node} processes, as in C{bench/cpu.py}.

Rows:
1. Registrations: C{-c} connections to the first member, each registering
   C{-m} instances with C{--pipeline} in flight, until the other two members
   show all of them (distro: C{register}; etcd: a C{put} of the instance
   under a lease of the connection's own, etcd's idiom for an entry that
   lives as long as its client). Printed: registrations/s and the CPU time
   (user + system, C{/proc}) of the three members summed, per registration.
2. Change to a subscriber on another member: one writer at the first member
   changes its instance C{--rate} times a second for C{--seconds} (open
   loop), a subscriber on the third sees each change (distro: a C{push};
   etcd: a watch event). Printed: p50 and p99 of write sent -> change seen.

The ratio column is etcd's figure over distro's (above 1: distro is ahead).
Traffic goes to loopback only; every wait is bounded; every process started is
stopped at the end.
"""

import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cpu import cpuSeconds, loadOptions, registrations, startCluster  # noqa: E402
from largeclient import freePorts, waitCount  # noqa: E402
from nonreader import request, takeFrames  # noqa: E402
from register import stopProcess  # noqa: E402

from distro import wire  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 60.0


def percentile(ordered, fraction):
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# etcd


def buildEtcd(directory):
    binary = os.path.join(directory, "etcdbench")
    subprocess.run(
        ["go", "build", "-o", binary, "."], cwd=os.path.join(HERE, "etcd"), check=True,
        timeout=600,
    )
    return binary


class Member:
    def __init__(self, binary, name, clientPort, peerPort, cluster, directory):
        self.address = f"127.0.0.1:{clientPort}"
        self.log = open(os.path.join(directory, f"{name}.log"), "wb")
        self.process = subprocess.Popen(
            [binary, "member", "--name", name, "--dir", os.path.join(directory, name),
             "--client", self.address, "--peer", f"127.0.0.1:{peerPort}", "--cluster", cluster],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
        )

    def waitReady(self, deadline):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise SystemExit(f"etcd member {self.address} did not get ready")
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if readable and self.process.stdout.readline().strip() == b"ready":
                return

    def stop(self):
        stopProcess(self.process)
        self.log.close()


def startEtcd(binary, directory):
    ports = freePorts(6)
    names = ["e0", "e1", "e2"]
    cluster = ",".join(f"{n}=http://127.0.0.1:{ports[3 + i]}" for i, n in enumerate(names))
    members = [Member(binary, n, ports[i], ports[3 + i], cluster, directory)
               for i, n in enumerate(names)]
    deadline = time.monotonic() + START_TIMEOUT
    try:
        for member in members:
            member.waitReady(deadline)
    except BaseException:
        for member in members:
            member.stop()
        raise
    return members


def runEtcd(binary, *args):
    done = subprocess.run([binary, *args], capture_output=True, timeout=300)
    if done.returncode:
        raise SystemExit(f"etcdbench {args[0]} failed: {done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout)


def etcdRegistrations(binary, members, options):
    before = [cpuSeconds(m.process.pid) for m in members]
    times = runEtcd(
        binary, "load", "--at", members[0].address,
        "--others", ",".join(m.address for m in members[1:]),
        "-c", str(options.connections), "--pipeline", str(options.pipeline),
        "-m", str(options.requests),
    )
    used = sum(cpuSeconds(m.process.pid) - t for m, t in zip(members, before))
    return times["visible"], used


def etcdLatencies(binary, members, options):
    reply = runEtcd(
        binary, "watch", "--at", members[0].address, "--watch", members[2].address,
        "--rate", str(options.rate), "--seconds", str(options.seconds),
    )
    return reply["latencies_ms"]


# distro


def connect(address):
    sock = socket.create_connection(address, timeout=30)
    request(sock, {"op": "hello", "id": 1, "proto": 1})
    return sock


def distroLatencies(addresses, options):
    """
    One writer at the first node, a subscriber on the third: the times from
    each write sent to the push showing it (or a later write), in ms.
    """
    service = {"name": "bench-latency"}
    subscriber = connect(addresses[2])
    reply = request(subscriber, {"op": "subscribe", "id": 2, "service": service})
    if reply.get("op") != "ok":
        raise SystemExit(f"subscribe refused: {reply}")
    writer = connect(addresses[0])
    count = int(options.rate * options.seconds)
    sent = []
    latencies = {}
    buffers = {subscriber: bytearray(), writer: bytearray()}
    started = time.monotonic()
    deadline = started + options.seconds + 30
    while len(latencies) < count:
        now = time.monotonic()
        if now > deadline:
            raise SystemExit("not every write was pushed in time")
        if len(sent) < count and now >= started + len(sent) / options.rate:
            seq = len(sent)
            sent.append(time.monotonic())
            writer.sendall(wire.encode({
                "op": "register", "id": 10 + seq, "service": service,
                "instance": {"ip": "10.99.0.1", "port": 80, "metadata": {"seq": str(seq)}}}))
            continue
        wait = started + len(sent) / options.rate - now if len(sent) < count else 0.5
        readable, _, _ = select.select(list(buffers), [], [], max(0.0, wait))
        for sock in readable:
            data = sock.recv(1 << 16)
            if not data:
                raise SystemExit("a node closed the connection")
            buffers[sock] += data
            at = time.monotonic()
            for frame in takeFrames(buffers[sock]):
                if sock is writer:
                    if frame.get("op") != "ok":
                        raise SystemExit(f"register refused: {frame}")
                    continue
                for host in frame["service_info"]["hosts"]:
                    seen = int(host["metadata"]["seq"])
                    for seq in range(seen + 1):
                        latencies.setdefault(seq, (at - sent[seq]) * 1000)
    for sock in buffers:
        sock.close()
    return sorted(latencies.values())


def comparisonOptions(argv, description):
    """
    The options of a comparison: the registration load's, and the rate and
    duration of the latency phase; bounded.
    """
    parser = argparse.ArgumentParser(description=description)
    loadOptions(parser)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args(argv)
    if not 1 <= options.connections <= 200 or not 1 <= options.requests <= 10000:
        raise SystemExit("-c 1..200 and -m 1..10000")
    if not 0 < options.rate <= 1000 or not 0 < options.seconds <= 60:
        raise SystemExit("--rate 0..1000 and --seconds 0..60")
    return options


def main(argv):
    options = comparisonOptions(argv, __doc__.split("\n\n")[0])
    total = options.connections * options.requests
    directory = tempfile.mkdtemp(prefix="distro-etcd-")
    shm = tempfile.mkdtemp(prefix="distro-etcd-", dir="/dev/shm") if os.path.isdir("/dev/shm") else directory
    nodes, members = [], []
    try:
        binary = buildEtcd(directory)
        nodes, addresses = startCluster(directory)
        distroElapsed, perNode = registrations(nodes, addresses, options)
        # The load's clients are gone (they said bye); the latency is
        # measured once every node has removed their instances, as etcd's
        # is with nothing else going on.
        deadline = time.monotonic() + options.timeout
        for address in addresses:
            waitCount(*address, "cpu-", 0, deadline)
        distroLatency = distroLatencies(addresses, options)
        for node in nodes:
            node.stop()
        nodes = []
        members = startEtcd(binary, shm)
        etcdElapsed, etcdUsed = etcdRegistrations(binary, members, options)
        etcdLatency = etcdLatencies(binary, members, options)
    finally:
        for child in nodes + members:
            child.stop()
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    distroUsed = sum(perNode)
    us = 1e6
    rows = [
        ("registrations/s, visible on all three", total / distroElapsed, total / etcdElapsed,
         lambda d, e: d / e, "{:,.0f}"),
        ("CPU per registration, 3 members (us)", distroUsed / total * us, etcdUsed / total * us,
         lambda d, e: e / d, "{:.1f}"),
        ("change -> subscriber on another member, p50 (ms)", percentile(distroLatency, 0.5),
         percentile(etcdLatency, 0.5), lambda d, e: e / d, "{:.2f}"),
        ("change -> subscriber on another member, p99 (ms)", percentile(distroLatency, 0.99),
         percentile(etcdLatency, 0.99), lambda d, e: e / d, "{:.2f}"),
    ]
    print(f"{total} registrations ({options.connections} connections x {options.requests}, "
          f"{options.pipeline} in flight); {len(distroLatency)} changes at {options.rate:g}/s")
    print(f"{'':<50} {'distro':>10} {'etcd 3.7.3':>11} {'distro ahead by':>16}")
    for label, d, e, ratio, form in rows:
        print(f"{label:<50} {form.format(d):>10} {form.format(e):>11} {ratio(d, e):>15.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
