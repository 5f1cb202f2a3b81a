"""
The Nacos servers the SDK benches compare, started the same way: distro (a
standalone C{twistd distro-node}), Nacos (the Java server, a distribution
unpacked into C{bench/.servers/nacos}) and r-nacos (the C{rnacos} binary,
cargo-installed into C{bench/.servers/rnacos}); C{bench/servers/setup.sh}
says how each gets there.

Each runs standalone on free ports of 127.0.0.1: its HTTP port P and its
Nacos gRPC port P + 1000 (where an SDK given P dials), with its data in the
bench's temporary directory, auth off. L{startServer} returns a L{Server}
once it answers a Nacos C{ServerCheckRequest} (distro: its own port's
C{services} page); a L{Server} measures its whole process tree (CPU and
RSS, from C{/proc}) and stops it. L{startCluster} starts several of a kind
(L{CLUSTER_KINDS}: each of them) as one cluster, as its documents say.

Nacos binds its gRPC ports on every interface (its code takes no bind
address), so it runs only after L{isolateNetwork} has moved the bench into a
network namespace of its own that has loopback alone: nothing it or any
other server does can reach past this machine.
"""

import argparse
import ctypes
import dataclasses
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.path.insert(0, ROOT)

from largeclient import counted  # noqa: E402
from register import Child, dataDirArgs  # noqa: E402
from tests._ports import LOWEST, ephemeralStart  # noqa: E402

INSTALLED = os.path.join(BENCH, ".servers")
NACOS_HOME = os.environ.get("NACOS_HOME", os.path.join(INSTALLED, "nacos"))
NACOS_JAR = os.path.join(NACOS_HOME, "target", "nacos-server.jar")
RNACOS = os.environ.get("RNACOS", os.path.join(INSTALLED, "rnacos", "bin", "rnacos"))
# The Nacos distribution's own standalone heap (bin/startup.sh), which a
# 2-core machine with 24 GiB holds easily; NACOS_JVM_OPTS replaces it.
NACOS_HEAP = "-Xms512m -Xmx512m -Xmn256m"

KINDS = ("distro", "nacos", "rnacos")
LABELS = {"distro": "distro", "nacos": "Nacos", "rnacos": "r-nacos"}
START_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0
CLONE_NEWNET = 0x40000000
# TEST-NET-1 (RFC 5737), on the namespace's loopback: see isolateNetwork.
SDK_SELF_ADDRESS = "192.0.2.1/32"
_TICKS = os.sysconf("SC_CLK_TCK")


def missing(kind):
    """
    Why a server of C{kind} cannot run here, or C{None}.
    """
    if kind == "nacos" and not os.path.isfile(NACOS_JAR):
        return f"no Nacos server at {NACOS_JAR} (bench/servers/setup.sh; README, Benchmarks)"
    if kind == "rnacos" and not os.access(RNACOS, os.X_OK):
        return f"no r-nacos at {RNACOS} (bench/servers/setup.sh)"
    return None


def serverKinds(text):
    """
    An argparse type: a comma-separated list of L{KINDS}, each one here.
    """
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for kind in kinds:
        if kind not in KINDS:
            raise argparse.ArgumentTypeError(f"{kind!r} is none of {', '.join(KINDS)}")
        reason = missing(kind)
        if reason:
            raise argparse.ArgumentTypeError(f"{kind}: {reason}")
    if "distro" not in kinds:
        raise argparse.ArgumentTypeError("the ratios are against distro, so it must be one")
    return kinds


def addServersOption(parser):
    """
    Add C{--servers} to C{parser}; its default is distro and each other
    server that is installed, saying which are not.
    """
    parser.add_argument(
        "--servers", type=serverKinds, default=None,
        help=f"the servers to measure, of {','.join(KINDS)} (default: distro and those installed)")


def chosenKinds(options):
    """
    The kinds C{--servers} chose, or its default, printing why a server
    left out of the default is not here.
    """
    if options.servers is not None:
        return options.servers
    kinds = ["distro"]
    for kind in KINDS[1:]:
        reason = missing(kind)
        if reason:
            print(f"{LABELS[kind]} left out: {reason}", flush=True)
        else:
            kinds.append(kind)
    return kinds


