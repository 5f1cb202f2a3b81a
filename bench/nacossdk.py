"""
The Nacos port driven by the official Nacos Python SDK (nacos-sdk-python
3.x, unmodified, from .interop/python), as a Nacos user drives it: what a
registration costs the node and what it costs the SDK, and how soon a
subscriber's callback sees a change (issue 19's figures).

    python bench/nacossdk.py [--clients 4] [--registrations 1500] [--window 16]
                             [--probes 40] [--before CHECKOUT]

A standalone C{twistd distro-node} on 127.0.0.1 (its HTTP port P, its Nacos
gRPC port P + 1000, where an SDK given P dials). C{--clients} SDK processes
each register C{--registrations} instances (each in a service of its own,
as many apps' instances are), C{--window} at once; then one SDK subscribes
to a service and registers in it C{--probes} times, timing each register's
return to the callback that shows it. Printed: registrations/s, the node's
CPU (user + system, C{/proc}, counted until it is idle again: the work done
after replying) and the SDK processes' CPU per registration, the node's RSS,
and the push latency's p50 and p99.

The baseline, in the same run: the same registrations sent by the raw gRPC
client of C{bench/nacos.py} (grpcio in this process, one call per message,
as the SDK's wire) to a fresh node, so that the ratio is what the SDK's way
of calling costs the node; with C{--before}, the SDK's run against an
earlier checkout's node too. Traffic goes to loopback only; every wait is
bounded; each node is stopped at the end of its part.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cpu import cpuSeconds  # noqa: E402
from etcd import percentile  # noqa: E402
from largeclient import counted  # noqa: E402
from nacos import nacosRegistrations  # noqa: E402
from register import Child, dataDirArgs, earlierCheckout  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK_PYTHON = os.path.join(ROOT, ".interop", "python", "bin", "python")
RUN_TIMEOUT = 600

# One SDK process: registers, or probes pushes; prints one JSON line.
WORKER = r'''
import asyncio, json, os, sys, time
from v2.nacos import (ClientConfigBuilder, GRPCConfig, NacosNamingService, RegisterInstanceParam,
                      SubscribeServiceParam)

async def main(server, index, count, window, probes, directory):
    config = (ClientConfigBuilder().server_address(server).namespace_id("public")
              .grpc_config(GRPCConfig(grpc_timeout=10000)).log_dir(directory).cache_dir(directory)
              .log_level("ERROR").build())
    naming = await NacosNamingService.create_naming_service(config)
    result = {}
    if count:
        gate = asyncio.Semaphore(window)

        async def one(i):
            async with gate:
                await naming.register_instance(RegisterInstanceParam(
                    service_name=f"sdk-{index}-{i}", group_name="DEFAULT_GROUP",
                    ip=f"10.{index}.{i // 250}.{i % 250 + 1}", port=8080, weight=1.0,
                    metadata={"zone": "z1"}, ephemeral=True))

        before, started = os.times(), time.monotonic()
        await asyncio.gather(*(one(i) for i in range(count)))
        after = os.times()
        result.update(elapsed=time.monotonic() - started,
                      cpu=(after.user + after.system) - (before.user + before.system))
    if probes:
        seen = {}
        changed = asyncio.Event()

        async def pushed(instances):
            for instance in instances:
                seen.setdefault(instance.ip, time.monotonic())
            changed.set()

        await naming.subscribe(SubscribeServiceParam(service_name="probe", group_name="DEFAULT_GROUP",
                                                     subscribe_callback=pushed))
        latencies = []
        for n in range(probes):
            ip = f"10.250.{n // 250}.{n % 250 + 1}"
            await naming.register_instance(RegisterInstanceParam(
                service_name="probe", group_name="DEFAULT_GROUP", ip=ip, port=8080, ephemeral=True))
            returned = time.monotonic()
            deadline = returned + 10
            while ip not in seen and time.monotonic() < deadline:
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
            if ip in seen:
                latencies.append(max(0.0, seen[ip] - returned) * 1000)
            await asyncio.sleep(0.05)
        result["latencies"] = latencies
    await naming.shutdown()
    print(json.dumps(result), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                 sys.argv[6]))
'''


def freePair():
    """
    A port P with P + 1000 free too (an SDK given P dials P + 1000).
    """
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 1000 > 65535:
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        return port
    raise SystemExit("no free pair of ports P, P + 1000 on 127.0.0.1")


def startNode(directory, name, checkout=None):
    """
    A standalone node, its HTTP port P and Nacos port P + 1000 on. Return
    C{(child, "127.0.0.1:P")} once it serves.
    """
    port = freePair()
    boot = "from twisted.scripts.twistd import run; run()"
    if checkout is not None:
        boot = f"import sys; sys.path.insert(0, {os.path.abspath(checkout)!r}); " + boot
    node = Child(name, [
        sys.executable, "-c", boot, "-n", "--pidfile=", "distro-node", *dataDirArgs(checkout),
        "--node-id", name, "--listen", "tcp:0:interface=127.0.0.1",
        "--http-listen", f"tcp:{port}:interface=127.0.0.1",
        "--nacos-listen", f"tcp:{port + 1000}:interface=127.0.0.1",
        "--port-file"], directory)
    address = node.waitAddress()
    deadline = time.monotonic() + 30
    while counted(*address, "none") is None:
        if time.monotonic() > deadline:
            node.stop()
            raise SystemExit(f"{name} did not get ready:\n{node.logTail()}")
        time.sleep(0.05)
    return node, f"127.0.0.1:{port}"


def settledCpu(pid, quiet=0.3, timeout=30):
    """
    The node's CPU seconds once it has been idle for C{quiet} seconds (the
    work it does after replying counts).
    """
    deadline = time.monotonic() + timeout
    last = cpuSeconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpuSeconds(pid)
        if now - last < quiet * 0.02:
            return now
        last = now
    return last


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def runWorkers(server, options, directory, count, probes, clients):
    """
    C{clients} SDK processes at once; their JSON results.
    """
    processes = []
    for index in range(clients):
        logs = os.path.join(directory, f"sdk{index}")
        os.makedirs(logs, exist_ok=True)
        processes.append(subprocess.Popen(
            [SDK_PYTHON, "-c", WORKER, server, str(index), str(count), str(options.window),
             str(probes), logs],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise SystemExit("an SDK process did not finish in time")
        if process.returncode != 0 or not out.strip():
            raise SystemExit(f"an SDK process failed ({process.returncode}):\n{err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def sdkPart(directory, name, options, checkout=None):
    """
    The SDK's registrations and push probes against a fresh node.
    """
    node, server = startNode(directory, name, checkout)
    try:
        pid = node.process.pid
        start = cpuSeconds(pid)
        began = time.monotonic()
        results = runWorkers(server, options, directory, options.registrations, 0, options.clients)
        elapsed = time.monotonic() - began
        cpu = settledCpu(pid) - start
        memory = rss(pid)
        (probe,) = runWorkers(server, options, directory, 0, options.probes, 1)
    finally:
        node.stop()
    total = options.clients * options.registrations
    return {
        "registrations/s": total / max(r["elapsed"] for r in results),
        "node CPU per registration (us)": cpu / total * 1e6,
        "SDK CPU per registration (us)": sum(r["cpu"] for r in results) / total * 1e6,
        "node RSS after load (MB)": memory / 1e6,
        "push, register return to callback, p50 (ms)": percentile(sorted(probe["latencies"]), 0.5),
        "push, register return to callback, p99 (ms)": percentile(sorted(probe["latencies"]), 0.99),
        "elapsed": elapsed,
    }


def rawPart(directory, options):
    """
    The same registrations from bench/nacos.py's raw gRPC client.
    """
    node, server = startNode(directory, "raw")
    try:
        pid = node.process.pid
        host, port = server.rsplit(":", 1)
        start = cpuSeconds(pid)
        raw = argparse.Namespace(connections=options.clients, pipeline=options.window,
                                 requests=options.registrations)
        elapsed = asyncio.run(nacosRegistrations(f"{host}:{int(port) + 1000}", raw, None))
        cpu = settledCpu(pid) - start
        memory = rss(pid)
    finally:
        node.stop()
    total = options.clients * options.registrations
    return {
        "registrations/s": total / elapsed,
        "node CPU per registration (us)": cpu / total * 1e6,
        "node RSS after load (MB)": memory / 1e6,
    }


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--registrations", type=int, default=1500)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--before", type=earlierCheckout, default=None)
    options = parser.parse_args(argv)
    if not os.path.exists(SDK_PYTHON):
        raise SystemExit(f"no Nacos Python SDK at {SDK_PYTHON}: .ci/run (or tests/_interop.py) installs it")
    directory = tempfile.mkdtemp(prefix="distro-nacossdk-")
    columns = {}
    try:
        columns["raw gRPC client"] = rawPart(directory, options)
        columns["SDK"] = sdkPart(directory, "sdk", options)
        if options.before is not None:
            columns["SDK, before"] = sdkPart(directory, "before", options, options.before)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{options.clients} SDK clients x {options.registrations} registrations, window {options.window}; "
          f"{options.probes} push probes" + (f"; before: {options.before}" if options.before else ""))
    names = list(columns)
    print(f"{'':<46}" + "".join(f"{n:>18}" for n in names) + "".join(f"{n + ' / raw':>22}" for n in names[1:]))
    for label in columns["SDK"]:
        if label == "elapsed":
            continue
        values = [columns[n].get(label) for n in names]
        line = f"{label:<46}" + "".join(f"{'-' if v is None else f'{v:,.1f}':>18}" for v in values)
        base = values[0]
        line += "".join(f"{'-' if v is None or not base else f'{v / base:.2f}x':>22}" for v in values[1:])
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
