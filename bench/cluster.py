"""
Cluster benchmark of distro: replication latency, failover, catch-up and memory
of three nodes on this machine.

    python bench/cluster.py [--light-rate 50] [--heavy-rate 0] [--heavy-writers 4]
                            [--pipeline 8] [--duration 5] [--instances 100000]

Three C{twistd -n distro-node} processes, A, B and C, are started from the
sample files C{etc/node1.toml} .. C{etc/node3.toml} with a C{cluster.conf} of
free ports on 127.0.0.1 in a temporary directory (the command line overrides
the ports of the files). Then:

1. Replication latency. Writers at A replace their instance again and again
   (C{register}, the same C{ip:port} with metadata C{seq} raised each time),
   at a light rate (C{--light-rate} writes/s, one connection) and at a heavy
   one (C{--heavy-writers} connections, each with C{--pipeline} writes
   outstanding, as fast as A answers; or C{--heavy-rate} writes/s over those
   connections when given). For each write it records when it
   became visible: in a query at B (a query loop polls B back to back; a
   write counts as visible when a reply showing it, or a later write of the
   same writer, arrives), in a push to a subscriber on C, and, as the
   baseline, in a push to a subscriber on A itself, the node it was written
   to (the same write->push latency without replication). The ratios are
   against that baseline, measured on the same writes.
2. Failover. A client of the library (L{distro.client.DistroClient}) with
   instances is on A; A is killed (SIGKILL). Measured: the time until the
   client is resumed on another node (same client id). Checked: subscribers on
   B and C are never pushed a view without those instances, watched until
   C{down_after_ms + orphan_grace_ms} after the kill.
3. Load, memory and catch-up. C{--instances} instances (100 clients, each
   C{batch_register}ing its share in a service of its own) are published at B
   and C; the VmRSS of the nodes (C{/proc/PID/status}) is read before and
   after. A is then restarted: the time from its process start until it
   listens, until a new connection is told C{ready: true}, and until its
   C{services} counts equal B's; then the checksums of every loaded service
   are compared between A and B.

Times come from one clock, in this process; the load generator is a single
Twisted reactor sharing the machine's CPUs with the three nodes, so read the
ratios more than the absolute figures. The run is bounded by C{--timeout};
every node is killed at the end (SIGTERM, then SIGKILL), the temporary
directory removed.
"""

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionLost

from distro.client import DistroClient
from distro.wire import FrameProtocol
from largeclient import freePorts
from register import residentBytes

ETC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc")
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
REQUEST_TIMEOUT = 30.0
DRAIN_TIMEOUT = 15.0
LOAD_CLIENTS = 100
LOAD_CONCURRENCY = 10
MAX_PER_CLIENT = 10000  # the node's default max_instances_per_client
FAILOVER_INSTANCES = 10
# Kept short so that the failover check (until down_after + orphan_grace after
# the kill) does not last the default 36 s; other cluster timings are defaults.
ORPHAN_GRACE_MS = 5000
DOWN_AFTER_MS = 6000


def now():
    return time.perf_counter()


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def percentile(ordered, fraction):
    """
    The C{fraction} percentile of an ordered list (nearest rank).
    """
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# Node processes.


