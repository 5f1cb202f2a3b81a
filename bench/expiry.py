"""
Many large clients expiring at once: does the node stop answering
everybody while it removes them?

    python bench/expiry.py --before CHECKOUT [--clients 20] [--instances 2000]

Starts a fresh C{twistd distro-node} on 127.0.0.1 port 0 (with the reactor
probe of bench/probe), first from C{CHECKOUT} (a checkout of an earlier
commit: the baseline), then from this one. C{--clients} connections each
register C{--instances} instances, spread over four services; a subscriber
follows the four services. The publishers' connections are then closed at
once, without C{bye}: their disconnect graces (500 ms) end together, and
every client expires. Measured from the close until the subscriber has read
every service empty: the longest reactor iteration the probe saw, the
longest round-trip of C{ping}s sent back to back by another connection
meanwhile (from a process of their own), and whether every push showed whole clients (each client's
instances of a service all there or all gone). Printed: both runs and the
ratios of their longest iteration and longest ping. Traffic goes to
loopback only; every wait is bounded.
"""

import argparse
import multiprocessing
import os
import select
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hostile import PROBE, longestTurn  # noqa: E402
from nonreader import request, takeFrames  # noqa: E402
from register import Child, dataDirArgs, earlierCheckout  # noqa: E402

from distro import wire  # noqa: E402

SERVICES = 4
GRACE_MS = 500


def startNode(directory, name, checkout=None):
    """
    A node of the code of C{checkout} (this one if C{None}) with the
    reactor probe; return it and its client address once it serves.
    """
    boot = "from twisted.scripts.twistd import run; run()"
    if checkout is not None:
        boot = f"import sys; sys.path.insert(0, {os.path.abspath(checkout)!r}); " + boot
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PROBE, os.environ.get("PYTHONPATH")]))
    os.environ["DISTRO_BENCH_TURNS"] = os.path.join(directory, "turns.log")
    try:
        node = Child(name, [
            sys.executable, "-c", boot, "-n", "--pidfile=", "distro-node", *dataDirArgs(checkout), "--node-id", name,
            "--listen", "tcp:0:interface=127.0.0.1", "--nacos-listen", "", "--http-listen", "",
            "--disconnect-grace-ms", str(GRACE_MS), "--heartbeat-ms", "600000",
            "--idle-timeout-ms", "1200000", "--port-file"], directory)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return node, node.waitAddress()


def connect(address, timeout):
    sock = socket.create_connection(address, timeout=timeout)
    request(sock, {"op": "hello", "id": 1, "proto": 1})
    return sock


def publish(address, n, instances, timeout):
    """
    Client C{n}: its instances, a share in each service; return its socket.
    """
    sock = connect(address, timeout)
    share = instances // SERVICES
    for s in range(SERVICES):
        request(sock, {"op": "batch_register", "id": 10 + s, "service": {"name": f"exp-{s}"},
                       "instances": [{"ip": f"10.{n}.{i // 250}.{i % 250}", "port": 8080 + s,
                                      "metadata": {"zone": "a"}} for i in range(share)]})
    return sock


def pinging(address, ready, stop, results, timeout):
    """
    In a process of its own (the subscriber's decoding would delay its
    replies here): ping back to back until C{stop} is set; put the
    C{(wall clock sent, round-trip)} of each in C{results}.
    """
    sock = connect(address, timeout)
    ready.set()
    times = []
    rid = 100
    while not stop.is_set():
        rid += 1
        sent, started = time.time(), time.monotonic()
        request(sock, {"op": "ping", "id": rid})
        times.append((sent, time.monotonic() - started))
    sock.close()
    results.put(times)


def run(directory, name, checkout, options):
    """
    One run: C{(longest iteration ms, longest ping ms, pings, whole, ms to
    empty)}.
    """
    node, address = startNode(directory, name, checkout)
    try:
        publishers = [publish(address, n, options.instances, options.timeout)
                      for n in range(options.clients)]
        share = options.instances // SERVICES
        subscriber = connect(address, options.timeout)
        for s in range(SERVICES):
            subscriber.sendall(wire.encode({"op": "subscribe", "id": 10 + s, "service": {"name": f"exp-{s}"}}))
        # Spawned, not forked: a fork would hold the publishers' sockets open.
        spawn = multiprocessing.get_context("spawn")
        ready, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
        pinger = spawn.Process(target=pinging, args=(address, ready, stop, results, options.timeout))
        pinger.start()
        if not ready.wait(options.timeout):
            raise SystemExit(f"{name}: the pinger did not connect")
        buffer = bytearray()
        hosts = {}
        whole = True

        def readPushes():
            nonlocal whole
            data = subscriber.recv(1 << 22)
            if not data:
                raise SystemExit(f"{name}: the subscriber's connection closed")
            buffer.extend(data)
            for message in takeFrames(buffer):
                if message.get("op") == "push" or "service_info" in message:
                    info = message["service_info"]
                    count = len(info["hosts"])
                    whole = whole and count % share == 0
                    hosts[info["service"]["name"]] = count

        deadline = time.monotonic() + options.timeout
        full = share * options.clients
        while any(hosts.get(f"exp-{s}") != full for s in range(SERVICES)):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the subscriber did not see every instance")
            readPushes()
        since = time.time()
        for sock in publishers:
            sock.close()
        started = time.monotonic()
        while any(hosts.get(f"exp-{s}") for s in range(SERVICES)):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the services did not empty in time")
            readable, _, _ = select.select([subscriber], [], [], 1.0)
            if readable:
                readPushes()
        emptied = time.monotonic() - started
        until = time.time()
        stop.set()
        pings = [rtt for sent, rtt in results.get(timeout=options.timeout) if since <= sent <= until]
        pinger.join(options.timeout)
        subscriber.close()
        time.sleep(0.2)  # the probe's last lines
        return longestTurn(directory, since, until), max(pings) * 1000, len(pings), whole, emptied * 1000
    finally:
        node.stop()


def measured(label, checkout, options):
    """
    L{run} in a fresh directory, removed after.
    """
    directory = tempfile.mkdtemp(prefix=f"distro-expiry-{label}-")
    try:
        return run(directory, label, checkout, options)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--before", required=True, type=earlierCheckout,
                        help="a checkout of an earlier commit")
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args(argv)
    results = {label: measured(label, checkout, options)
               for label, checkout in (("before", options.before), ("now", None))}
    print(f"{options.clients} clients x {options.instances} instances ({SERVICES} services) "
          f"expiring at once; earlier code: {options.before}")
    for label, (turn, ping, count, whole, emptied) in results.items():
        print(f"{label:>6}: longest reactor iteration {turn:.1f} ms, longest ping {ping:.1f} ms "
              f"over {count}, every push whole clients: {whole}, all gone in {emptied:.0f} ms")
    (turnBefore, pingBefore, *_), (turnNow, pingNow, *_) = results["before"], results["now"]
    print(f"ratio before / now: longest iteration {turnBefore / turnNow:.1f}x, "
          f"longest ping {pingBefore / pingNow:.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
