"""
A client that pipelines queries and never reads its replies: how much memory
does it cost the node?

    python bench/nonreader.py [--instances 2000] [--queries 20000] [--seconds 10]

Starts a fresh C{twistd distro-node} on 127.0.0.1 port 0, registers one
service of C{--instances} instances (over a connection that stays open), then
opens a second connection that says C{hello} and writes C{--queries} C{query}
frames for that service as fast as the node takes them, for at most
C{--seconds}, never reading. It prints the node's resident memory (VmRSS)
before, and at its highest while the non-reader is connected, and compares
the growth with what answering every query it sent would have buffered (the
baseline: the node writing every reply whether or not the client reads).
Traffic goes to loopback only; every wait is bounded.
"""

import argparse
import os
import shutil
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from register import Child, residentBytes  # noqa: E402

from distro import wire  # noqa: E402


def readFrame(sock):
    """
    Read one frame (blocking, with the socket's timeout) and decode it.
    """
    head = _readExactly(sock, 4)
    (length,) = struct.unpack("!I", head)
    return wire.decode(_readExactly(sock, length))


def takeFrames(buffer):
    """
    Decode and remove the whole frames at the start of C{buffer} (a
    C{bytearray} of what a socket gave); return them.
    """
    messages = []
    while len(buffer) >= 4:
        length = int.from_bytes(buffer[:4], "big")
        if len(buffer) < 4 + length:
            break
        messages.append(wire.decode(bytes(buffer[4 : 4 + length])))
        del buffer[: 4 + length]
    return messages


def _readExactly(sock, size):
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise SystemExit("the node closed the connection")
        data += chunk
    return bytes(data)


def request(sock, message):
    sock.sendall(wire.encode(message))
    reply = readFrame(sock)
    if reply.get("op") != "ok":
        raise SystemExit(f"{message['op']} failed: {reply}")
    return reply


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="distro-nonreader-")
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "", "--node-id", "nonreader",
            "--listen", "tcp:0:interface=127.0.0.1", "--heartbeat-ms", "600000",
            "--idle-timeout-ms", "1200000", "--port-file"]
    node = Child("node", argv, directory)
    try:
        host, port = node.waitAddress()
        service = {"name": "big"}
        publisher = socket.create_connection((host, port), timeout=30)
        request(publisher, {"op": "hello", "id": 1, "proto": 1})
        instances = [{"ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "port": 8080,
                      "metadata": {"version": "1.2.3", "zone": "a"}}
                     for i in range(options.instances)]
        request(publisher, {"op": "batch_register", "id": 2, "service": service,
                            "instances": instances})
        view = request(publisher, {"op": "query", "id": 3, "service": service})
        replySize = len(wire.encode(view))
        time.sleep(0.5)
        before = residentBytes(node.process.pid)

        reader = socket.create_connection((host, port), timeout=30)
        request(reader, {"op": "hello", "id": 1, "proto": 1})
        reader.setblocking(False)
        queries = [wire.encode({"op": "query", "id": i + 2, "service": service})
                   for i in range(options.queries)]
        frames = b"".join(queries)
        sent = 0
        peak = before
        deadline = time.monotonic() + options.seconds
        while time.monotonic() < deadline:
            if sent < len(frames):
                try:
                    sent += reader.send(frames[sent:sent + 65536])
                    continue
                except BlockingIOError:
                    pass
            peak = max(peak, residentBytes(node.process.pid))
            time.sleep(0.05)
        peak = max(peak, residentBytes(node.process.pid))
        queriesSent, total = 0, 0
        for query in queries:
            total += len(query)
            if total > sent:
                break
            queriesSent += 1
        stillServing = request(publisher, {"op": "ping", "id": 4})
        reader.close()
        publisher.close()
    finally:
        node.stop()
        shutil.rmtree(directory, ignore_errors=True)

    growth = peak - before
    baseline = queriesSent * replySize
    mb = 1024 * 1024
    print(f"view: {options.instances} instances, a reply is {replySize / 1024:.0f} KiB")
    print(f"non-reader: about {queriesSent} queries taken by the kernel in {options.seconds:g} s, "
          f"never read")
    print(f"node RSS: {before / mb:.1f} MiB before, {peak / mb:.1f} MiB at most "
          f"(growth {growth / mb:.1f} MiB); other clients still served: "
          f"{stillServing['op'] == 'ok'}")
    print(f"baseline (every reply to what it sent buffered): {baseline / mb:.1f} MiB; "
          f"ratio growth / baseline: {growth / baseline if baseline else 0:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