class Node:
    """
    One node process of the cluster, restartable, with its output in a log
    file of the run's directory.
    """

    def __init__(self, name, index, clientPort, peerPort, directory, clusterFile):
        self.name = name
        self.index = index
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.directory = directory
        self.clusterFile = clusterFile
        self.process = None
        self.starts = 0
        self._log = None

    @property
    def nodeId(self):
        # A clustered node's default id is its cluster.conf line.
        return f"127.0.0.1:{self.peerPort}"

    @property
    def address(self):
        return f"127.0.0.1:{self.clientPort}"

    def start(self):
        """
        Start the process (again); return the path of its port file.
        """
        self.starts += 1
        portFile = os.path.join(self.directory, f"{self.name}-{self.starts}.port")
        logPath = os.path.join(self.directory, f"{self.name}.log")
        if self._log is not None:
            self._log.close()
        self._log = open(logPath, "ab")
        argv = TWISTD + [
            "-n", "--pidfile=", "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "",
            "--config", os.path.join(ETC, f"node{self.index}.toml"),
            "--listen", f"tcp:{self.clientPort}:interface=127.0.0.1:backlog=1000",
            "--peer-listen", f"tcp:{self.peerPort}:interface=127.0.0.1",
            "--cluster", self.clusterFile,
            "--port-file", portFile,
            "--orphan-grace-ms", str(ORPHAN_GRACE_MS),
            "--down-after-ms", str(DOWN_AFTER_MS),
            # Raw benchmark connections send no heartbeat.
            "--heartbeat-ms", "600000",
            "--idle-timeout-ms", "1200000",
        ]
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.directory,
        )
        self.startedAt = now()
        return portFile

    async def waitListening(self, reactor, portFile):
        """
        Wait (bounded) for the port file; return the time it took from start.
        """
        deadline = now() + START_TIMEOUT
        while not os.path.exists(portFile):
            if self.process.poll() is not None:
                raise SystemExit(f"node {self.name} exited early:\n{self.logTail()}")
            if now() > deadline:
                raise SystemExit(f"node {self.name} did not listen:\n{self.logTail()}")
            await sleep(reactor, 0.01)
        return now() - self.startedAt

    def rss(self):
        """
        The process's resident set size in bytes (VmRSS).
        """
        return residentBytes(self.process.pid)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self):
        """
        SIGTERM, then SIGKILL if still there after L{STOP_TIMEOUT}.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def logTail(self, size=3000):
        with open(os.path.join(self.directory, f"{self.name}.log"), "rb") as f:
            return f.read()[-size:].decode("utf-8", "replace")


# Connections.


class Conn(FrameProtocol):
    """
    A raw client-port connection: requests matched to replies by id, pushes
    handed to C{onPush(message, receivedAt)}.
    """

    maxFrame = 64 * 1024 * 1024

    def __init__(self, onPush=None):
        super().__init__()
        self.onPush = onPush
        self._lastId = 0
        self._waiting = {}
        self.connected = False
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.connected = True

    def request(self, op, **fields):
        from twisted.internet import reactor

        self._lastId += 1
        d = self._waiting[self._lastId] = defer.Deferred()
        self.sendMessage({"op": op, "id": self._lastId, **fields})
        return d.addTimeout(REQUEST_TIMEOUT, reactor)

    def messageReceived(self, message):
        if message.get("op") == "push":
            if self.onPush is not None:
                self.onPush(message, now())
            return
        d = self._waiting.pop(message.get("re"), None)
        if d is not None:
            d.callback(message)

    def connectionLost(self, reason):
        self.connected = False
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(ConnectionLost(str(reason.value)))
        self.lost.callback(None)


async def connect(reactor, node, onPush=None):
    """
    A L{Conn} to C{node} after a successful C{hello}; its reply is C{welcome}.
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", node.clientPort, timeout=10)
    conn = await connectProtocol(endpoint, Conn(onPush)).addTimeout(10, reactor)
    conn.welcome = await ok(conn.request("hello", proto=1, agent="bench/cluster"))
    return conn


async def ok(d):
    reply = await d
    if reply.get("op") != "ok":
        raise RuntimeError(f"request refused: {reply}")
    return reply


def close(conns):
    for conn in conns:
        if conn.connected:
            conn.transport.abortConnection()


async def counts(conn, prefix):
    """
    C{{service name: instances}} of the services named C{prefix*}.
    """
    result = {}
    page = 1
    while True:
        reply = await ok(conn.request("services", namespace="public", page=page, size=1000))
        for entry in reply["services"]:
            if entry["name"].startswith(prefix):
                result[entry["name"]] = entry["instances"]
        if page * 1000 >= reply["count"]:
            return result
        page += 1


# 1. Replication latency.


class Tracker:
    """
    When each write (writer, seq) was first seen by one observer.
    """

    def __init__(self, writers):
        self.pending = [collections.deque() for _ in range(writers)]
        self.latencies = []

    def sent(self, writer, seq, at):
        self.pending[writer].append((seq, at))

    def seen(self, writer, seq, at):
        queue = self.pending[writer]
        while queue and queue[0][0] <= seq:
            self.latencies.append(at - queue.popleft()[1])

    def outstanding(self):
        return sum(len(q) for q in self.pending)

    def figures(self):
        ordered = sorted(self.latencies)
        return {
            "count": len(ordered),
            "p50": percentile(ordered, 0.50) * 1000,
            "p99": percentile(ordered, 0.99) * 1000,
            "max": (ordered[-1] * 1000) if ordered else float("nan"),
            "missed": self.outstanding(),
        }


def writerIp(writer):
    return f"10.99.{writer >> 8}.{writer & 255}"


