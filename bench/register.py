"""
Register/query benchmark of a distro node against a bare-Twisted ceiling.

    python bench/register.py [-c 50] [-m 200] [--pipeline 1] [--server 127.0.0.1:9850]

C connections each say hello, then send M C{register} requests (connection i
publishes M instances of its own service C{bench-<run>-<i>}), and, once every
connection has finished registering, M C{query} requests for that service (so
each reply carries the full view of M hosts). Each connection keeps
C{--pipeline} requests outstanding. Per op it prints throughput (requests over
the wall time of the phase) and the p50/p99 latency from sending a request to
reading its reply.

The same load then runs against a "ceiling": a bare Twisted server with the
same framing (L{distro.wire.FrameProtocol}) that answers every request with
an C{ok}, to queries one carrying a prepared view of M hosts packed once (so
both servers ship replies of the same size): what this stack and this load
generator can do at best. Both
servers run as processes of their own, started here on 127.0.0.1 port 0 (with
C{--server}, the node is one already running on this host). The load generator
is one Twisted reactor in this process, so it shares the machine's CPUs with
the server under test; compare the ratios rather than the absolute figures.

Traffic goes to loopback only. The run is bounded: at most 2000 connections and
10000 requests per connection (the node's default C{max_instances_per_client}),
and a hard C{--timeout} after which everything is stopped.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory

from distro.wire import FrameProtocol

LOOPBACK = ("127.0.0.1", "localhost")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
MAX_CONNECTIONS = 2000
MAX_REQUESTS = 10000


# The ceiling server (run as a child process of this script).


def ceilingServiceInfo(hosts):
    """
    A ServiceInfo of C{hosts} instances, shaped like the node's query replies,
    packed once: the ceiling ships replies of the same size without doing the
    registry's work.
    """
    return msgpack.packb({
        "service": {"namespace": "public", "group": "DEFAULT_GROUP", "name": "bench"},
        "clusters": None,
        "hosts": [
            {"ip": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255), "port": 8080,
             "cluster": "DEFAULT", "weight": 1.0, "healthy": True, "enabled": True,
             "metadata": {"bench": "1"}, "instance_id": f"10.0.0.{i}#8080#DEFAULT"}
            for i in range(hosts)
        ],
        "checksum": "0" * 32,
        "revision": hosts,
    })


class CeilingSession(FrameProtocol):
    """
    Answers every request with an C{ok}: an empty one, or for C{query} one
    carrying a prepared view as large as the node's: the least any server can do.
    """

    serviceInfo = msgpack.packb(None)

    def messageReceived(self, message):
        """
        Reply C{ok} to the request.
        """
        if message.get("op") == "query":
            # A three-entry map: op, re, then the prepared service_info.
            body = (b"\x83" + msgpack.packb("op") + msgpack.packb("ok") + msgpack.packb("re")
                    + msgpack.packb(message.get("id")) + msgpack.packb("service_info")
                    + self.serviceInfo)
            self.transport.write(len(body).to_bytes(4, "big") + body)
            return
        self.sendMessage({"op": "ok", "re": message.get("id")})


def serveCeiling(portFile, hosts):
    """
    Run the ceiling server on 127.0.0.1 port 0 until killed, writing the bound
    address to C{portFile}; its query replies carry C{hosts} hosts.
    """
    from twisted.internet import reactor

    CeilingSession.serviceInfo = ceilingServiceInfo(hosts)
    endpoint = TCP4ServerEndpoint(reactor, 0, backlog=MAX_CONNECTIONS, interface="127.0.0.1")
    d = endpoint.listen(Factory.forProtocol(CeilingSession))

    def listening(port):
        host = port.getHost()
        with open(portFile + ".tmp", "w") as f:
            f.write(f"{host.host}:{host.port}\n")
        os.replace(portFile + ".tmp", portFile)

    d.addCallback(listening)
    d.addErrback(lambda f: (print(f, file=sys.stderr), reactor.stop()))
    reactor.run()


# Child processes.


def residentBytes(pid):
    """
    The resident set size of process C{pid} in bytes (VmRSS).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def earlierCheckout(path):
    """
    An argparse type: C{path}, a checkout of distro (an earlier commit's,
    for C{--before}).
    """
    if not os.path.isfile(os.path.join(path, "distro", "tap.py")):
        raise argparse.ArgumentTypeError(f"{path}: not a checkout of distro")
    return path


class Child:
    """
    A server process started by this script, writing its address to a port
    file, with its output in a log file.

    @param argv: the command, ending with the option that takes the port file.
    """

    def __init__(self, name, argv, directory):
        self.name = name
        self.portFile = os.path.join(directory, name + ".port")
        self.logPath = os.path.join(directory, name + ".log")
        self._log = open(self.logPath, "wb")
        self.process = subprocess.Popen(
            argv + [self.portFile],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
        )

    def waitAddress(self, timeout=START_TIMEOUT):
        """
        Wait (blocking, bounded) for the port file; return C{(host, port)}.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited early:\n{self.logTail()}")
            try:
                with open(self.portFile) as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            if text.endswith("\n"):
                host, port = text.strip().rsplit(":", 1)
                return host, int(port)
            time.sleep(0.05)
        raise SystemExit(f"{self.name} did not listen within {timeout}s:\n{self.logTail()}")

    def logTail(self, size=2000):
        """
        The end of the process's output.
        """
        self._log.flush()
        with open(self.logPath, "rb") as f:
            return f.read()[-size:].decode("utf-8", "replace")

    def stop(self):
        stopProcess(self.process)
        self._log.close()


def stopProcess(process):
    """
    SIGTERM, then SIGKILL if it has not ended within L{STOP_TIMEOUT}.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


