"""
distro's JSON API on real nodes (docs/http.md): three clustered C{twistd
distro-node} processes, spoken to over HTTP with treq; a change made
through distro's own client at one node is seen by an event stream and a
blocking query at another (byte by byte in L{tests.test_http_api}).
"""

import json

from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.web.client import HTTPConnectionPool

import treq

from tests._ports import freePorts
from tests._process import CONVERGE_TIMEOUT, ORDERS, ClusterTestCase

WATCH = "/v1/services/public/DEFAULT_GROUP/orders/watch"
# Every HTTP request's bound, in seconds.
REQUEST_TIMEOUT = 15


class EventReader(Protocol):
    """
    Reads a Server-Sent Events body as it comes: each event's fields into
    L{events}, comments counted.
    """

    def __init__(self):
        self.events = defer.DeferredQueue()
        self.comments = 0
        self.ended = defer.Deferred()
        self._buffer = b""

    def dataReceived(self, data):
        self._buffer += data
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            if block.startswith(b":"):
                self.comments += 1
                continue
            fields = dict(line.split(": ", 1) for line in block.decode("utf-8").split("\n"))
            fields["data"] = json.loads(fields["data"])
            self.events.put(fields)

    def connectionLost(self, reason):
        self.reason = reason
        self.ended.callback(None)

    def next(self):
        """
        The next event, failing after L{CONVERGE_TIMEOUT} seconds.
        """
        return self.events.get().addTimeout(CONVERGE_TIMEOUT, reactor)

    def leave(self):
        """
        The client goes: its connection is aborted.
        """
        self.transport.stopProducing()
        return self.ended.addTimeout(REQUEST_TIMEOUT, reactor)


def hostIds(view):
    return sorted(host["instance_id"] for host in view["hosts"])


class JsonApiClusterTests(ClusterTestCase):
    """
    Three nodes, each with its HTTP port.
    """

    def nodeArgs(self, member, portFile):
        if not hasattr(self, "httpPorts"):
            taken = {p for m in self.members for p in (m.clientPort, m.peerPort)}
            ports = freePorts(len(self.members) + len(taken))
            self.httpPorts = [p for p in ports if p not in taken][:len(self.members)]
        port = self.httpPorts[member.index - 1]
        return super().nodeArgs(member, portFile) + ["--http-listen", f"tcp:{port}:interface=127.0.0.1"]

    def url(self, member, path):
        return f"http://127.0.0.1:{self.httpPorts[member.index - 1]}{path}"

    def setUp(self):
        # No connection outlives its request: nothing is left open at the
        # test's end.
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    @defer.inlineCallbacks
    def get(self, member, path, **params):
        response = yield treq.get(self.url(member, path), params=params, pool=self.pool,
                                  timeout=REQUEST_TIMEOUT)
        body = yield treq.content(response)
        return response, body

    @defer.inlineCallbacks
    def document(self, member, path, **params):
        response, body = yield self.get(member, path, **params)
        self.assertEqual(response.code, 200, body)
        return json.loads(body)

    @defer.inlineCallbacks
    def subscriptions(self, member):
        """
        The node's C{distro_subscriptions} gauge, read from C{/metrics}.
        """
        _, body = yield self.get(member, "/metrics")
        [line] = [line for line in body.decode().splitlines() if line.startswith("distro_subscriptions ")]
        return float(line.split()[1])

    @defer.inlineCallbacks
    def test_watchesSeeAChangeAtAnotherNode(self):
        """
        An event stream and a blocking query on node 1 see instances a
        client of distro's own port registers at node 2 (the stream: the
        empty view first, then the view with them; the query: held, then
        answered with it and its revision); the client's goodbye is the
        stream's next event. The stream's client leaving frees its
        subscription on the node.
        """
        n1, n2, n3 = yield self.startCluster()
        members = yield self.document(n1, "/v1/members")
        self.assertEqual(sorted(m["node"] for m in members["members"]), sorted(m.nodeId for m in (n1, n2, n3)))

        response = yield treq.get(self.url(n1, WATCH), headers={"Accept": ["text/event-stream"]},
                                  unbuffered=True, pool=self.pool, timeout=REQUEST_TIMEOUT)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["text/event-stream; charset=utf-8"])
        stream = EventReader()
        response.deliverBody(stream)
        first = yield stream.next()
        self.assertEqual((first["event"], first["data"]["hosts"]), ("view", []))

        view = yield self.document(n1, "/v1/services/public/DEFAULT_GROUP/orders/instances")
        held = self.get(n1, WATCH, index=str(view["revision"]), wait="10s")
        # Held: had it been answered at once, it would show no hosts.
        self.assertFalse(held.called)

        client = yield self.client(self.members, start=1)
        self.assertEqual(client.node, n2.nodeId)
        yield client.batch_register(ORDERS, [{"ip": "10.0.0.1", "port": 80}, {"ip": "10.0.0.2", "port": 80}])
        expected = ["10.0.0.1#80#DEFAULT", "10.0.0.2#80#DEFAULT"]

        response, body = yield held
        self.assertEqual(response.code, 200, body)
        answered = json.loads(body)
        self.assertEqual(hostIds(answered), expected)
        self.assertEqual(response.headers.getRawHeaders("X-Distro-Index"), [str(answered["revision"])])

        event = yield stream.next()
        self.assertEqual(hostIds(event["data"]), expected)
        self.assertEqual(int(event["id"]), event["data"]["revision"])
        # The same view distro's own port answers at node 1.
        info = yield self.query(n1, ORDERS)
        self.assertEqual(event["data"]["checksum"], info["checksum"])

        yield client.close()
        event = yield stream.next()
        self.assertEqual(event["data"]["hosts"], [])

        self.assertEqual((yield self.subscriptions(n1)), 1)
        yield stream.leave()

        yield self.poll(lambda: self.subscriptions(n1), lambda count: count == 0,
                        "node 1 to free the stream's subscription")

    @defer.inlineCallbacks
    def test_blockingQueryWaitsOut(self):
        """
        A blocking query on a view that does not change is answered when
        its wait ends, with the same revision; one at another revision is
        answered at once.
        """
        n1, _, _ = yield self.startCluster()
        view = yield self.document(n1, "/v1/services/public/DEFAULT_GROUP/orders/instances")
        started = reactor.seconds()
        response, body = yield self.get(n1, WATCH, index=str(view["revision"]), wait="1500ms")
        self.assertGreaterEqual(reactor.seconds() - started, 1.4)
        self.assertEqual(json.loads(body)["revision"], view["revision"])
        started = reactor.seconds()
        response, body = yield self.get(n1, WATCH, index=str(view["revision"] + 1), wait="20s")
        self.assertLess(reactor.seconds() - started, 5)
        self.assertEqual(json.loads(body), view)