def seenIn(info, tracker, at):
    """
    Feed a tracker with the writes a view shows.
    """
    for host in info["hosts"]:
        a, b, c, d = host["ip"].split(".")
        tracker.seen(int(c) << 8 | int(d), int(host["metadata"]["seq"]), at)


async def replication(reactor, nodes, label, writers, rate, pipeline, duration, queryGap):
    """
    One replication phase: C{writers} connections at A write for
    C{duration} seconds, either at C{rate} writes/s in total (light) or with
    C{pipeline} writes outstanding each (heavy, C{rate} None).
    """
    a, b, c = nodes
    service = {"name": f"bench-replication-{label}"}
    names = ["ack at A", "query at B", "push at C", "push at A (baseline)"]
    trackers = {name: Tracker(writers) for name in names}
    ackTracker, queryTracker, pushC, pushA = (trackers[n] for n in names)

    subC = await connect(reactor, c, lambda m, t: seenIn(m["service_info"], pushC, t))
    subA = await connect(reactor, a, lambda m, t: seenIn(m["service_info"], pushA, t))
    for sub in (subC, subA):
        await ok(sub.request("subscribe", service=service))
    querier = await connect(reactor, b)
    conns = [await connect(reactor, a) for _ in range(writers)]
    seqs = [0] * writers
    running = True

    async def queryLoop():
        while running:
            reply = await ok(querier.request("query", service=service))
            seenIn(reply["service_info"], queryTracker, now())
            if queryGap:
                await sleep(reactor, queryGap)

    def write(writer):
        seqs[writer] += 1
        seq = seqs[writer]
        instance = {"ip": writerIp(writer), "port": 80, "metadata": {"seq": str(seq)}}
        at = now()
        for tracker in trackers.values():
            tracker.sent(writer, seq, at)
        d = conns[writer].request("register", service=service, instance=instance)

        def acked(reply):
            if reply.get("op") != "ok":
                raise RuntimeError(f"register refused: {reply}")
            ackTracker.seen(writer, seq, now())

        return d.addCallback(acked)

    looping = defer.ensureDeferred(queryLoop())
    started = now()
    end = started + duration
    if rate is not None:
        # Open loop: write n is sent at started + n / rate, whatever the replies.
        acks = []
        n = 0
        while now() < end:
            acks.append(write(n % writers))
            n += 1
            delay = started + n / rate - now()
            if delay > 0:
                await sleep(reactor, delay)
        await defer.gatherResults(acks, consumeErrors=True)
    else:

        async def closedLoop(writer):
            inflight = []
            while now() < end:
                inflight = [d for d in inflight if not d.called]
                while len(inflight) < pipeline:
                    inflight.append(write(writer))
                await defer.DeferredList(inflight, fireOnOneCallback=True, fireOnOneErrback=True)
            await defer.gatherResults(inflight, consumeErrors=True)

        await defer.gatherResults(
            [defer.ensureDeferred(closedLoop(w)) for w in range(writers)], consumeErrors=True
        )
    elapsed = now() - started
    deadline = now() + DRAIN_TIMEOUT
    while any(t.outstanding() for t in trackers.values()) and now() < deadline:
        await sleep(reactor, 0.01)
    running = False
    await looping
    close([subC, subA, querier, *conns])
    total = sum(seqs)
    figures = {name: tracker.figures() for name, tracker in trackers.items()}
    return {"writes": total, "rate": total / elapsed, **figures}


# 2. Failover.


