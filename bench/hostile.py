"""
Hostile clients on the Nacos gRPC port: what each attack costs the node in
memory, and how long a msgpack client's ping waits meanwhile.

    python bench/hostile.py [--seconds 6] [--hosts 10000] [ATTACK ...]

One C{twistd distro-node} (standalone, 127.0.0.1) holds a view of
C{--hosts} instances (a ServiceQuery reply of several MB). Each attack runs
C{--seconds} against a fresh node, from raw HTTP/2 clients of this script
(the C{h2} library over sockets, misbehaving as grpcio cannot), while a
msgpack client pings the node every 20 ms from a process of its own.
Printed per attack: node RSS growth (from before the attack to its
highest), the worst and p99 ping, and what the attack did. The baseline is
the same node idle for the same time. On a 2-core machine the attack's
clients, the pinger and the node share the cores: a ping also waits for
the scheduler. So the node's own figure is printed too: its longest
reactor turn (timed calls plus the reads and writes of one poll), timed
inside the node by bench/probe, and the longest garbage collector pause the
node logged meanwhile (the first full collection after the big view was
made walks all of it; later ones walk only what is new, see
distro/collector.py).

Attacks (all with no credentials):
  nowindow     a set-up connection that grants no HTTP/2 window sends 100
               ServiceQueryRequests for the big view, and stays
  silentsubs   10 set-up connections with no window subscribe to the big
               view; a writer changes it every 200 ms
  decoder      connections send an 8.4 MB message of 4M varint fields
               before their set up, over and over
  labels       connections send an 8.4 MB ConnectionSetupRequest of 2.8M
               empty maps in its labels
  clusters     40 subscriptions whose cluster filter is 7 MB of " ,"
  unaryonly    1,000 connections that only ever send ServerCheckRequest
  logflood     a set-up stream sends one-byte payloads as fast as it can
  rapidreset   connections open streams and reset them at once, as fast as
               they can (HTTP/2's "rapid reset"), reconnecting when dropped
  many         2,000 connections set up and subscribed, held (not an attack:
               what many SDKs cost)
  churn        rounds of 200 connections that set up, register and leave
  batches      a connection sends full batches of 10,000 instances (each
               replacing the last) back to back; a subscriber reads them
  subs10k      one connection subscribes to 10,000 services, in bursts
  storm        50 connections send registrations as fast as they can

Traffic goes to loopback only; every wait is bounded; each node is stopped
at the end of its attack.
"""

import argparse
import json
import multiprocessing
import os
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402

from largeclient import freePorts  # noqa: E402
from nonreader import readFrame, request  # noqa: E402
from register import Child, residentBytes  # noqa: E402

from distro import wire  # noqa: E402
from distro.nacos.payload import Payload, encode  # noqa: E402

ATTACKS = ["baseline", "nowindow", "silentsubs", "decoder", "labels", "clusters", "unaryonly", "logflood",
           "rapidreset", "many", "churn", "batches", "subs10k", "storm"]


def grpcMessage(type_, body=b"{}", raw=None):
    payload = raw if raw is not None else encode(Payload(type_, {}, "", body))
    return struct.pack(">BI", 0, len(payload)) + payload


class RawClient:
    """
    One HTTP/2 connection of this script, driven by L{Pump}: it answers
    pings (h2 does) and never opens a window unless C{window} is None.
    """

    def __init__(self, address, window=0):
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.setblocking(False)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.window = window
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.h2.initiate_connection()
        self.outgoing = bytearray()
        self.closed = False
        self.flush()

    def call(self, path, message, end=True):
        streamId = self.h2.get_next_available_stream_id()
        self.h2.send_headers(streamId, [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", path), (b":authority", b"n"),
            (b"content-type", b"application/grpc"), (b"te", b"trailers")])
        self.send(streamId, message, end)
        return streamId

    def send(self, streamId, data, end=False):
        size = self.h2.max_outbound_frame_size
        for i in range(0, max(len(data), 1), size):
            window = self.h2.local_flow_control_window(streamId)
            chunk = data[i:i + min(size, window)] if window else b""
            if not chunk and data:
                break  # the server's window is shut: what is sent is sent
            self.h2.send_data(streamId, chunk, end_stream=end and i + size >= len(data))
        self.flush()

    def flush(self):
        self.outgoing += self.h2.data_to_send()
        while self.outgoing and not self.closed:
            try:
                sent = self.sock.send(self.outgoing[:1 << 20])
            except BlockingIOError:
                return
            except OSError:
                self.closed = True
                return
            del self.outgoing[:sent]

    def readable(self):
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.h2.receive_data(data)
        except Exception:
            self.closed = True
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived) and self.window is None:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
        self.flush()