def isolateNetwork():
    """
    Move this process, and so every server and client it starts from now
    on, into a network namespace of its own with its loopback up and no
    other interface. Call it before any thread starts.

    The Nacos SDKs refuse to start without a non-loopback IPv4 address to
    name themselves by (nacos-sdk-python: "no valid non-loopback IPv4
    interface found"), so the loopback gets L{SDK_SELF_ADDRESS} too, a
    documentation address that nothing is ever sent to.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise SystemExit(f"no network namespace of the bench's own ({os.strerror(ctypes.get_errno())}): "
                         "Nacos binds its gRPC ports on every interface and runs only inside one (run as root)")
    for command in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", SDK_SELF_ADDRESS, "dev", "lo"]):
        subprocess.run(command, check=True, timeout=10)


def prepareNetwork(kinds):
    """
    Isolate the network (L{isolateNetwork}) when C{kinds} has Nacos.
    """
    if "nacos" in kinds:
        isolateNetwork()
        print("in a network namespace of the bench's own (loopback only)", flush=True)


def _free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def freePort(offsets=(1000,)):
    """
    A port P below the ephemeral range with P + each of C{offsets} free too,
    on every address.
    """
    low, high = LOWEST - min(0, *offsets), ephemeralStart() - max(0, *offsets)
    for _ in range(1000):
        port = random.randrange(low, high)
        if all(_free(port + o) for o in (0, *offsets)):
            return port
    raise SystemExit(f"no free port P with P + {offsets} free too")


def freePorts(count, offsets=(1000,)):
    """
    C{count} ports as L{freePort} picks them, no two of whose sets (P and
    P + each of C{offsets}) share a port: the ports of as many servers
    started together.
    """
    ports, taken = [], set()
    for _ in range(1000):
        if len(ports) == count:
            return ports
        port = freePort(offsets)
        span = {port + o for o in (0, *offsets)}
        if not span & taken:
            ports.append(port)
            taken |= span
    raise SystemExit(f"no {count} free ports P with P + {offsets} free too, their sets apart")


def processTree(pid):
    """
    C{pid} and its descendants, as their C{/proc} shows them now.
    """
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def _cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tail(path, size):
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - size))
        return f.read().decode("utf-8", "replace")


@dataclasses.dataclass
class Server:
    """
    One server of a kind, started by L{startServer}.

    @ivar kind: one of L{KINDS}.
    @ivar name: its name in the bench's directory (its log, its home).
    @ivar port: its HTTP port P (its Nacos gRPC port is P + 1000).
    @ivar process: its C{subprocess.Popen}.
    @ivar logPath: its output.
    @ivar stopper: what stops it (L{stop}).
    @ivar nativeAddress: distro's own client port, C{(host, port)}; C{None}
        for the others.
    @ivar home: Nacos' and r-nacos' home (their data; Nacos' own logs).
    """

    kind: str
    name: str
    port: int
    process: subprocess.Popen
    logPath: str
    stopper: object
    nativeAddress: tuple = None
    home: str = None

    @property
    def label(self):
        return LABELS[self.kind]

    @property
    def address(self):
        """
        What an SDK is given: C{127.0.0.1:P}.
        """
        return f"127.0.0.1:{self.port}"

    @property
    def grpcAddress(self):
        """
        Its Nacos gRPC port, C{127.0.0.1:P+1000}.
        """
        return f"127.0.0.1:{self.port + 1000}"

    def cpuSeconds(self):
        """
        The user + system CPU seconds of its process tree (every thread).
        """
        return sum(_cpu(p) for p in processTree(self.process.pid))

    def rss(self):
        """
        The resident memory of its process tree, in bytes.
        """
        return sum(_rss(p) for p in processTree(self.process.pid))

    def liveHeap(self):
        """
        For the JVM (Nacos): its heap in use right after a full collection
        (C{jcmd GC.run}, then C{GC.heap_info}), in bytes; C{None} for the
        others. RSS alone says little of what a JVM keeps: its heap's pages
        stay resident once touched.
        """
        if self.kind != "nacos":
            return None
        pid = str(self.process.pid)
        subprocess.run(["jcmd", pid, "GC.run"], check=True, capture_output=True, timeout=60)
        info = subprocess.run(["jcmd", pid, "GC.heap_info"], check=True, capture_output=True, text=True,
                              timeout=60).stdout
        found = re.search(r"heap +total \d+K, used (\d+)K", info)
        if found is None:
            raise SystemExit(f"jcmd GC.heap_info said nothing of the heap in use:\n{info}")
        return int(found.group(1)) * 1024

    def settledCpu(self, quiet=0.3, timeout=30):
        """
        Its CPU seconds once it has been idle for C{quiet} seconds (the work
        it does after replying counts).
        """
        return self.settled(0.0, quiet, timeout)[0]

    def settled(self, idleRate, quiet=0.3, timeout=30):
        """
        C{(CPU seconds, monotonic time)} once it has been idle for C{quiet}
        seconds: using less than 2% of a core above C{idleRate} (its own
        idle work, CPU seconds per second: L{idleRates}).
        """
        deadline = time.monotonic() + timeout
        last = self.cpuSeconds()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.cpuSeconds()
            if now - last < quiet * (0.02 + idleRate):
                return now, time.monotonic()
            last = now
        return last, time.monotonic()

    def logTail(self, size=2000):
        """
        The end of its output; for Nacos, that of its cluster log too (its
        members as it sees them), when it has one.
        """
        paths = [self.logPath]
        if self.kind == "nacos" and self.home is not None:
            paths.append(os.path.join(self.home, "logs", "nacos-cluster.log"))
        return "\n".join(f"{path}:\n{_tail(path, size)}" for path in paths if os.path.exists(path))

    def stop(self):
        """
        SIGTERM to its tree, SIGKILL to what is left after L{STOP_TIMEOUT}.
        """
        self.stopper()


def idleRates(servers, seconds=5.0):
    """
    The CPU seconds per second each of C{servers} spends on its own while
    nothing is asked of it (a JVM's and a Raft group's background work),
    measured together over C{seconds} (long enough that C{/proc}'s 10 ms
    ticks make at most 2 ms/s of error).
    """
    before = [server.cpuSeconds() for server in servers]
    time.sleep(seconds)
    return [(server.cpuSeconds() - b) / seconds for server, b in zip(servers, before)]


def _serverChecked(address):
    """
    Whether the Nacos gRPC port at C{address} answers a
    C{ServerCheckRequest} with success (Nacos: only once it has started).
    """
    import grpc
    from distro.nacos.payload import Payload, decode, encode
    request = encode(Payload("ServerCheckRequest", {}, "", b"{}"))
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/Request/request", request_serializer=None, response_deserializer=None)
        try:
            reply = json.loads(decode(call(request, timeout=2)).body)
        except grpc.RpcError:
            return False
    return reply.get("resultCode") == 200


def _stopTree(process, extra=()):
    tree = processTree(process.pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    for pid in processTree(process.pid) if process.poll() is None else tree[1:]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.poll() is None:
        process.wait(STOP_TIMEOUT)
    for f in extra:
        f.close()


def _startDistro(directory, name, port, checkout, distroArgs):
    boot = "from twisted.scripts.twistd import run; run()"
    if checkout is not None:
        boot = f"import sys; sys.path.insert(0, {os.path.abspath(checkout)!r}); " + boot
    node = Child(name, [
        sys.executable, "-c", boot, "-n", "--pidfile=", "distro-node", *dataDirArgs(checkout),
        "--node-id", name, "--listen", "tcp:0:interface=127.0.0.1",
        "--http-listen", f"tcp:{port}:interface=127.0.0.1",
        "--nacos-listen", f"tcp:{port + 1000}:interface=127.0.0.1", *distroArgs,
        "--port-file"], directory)
    address = node.waitAddress()
    server = Server("distro", name, port, node.process, node.logPath, node.stop, address)
    deadline = time.monotonic() + 30
    while counted(*address, "none") is None:
        if time.monotonic() > deadline:
            node.stop()
            raise SystemExit(f"{name} did not get ready:\n{node.logTail()}")
        time.sleep(0.05)
    return server


def _nacosCommand(home, port, *, clustered=False):
    """
    The Nacos server as the distribution's C{bin/startup.sh} starts it, but
    bound to 127.0.0.1 (the address it names itself by too), auth off, its
    access log off, its home (data, logs) in C{home} and the standalone
    heap (L{NACOS_HEAP}) either way: standalone (C{startup.sh -m
    standalone}), or C{clustered}, a member of a cluster without MySQL
    (C{startup.sh -p embedded}: its configuration kept by Raft among the
    members), who are listed in C{home}'s C{conf/cluster.conf}.
    """
    heap = os.environ.get("NACOS_JVM_OPTS", NACOS_HEAP).split()
    plugins = ",".join(os.path.join(NACOS_HOME, "plugins", p) for p in ("", "health", "cmdb", "selector"))
    conf = os.path.join(NACOS_HOME, "conf")
    return [
        "java", *heap, "-XX:-OmitStackTraceInFastThrow",
        "-DembeddedStorage=true" if clustered else "-Dnacos.standalone=true",
        "-Dnacos.member.list=", f"-Dloader.path={plugins}", f"-Dnacos.home={home}",
        "-Djava.net.preferIPv4Stack=true",
        "-jar", NACOS_JAR,
        f"--spring.config.additional-location=file:{conf}/",
        f"--logging.config={conf}/nacos-logback.xml", "--server.max-http-header-size=524288",
        f"--server.port={port}", "--server.address=127.0.0.1", "--nacos.inetutils.ip-address=127.0.0.1",
        "--nacos.core.auth.enabled=false", "--server.tomcat.accesslog.enabled=false",
        "--nacos.istio.mcp.server.enabled=false",
    ]


def _rnacosEnvironment(home, port):
    """
    r-nacos' settings (its environment variables): its SDK and console
    ports on 127.0.0.1 (HTTP P, gRPC P + 1000, console P + 2000), its data
    in C{home}.
    """
    return {
        "RNACOS_SDK_HOST": "127.0.0.1", "RNACOS_CONSOLE_HOST": "127.0.0.1",
        "RNACOS_HTTP_PORT": str(port), "RNACOS_GRPC_PORT": str(port + 1000),
        "RNACOS_HTTP_CONSOLE_PORT": str(port + 2000), "RNACOS_DATA_DIR": os.path.join(home, "data"),
        "RNACOS_RAFT_NODE_ADDR": f"127.0.0.1:{port + 1000}",
    }


# The ports of a server P uses besides P: Nacos' client gRPC port, its
# cluster gRPC port and its Raft port (P - 1000); r-nacos' gRPC and console.
PORT_OFFSETS = {"nacos": (-1000, 1000, 1001), "rnacos": (1000, 2000)}


def _spawn(kind, directory, name, port, *, members=(), rnacosEnvironment=None):
    """
    Start a server of C{kind} (Nacos or r-nacos) at HTTP port C{port}, its
    home C{directory}/C{name}, and return its L{Server} at once (not yet
    ready: L{_ready}). C{members}: for Nacos, the HTTP ports of its
    cluster's members, itself among them (none: standalone);
    C{rnacosEnvironment}: more settings for r-nacos.
    """
    home = os.path.join(directory, name)
    os.makedirs(home, exist_ok=True)
    if kind == "nacos":
        if members:
            # Where Nacos' file lookup reads its members: its home's conf.
            os.makedirs(os.path.join(home, "conf"), exist_ok=True)
            with open(os.path.join(home, "conf", "cluster.conf"), "w") as f:
                f.write("".join(f"127.0.0.1:{member}\n" for member in members))
        argv, env = _nacosCommand(home, port, clustered=bool(members)), dict(os.environ)
    else:
        argv, env = [RNACOS], dict(os.environ, **_rnacosEnvironment(home, port), **(rnacosEnvironment or {}))
    logPath = os.path.join(directory, name + ".log")
    log = open(logPath, "ab")  # a restarted member's log goes on
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=home, env=env)
    return Server(kind, name, port, process, logPath, lambda: _stopTree(process, [log]), home=home)


def _ready(server, deadline):
    """
    Wait until C{server} answers a C{ServerCheckRequest}; a clear exit if it
    exits first or C{deadline} (of C{time.monotonic}) passes.
    """
    while not _serverChecked(server.grpcAddress):
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{server.label} ({server.name}) did not get ready:\n{server.logTail()}")
        time.sleep(0.2)


def startServer(kind, directory, name, *, checkout=None, distroArgs=(), rnacosEnvironment=None):
    """
    Start a server of C{kind} on free ports of 127.0.0.1, its files in
    C{directory}; return its L{Server} once it answers. C{checkout}: for
    distro, the code of another checkout; C{distroArgs}: more options for
    a distro node; C{rnacosEnvironment}: more settings for r-nacos.
    """
    reason = missing(kind)
    if reason:
        raise SystemExit(reason)
    if kind == "distro":
        return _startDistro(directory, name, freePort(), checkout, distroArgs)
    server = _spawn(kind, directory, name, freePort(PORT_OFFSETS[kind]), rnacosEnvironment=rnacosEnvironment)
    try:
        _ready(server, time.monotonic() + START_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server


CLUSTER_KINDS = ("distro", "nacos", "rnacos")
CLUSTER_TIMEOUT = 60.0
# A Nacos member's naming answers only once its Raft is ready and its Distro
# has loaded the others' data (before, 503: "server is STARTING"); a load
# that finds a member not up yet is retried 30 s later (Nacos'
# nacos.core.protocol.distro.data.load.retryDelayMs), and each try may take
# its 30 s timeout.
NACOS_CLUSTER_TIMEOUT = 180.0


def startCluster(kind, directory, name, members, *, checkout=None):
    """
    Start C{members} servers of C{kind} as one cluster, as its documents
    say: distro nodes given one C{cluster.conf} of their peer ports; Nacos
    servers as C{startup.sh -p embedded} runs a cluster without MySQL, each
    with its own home and a C{conf/cluster.conf} there listing every
    member's HTTP port (their naming data goes between them by Distro, their
    configuration by Raft), all started at once (none answers before the
    configuration's Raft group has a leader), one caught in Nacos' startup
    deadlock restarted (L{_nacosMembersReady}); r-nacos nodes joined by Raft (the first initializes it,
    the others join it at the first's gRPC port; naming data then goes
    between them by its own Distro-like protocol). Return their L{Server}s
    once an instance registered at the first is listed by every other.
    """
    reason = missing(kind)
    if reason:
        raise SystemExit(reason)
    servers = []
    try:
        if kind == "distro":
            peers = [freePort((0,)) for _ in range(members)]
            conf = os.path.join(directory, name + "-cluster.conf")
            with open(conf, "w") as f:
                f.write("".join(f"127.0.0.1:{port}\n" for port in peers))
            for index, port in enumerate(peers):
                servers.append(startServer("distro", directory, f"{name}{index}", checkout=checkout, distroArgs=[
                    "--peer-listen", f"tcp:{port}:interface=127.0.0.1", "--cluster", conf]))
        elif kind == "nacos":
            ports = freePorts(members, PORT_OFFSETS["nacos"])
            for index, port in enumerate(ports):
                servers.append(_spawn("nacos", directory, f"{name}{index}", port, members=ports))
            _nacosMembersReady(servers, directory, ports)
        elif kind == "rnacos":
            for index in range(members):
                settings = {"RNACOS_RAFT_NODE_ID": str(index + 1), "RNACOS_RAFT_AUTO_INIT": str(index == 0).lower()}
                if index:
                    settings["RNACOS_RAFT_JOIN_ADDR"] = servers[0].grpcAddress
                servers.append(startServer("rnacos", directory, f"{name}{index}", rnacosEnvironment=settings))
        else:
            raise SystemExit(f"no cluster of {LABELS[kind]} here (of {', '.join(CLUSTER_KINDS)})")
        _replicating(servers, NACOS_CLUSTER_TIMEOUT if kind == "nacos" else CLUSTER_TIMEOUT)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


# A member of a Nacos cluster of JVMs started at once answers within about
# 70 s here; one caught in Nacos' startup deadlock never does: its first
# query of the configuration's Raft group, right on that group's leader
# event, finds no leader ("The Raft Group [nacos_config] did not find the
# Leader node"), and the aspect advising that failure waits for Spring's
# singleton lock, which its main thread holds while it waits for that query's
# dump (EmbeddedDumpService.init): the kind of deadlock of alibaba/nacos#8775
# and #12526. Such a member is restarted, its home and ports kept, as an
# operator restarts it, at most NACOS_RESTARTS times.
NACOS_MEMBER_TIMEOUT = 120.0
NACOS_RESTARTS = 2


def _nacosMembersReady(servers, directory, ports):
    """
    Wait until each Nacos member of C{servers} (at C{ports}, started just
    now) answers, restarting one that does not within
    L{NACOS_MEMBER_TIMEOUT} (L{NACOS_RESTARTS} times at most).
    """
    deadline = time.monotonic() + NACOS_MEMBER_TIMEOUT
    for index, port in enumerate(ports):
        for restart in range(NACOS_RESTARTS + 1):
            try:
                _ready(servers[index], deadline)
                break
            except SystemExit:
                if restart == NACOS_RESTARTS or servers[index].process.poll() is not None:
                    raise
            name = servers[index].name
            print(f"{name} did not answer within {NACOS_MEMBER_TIMEOUT:.0f}s (Nacos' startup deadlock, "
                  "alibaba/nacos#12526): restarting it", flush=True)
            servers[index].stop()
            servers[index] = _spawn("nacos", directory, name, port, members=ports)
            deadline = time.monotonic() + NACOS_MEMBER_TIMEOUT


def _replicating(servers, timeout):
    """
    Wait (at most C{timeout} seconds) until an instance registered at the
    first of C{servers} (Nacos' open API, ephemeral) is listed by every
    other; then remove it.
    """
    query = "serviceName=bench-cluster-ready&ip=127.0.0.77&port=1&ephemeral=true"

    def call(server, method, path):
        request = urllib.request.Request(f"http://{server.address}/nacos/v1/ns/{path}", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()

    deadline = time.monotonic() + timeout
    waiting = list(servers[1:])
    while True:
        try:
            call(servers[0], "POST", f"instance?{query}")
            waiting = [s for s in waiting if b"127.0.0.77" not in call(s, "GET", f"instance/list?{query}")]
        except OSError:
            pass
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"a {servers[0].label} cluster did not replicate within {timeout:.0f}s:\n"
                             + "\n".join(s.logTail() for s in waiting))
        time.sleep(0.5)
    call(servers[0], "DELETE", f"instance?{query}")


def printComparison(columns, baseline, short, *, width=18, formats=None, against=None):
    """
    Print C{columns} (a column's name: its figures, a row's label: a value
    or C{None}) side by side, then the ratios: distro's column over
    C{baseline}'s (named C{short} in the ratio's heading), each later
    column over distro's (or over the column C{against} names for it); a
    row with no value in any column is left out. C{formats}: a row's
    label: its format.
    """
    names = list(columns)
    ratios = [("distro", baseline)] + [(n, (against or {}).get(n, "distro")) for n in names[2:]]
    labels = [label for label in columns["distro"] if any(columns[n].get(label) is not None for n in columns)]
    first = max(len(label) for label in labels) + 2

    def shown(name):
        return short if name == baseline else name

    width = max(width, *(len(f"{shown(a)} / {shown(b)}") + 2 for a, b in ratios))

    def cell(value, form):
        return "-" if value is None else form.format(value)

    print(" " * first + "".join(f"{n:>{width}}" for n in names)
          + "".join(f"{shown(a) + ' / ' + shown(b):>{width}}" for a, b in ratios))
    for label in labels:
        form = (formats or {}).get(label, "{:,.1f}")
        line = f"{label:<{first}}" + "".join(f"{cell(columns[n].get(label), form):>{width}}" for n in names)
        for a, b in ratios:
            value, base = columns[a].get(label), columns[b].get(label)
            line += f"{'-' if value is None or not base else f'{value / base:.2f}x':>{width}}"
        print(line)