async def failover(reactor, nodes):
    """
    Kill A under a library client with instances; time its resume elsewhere
    and watch subscribers on B and C for a view without its instances.
    """
    a, b, c = nodes
    service = {"name": "bench-failover"}
    expected = {f"10.98.0.{i}#80#DEFAULT" for i in range(1, FAILOVER_INSTANCES + 1)}
    client = DistroClient(
        [a.address, b.address, c.address],
        clock=reactor,
        endpoint_factory=lambda host, port: TCP4ClientEndpoint(reactor, host, port, timeout=5),
        agent="bench/cluster",
        timeout=5.0,
        start_at=0,
    )
    await client.start()
    if client.node != a.nodeId:
        raise RuntimeError(f"the client went to {client.node}, not A")
    clientId = client.client_id
    await client.batch_register(
        "bench-failover",
        [{"ip": f"10.98.0.{i}", "port": 80} for i in range(1, FAILOVER_INSTANCES + 1)],
    )
    vanished = []

    def watch(message, at):
        ids = {h["instance_id"] for h in message["service_info"]["hosts"]}
        if not expected <= ids:
            vanished.append((at, sorted(expected - ids)))

    subs = [await connect(reactor, node, watch) for node in (b, c)]
    deadline = now() + DRAIN_TIMEOUT
    for sub in subs:
        while True:
            reply = await ok(sub.request("subscribe", service=service))
            if expected <= {h["instance_id"] for h in reply["service_info"]["hosts"]}:
                break
            await ok(sub.request("unsubscribe", service=service))
            if now() > deadline:
                raise RuntimeError("the failover instances did not reach B and C")
            await sleep(reactor, 0.01)

    killed = now()
    a.kill()
    resumed = down = None
    watcher = await connect(reactor, b)
    watchUntil = killed + (DOWN_AFTER_MS + ORPHAN_GRACE_MS) / 1000.0 + 1.0
    while now() < watchUntil or down is None:
        if resumed is None and client.connected and client.node not in (None, a.nodeId):
            resumed = now() - killed
        if down is None:
            reply = await ok(watcher.request("members"))
            if any(m["node"] == a.nodeId and m["state"] == "DOWN" for m in reply["members"]):
                down = now() - killed
        if now() > watchUntil + DRAIN_TIMEOUT:
            break
        await sleep(reactor, 0.005 if resumed is None else 0.05)
    views = []
    for sub in subs:
        reply = await ok(sub.request("query", service=service))
        views.append({h["instance_id"] for h in reply["service_info"]["hosts"]})
    result = {
        "resumed": resumed,
        "node": client.node,
        "sameId": client.client_id == clientId,
        "down": down,
        "watched": watchUntil - killed,
        "vanished": vanished,
        "kept": all(expected <= v for v in views),
    }
    await client.close()
    close(subs + [watcher])
    return result


# 3. Load, memory, catch-up.