class Pump(threading.Thread):
    """
    Reads every L{RawClient} it holds until stopped.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.running = True
        self.clients = []

    def connect(self, address, window=None):
        """
        A new L{RawClient} to C{address}, read by this pump.
        """
        client = RawClient(address, window)
        self.add(client)
        return client

    def add(self, client):
        with self.lock:
            self.clients.append(client)
            self.selector.register(client.sock, selectors.EVENT_READ, client)

    def run(self):
        while self.running:
            with self.lock:
                ready = self.selector.select(0.05) if self.clients else []
                for key, _ in ready:
                    client = key.data
                    client.readable()
                    if client.closed:
                        self.selector.unregister(client.sock)
                        self.clients.remove(client)
                for client in self.clients:
                    client.flush()
            if not ready:
                time.sleep(0.005)

    def stop(self):
        self.running = False
        self.join(5)
        for client in self.clients:
            client.sock.close()

    def count(self):
        with self.lock:
            return sum(1 for c in self.clients if not c.closed)


PUMP = None  # the attack's Pump: its lock guards every client's h2 state


def _guarded(function, *args, **kwargs):
    """
    Run C{function} under the pump's lock; C{None} if the node closed the
    connection meanwhile (what a refused attack often gets).
    """
    with PUMP.lock:
        try:
            return function(*args, **kwargs)
        except (h2.exceptions.H2Error, OSError):
            return None


def setUp(client):
    return _guarded(client.call, b"/BiRequestStream/requestBiStream",
                    grpcMessage("ConnectionSetupRequest", b'{"labels": {"module": "naming"}}'), end=False)


def setUpNow(pump, nacos):
    """
    A new connection, set up, once the node had time to take its set up.
    """
    client = pump.connect(nacos)
    setUp(client)
    time.sleep(0.3)
    return client


def unary(client, type_, body):
    return _guarded(client.call, b"/Request/request", grpcMessage(type_, json.dumps(body).encode()))


def _pingLoop(address, stop, results):
    """
    In a process of its own: ping C{address} every 20 ms until C{stop} is
    set, then send the round trips (ms) on C{results}.
    """
    sock = socket.create_connection(address, timeout=30)
    request(sock, {"op": "hello", "id": 1, "proto": 1})
    times = []
    n = 2
    while not stop.is_set():
        start = time.monotonic()
        try:
            sock.sendall(wire.encode({"op": "ping", "id": n}))
            readFrame(sock)
        except (OSError, SystemExit):
            times.append(float("inf"))
            break
        times.append((time.monotonic() - start) * 1000)
        n += 1
        time.sleep(0.02)
    results.send(times)


class Pinger:
    """
    A msgpack client pinging the node every 20 ms, in a process of its own:
    a thread of this script would wait for the GIL behind the attack's
    clients, and count that wait as the node's.
    """

    def __init__(self, address):
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results, childEnd = context.Pipe(duplex=False)
        self._process = context.Process(target=_pingLoop, args=(address, self._stop, childEnd), daemon=True)
        self.times = []
        self.running = False

    def start(self):
        self.running = True
        self._process.start()

    def finish(self):
        """
        Stop pinging; keep the round trips in C{times}.
        """
        self.running = False
        self._stop.set()
        if self._results.poll(10):
            self.times = self._results.recv()
        self._process.join(5)


PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe")


def startNode(directory, name):
    """
    A node, with the reactor probe (bench/probe) writing its iterations
    over 5 ms to C{turns.log} in C{directory}.
    """
    (nacosPort,) = freePorts(1)
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PROBE, os.environ.get("PYTHONPATH")]))
    os.environ["DISTRO_BENCH_TURNS"] = os.path.join(directory, "turns.log")
    try:
        node = startChild(directory, name, nacosPort)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return node, node.waitAddress(), ("127.0.0.1", nacosPort)


def longestTurn(directory, since, until):
    """
    The longest reactor iteration the probe saw between C{since} and
    C{until} (wall clock), in ms; 5 if none was longer.
    """
    longest = 5.0
    try:
        with open(os.path.join(directory, "turns.log")) as f:
            for line in f:
                at, ms = line.split()
                if since <= float(at) <= until:
                    longest = max(longest, float(ms))
    except FileNotFoundError:
        pass
    return longest


def longestCollection(logPath, since, until):
    """
    The longest garbage collector pause the node logged (it logs those of
    20 ms or more) between C{since} and C{until} (wall clock, to the
    second), in ms; 0 if none.
    """
    first, last = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) for t in (since, until + 1))
    longest = 0.0
    with open(logPath, errors="replace") as f:
        for line in f:
            if "collection paused the node" in line and first <= line[:19] <= last:
                longest = max(longest, float(line.rsplit("node ", 1)[1].split()[0]))
    return longest


def startChild(directory, name, nacosPort):
    return Child(name, [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "--logfile", os.path.join(directory, name + ".twistd.log"), "distro-node", "--data-dir", "",
        "--node-id", name, "--listen", "tcp:0:interface=127.0.0.1",
        "--nacos-listen", f"tcp:{nacosPort}:interface=127.0.0.1", "--http-listen", "",
        "--handshake-timeout-ms", "3000", "--port-file"], directory)


def fill(address, hosts):
    """
    A msgpack publisher of a view of C{hosts} instances; returns its socket.
    """
    sock = socket.create_connection(address, timeout=60)
    request(sock, {"op": "hello", "id": 1, "proto": 1})
    for start in range(0, hosts, 5000):
        instances = [{"ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "port": 8080,
                      "metadata": {"version": "1.2.3", "zone": "a"}}
                     for i in range(start, min(hosts, start + 5000))]
        request(sock, {"op": "batch_register", "id": 2 + start, "service": {"name": "big"},
                       "instances": instances})
    return sock


def attack(name, nacos, seconds, pump, publisher):
    """
    Run attack C{name} for C{seconds}; return what it did, in words.
    """
    global PUMP
    PUMP = pump
    deadline = time.monotonic() + seconds
    if name == "baseline":
        time.sleep(seconds)
        return "nothing"
    if name == "nowindow":
        client = pump.connect(nacos, window=0)
        setUp(client)
        time.sleep(0.3)
        for _ in range(100):
            unary(client, "ServiceQueryRequest", {"serviceName": "big", "cluster": ""})
            time.sleep(0.001)
        time.sleep(max(0, deadline - time.monotonic()))
        return "100 queries of the big view, never read"
    if name == "silentsubs":
        for _ in range(10):
            client = pump.connect(nacos, window=0)
            setUp(client)
            time.sleep(0.1)
            unary(client, "SubscribeServiceRequest", {"serviceName": "big", "subscribe": True})
        changes = 0
        while time.monotonic() < deadline:
            request(publisher, {"op": "register", "id": 100000 + changes, "service": {"name": "big"},
                                "instance": {"ip": "10.255.0.1", "port": 1 + changes % 60000}})
            changes += 1
            time.sleep(0.2)
        return f"10 subscribers that read nothing, {changes} changes"
    if name == "decoder":
        bomb = grpcMessage("", raw=b"\x48\x00" * 4_200_000)
        sent = 0
        while time.monotonic() < deadline:
            client = pump.connect(nacos)
            _guarded(client.call, b"/Request/request", bomb)
            sent += 1
            time.sleep(0.1)
        return f"{sent} messages of 8.4 MB of varint fields before set up"
    if name == "labels":
        body = b'{"labels": {"x": [' + b"{}," * 2_800_000 + b'{}]}}'
        sent = 0
        while time.monotonic() < deadline:
            client = pump.connect(nacos)
            _guarded(client.call, b"/BiRequestStream/requestBiStream",
                     grpcMessage("ConnectionSetupRequest", body), end=False)
            sent += 1
            time.sleep(0.2)
        return f"{sent} set ups of 8.4 MB labels"
    if name == "clusters":
        client = setUpNow(pump, nacos)
        clusters = " ," * 3_500_000 + "DEFAULT"
        sent = 0
        for n in range(40):
            if client.closed:  # the node closed it: again, on a new one
                client = pump.connect(nacos)
                setUp(client)
                time.sleep(0.2)
            if unary(client, "SubscribeServiceRequest", {"serviceName": f"big{n}", "clusters": clusters,
                                                         "subscribe": True}) is not None:
                sent += 1
            time.sleep(0.05)
        time.sleep(max(0, deadline - time.monotonic()))
        return f"{sent} subscriptions with a 7 MB cluster filter"
    if name == "unaryonly":
        opened = 0
        for _ in range(1000):
            try:
                client = RawClient(nacos, window=None)
            except OSError:
                break
            pump.add(client)
            unary(client, "ServerCheckRequest", {})
            opened += 1
        time.sleep(max(0, deadline - time.monotonic()))
        return f"{opened} connections opened, {pump.count()} still open at the end"
    if name == "logflood":
        client = pump.connect(nacos)
        streamId = setUp(client)
        time.sleep(0.3)
        junk = b"".join(grpcMessage("", raw=b"\xff") for _ in range(1000))
        sent = 0
        while time.monotonic() < deadline and not client.closed:
            if _guarded(client.send, streamId, junk) is None and client.closed:
                break
            sent += 1000
            time.sleep(0.001)
        return f"about {sent} one-byte payloads"
    if name == "rapidreset":
        streams = connections = 0
        client = None

        def burst(client):
            for _ in range(500):
                streamId = client.h2.get_next_available_stream_id()
                client.h2.send_headers(streamId, [
                    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/BiRequestStream/requestBiStream"),
                    (b":authority", b"n"), (b"content-type", b"application/grpc")])
                client.h2.reset_stream(streamId)
            client.flush()

        while time.monotonic() < deadline:
            if client is None or client.closed:
                client = pump.connect(nacos)
                connections += 1
            if _guarded(burst, client) is not None or not client.closed:
                streams += 500
            time.sleep(0.002)
        return f"about {streams} streams opened and reset, over {connections} connections"
    if name == "many":
        held = []
        for n in range(2000):
            if time.monotonic() > deadline + 30:
                break
            client = pump.connect(nacos)
            setUp(client)
            held.append(client)
        time.sleep(0.5)
        for n, client in enumerate(held):
            unary(client, "SubscribeServiceRequest", {"serviceName": f"svc{n % 50}", "subscribe": True})
        time.sleep(max(0, deadline - time.monotonic()))
        return f"{len(held)} connections set up and subscribed, {pump.count()} open at the end"
    if name == "churn":
        rounds = 0
        while time.monotonic() < deadline:
            batch = []
            for n in range(200):
                client = pump.connect(nacos)
                setUp(client)
                batch.append(client)
            time.sleep(0.2)
            for n, client in enumerate(batch):
                unary(client, "InstanceRequest", {"serviceName": f"churn{n % 20}", "type": "registerInstance",
                                                  "instance": {"ip": f"10.9.{rounds % 250}.{n % 250}",
                                                               "port": 80, "ephemeral": True}})
            time.sleep(0.2)
            with pump.lock:
                for client in batch:
                    client.closed = True
                    pump.selector.unregister(client.sock)
                    pump.clients.remove(client)
                    client.sock.close()
            rounds += 1
        return f"{rounds} rounds of 200 connections that set up, register and leave"
    if name == "batches":
        subscriber = pump.connect(nacos)
        setUp(subscriber)
        client = setUpNow(pump, nacos)
        unary(subscriber, "SubscribeServiceRequest", {"serviceName": "batched", "subscribe": True})
        bodies = [json.dumps({"serviceName": "batched", "type": "batchRegisterInstance", "instances": [
            {"ip": f"10.{7 + k}.{i // 250}.{i % 250}", "port": 8080, "ephemeral": True,
             "metadata": {"version": "1.2.3", "zone": "a"}} for i in range(10000)]}).encode()
            for k in range(2)]
        sent = 0
        while time.monotonic() < deadline and not client.closed:
            streamId = _guarded(client.call, b"/Request/request", grpcMessage("BatchInstanceRequest", bodies[sent % 2]))
            if streamId is None:
                break
            sent += 1
            # The next goes when this one is answered (as an SDK waits).
            while time.monotonic() < deadline and not client.closed:
                with pump.lock:
                    stream = client.h2.streams.get(streamId)
                    if stream is None or stream.closed:
                        break
                time.sleep(0.002)
        return f"{sent} batches of 10,000 instances, each replacing the last, one subscriber"
    if name == "subs10k":
        client = setUpNow(pump, nacos)
        for n in range(10000):
            unary(client, "SubscribeServiceRequest", {"serviceName": f"s{n}", "subscribe": True})
            if n % 100 == 99:
                time.sleep(0.005)
        time.sleep(max(0, deadline - time.monotonic()))
        return "10,000 subscriptions on one connection"
    if name == "storm":
        clients = [pump.connect(nacos) for _ in range(50)]
        for client in clients:
            setUp(client)
        time.sleep(0.3)
        sent = 0
        while time.monotonic() < deadline:
            for k, client in enumerate(clients):
                for _ in range(20):
                    unary(client, "InstanceRequest", {
                        "serviceName": f"storm{k % 10}", "type": "registerInstance",
                        "instance": {"ip": f"10.8.{k}.{sent % 250}", "port": 1 + sent % 60000, "ephemeral": True}})
                    sent += 1
            time.sleep(0.01)
        return f"{sent} registrations from 50 connections"
    raise SystemExit(f"unknown attack {name}")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("attacks", nargs="*", default=ATTACKS)
    options = parser.parse_args(argv)
    if not 1 <= options.seconds <= 60 or not 1 <= options.hosts <= 50000:
        raise SystemExit("--seconds 1..60, --hosts 1..50000")
    rows = []
    for name in options.attacks:
        directory = tempfile.mkdtemp(prefix="distro-hostile-")
        node, address, nacos = startNode(directory, name)
        pump = Pump()
        try:
            publisher = fill(address, options.hosts)
            time.sleep(0.5)
            before = residentBytes(node.process.pid)
            pinger = Pinger(address)
            pump.start()
            pinger.start()
            peak = [before]

            def watch():
                while pinger.running:
                    peak[0] = max(peak[0], residentBytes(node.process.pid))
                    time.sleep(0.1)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            since = time.time()
            what = attack(name, nacos, options.seconds, pump, publisher)
            until = time.time()
            turn = longestTurn(directory, since, until)
            collection = longestCollection(os.path.join(directory, name + ".twistd.log"), since, until)
            pinger.finish()
            watcher.join(5)
            logBytes = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
                           if ".twistd.log" in f)
            pings = sorted(pinger.times)
            rows.append((name, (peak[0] - before) / 2**20, pings[-1] if pings else float("inf"),
                         pings[int(len(pings) * 0.99) - 1] if pings else float("inf"), turn,
                         collection, logBytes / 2**20, what))
        finally:
            pump.stop()
            node.stop()
            shutil.rmtree(directory, ignore_errors=True)
    print(f"view of {options.hosts} hosts; {options.seconds:g} s per attack; a fresh node each")
    print(f"{'attack':<12} {'RSS growth MiB':>15} {'worst ping ms':>14} {'p99 ping ms':>12} "
          f"{'longest turn ms':>16} {'of it gc ms':>12} {'log MiB':>8}  what")
    for name, growth, worst, p99, turn, collection, logMb, what in rows:
        print(f"{name:<12} {growth:>15.1f} {worst:>14.1f} {p99:>12.1f} {turn:>16.1f} {collection:>12.1f} "
              f"{logMb:>8.2f}  {what}")


if __name__ == "__main__":
    main(sys.argv[1:])
