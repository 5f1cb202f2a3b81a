"""
Thundering herd: N clients connect to one node at once (what the death of a
big node causes), and each says C{hello}.

    python bench/herd.py [-n 10000] [--timeout 60]

Runs twice against a fresh C{twistd distro-node} on 127.0.0.1 port 0: first
with C{--listen-backlog 50} (Twisted's default backlog, the baseline), then
with the node's default C{listen_backlog}. For each it prints how many
clients were greeted, how many failed (refused, reset, or closed before the
reply), and the time until the last was greeted; then the ratio of the two
times. Every wait is bounded by C{--timeout}; traffic goes to loopback only.
The process needs a file descriptor per connection (C{ulimit -n}).
"""

import argparse
import os
import shutil
import sys
import tempfile

from twisted.internet import defer, task
from twisted.internet.protocol import ClientFactory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from register import Child  # noqa: E402

from distro.client._protocol import ClientConnection  # noqa: E402


def startNode(directory, backlog):
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "distro-node", "--data-dir", "", "--nacos-listen", "", "--http-listen", "", "--node-id", "herd",
            "--listen", "tcp:0:interface=127.0.0.1", "--heartbeat-ms", "600000",
            "--idle-timeout-ms", "1200000"]
    if backlog is not None:
        argv += ["--listen-backlog", str(backlog)]
    return Child(f"node-{backlog or 'default'}", argv + ["--port-file"], directory)


class _HerdConnection(ClientConnection):
    """
    One client of the herd: says C{hello} as soon as it is connected.
    """

    def __init__(self, herd):
        super().__init__(herd.reactor, timeout=600)
        self.herd = herd

    def connectionMade(self):
        super().connectionMade()
        self.hello("herd/1").addCallbacks(self.herd.greetedOne, self.herd.failedOne)


class _Herd(ClientFactory):
    def __init__(self, reactor, count):
        self.reactor = reactor
        self.greeted = 0
        self.failed = 0
        self.lastGreeted = None
        self.remaining = count
        self.done = defer.Deferred()

    def buildProtocol(self, addr):
        return _HerdConnection(self)

    def greetedOne(self, reply):
        self.greeted += 1
        self.lastGreeted = self.reactor.seconds()
        self._one()

    def failedOne(self, failure):
        self.failed += 1
        self._one()

    def clientConnectionFailed(self, connector, reason):
        self.failed += 1
        self._one()

    def _one(self):
        self.remaining -= 1
        if self.remaining == 0 and not self.done.called:
            self.done.callback(None)


@defer.inlineCallbacks
def herd(reactor, host, port, count, timeout):
    factory = _Herd(reactor, count)
    started = reactor.seconds()
    connectors = [reactor.connectTCP(host, port, factory, timeout=timeout) for _ in range(count)]
    try:
        yield factory.done.addTimeout(timeout, reactor)
    except defer.TimeoutError:
        pass
    for connector in connectors:
        connector.disconnect()
    last = factory.lastGreeted - started if factory.lastGreeted else None
    return factory.greeted, factory.failed, last


@defer.inlineCallbacks
def main(reactor, argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10000, help="clients (at most 15000)")
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args(argv)
    count = min(options.n, 15000)
    directory = tempfile.mkdtemp(prefix="distro-herd-")
    times = {}
    try:
        for backlog in (50, None):
            node = startNode(directory, backlog)
            try:
                host, port = node.waitAddress()
                greeted, failed, last = yield herd(reactor, host, port, count, options.timeout)
            finally:
                node.stop()
            label = "backlog 50 (baseline)" if backlog else "default listen_backlog"
            within = f"last greeted after {last:.2f} s" if last is not None else "none greeted"
            complete = "" if greeted == count else f" (not all within {options.timeout:g} s)"
            print(f"{label}: {count} clients, greeted {greeted}, failed {failed}, {within}{complete}",
                  flush=True)
            times[backlog] = last if greeted == count else None
            yield task.deferLater(reactor, 1.0, lambda: None)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if times.get(50) and times.get(None):
        print(f"ratio (baseline / default): {times[50] / times[None]:.1f}x faster")
    elif times.get(None):
        print(f"ratio: the baseline did not greet all within {options.timeout:g} s; "
              f"the default did in {times[None]:.2f} s")


if __name__ == "__main__":
    task.react(main, (sys.argv[1:],))
