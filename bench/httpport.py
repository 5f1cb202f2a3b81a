"""
Registrations over the HTTP port (Nacos' open API, heartbeat clients) beside
distro's own client port and the Nacos gRPC port, on the same node, in the
same run.

    python bench/httpport.py [-c 20] [--pipeline 8] [-m 500]

One standalone C{twistd distro-node} (on 127.0.0.1) with its three ports.
On each, C{-c} connections register C{-m} instances each, with
C{--pipeline} requests in flight per connection:

- distro's port: C{register} of a new instance (as C{bench/cpu.py});
- the Nacos gRPC port: C{InstanceRequest} C{registerInstance} (as
  C{bench/nacos.py});
- the HTTP port: C{POST /nacos/v1/ns/instance} of a new C{ip:port}, each a
  heartbeat client of its own (HTTP/1.1 keep-alive, pipelined), as the v1
  clients of Nacos' SDKs send it.

Printed per port: registrations/s and the node's CPU time (user + system,
C{/proc}) per registration, and each over distro's port. Traffic goes to
loopback only; every wait is bounded; the node is stopped at the end.
"""

import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cpu import closeOrderly, cpuSeconds, load  # noqa: E402
from etcd import comparisonOptions  # noqa: E402
from largeclient import freePorts  # noqa: E402
from nacos import nacosRegistrations, startNode  # noqa: E402

REPLY_TIMEOUT = 30.0


async def _response(reader):
    """
    Read one HTTP/1.1 response (Content-Length or chunked); its status.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if not size:
                break
    return status


async def httpRegistrations(address, options):
    """
    The HTTP port's registrations; the wall time they took.
    """
    host, port = address.split(":")

    async def connection(n):
        reader, writer = await asyncio.open_connection(host, int(port))
        sent = done = 0
        while done < options.requests:
            while sent < options.requests and sent - done < options.pipeline:
                ip = f"10.{n}.{sent // 256}.{sent % 256}"
                writer.write(
                    f"POST /nacos/v1/ns/instance?serviceName=http-{n}&ip={ip}&port=8080&metadata=zone%3Dz1"
                    f" HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n".encode()
                )
                sent += 1
            status = await asyncio.wait_for(_response(reader), REPLY_TIMEOUT)
            if status != 200:
                raise SystemExit(f"register failed: HTTP {status}")
            done += 1
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*[connection(n) for n in range(options.connections)])
    return time.monotonic() - started


def main(argv):
    options = comparisonOptions(argv, __doc__.split("\n\n")[0])
    total = options.connections * options.requests
    directory = tempfile.mkdtemp(prefix="distro-http-")
    (httpPort,) = freePorts(1)
    columns = {}
    try:
        node, address, nacosAddress = startNode(
            directory, "http", ["--http-listen", f"tcp:{httpPort}:interface=127.0.0.1",
                                "--max-heartbeat-clients", str(total + 1)])
        try:
            pid = node.process.pid
            start = cpuSeconds(pid)
            elapsed, connections = load(address, options, "distro")
            columns["distro port"] = (elapsed, cpuSeconds(pid) - start)
            closeOrderly(connections)
            start = cpuSeconds(pid)
            elapsed = asyncio.run(nacosRegistrations(nacosAddress, options, None))
            columns["Nacos gRPC"] = (elapsed, cpuSeconds(pid) - start)
            start = cpuSeconds(pid)
            elapsed = asyncio.run(httpRegistrations(f"127.0.0.1:{httpPort}", options))
            columns["HTTP (v1)"] = (elapsed, cpuSeconds(pid) - start)
        finally:
            node.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{total} registrations per port ({options.connections} connections x "
          f"{options.requests}, {options.pipeline} in flight), one node")
    names = list(columns)
    print(f"{'':<32}" + "".join(f"{n:>14}" for n in names)
          + "".join(f"{n + ' / distro':>22}" for n in names[1:]))
    for label, measure, form in (
        ("registrations/s", lambda e, c: total / e, "{:,.0f}"),
        ("node CPU per registration (us)", lambda e, c: c / total * 1e6, "{:.1f}"),
    ):
        values = [measure(*columns[n]) for n in names]
        print(f"{label:<32}" + "".join(f"{form.format(v):>14}" for v in values)
              + "".join(f"{v / values[0]:>21.2f}x" for v in values[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
