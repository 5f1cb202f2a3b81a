"""
Many idle Nacos SDK connections on one server (issue 19: a Java fleet opens
a gRPC connection per SDK instance): how long N connections take to set up
at once, what each idle one costs the server in memory, and what the server
spends while they all sit idle; on distro and, in the same run, on the real
Nacos server and r-nacos.

    python bench/nacosidle.py [--connections 2000] [--idle 10]
                              [--servers distro,nacos,rnacos]

Each server fresh (L{servers}: distro a standalone C{twistd distro-node};
Nacos and r-nacos as C{bench/servers/setup.sh} installed them, standalone,
auth off) on 127.0.0.1. First N sessions of distro's own port (hello, then
nothing), the baseline; then, on each server, N Nacos connections as the
SDKs make them (grpcio channels in this process: the bi-stream's
C{ConnectionSetupRequest}, then a C{HealthCheckRequest} until the server
answers it), all at once. Printed per column: the time until every
connection is set up (distro's own port one after another, the Nacos ports
all at once; the client in this process shares the machine's cores), the
server's RSS per connection (RSS of its process tree with them, less RSS
before, once idle, over N: a JVM's heap pages stay resident once touched,
so for Nacos also its heap in use after a full collection, with them less
before, over N), and its CPU per second over C{--idle} seconds of
idleness (gRPC keepalives and the server's own timers); the ratio of
distro's Nacos port to its own port, and of the others to distro's Nacos
port. With Nacos among the servers the bench runs in a network namespace of
its own (loopback only; Nacos binds every interface). Traffic goes to
loopback only; every wait is bounded; each server is stopped at the end of
its part.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

from nacos import NacosConnection, payload  # noqa: E402
from nonreader import request  # noqa: E402
from distro.nacos.payload import decode  # noqa: E402
from servers import LABELS, addServersOption, chosenKinds, prepareNetwork, printComparison, startServer  # noqa: E402

SETUP_TIMEOUT = 300
# distro's node as the bench of its Nacos port has always run it: no cap of
# connections per address (they all come from 127.0.0.1), no heartbeats.
FORMATS = {"set up (s)": "{:.2f}", "server CPU while idle (ms/s)": "{:.2f}"}
DISTRO_ARGS = ("--max-connections-per-ip", "0", "--heartbeat-ms", "600000", "--idle-timeout-ms", "1200000")


async def idleFigures(server, options, setUp):
    """
    Set up C{options.connections} connections with C{setUp} (returning
    what to close them with); the set-up time, RSS per connection and CPU
    per second of idleness of C{server}.
    """
    await asyncio.to_thread(server.settledCpu)
    before, heapBefore = server.rss(), await asyncio.to_thread(server.liveHeap)
    started = time.monotonic()
    close = await setUp()
    try:
        setup = time.monotonic() - started
        await asyncio.to_thread(server.settledCpu, 1.0)
        memory = server.rss() - before
        heap = await asyncio.to_thread(server.liveHeap)
        cpu = server.cpuSeconds()
        await asyncio.sleep(options.idle)
        idle = (server.cpuSeconds() - cpu) / options.idle
    finally:
        await close()
    return {"set up (s)": setup, "server RSS per connection (KB)": memory / options.connections / 1024,
            "JVM heap in use per connection (KB)": None if heap is None else
            (heap - heapBefore) / options.connections / 1024,
            "server CPU while idle (ms/s)": idle * 1000}


def nativePart(directory, options):
    server = startServer("distro", directory, "idle-native", distroArgs=DISTRO_ARGS)

    async def setUp():
        sockets = []
        for _ in range(options.connections):
            sock = socket.create_connection(server.nativeAddress, timeout=10)
            request(sock, {"op": "hello", "id": 1, "proto": 1})
            sockets.append(sock)

        async def close():
            for sock in sockets:
                sock.close()
        return close

    try:
        return asyncio.run(idleFigures(server, options, setUp))
    finally:
        server.stop()


async def answerDetections(connection):
    """
    Answer the server's C{ClientDetectionRequest}s on C{connection}'s
    stream, as an SDK does (Nacos asks a connection silent for 20 s and
    drops it if it does not answer).
    """
    while True:
        message = await connection.stream.read()
        if message is grpc.aio.EOF:
            return
        push = decode(message)
        if push.type == "ClientDetectionRequest":
            body = json.loads(push.body)
            await connection.stream.write(payload(
                "ClientDetectionResponse", resultCode=200, errorCode=0, requestId=body.get("requestId")))


def nacosPart(directory, kind, options):
    server = startServer(kind, directory, f"idle-{kind}", distroArgs=DISTRO_ARGS)

    async def setUp():
        connections = [NacosConnection(server.grpcAddress) for _ in range(options.connections)]
        await asyncio.wait_for(asyncio.gather(*(c.setUp() for c in connections)), SETUP_TIMEOUT)
        readers = [asyncio.ensure_future(answerDetections(c)) for c in connections]

        async def close():
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(*(c.close() for c in connections))
        return close

    try:
        return asyncio.run(idleFigures(server, options, setUp))
    finally:
        server.stop()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=10.0)
    addServersOption(parser)
    options = parser.parse_args(argv)
    kinds = chosenKinds(options)
    prepareNetwork(kinds)
    directory = tempfile.mkdtemp(prefix="distro-nacosidle-")
    columns = {}
    try:
        print("distro's own port...", flush=True)
        columns["distro own port"] = nativePart(directory, options)
        for kind in kinds:
            print(f"{LABELS[kind]}, its Nacos gRPC port...", flush=True)
            columns[LABELS[kind]] = nacosPart(directory, kind, options)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{options.connections} idle connections per server; {options.idle:g} s idle")
    print("the first column: distro's own port; the others: each server's Nacos gRPC port")
    printComparison(columns, "distro own port", "own", width=16, formats=FORMATS)


if __name__ == "__main__":
    main(sys.argv[1:])
