"""
The Nacos gRPC port beside distro's own client port, with auth off and on,
and against an earlier checkout's, in the same run.

    python bench/nacos.py [-c 20] [--pipeline 8] [-m 500] [--rate 50] [--seconds 5]
                          [--before CHECKOUT]

C{twistd distro-node} processes (standalone, on 127.0.0.1), one after the
other: this checkout's with auth off (distro's port, then the Nacos port),
this checkout's with auth on (C{auth_tokens}: every Nacos request carries
its C{accessToken} header), and with C{--before} the Nacos port of the code
in another checkout (a C{git worktree} of an earlier commit), auth off.
Measured on each:

1. Registrations: C{-c} connections, each with C{--pipeline} requests in
   flight, C{-m} registrations each. On distro's port, C{register} of a new
   instance; on the Nacos port, C{InstanceRequest} C{registerInstance} (a
   Nacos connection holds one entry per service, so each registration
   replaces the last: a change of the view all the same). Printed:
   registrations/s and the node's CPU time (user + system, C{/proc}) per
   registration.
2. Change to a subscriber: one writer changes its instance C{--rate} times a
   second for C{--seconds}; a subscriber on the same node sees each change
   (distro: a C{push}; Nacos: a C{NotifySubscriberRequest}, acked). Printed:
   p50 and p99 of write sent -> change seen.

The Nacos client is grpcio's C{grpc.aio} in this process, speaking the wire
of the Nacos SDKs (docs/nacos.md); the distro client is raw sockets, as in
C{bench/cpu.py}. The ratios are each Nacos column over distro's port, and
auth on over auth off. Traffic goes to loopback only; every wait is bounded;
each node is stopped at the end of its part.
"""

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from grpc import aio  # noqa: E402

from cpu import closeOrderly, cpuSeconds, load  # noqa: E402
from etcd import comparisonOptions, distroLatencies, percentile  # noqa: E402
from largeclient import counted, freePorts  # noqa: E402
from register import Child, dataDirArgs  # noqa: E402

from distro.nacos.payload import Payload, decode, encode  # noqa: E402


def _identity(data):
    return data


TOKEN = "bench-token"


def payload(type_, headers=None, **body):
    return encode(Payload(type_, headers or {}, "", json.dumps(body).encode()))


class NacosConnection:
    """
    One Nacos connection of the bench: a channel of its own, set up.
    """

    def __init__(self, address, token=None):
        self.headers = {"accessToken": token} if token else {}
        self.channel = aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        self.unary = self.channel.unary_unary(
            "/Request/request", request_serializer=_identity, response_deserializer=_identity
        )
        self.stream = None

    async def setUp(self):
        self.stream = self.channel.stream_stream(
            "/BiRequestStream/requestBiStream", request_serializer=_identity,
            response_deserializer=_identity,
        )()
        await self.stream.write(payload("ConnectionSetupRequest", clientVersion="bench",
                                        labels={"source": "sdk", "module": "naming"}))
        for _ in range(200):  # the set up reaches the node asynchronously
            reply = await self.request("HealthCheckRequest")
            if reply["errorCode"] != 301:
                return
            await asyncio.sleep(0.01)
        raise SystemExit("a Nacos connection did not set up")

    async def request(self, type_, **body):
        reply = decode(await self.unary(payload(type_, self.headers, **body), timeout=30))
        return json.loads(reply.body)

    async def close(self):
        if self.stream is not None:
            self.stream.cancel()
        await self.channel.close()


async def nacosRegistrations(address, options, token):
    connections = [NacosConnection(address, token) for _ in range(options.connections)]
    for c in connections:
        await c.setUp()

    async def worker(n, connection, lane):
        for i in range(lane, options.requests, options.pipeline):
            reply = await connection.request(
                "InstanceRequest", namespace="public", serviceName=f"nacos-{n}",
                groupName="DEFAULT_GROUP", type="registerInstance",
                instance={"ip": f"10.{n}.{i // 256}.{i % 256}", "port": 8080,
                          "metadata": {"zone": "z1"}, "ephemeral": True},
            )
            if reply["resultCode"] != 200:
                raise SystemExit(f"register failed: {reply}")

    started = time.monotonic()
    await asyncio.gather(*[
        worker(n, c, lane) for n, c in enumerate(connections) for lane in range(options.pipeline)
    ])
    elapsed = time.monotonic() - started
    for c in connections:
        await c.close()
    return elapsed


async def nacosLatencies(address, options, token):
    subscriber, writer = NacosConnection(address, token), NacosConnection(address, token)
    await subscriber.setUp()
    await writer.setUp()
    await subscriber.request("SubscribeServiceRequest", serviceName="nacos-latency",
                             clusters="", subscribe=True)
    count = int(options.rate * options.seconds)
    sent, latencies = [], {}

    async def read():
        while len(latencies) < count:
            push = decode(await subscriber.stream.read())
            at = time.monotonic()
            body = json.loads(push.body)
            await subscriber.stream.write(payload(
                "NotifySubscriberResponse", resultCode=200, errorCode=0, requestId=body["requestId"]))
            for host in body["serviceInfo"]["hosts"]:
                seen = int(host["metadata"]["seq"])
                for seq in range(min(seen + 1, len(sent))):
                    latencies.setdefault(seq, (at - sent[seq]) * 1000)

    reader = asyncio.ensure_future(read())
    started = time.monotonic()
    for seq in range(count):
        delay = started + seq / options.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(time.monotonic())
        asyncio.ensure_future(writer.request(
            "InstanceRequest", serviceName="nacos-latency", type="registerInstance",
            instance={"ip": "10.99.0.1", "port": 80, "metadata": {"seq": str(seq)}, "ephemeral": True},
        ))
    await asyncio.wait_for(reader, options.seconds + 30)
    await subscriber.close()
    await writer.close()
    return sorted(latencies.values())