async def load(reactor, nodes, total):
    """
    Publish C{total} instances from L{LOAD_CLIENTS} clients, half on B, half
    on C, each with its own service; wait until B and C count them all.

    @return: C{(connections, seconds, expected counts)}.
    """
    a, b, c = nodes
    perClient = [total // LOAD_CLIENTS + (i < total % LOAD_CLIENTS) for i in range(LOAD_CLIENTS)]
    expected = {f"bench-load-{i:03d}": n for i, n in enumerate(perClient) if n}
    started = now()
    conns = []
    semaphore = defer.DeferredSemaphore(LOAD_CONCURRENCY)

    async def publish(i):
        conn = await connect(reactor, (b, c)[i % 2])
        conns.append(conn)
        instances = [
            {"ip": f"10.{i}.{j >> 8}.{j & 255}", "port": 8080, "metadata": {"zone": "z1", "v": "1"}}
            for j in range(perClient[i])
        ]
        service = {"name": f"bench-load-{i:03d}"}
        await ok(conn.request("batch_register", service=service, instances=instances))

    await defer.gatherResults(
        [
            semaphore.run(lambda i=i: defer.ensureDeferred(publish(i)))
            for i in range(LOAD_CLIENTS)
            if perClient[i]
        ],
        consumeErrors=True,
    )
    checkers = [await connect(reactor, node) for node in (b, c)]
    deadline = now() + 120
    while True:
        seen = [await counts(conn, "bench-load-") for conn in checkers]
        if all(s == expected for s in seen):
            break
        if now() > deadline:
            raise RuntimeError("B and C did not count every loaded instance")
        await sleep(reactor, 0.05)
    close(checkers)
    return conns, now() - started, expected


async def catchUp(reactor, nodes, expected):
    """
    Restart A; time until it listens, is ready, and counts what B counts;
    then compare the checksums of every loaded service.
    """
    a, b, c = nodes
    portFile = a.start()
    listening = await a.waitListening(reactor, portFile)
    ready = None
    deadline = now() + 60
    while ready is None:
        try:
            conn = await connect(reactor, a)
        except Exception:
            conn = None
        if conn is not None:
            close([conn])
            if conn.welcome["ready"]:
                ready = now() - a.startedAt
        if now() > deadline:
            raise RuntimeError("the restarted A never became ready")
        if ready is None:
            await sleep(reactor, 0.01)
    checker = await connect(reactor, a)
    while True:
        if await counts(checker, "bench-load-") == expected:
            matched = now() - a.startedAt
            # Before the queries below: the views they pack stay cached.
            rss = a.rss()
            break
        if now() > deadline:
            raise RuntimeError("the restarted A never counted every instance")
        await sleep(reactor, 0.01)
    reference = await connect(reactor, b)
    differ = 0
    for name in expected:
        service = {"name": name}
        mine = await ok(checker.request("query", service=service))
        theirs = await ok(reference.request("query", service=service))
        differ += mine["service_info"]["checksum"] != theirs["service_info"]["checksum"]
    close([checker, reference])
    return {
        "listening": listening, "ready": ready, "matched": matched, "differ": differ, "rss": rss,
    }


# The run.


def row(label, f):
    return (f"  {label:<34} {f['count']:>7} {f['p50']:>9.2f} {f['p99']:>9.2f} "
            f"{f['max']:>9.2f} {f['missed']:>7}")


async def bench(reactor, args, nodes):
    a, b, c = nodes
    print(
        f"bench/cluster.py: 3 nodes (A, B, C) on 127.0.0.1 from etc/node1..3.toml, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load generator in this process"
    )
    startedAt = now()
    listened = []
    for node in nodes:
        listened.append(await node.waitListening(reactor, node.portFile))
    for node in nodes:
        deadline = now() + START_TIMEOUT
        while True:
            conn = await connect(reactor, node)
            close([conn])
            if conn.welcome["ready"]:
                break
            if now() > deadline:
                raise RuntimeError(f"node {node.name} never became ready")
            await sleep(reactor, 0.02)
    print(f"cluster up and ready in {now() - startedAt:.2f} s")
    baseRss = {node.name: node.rss() for node in nodes}

    phases = []
    light = await replication(
        reactor, nodes, "light", 1, args.light_rate, None, args.duration, args.query_gap_ms / 1000.0
    )
    phases.append(("light", light))
    heavy = await replication(
        reactor, nodes, "heavy", args.heavy_writers, args.heavy_rate or None, args.pipeline,
        args.duration,
        args.query_gap_ms / 1000.0,
    )
    phases.append(("heavy", heavy))

    print()
    print("1. replication latency, write at A until seen (ms)")
    print(f"  {'':<34} {'writes':>7} {'p50':>9} {'p99':>9} {'max':>9} {'missed':>7}")
    for label, figures in phases:
        if label == "light":
            how = f"open loop at {args.light_rate:g} writes/s, 1 connection"
        elif args.heavy_rate:
            how = f"open loop at {args.heavy_rate:g} writes/s over {args.heavy_writers} connections"
        else:
            how = (f"{args.heavy_writers} connections x pipeline {args.pipeline}, "
                   "as fast as A answers")
        print(f" {label}: {figures['writes']} writes in {args.duration:g} s = "
              f"{figures['rate']:.0f} writes/s ({how})")
        for name in ("ack at A", "query at B", "push at C", "push at A (baseline)"):
            print(row(name, figures[name]))
    print(" (each change is pushed at the end of the reactor turn it is applied in; under load")
    print("  the changes applied in one turn, or while a subscriber's buffer is full, go as one)")
    print(" ratios against the baseline (push at A, same writes):")
    for label, figures in phases:
        base = figures["push at A (baseline)"]
        for name in ("push at C", "query at B"):
            f = figures[name]
            print(f"  {label:<6} {name:<12} p50 {f['p50'] / base['p50']:5.2f}x   "
                  f"p99 {f['p99'] / base['p99']:5.2f}x")

    result = await failover(reactor, nodes)
    print()
    print(f"2. failover: SIGKILL of A under a library client with {FAILOVER_INSTANCES} instances")
    resumed = "never" if result["resumed"] is None else f"{result['resumed'] * 1000:.0f} ms"
    print(f"  client resumed on {result['node']} after {resumed}"
          f" (same client id: {'yes' if result['sameId'] else 'NO'})")
    down = "never" if result["down"] is None else f"{result['down']:.2f} s"
    print(f"  B shows A DOWN after {down} (down_after_ms {DOWN_AFTER_MS})")
    print(f"  subscribers on B and C, watched {result['watched']:.1f} s after the kill "
          f"(down_after_ms + orphan_grace_ms {ORPHAN_GRACE_MS} + 1 s): "
          f"pushes without the instances: {len(result['vanished'])}; "
          f"instances still there: {'yes' if result['kept'] else 'NO'}")

    conns, loadTime, expected = await load(reactor, nodes, args.instances)
    loadedRss = {node.name: node.rss() for node in (b, c)}
    caught = await catchUp(reactor, nodes, expected)
    loadedRss[a.name] = caught["rss"]
    print()
    print(f"3. load: {args.instances} instances ({len(expected)} clients x "
          f"{args.instances // LOAD_CLIENTS}, batch_register, half at B, half at C)")
    print(f"  published and counted on B and C in {loadTime:.2f} s")
    print(f"  A restarted: listening after {caught['listening']:.2f} s, ready: true after "
          f"{caught['ready']:.2f} s, services counts equal to B's after {caught['matched']:.2f} s; "
          f"checksums differing from B's: {caught['differ']} of {len(expected)}")
    print()
    print("4. memory (VmRSS)")
    print(f"  {'node':<4} {'at start MB':>12} {'loaded MB':>10} {'B/instance':>11}  holds")
    holds = {a.name: "all synced (A restarted; its first process at start)",
             b.name: "half native, half synced", c.name: "half native, half synced"}
    for node in nodes:
        before, after = baseRss[node.name], loadedRss[node.name]
        print(f"  {node.name:<4} {before / 2**20:>12.1f} {after / 2**20:>10.1f} "
              f"{(after - before) / args.instances:>11.0f}  {holds[node.name]}")
    close(conns)
    print(f"total {now() - startedAt:.1f} s")
    bad = (result["vanished"] or not result["kept"] or not result["sameId"]
           or result["resumed"] is None or caught["differ"]
           or any(f[n]["missed"] for _, f in phases for n in f if isinstance(f[n], dict)))
    if bad:
        raise SystemExit(1)


def parseArgs(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--light-rate", type=float, default=50.0,
                        help="writes/s of the light phase (default 50)")
    parser.add_argument("--heavy-rate", type=float, default=0.0,
                        help="writes/s of the heavy phase, spread over its connections "
                             "(default 0: as fast as they can, with --pipeline outstanding each)")
    parser.add_argument("--heavy-writers", type=int, default=4,
                        help="connections writing in the heavy phase (default 4)")
    parser.add_argument("--pipeline", type=int, default=8,
                        help="writes outstanding per heavy connection (default 8)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of writing per replication phase (default 5)")
    parser.add_argument("--query-gap-ms", type=float, default=0.0,
                        help="pause between the queries of the loop at B (default 0: back to back)")
    parser.add_argument("--instances", type=int, default=100_000,
                        help="instances loaded for the memory and catch-up figures "
                             "(default 100000)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="hard limit of the whole run, in seconds (default 600)")
    args = parser.parse_args(argv)
    if not 0 < args.light_rate <= 10000:
        parser.error("--light-rate must be in (0, 10000]")
    if not 0 <= args.heavy_rate <= 100000:
        parser.error("--heavy-rate must be in [0, 100000]")
    if not 1 <= args.heavy_writers <= 256:
        parser.error("--heavy-writers must be in 1..256")
    if not 1 <= args.pipeline <= 1000:
        parser.error("--pipeline must be in 1..1000")
    if not 0 < args.duration <= 120:
        parser.error("--duration must be in (0, 120]")
    if not LOAD_CLIENTS <= args.instances <= LOAD_CLIENTS * MAX_PER_CLIENT:
        parser.error(f"--instances must be in {LOAD_CLIENTS}..{LOAD_CLIENTS * MAX_PER_CLIENT}")
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be in (0, 3600]")
    return args


def main(argv=None):
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    directory = tempfile.mkdtemp(prefix="distro-bench-cluster-")
    nodes = []
    try:
        ports = freePorts(6)
        clusterFile = os.path.join(directory, "cluster.conf")
        with open(clusterFile, "w") as f:
            for i in range(3):
                f.write(f"127.0.0.1:{ports[2 * i + 1]}\n")
        for i, name in enumerate("ABC"):
            node = Node(name, i + 1, ports[2 * i], ports[2 * i + 1], directory, clusterFile)
            nodes.append(node)
            node.portFile = node.start()

        def run(reactor):
            d = defer.ensureDeferred(bench(reactor, args, nodes))
            timedOut = []

            def expire():
                timedOut.append(True)
                print(f"stopped at the --timeout of {args.timeout:g} s", file=sys.stderr)
                d.cancel()

            timer = reactor.callLater(args.timeout, expire)

            def done(result):
                if timer.active():
                    timer.cancel()
                return result

            return d.addBoth(done)

        task.react(run)
    except BaseException as e:
        if not (isinstance(e, SystemExit) and e.code in (0, None)):
            for node in nodes:
                if node.process is not None:
                    print(f"--- end of node {node.name}'s log:\n{node.logTail()}", file=sys.stderr)
        raise
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
