"""
The Nacos port driven by the official Nacos Python SDK (nacos-sdk-python
3.x, unmodified, from .interop/python), as a Nacos user drives it: what a
registration costs the server and what it costs the SDK, and how soon a
subscriber's callback sees a change (issue 19's figures), on distro and,
in the same run with the same load, on the real Nacos server and r-nacos.

    python bench/nacossdk.py [--clients 4] [--registrations 1500] [--window 16]
                             [--probes 40] [--warmup 0] [--idle 5] [--before CHECKOUT]
                             [--servers distro,nacos,rnacos] [--members 3] [--rounds 1]

Each server in turn (L{servers}: distro a standalone C{twistd
distro-node}; Nacos and r-nacos as C{bench/servers/setup.sh} installed
them, standalone, auth off), fresh, on 127.0.0.1 (its HTTP port P, its
Nacos gRPC port P + 1000, where an SDK given P dials). Once the server is
idle, C{--clients} SDK processes each register C{--registrations}
instances (each in a service of its own, as many apps' instances are),
C{--window} at once (after C{--warmup} such registrations, unmeasured);
then, once the server is idle again and before those SDKs disconnect (what
their leaving costs a server falls outside every figure), one more SDK
subscribes to a service and registers in it C{--probes} times, timing each
register's return to the callback that shows it.
Printed: registrations/s, the server's CPU (user + system of its process
tree, C{/proc}, counted until it is idle again: the work done after
replying; less what it spends on its own while idle, measured after the
warm-up with the SDKs connected, over the time counted: a Nacos member's
JVM and Raft group spend 5% of a core doing nothing) and the SDK
processes' CPU per registration, the server's RSS (a JVM's includes its
heap as it grew), its CPU over C{--idle} seconds once the load is done
(the SDKs connected and idle: their health checks, the server's own
timers), the register calls' time (the SDK's call to its return, C{--window}
in flight: the p50 over all clients, the p99 of the worst client), and the
push latency's p50 and p99
(Nacos and r-nacos hold a change back before pushing it, by design and by
default: Nacos' C{nacos.naming.push.pushTaskDelay}, 500 ms; r-nacos' 500 ms
delay, checked every 500 ms). The SDK writes its cache file of a service
(through a thread, C{aiofiles}) before it calls back: the SDKs' files are
kept in C{/dev/shm}, so that the host's disk is not measured with the push.

The baseline, in the same run: the same registrations sent by the raw gRPC
client of C{bench/nacos.py} (grpcio in this process, one call per message,
as the SDK's wire) to a fresh distro node, so that the ratio is what the
SDK's way of calling costs the node; the other servers' ratios are against
distro's SDK column. With C{--before}, the SDK's run against an earlier
checkout's node too. With C{--members} N above 1, for each server a
column of N of its nodes as one cluster (L{servers.startCluster}: Nacos'
as C{startup.sh -p embedded} runs one without MySQL, each JVM with the
standalone's heap), the SDKs spread over them (SDK I at node I mod N):
their CPU and RSS summed, each counted until idle, so that a
registration's replication to the others counts; Nacos' and r-nacos'
clusters are compared with distro's. With C{--rounds} N, every column is
measured N times, the columns in turn within each round, and each figure printed is its
column's median: this machine's speed drifts by tens of percent over
minutes, so columns measured one after the other differ by that alone
(each round times a fixed Python loop, to show the drift). With Nacos
among the servers the bench runs in a network namespace of its own
(loopback only; Nacos binds every interface).
Traffic goes to loopback only; every wait is bounded; each server is
stopped at the end of its part.
"""