def startNode(directory, name, extra=(), checkout=None):
    """
    A node with its Nacos port on; C{checkout}: the code of another
    checkout (first on its C{sys.path}). Return C{(child, client address,
    Nacos address)} once it serves.
    """
    (nacosPort,) = freePorts(1)
    boot = "from twisted.scripts.twistd import run; run()"
    if checkout is not None:
        boot = f"import sys; sys.path.insert(0, {os.path.abspath(checkout)!r}); " + boot
    node = Child(name, [
        sys.executable, "-c", boot, "-n", "--pidfile=", "distro-node", *dataDirArgs(checkout), "--node-id", name,
        "--listen", "tcp:0:interface=127.0.0.1",
        "--nacos-listen", f"tcp:{nacosPort}:interface=127.0.0.1", *extra,
        "--heartbeat-ms", "600000", "--idle-timeout-ms", "1200000", "--port-file"], directory)
    address = node.waitAddress()
    deadline = time.monotonic() + 30
    while counted(*address, "none", token=TOKEN) is None:
        if time.monotonic() > deadline:
            node.stop()
            raise SystemExit(f"{name} did not get ready:\n{node.logTail()}")
        time.sleep(0.05)
    return node, address, f"127.0.0.1:{nacosPort}"


def nacosPart(node, nacosAddress, options, token=None):
    """
    The Nacos port's registrations (elapsed, node CPU) and latencies.
    """
    pid = node.process.pid
    before = cpuSeconds(pid)
    elapsed = asyncio.run(nacosRegistrations(nacosAddress, options, token))
    cpu = cpuSeconds(pid) - before
    latencies = asyncio.run(nacosLatencies(nacosAddress, options, token))
    return elapsed, cpu, latencies


def main(argv):
    before = None
    if "--before" in argv:
        at = argv.index("--before")
        before = argv[at + 1]
        argv = argv[:at] + argv[at + 2:]
        if not os.path.isfile(os.path.join(before, "distro", "nacos", "service.py")):
            raise SystemExit(f"--before {before}: not a checkout of distro with a Nacos port")
    options = comparisonOptions(argv, __doc__.split("\n\n")[0])
    total = options.connections * options.requests
    directory = tempfile.mkdtemp(prefix="distro-nacos-")
    secured = os.path.join(directory, "auth.toml")
    with open(secured, "w") as f:
        f.write(f'[auth_tokens]\n"{TOKEN}" = ["*"]\n')
    columns = {}
    try:
        node, address, nacosAddress = startNode(directory, "open", ["--http-listen", ""])
        try:
            pid = node.process.pid
            start = cpuSeconds(pid)
            distroElapsed, connections = load(address, options, "distro")
            distroCpu = cpuSeconds(pid) - start
            closeOrderly(connections)
            columns["distro port"] = (distroElapsed, distroCpu,
                                      distroLatencies([address, address, address], options))
            columns["Nacos, auth off"] = nacosPart(node, nacosAddress, options)
        finally:
            node.stop()
        node, _, nacosAddress = startNode(directory, "secured", ["--http-listen", "", "--config", secured])
        try:
            columns["Nacos, auth on"] = nacosPart(node, nacosAddress, options, TOKEN)
        finally:
            node.stop()
        if before is not None:
            node, _, nacosAddress = startNode(directory, "before", [], checkout=before)
            try:
                columns["Nacos, before"] = nacosPart(node, nacosAddress, options)
            finally:
                node.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    us = 1e6
    rows = [
        ("registrations/s", lambda e, c, l: total / e, "{:,.0f}"),
        ("node CPU per registration (us)", lambda e, c, l: c / total * us, "{:.1f}"),
        ("change -> subscriber, p50 (ms)", lambda e, c, l: percentile(l, 0.5), "{:.2f}"),
        ("change -> subscriber, p99 (ms)", lambda e, c, l: percentile(l, 0.99), "{:.2f}"),
    ]
    print(f"{total} registrations per port ({options.connections} connections x "
          f"{options.requests}, {options.pipeline} in flight); "
          f"{int(options.rate * options.seconds)} changes at {options.rate:g}/s; "
          f"grpcio {grpc.__version__}" + (f"; before: {before}" if before else ""))
    names = list(columns)
    print(f"{'':<32}" + "".join(f"{n:>17}" for n in names)
          + "".join(f"{n.split(', ')[1] + ' / distro':>20}" for n in names[1:]) + f"{'on / off':>10}")
    for label, measure, form in rows:
        values = [measure(*columns[n]) for n in names]
        line = f"{label:<32}" + "".join(f"{form.format(v):>17}" for v in values)
        line += "".join(f"{v / values[0]:>19.2f}x" for v in values[1:])
        line += f"{values[2] / values[1]:>9.2f}x"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
