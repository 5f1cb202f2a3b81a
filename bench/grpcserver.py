"""
What grpcio's Python server costs per unary call, in its two modes, with a
handler that does nothing: C{grpc.aio} (an asyncio loop, what the node's
Nacos port runs on) and the sync server (a thread pool, the other way to put
gRPC beside Twisted's reactor).

    python bench/grpcserver.py [--calls 60]

Each mode runs in a server process of its own on 127.0.0.1; 20 connections
with 8 calls in flight each (grpc.aio clients in this process) send 300-byte
requests that the server echoes. Printed per mode: calls/s and the server
process's CPU time (user + system) per call, the aio mode first as the
baseline of the ratio. This bounds what any Nacos request costs the node
before distro does anything with it (bench/nacos.py).
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
from concurrent import futures

import grpc
from grpc import aio

CONNECTIONS = 20
IN_FLIGHT = 8


def _identity(data):
    return data


def _cpu():
    times = os.times()
    return times.user + times.system


def _handlers(handler):
    return [grpc.method_handlers_generic_handler("Request", {
        "request": grpc.unary_unary_rpc_method_handler(
            handler, request_deserializer=_identity, response_serializer=_identity),
    })]


def serveAio():
    async def echo(data, context):
        return data

    async def main():
        server = aio.server()
        server.add_generic_rpc_handlers(_handlers(echo))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(_cpu(), flush=True)

    asyncio.run(main())


def serveSync():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    server.add_generic_rpc_handlers(_handlers(lambda data, context: data))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    for _ in sys.stdin:
        print(_cpu(), flush=True)


def measure(mode, calls):
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int(server.stdout.readline())

        def serverCpu():
            server.stdin.write("\n")
            server.stdin.flush()
            return float(server.stdout.readline())

        async def run():
            channels = [
                aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(CONNECTIONS)
            ]
            stubs = [c.unary_unary("/Request/request", request_serializer=_identity,
                                   response_deserializer=_identity) for c in channels]

            async def lane(stub, n):
                for _ in range(n):
                    await stub(b"x" * 300, timeout=30)

            await asyncio.gather(*[lane(s, 20) for s in stubs for _ in range(IN_FLIGHT)])  # warm up
            before = serverCpu()
            started = time.monotonic()
            await asyncio.gather(*[lane(s, calls) for s in stubs for _ in range(IN_FLIGHT)])
            elapsed = time.monotonic() - started
            used = serverCpu() - before
            for c in channels:
                await c.close()
            return elapsed, used

        elapsed, used = asyncio.run(asyncio.wait_for(run(), 300))
    finally:
        server.kill()
        server.wait()
    total = CONNECTIONS * IN_FLIGHT * calls
    return total / elapsed, used / total * 1e6


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=60, help="calls per lane (1..1000)")
    parser.add_argument("--serve", choices=["aio", "sync"], help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve == "aio":
        return serveAio()
    if options.serve == "sync":
        return serveSync()
    if not 1 <= options.calls <= 1000:
        raise SystemExit("--calls 1..1000")
    results = {mode: measure(mode, options.calls) for mode in ("aio", "sync")}
    base = results["aio"][1]
    print(f"grpcio {grpc.__version__}, echo handler, {CONNECTIONS} connections x {IN_FLIGHT} in flight")
    for mode, (rate, cost) in results.items():
        print(f"  {mode:<5} {rate:>8,.0f} calls/s, server CPU {cost:6.1f} us/call "
              f"({cost / base:.2f}x the aio server's)")


if __name__ == "__main__":
    main(sys.argv[1:])