import argparse
import asyncio
import collections
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from etcd import percentile  # noqa: E402
from nacos import nacosRegistrations  # noqa: E402
from register import earlierCheckout  # noqa: E402
from servers import (CLUSTER_KINDS, LABELS, addServersOption, chosenKinds, idleRates,  # noqa: E402
                     prepareNetwork, printComparison, startCluster, startServer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK_PYTHON = os.path.join(ROOT, ".interop", "python", "bin", "python")
RUN_TIMEOUT = 600

# One SDK process. Registering: its warm-up registrations, then it says
# "warm" and waits for a line on stdin; its measured ones, then it says
# "registered" (with its elapsed time, CPU and each call's time) and waits
# again, still connected, so that nothing its disconnection causes on the
# server falls in the measured window. Probing: the push probes. Each step is one JSON line.
WORKER = r'''
import asyncio, json, os, sys, time
from v2.nacos import (ClientConfigBuilder, GRPCConfig, NacosNamingService, RegisterInstanceParam,
                      SubscribeServiceParam)

async def main(server, index, warmup, count, window, probes, directory, tag):
    config = (ClientConfigBuilder().server_address(server).namespace_id("public")
              .grpc_config(GRPCConfig(grpc_timeout=10000)).log_dir(directory).cache_dir(directory)
              .log_level("ERROR").build())
    naming = await NacosNamingService.create_naming_service(config)
    loop = asyncio.get_running_loop()

    async def step(at, **fields):
        print(json.dumps({"at": at, **fields}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

    async def register(prefix, count):
        gate = asyncio.Semaphore(window)
        calls = []  # each call's time, ms

        async def one(i):
            async with gate:
                began = time.monotonic()
                await naming.register_instance(RegisterInstanceParam(
                    service_name=f"{prefix}-{index}-{i}", group_name="DEFAULT_GROUP",
                    ip=f"10.{index}.{i // 250}.{i % 250 + 1}", port=8080, weight=1.0,
                    metadata={"zone": "z1"}, ephemeral=True))
                calls.append(round((time.monotonic() - began) * 1000, 3))

        await asyncio.gather(*(one(i) for i in range(count)))
        return calls

    if count:
        await register("warmup", warmup)
        await step("warm")
        before, started = os.times(), time.monotonic()
        calls = await register(tag, count)
        after = os.times()
        await step("registered", elapsed=time.monotonic() - started,
                   cpu=(after.user + after.system) - (before.user + before.system), calls=calls)
    result = {"at": "done"}
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

asyncio.run(main(sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7], sys.argv[8]))
'''


class Worker:
    """
    One SDK process of L{WORKER}: its steps read from its stdout (by a
    thread, so that every wait is bounded), a line on its stdin lets it go
    on.
    """

    def __init__(self, server, index, options, warmup, count, probes, tag):
        logs = tempfile.mkdtemp(prefix=f"{tag}{index}-", dir=options.sdkFiles)
        self.stderr = open(os.path.join(logs, "stderr"), "w+")
        self.process = subprocess.Popen(
            [SDK_PYTHON, "-c", WORKER, server, str(index), str(warmup), str(count), str(options.window),
             str(probes), logs, tag],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.steps = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith("{"):
                self.steps.put(json.loads(line))
        self.steps.put(None)

    def expect(self, at):
        """
        Its next step, which must be C{at}.
        """
        try:
            step = self.steps.get(timeout=RUN_TIMEOUT)
        except queue.Empty:
            step = None
        if step is None or step["at"] != at:
            self.process.kill()
            self.stderr.seek(0)
            raise SystemExit(f"an SDK process did not reach {at!r} ({step}):\n{self.stderr.read()[-2000:]}")
        return step

    def proceed(self):
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def finish(self):
        """
        Its last step, once it has shut its SDK down.
        """
        step = self.expect("done")
        try:
            self.process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise SystemExit("an SDK process did not exit in time")
        finally:
            self.stderr.close()
        return step


def workers(servers, options, count, probes, clients, warmup=0, tag="sdk"):
    """
    C{clients} SDK processes at once, SDK I given the (I mod N)th address
    of C{servers}.
    """
    started = []
    try:
        for index in range(clients):
            started.append(Worker(servers[index % len(servers)], index, options, warmup, count, probes, tag))
    except BaseException:
        for worker in started:
            worker.process.kill()
        raise
    return started


def registered(servers, options, meanwhile=None):
    """
    The SDKs' registrations (after C{--warmup} unmeasured ones, on the same
    connections) against C{servers}, the SDKs spread over them:
    registrations/s, the servers' CPU summed (each counted until idle, less
    the idle work it does on its own over that time: L{idleRates}, measured
    after the warm-up, the SDKs connected; printed) and SDK CPU per
    registration, the servers' RSS summed, their CPU over C{--idle}
    seconds after, the SDKs connected and idle, and the register calls'
    times (p50 over all clients, the worst client's p99). The window ends
    before the SDKs disconnect; C{meanwhile}, if given, is called once the
    servers are idle again, the SDKs still connected (so that what their
    leaving costs a server, at once or after a grace, falls outside it too),
    and what it returns is returned with the figures.
    """
    started = idleRates(servers, 2.0)
    sdks = workers([server.address for server in servers], options, options.registrations, 0, options.clients,
                   options.warmup)
    try:
        for sdk in sdks:
            sdk.expect("warm")
        # The warm-up's work done (a JVM's rate of its own is highest just
        # after it starts: it only tells when the warm-up's work is over),
        # then each server's own idle work, the SDKs connected.
        for server, rate in zip(servers, started):
            server.settled(rate)
        rates = idleRates(servers)
        marks = [server.settled(rate) for server, rate in zip(servers, rates)]
        for sdk in sdks:
            sdk.proceed()
        results = [sdk.expect("registered") for sdk in sdks]
        ends = [server.settled(rate) for server, rate in zip(servers, rates)]
        # Less each server's own idle work over the time counted.
        cpu = sum(max(0.0, end - mark - rate * (endAt - markAt))
                  for (mark, markAt), (end, endAt), rate in zip(marks, ends, rates))
        memory = sum(server.rss() for server in servers)
        idle = sum(idleRates(servers, options.idle))
        during = meanwhile() if meanwhile is not None else None
        for sdk in sdks:
            sdk.proceed()
        for sdk in sdks:
            sdk.finish()
    finally:
        for sdk in sdks:
            if sdk.process.poll() is None:
                sdk.process.kill()
    total = options.clients * options.registrations
    return {
        "registrations/s": total / max(r["elapsed"] for r in results),
        "server CPU per registration (us)": cpu / total * 1e6,
        "SDK CPU per registration (us)": sum(r["cpu"] for r in results) / total * 1e6,
        "server RSS after load (MB)": memory / 1e6,
        "server CPU idle before the load, not counted (ms/s)": sum(rates) * 1000,
        "server CPU idle, the SDKs connected (ms/s)": idle * 1000,
        # From the SDK's call to its return, window calls in flight.
        "register call p50, all clients (ms)": percentile(sorted(c for r in results for c in r["calls"]), 0.5),
        "register call p99, worst client (ms)": max(percentile(sorted(r["calls"]), 0.99) for r in results),
    }, during


def sdkPart(directory, kind, name, options, checkout=None):
    """
    The SDK's registrations and push probes against a fresh server of
    C{kind}.
    """
    server = startServer(kind, directory, name, checkout=checkout)

    def probed():
        (prober,) = workers([server.address], options, 0, options.probes, 1, tag="probe")
        return prober.finish()

    try:
        figures, probe = registered([server], options, probed)
        own = nodePushLatency(server) if kind == "distro" else None
    finally:
        server.stop()
    latencies = sorted(probe["latencies"])
    return {
        **figures,
        "push, register return to callback, p50 (ms)": percentile(latencies, 0.5) if latencies else None,
        "push, register return to callback, p99 (ms)": percentile(latencies, 0.99) if latencies else None,
        "pushes seen of probes": len(latencies),
        "push, change to push written, slowest, at most (ms)": own,
    }


def nodePushLatency(server):
    """
    A distro node's own slowest push, from its C{distro_push_latency_seconds}
    histogram (from a change to its push written): the bound of the lowest
    bucket holding them all, in ms. Apart from the SDK's figure, which also
    counts the SDK process' own delays on a machine the bench keeps busy.
    """
    with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    buckets = [(float(sample.labels["le"]), sample.value)
               for family in text_string_to_metric_families(text) if family.name == "distro_push_latency_seconds"
               for sample in family.samples if sample.name.endswith("_bucket")]
    total = max((count for _, count in buckets), default=0.0)
    return min((bound for bound, count in buckets if count >= total), default=None) * 1000 if total else None


def clusterPart(directory, options, kind, name):
    """
    The SDK's registrations against C{--members} clustered servers of
    C{kind} (L{startCluster}), the SDKs spread over them (SDK I at node I
    mod N): registrations/s and the nodes' CPU summed (each counted until
    idle: the replication to the others counts), their RSS summed. No push
    probe (the push column is a standalone server's).
    """
    nodes = startCluster(kind, directory, name, options.members)
    try:
        figures, _ = registered(nodes, options)
        return figures
    finally:
        for node in nodes:
            node.stop()


def rawPart(directory, options):
    """
    The same registrations from bench/nacos.py's raw gRPC client, to distro.
    """
    server = startServer("distro", directory, "raw")
    try:
        start = server.settledCpu()
        raw = argparse.Namespace(connections=options.clients, pipeline=options.window,
                                 requests=options.registrations)
        elapsed = asyncio.run(nacosRegistrations(server.grpcAddress, raw, None))
        cpu = server.settledCpu() - start
        memory = server.rss()
    finally:
        server.stop()
    total = options.clients * options.registrations
    return {
        "registrations/s": total / elapsed,
        "server CPU per registration (us)": cpu / total * 1e6,
        "server RSS after load (MB)": memory / 1e6,
    }


def medians(runs):
    """
    Each figure's median over C{runs} (a list of figures), leaving out
    the runs without it.
    """
    out = {}
    for label in runs[0]:
        values = sorted(r[label] for r in runs if r.get(label) is not None)
        out[label] = statistics.median(values) if values else None
    return out


def pythonSpeed():
    """
    Seconds a fixed pure-Python loop takes here now: how fast this machine
    is at the moment (a shared machine's speed drifts).
    """
    started = time.process_time()
    total = 0
    for n in range(5_000_000):
        total += n
    return time.process_time() - started


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--registrations", type=int, default=1500)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds the servers' CPU is counted after the load, the SDKs connected and idle")
    parser.add_argument("--warmup", type=int, default=0,
                        help="registrations per SDK client, of services of their own, before those measured "
                             "(the JVM's JIT compiles meanwhile)")
    parser.add_argument("--before", type=earlierCheckout, default=None)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every column this many times, in turn; each figure is the median")
    parser.add_argument("--members", type=int, default=3,
                        help="for each server, a column of this many of its nodes as one cluster, the SDKs spread "
                             "over them, their CPU and RSS summed (1: none)")
    addServersOption(parser)
    options = parser.parse_args(argv)
    if not os.path.exists(SDK_PYTHON):
        raise SystemExit(f"no Nacos Python SDK at {SDK_PYTHON}: .ci/run (or tests/_interop.py) installs it")
    kinds = chosenKinds(options)
    prepareNetwork(kinds)
    directory = tempfile.mkdtemp(prefix="distro-nacossdk-")
    # The SDKs' files (logs, and the cache file each writes on every push
    # before calling back) in memory: the host's disk is not what is measured.
    memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    options.sdkFiles = tempfile.mkdtemp(prefix="distro-nacossdk-", dir=memory)
    runs = collections.defaultdict(list)
    try:
        for n in range(options.rounds):
            # Every column once per round, in turn: the machine's speed
            # drifts over minutes, and each column's median is taken over
            # rounds spread across the same minutes.
            if options.rounds > 1:
                print(f"round {n + 1} of {options.rounds}", flush=True)
            runs["raw gRPC client"].append(rawPart(directory, options))
            for kind in kinds:
                print(f"the SDK to {LABELS[kind]}...", flush=True)
                runs[LABELS[kind]].append(sdkPart(directory, kind, f"sdk-{kind}-{n}", options))
            if options.members > 1:
                for kind in kinds:
                    if kind in CLUSTER_KINDS:
                        print(f"the SDK to {options.members} {LABELS[kind]} nodes...", flush=True)
                        runs[f"{LABELS[kind]}, {options.members} nodes"].append(
                            clusterPart(directory, options, kind, f"cluster-{kind}-{n}-"))
            if options.before is not None:
                runs["distro, before"].append(sdkPart(directory, "distro", f"before-{n}", options, options.before))
            runs["Python speed (s)"].append(pythonSpeed())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(options.sdkFiles, ignore_errors=True)
    speeds = runs.pop("Python speed (s)")
    columns = {name: medians(figures) for name, figures in runs.items()}
    print(f"{options.clients} SDK clients x {options.registrations} registrations, window {options.window}; "
          f"{options.probes} push probes" + (f"; {options.warmup} warm-up registrations each first"
                                             if options.warmup else "") + (f"; before: {options.before}" if options.before else ""))
    print("the first column: the raw gRPC client to distro; the others: the SDK to each server")
    if options.rounds > 1:
        print(f"each figure: the median of {options.rounds} rounds; the machine's speed over them "
              f"(a fixed Python loop): {min(speeds):.2f} to {max(speeds):.2f} s")
        for name, figures in runs.items():
            spreads = []
            for label in ("server CPU per registration (us)", "push, register return to callback, p99 (ms)",
                          "push, change to push written, slowest, at most (ms)"):
                values = [f"{f[label]:.1f}" for f in figures if f.get(label) is not None]
                if values:
                    spreads.append(f"{label} {', '.join(values)}")
            print(f"  {name}, round by round: {'; '.join(spreads)}")
    clustered = f"distro, {options.members} nodes"
    formats = {"pushes seen of probes": "{:.0f}", "register call p50, all clients (ms)": "{:.2f}"}
    printComparison(columns, "raw gRPC client", "raw", formats=formats,
                    against={name: clustered for name in columns
                             if name.endswith(f", {options.members} nodes") and name != clustered})


if __name__ == "__main__":
    main(sys.argv[1:])
