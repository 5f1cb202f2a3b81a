"""
Digest traffic between two members: what a node sends a peer every
C{verify_interval_ms} to say what it owns, with C{--clients} clients in sync.

    python bench/digest.py [--clients 100000] [--peers 2]

In this process, a real L{distro.node.Node} A owns C{--clients} native
clients (one instance each, registered through its client manager), and a
real node B has received them all through its L{Receiver} (A's snapshot).
Then one digest tick: A's L{Replicator} writes its digest to C{--peers}
feeds (in-memory transports), B compares the one it gets. The baseline,
from the same run, is the digest the node sent before (every owned client
listed, encoded once per peer). Then one of A's changes is lost on its way
to B: the bytes of the digest, C{digest_ask} and listing that repair it.
Printed: bytes per peer per tick, encoding time per tick, B's compare time,
and the ratios. Nothing leaves the process (the fd limit of this machine
keeps 100,000 real connections out of reach).
"""

import argparse
import sys
import time

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from distro import config, wire
from distro.cluster import records
from distro.cluster.members import Member
from distro.cluster.receiving import Receiver
from distro.cluster.sending import Replicator
from distro.model import ServiceKey, parseInstance
from distro.node import Node


class _Link:
    def __init__(self, nodeId):
        self.nodeId = nodeId
        self.transport = StringTransport()

    def sendMessage(self, message):
        self.transport.write(wire.encode(message))


class _Barrier:
    def whenSynced(self):
        return Deferred()


def frames(data):
    out = []
    while data:
        length = int.from_bytes(data[:4], "big")
        out.append((4 + length, wire.decode(data[4 : 4 + length])))
        data = data[4 + length :]
    return out


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100000)
    parser.add_argument("--peers", type=int, default=2)
    options = parser.parse_args(argv)
    settings = {"advertise": "127.0.0.1:1"}
    a = Node(config.build(overrides=dict(settings, node_id="a")), Clock(), "boot-a")
    b = Node(config.build(overrides=dict(settings, node_id="b")), Clock(), "boot-b")
    replicator = Replicator(a.clock, boot="boot-a")
    a.manager.addObserver(replicator)
    receiver = Receiver(
        b.manager,
        b.clock,
        _Barrier(),
        maxMetadataBytes=b.config.max_metadata_bytes,
        disconnectGraceMs=b.config.disconnect_grace_ms,
    )
    b.manager.addObserver(receiver)
    service = ServiceKey("public", "DEFAULT_GROUP", "orders")
    clients = []
    started = time.perf_counter()
    for n in range(options.clients):
        client, _ = a.manager.clientConnected()
        a.manager.register(client, service, parseInstance(
            {"ip": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", "port": 8080}))
        clients.append(client)
    replicator.flush()  # no member yet: nothing goes anywhere
    link = _Link("a")
    for client in clients:
        receiver.received(link, records.clientState(client))
    loaded = time.perf_counter() - started
    feeds = []
    for p in range(options.peers):
        feed = replicator.addMember(Member(f"127.0.0.1:{9000 + p}"))
        feed.link = _Link("b")
        feeds.append(feed)

    # Baseline: every owned client listed, encoded per peer.
    started = time.perf_counter()
    for _ in feeds:
        listed = wire.encode({"op": "digest", "clients": [
            [c.clientId, c.revision] for c in replicator.owned.values()]})
    baselineEncode = time.perf_counter() - started
    baselineBytes = len(listed)

    started = time.perf_counter()
    replicator.sendDigests()
    encode = time.perf_counter() - started
    sent = feeds[0].link.transport.value()
    ((size, digest),) = frames(sent)
    started = time.perf_counter()
    reply = receiver.received(link, digest)
    compare = time.perf_counter() - started
    if reply is not None:
        raise SystemExit(f"B differs from A in sync: {reply}")

    # One change lost on its way to B: the repair.
    changed = clients[12345 % len(clients)]
    a.manager.register(changed, service, parseInstance({"ip": "10.255.0.1", "port": 1}))
    replicator.flush()
    for feed in feeds:
        feed.link.transport.clear()
    replicator.sendDigests()
    ((size2, digest2),) = frames(feeds[0].link.transport.value())
    ask = receiver.received(link, digest2)
    askBytes = len(wire.encode(ask))
    feeds[0].link.transport.clear()
    feeds[0].digestAsked(ask["buckets"])
    listing = frames(feeds[0].link.transport.value())
    listed = receiver.received(link, listing[0][1])

    print(f"{options.clients} clients owned by A, all held by B (built in {loaded:.1f} s)")
    print(f"baseline (every client listed, per peer): {baselineBytes:,} bytes per peer per tick, "
          f"encoding {baselineEncode / len(feeds) * 1000:.1f} ms per peer")
    print(f"now (bucket hashes, encoded once): {size:,} bytes per peer per tick, "
          f"encoding {encode * 1000:.2f} ms per tick for {len(feeds)} peers; "
          f"B compares in {compare * 1000:.2f} ms, in sync: nothing asked")
    print(f"ratio of bytes (baseline / now): {baselineBytes / size:.0f}x")
    print(f"one lost change: digest {size2:,} B, digest_ask {askBytes} B "
          f"({len(ask['buckets'])} bucket), listing {sum(s for s, _ in listing):,} B "
          f"({len(listing[0][1]['clients'])} clients), then B asks {listed}")


if __name__ == "__main__":
    main(sys.argv[1:])