def dataDirArgs(checkout=None):
    """
    The node's C{data_dir}: none (overrides in memory: the nodes a bench
    starts share a directory) for this checkout's, nothing said to an
    earlier checkout's, which may not know the key.
    """
    return () if checkout is not None else ("--data-dir", "")


def startNode(directory):
    """
    Start C{twistd -n distro-node} on 127.0.0.1 port 0.
    """
    argv = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "",
        "--node-id",
        "bench",
        "--listen",
        f"tcp:0:interface=127.0.0.1:backlog={MAX_CONNECTIONS}",
        # Connections wait at the barrier between phases without a heartbeat.
        "--heartbeat-ms",
        "600000",
        "--idle-timeout-ms",
        "1200000",
        "--port-file",
    ]
    return Child("node", argv, directory)


def startCeiling(directory, hosts):
    """
    Start the ceiling server (this script in C{--ceiling-server} mode).
    """
    argv = [sys.executable, os.path.abspath(__file__), "--ceiling-server",
            "--requests", str(hosts), "--port-file"]
    return Child("ceiling", argv, directory)


# The load generator.


class LoadClient(FrameProtocol):
    """
    One benchmark connection: runs a list of requests with a bounded number
    outstanding, recording the latency of each.
    """

    maxFrame = 64 * 1024 * 1024

    def __init__(self):
        super().__init__()
        self._lastId = 0
        self._sent = {}
        self._phase = None
        self.lost = defer.Deferred()

    def runPhase(self, requests, pipeline):
        """
        Send C{requests} (maps without C{id}), at most C{pipeline} outstanding.

        @return: a L{Deferred} firing with C{(latencies, errors, replyBytes)}
            once every reply arrived.
        """
        self._requests = iter(requests)
        self._latencies = []
        self._errors = []
        self._replyBytes = 0
        self._phase = defer.Deferred()
        for _ in range(pipeline):
            if not self._sendNext():
                break
        if not self._sent:
            self._finish()
        return self._phase

    def _sendNext(self):
        request = next(self._requests, None)
        if request is None:
            return False
        self._lastId += 1
        request["id"] = self._lastId
        self._sent[self._lastId] = time.perf_counter()
        self.sendMessage(request)
        return True

    def frameReceived(self, body):
        """
        Count the reply's size and handle its envelope.
        """
        # Only the envelope is decoded: decoding every view in full would make
        # the load generator, not the server, the bottleneck of the query phase.
        self._replyBytes += len(body)
        self.messageReceived(_envelope(body))

    def messageReceived(self, message):
        """
        Record a reply's latency and send the next request.
        """
        started = self._sent.pop(message.get("re"), None)
        if started is None:
            return  # a push, or an error about a frame: not a reply we wait for
        self._latencies.append(time.perf_counter() - started)
        if message.get("op") != "ok":
            self._errors.append(message)
        self._sendNext()
        if not self._sent:
            self._finish()

    def _finish(self):
        d, self._phase = self._phase, None
        d.callback((self._latencies, self._errors, self._replyBytes))

    def connectionLost(self, reason):
        """
        Fail the running phase, if any, and fire L{lost}.
        """
        if self._phase is not None:
            d, self._phase = self._phase, None
            d.errback(reason)
        self.lost.callback(None)


_ENVELOPE = frozenset(["op", "re", "code", "message"])


def _envelope(body):
    """
    The envelope keys of a frame body; every other value is skipped unread.
    """
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(body)
    message = {}
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key in _ENVELOPE:
            message[key] = unpacker.unpack()
        else:
            unpacker.skip()
    return message


def percentile(ordered, fraction):
    """
    The C{fraction} percentile of an ordered list (nearest rank).
    """
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


@defer.inlineCallbacks
def phase(clients, makeRequests, pipeline):
    """
    Run one phase on every connection at once.

    @return: a L{Deferred} firing with a dict of figures.
    """
    started = time.perf_counter()
    results = yield defer.gatherResults(
        [c.runPhase(makeRequests(i), pipeline) for i, c in enumerate(clients)],
        consumeErrors=True,
    )
    elapsed = time.perf_counter() - started
    latencies = sorted(x for r in results for x in r[0])
    errors = [e for r in results for e in r[1]]
    replyBytes = sum(r[2] for r in results)
    return {
        "count": len(latencies),
        "ops": len(latencies) / elapsed if elapsed else float("inf"),
        "p50": percentile(latencies, 0.50) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "bytes": replyBytes / len(latencies) if latencies else 0,
        "errors": errors,
    }


