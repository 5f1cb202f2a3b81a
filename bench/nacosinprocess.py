"""
The Nacos port's CPU per registration in process, without sockets: a real
node on a clock, its Nacos gRPC port's protocol fed the bytes an SDK's
connection sends (grpcio's header blocks, Nacos' InstanceRequest), its
replies taken and dropped. What the port and the node cost per request,
without the kernel's, the client's or the scheduler's share, so that a
change to the request path shows in a figure steadier than a run over
sockets (bench/nacos.py, bench/nacossdk.py) on a busy machine.

    python bench/nacosinprocess.py [--requests 5000] [--rounds 5] [--before CHECKOUT]

Each round registers C{--requests} instances, each in a service of its
own (as bench/nacossdk.py's SDKs do), C{--window} requests in a read, on a
fresh node; printed: the best round's CPU per registration, and with
C{--before} the same measured on an earlier checkout's code (in a
subprocess), with the ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(requests, window, rounds):
    """
    The best round's CPU seconds per registration, with this process'
    C{distro} (whatever checkout is first on C{sys.path}).
    """
    import struct

    import hpack
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from distro.nacos.payload import Payload, encode
    from distro.nacos.service import NacosService
    from tests._node import NodeHarness

    frame = struct.Struct(">HBBBI")

    def frameOf(kind, flags, streamId, payload):
        return frame.pack(len(payload) >> 8, len(payload) & 0xFF, kind, flags, streamId) + payload

    def message(type_, body):
        data = encode(Payload(type_, {}, "127.0.0.1", json.dumps(body).encode()))
        return struct.pack(">BI", 0, len(data)) + data

    best = None
    for _ in range(rounds):
        harness = NodeHarness()
        service = NacosService(harness.node, "tcp:0:interface=127.0.0.1", None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        server = service.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        server.makeConnection(transport)
        encoder = hpack.Encoder()
        base = [(b":path", b"/Request/request"), (b":authority", b"127.0.0.1:9848"), (b":method", b"POST"),
                (b":scheme", b"http"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                (b"grpc-accept-encoding", b"identity, deflate, gzip"), (b"grpc-timeout", b"3S"),
                (b"user-agent", b"grpc-python/1.85.4 grpc-c/58.0.0 (linux; chttp2)")]
        stream = [(b":path", b"/BiRequestStream/requestBiStream")] + base[1:]
        # The connection's window opened to 4 MiB, as grpcio opens it.
        setup = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frameOf(4, 0, 0, b"")
                 + frameOf(8, 0, 0, struct.pack(">I", 4 * 1024 * 1024 - 65535))
                 + frameOf(1, 4, 1, encoder.encode(stream))
                 + frameOf(0, 0, 1, message("ConnectionSetupRequest", {"labels": {"module": "naming"}})))
        server.dataReceived(setup)
        harness.clock.advance(0)
        streamId = 3
        reads = []
        five = struct.pack(">I", 5)
        for start in range(0, requests, window):
            read = []
            for index in range(start, min(start + window, requests)):
                # As nacos-sdk-python 3.x sends it (bench/nacossdk.py's
                # load): every field of the request and of the instance,
                # with gRPC's two window updates of 5 bytes (the stream's
                # and the connection's, for the reply's message header), in
                # the order grpcio writes them.
                body = {"headers": {}, "requestId": "", "module": "", "namespace": "public",
                        "serviceName": f"sdk-0-{index}", "groupName": "DEFAULT_GROUP", "type": "registerInstance",
                        "instance": {"instanceId": "", "ip": f"10.0.{index // 250}.{index % 250 + 1}",
                                     "port": 8080, "weight": 1.0, "healthy": True, "enabled": True,
                                     "ephemeral": True, "clusterName": "DEFAULT", "serviceName": "",
                                     "metadata": {"zone": "z1"}}}
                read.append(frameOf(1, 4, streamId, encoder.encode(base)) + frameOf(8, 0, streamId, five)
                            + frameOf(0, 1, streamId, message("InstanceRequest", body)) + frameOf(8, 0, 0, five))
                streamId += 2
            reads.append(b"".join(read))
        transport.clear()
        began = time.process_time()
        made = 0
        taken = 0
        for read in reads:
            # A read's requests, answered before the next read (a window
            # of requests in flight, as an SDK keeps), after the window
            # given back for the replies taken (as grpcio gives it back:
            # never short of it, however many requests).
            if taken:
                read = frameOf(8, 0, 0, struct.pack(">I", taken)) + read
            server.dataReceived(read)
            made = min(made + window, requests)
            taken = 0
            for _ in range(100):
                harness.clock.advance(0)
                taken += len(transport.value())
                transport.clear()
                if harness.node.counts()["instances"] == made:
                    break
        spent = time.process_time() - began
        answered = harness.node.counts()["instances"]
        if answered != requests:
            raise SystemExit(f"{answered} of {requests} registrations made")
        best = spent if best is None else min(best, spent)
    return best / requests


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", default=None, help="an earlier checkout of distro")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.json:
        print(json.dumps(measure(options.requests, options.window, options.rounds)))
        return
    sys.path.insert(0, ROOT)
    now = measure(options.requests, options.window, options.rounds)
    print(f"{options.requests} Nacos registrations in process, {options.window} per read, best of {options.rounds}")
    print(f"  this checkout: {now * 1e6:.1f} us per registration")
    if options.before:
        done = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.path[:0] = [{os.path.abspath(options.before)!r}, {ROOT!r}]; "
             "sys.argv[0] = 'nacosinprocess'; import runpy; "
             f"sys.argv[1:] = ['--json', '--requests', '{options.requests}', '--window', '{options.window}', "
             f"'--rounds', '{options.rounds}']; runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')"],
            capture_output=True, text=True, check=True)
        before = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  before ({options.before}): {before * 1e6:.1f} us per registration; "
              f"this checkout / before: {now / before:.2f}x")


if __name__ == "__main__":
    main()
