"""
The Nacos gRPC port beside distro's own client port, on the same node, in
the same run.

    python bench/nacos.py [-c 20] [--pipeline 8] [-m 500] [--rate 50] [--seconds 5]

One C{twistd distro-node} process (standalone, on 127.0.0.1, both ports on).
Measured on each port, one after the other:

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
C{bench/cpu.py}. The ratio column is Nacos over distro. Traffic goes to
loopback only; every wait is bounded; the node is stopped at the end.
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
from register import Child  # noqa: E402

from distro.nacos.payload import Payload, decode, encode  # noqa: E402


def _identity(data):
    return data


def payload(type_, **body):
    return encode(Payload(type_, {}, "", json.dumps(body).encode()))


class NacosConnection:
    """
    One Nacos connection of the bench: a channel of its own, set up.
    """

    def __init__(self, address):
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
        reply = decode(await self.unary(payload(type_, **body), timeout=30))
        return json.loads(reply.body)

    async def close(self):
        if self.stream is not None:
            self.stream.cancel()
        await self.channel.close()


async def nacosRegistrations(address, options):
    connections = [NacosConnection(address) for _ in range(options.connections)]
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


async def nacosLatencies(address, options):
    subscriber, writer = NacosConnection(address), NacosConnection(address)
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


def main(argv):
    options = comparisonOptions(argv, __doc__.split("\n\n")[0])
    total = options.connections * options.requests
    directory = tempfile.mkdtemp(prefix="distro-nacos-")
    (nacosPort,) = freePorts(1)
    node = Child("node", [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "distro-node", "--node-id", "bench",
        "--listen", "tcp:0:interface=127.0.0.1",
        "--nacos-listen", f"tcp:{nacosPort}:interface=127.0.0.1", "--http-listen", "",
        "--heartbeat-ms", "600000", "--idle-timeout-ms", "1200000", "--port-file"], directory)
    try:
        address = node.waitAddress()
        deadline = time.monotonic() + 30
        while counted(*address, "none") is None:
            if time.monotonic() > deadline:
                raise SystemExit("the node did not get ready")
            time.sleep(0.05)
        pid = node.process.pid
        before = cpuSeconds(pid)
        distroElapsed, connections = load(address, options, "distro")
        distroCpu = cpuSeconds(pid) - before
        closeOrderly(connections)
        distroLatency = distroLatencies([address, address, address], options)
        nacosAddress = f"127.0.0.1:{nacosPort}"
        before = cpuSeconds(pid)
        nacosElapsed = asyncio.run(nacosRegistrations(nacosAddress, options))
        nacosCpu = cpuSeconds(pid) - before
        nacosLatency = asyncio.run(nacosLatencies(nacosAddress, options))
    finally:
        node.stop()
        shutil.rmtree(directory, ignore_errors=True)
    us = 1e6
    rows = [
        ("registrations/s", total / distroElapsed, total / nacosElapsed, "{:,.0f}"),
        ("node CPU per registration (us)", distroCpu / total * us, nacosCpu / total * us, "{:.1f}"),
        ("change -> subscriber, p50 (ms)", percentile(distroLatency, 0.5),
         percentile(nacosLatency, 0.5), "{:.2f}"),
        ("change -> subscriber, p99 (ms)", percentile(distroLatency, 0.99),
         percentile(nacosLatency, 0.99), "{:.2f}"),
    ]
    print(f"{total} registrations per port ({options.connections} connections x "
          f"{options.requests}, {options.pipeline} in flight); {len(nacosLatency)} changes at "
          f"{options.rate:g}/s; one node, grpcio {grpc.__version__}")
    print(f"{'':<34} {'distro port':>12} {'Nacos port':>12} {'Nacos / distro':>15}")
    for label, d, n, form in rows:
        print(f"{label:<34} {form.format(d):>12} {form.format(n):>12} {n / d:>14.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