@defer.inlineCallbacks
def load(reactor, host, port, args, run):
    """
    The whole load against one server: connect, hello, register phase, query
    phase, bye.
    """
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10)
    clients = yield defer.gatherResults(
        [connectProtocol(endpoint, LoadClient()) for _ in range(args.connections)],
        consumeErrors=True,
    )
    try:
        hello = {"op": "hello", "proto": 1, "agent": "bench/register"}
        yield phase(clients, lambda i: [dict(hello)], 1)

        def service(i):
            return {"name": f"bench-{run}-{i}"}

        def registers(i):
            ip = f"10.{(i >> 8) & 255}.{i & 255}.1"
            for j in range(args.requests):
                instance = {"ip": ip, "port": 1 + j, "metadata": {"bench": "1"}}
                yield {"op": "register", "service": service(i), "instance": instance}

        def queries(i):
            for _ in range(args.requests):
                yield {"op": "query", "service": service(i)}

        figures = {}
        figures["register"] = yield phase(clients, registers, args.pipeline)
        figures["query"] = yield phase(clients, queries, args.pipeline)
        yield phase(clients, lambda i: [{"op": "bye"}], 1)
        return figures
    finally:
        for c in clients:
            c.transport.loseConnection()
        yield defer.DeferredList([c.lost for c in clients]).addTimeout(STOP_TIMEOUT, reactor)


def printFigures(name, figures):
    """
    One line per op.
    """
    for op, f in figures.items():
        print(
            f"{name:<12} {op:<9} {f['count']:>8} {f['ops']:>10.0f} {f['p50']:>9.3f} "
            f"{f['p99']:>9.3f} {f['bytes']:>9.0f} {len(f['errors']):>7}"
        )
        for e in f["errors"][:3]:
            print(f"    error: {e.get('code')}: {e.get('message')}")


@defer.inlineCallbacks
def bench(reactor, args, targets):
    """
    Run the load against each target in turn, print the figures and ratios.
    """
    run = f"{os.getpid()}-{int(time.time())}"
    print(
        f"bench/register.py: {args.connections} connections x {args.requests} requests per op, "
        f"pipeline {args.pipeline}, loopback, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(f"{'server':<12} {'op':<9} {'requests':>8} {'ops/s':>10} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'reply B':>9} {'errors':>7}")
    results = {}
    for name, (host, port) in targets:
        running = load(reactor, host, port, args, run)
        timedOut = []
        timer = reactor.callLater(args.timeout, lambda: (timedOut.append(True), running.cancel()))
        try:
            results[name] = yield running
        except Exception:
            if timedOut:
                raise SystemExit(f"{name}: stopped at the --timeout of {args.timeout:g}s")
            raise
        finally:
            if timer.active():
                timer.cancel()
        printFigures(name, results[name])
    ours, ceiling = results.get("distro node"), results.get("ceiling")
    if ours and ceiling:
        print("ratios, distro node / ceiling (ops/s below 1 and latency above 1 mean slower):")
        for op in ours:
            a, b = ours[op], ceiling[op]
            print(
                f"  {op:<9} ops/s {a['ops'] / b['ops']:.2f}   "
                f"p50 {a['p50'] / b['p50']:.2f}x   p99 {a['p99'] / b['p99']:.2f}x"
            )
    if any(f["errors"] for r in results.values() for f in r.values()):
        raise SystemExit(1)


def parseArgs(argv):
    """
    The command line.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-m", "--requests", type=int, default=200,
                        help="registrations, then queries, per connection")
    parser.add_argument("--pipeline", type=int, default=1,
                        help="requests outstanding per connection")
    parser.add_argument("--server", metavar="HOST:PORT",
                        help="a running node on this host, instead of starting one")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="hard limit in seconds for the load on each server")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the bare Twisted server")
    parser.add_argument("--ceiling-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ceiling_server:
        return args
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be in 1..{MAX_CONNECTIONS}")
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be in 1..{MAX_REQUESTS}")
    if not 1 <= args.pipeline <= args.requests:
        parser.error("--pipeline must be in 1..--requests")
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be in (0, 3600] seconds")
    if args.server:
        host, _, port = args.server.rpartition(":")
        if host not in LOOPBACK or not port.isdigit():
            parser.error("--server must be 127.0.0.1:PORT (this benchmark stays on loopback)")
        args.server = ("127.0.0.1", int(port))
    return args


def main(argv=None):
    """
    Start the servers, run the load, stop the servers.
    """
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    if args.ceiling_server:
        serveCeiling(args.port_file, args.requests)
        return
    directory = tempfile.mkdtemp(prefix="distro-bench-")
    children = []
    try:
        targets = []
        if args.server:
            targets.append(("distro node", args.server))
        else:
            children.append(startNode(directory))
            targets.append(("distro node", children[-1].waitAddress()))
        if not args.no_ceiling:
            children.append(startCeiling(directory, args.requests))
            targets.append(("ceiling", children[-1].waitAddress()))
        task.react(bench, (args, targets))
    finally:
        for child in children:
            child.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
