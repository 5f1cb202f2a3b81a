"""
The HTTP port of a real C{twistd distro-node} process, over a socket (its
requests are tested byte by byte in L{tests.test_http}).
"""

import gzip
import json
import re
import urllib.error
import urllib.request

from twisted.internet import defer, reactor, threads
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater

from distro.client import connect
from tests._process import START_TIMEOUT, ProcessTestCase, waitFor

# How long a push may take to arrive, and Nacos' wait for its ack.
PUSH_TIMEOUT = 10.0
ACK_TIMEOUT = 10.0


def get(url, data=None):
    """
    C{(status, body)} of a request (blocking: in a thread).
    """
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Receiver(DatagramProtocol):
    """
    A v1 client's UDP socket: keeps what it receives.
    """

    def __init__(self):
        self.received = []

    def datagramReceived(self, datagram, address):
        self.received.append((datagram, address))


class HttpPortTests(ProcessTestCase):
    """
    A real node's HTTP port, over a socket.
    """

    @defer.inlineCallbacks
    def test_healthAndLogin(self):
        """
        C{/health} answers over a real socket; an open node listening
        beyond loopback says so once at start.
        """
        process, _, _ = yield self.startNode("--http-listen", "tcp:0:interface=127.0.0.1",
                                             "--listen", "tcp:0")
        pattern = re.compile(rb"serving HTTP on (127\.0\.0\.1:\d+)")
        match = yield waitFor(lambda: pattern.search(process.output), START_TIMEOUT, "the HTTP port")
        url = f"http://{match.group(1).decode()}"

        for path, data, status, expected in (
            ("/health", None, 200, b'"status":"UP"'),
            ("/ready", None, 200, b'"status":"UP"'),
            ("/nacos/v1/ns/operator/metrics", None, 200, b'{"status":"UP"}'),
            ("/nacos/v3/admin/core/state/liveness", None, 200, b'"data":"ok"'),
            ("/nacos/v3/admin/core/state/readiness", None, 200, b'"data":"ok"'),
            ("/nacos/v1/auth/users/login", b"username=nacos&password=nacos", 200, b'"accessToken":"AUTH_DISABLED"'),
            ("/nacos/v1/auth/login?username=nacos&password=nacos", b"", 200, b'"tokenTtl":18000'),
            ("/nacos/v3/auth/user/login", b"username=nacos&password=nacos", 200, b'"globalAdmin":true'),
            ("/nacos/v1/ns/instance", b"serviceName=a&ip=10.0.0.1&port=1&ephemeral=false", 400, b"ephemeral"),
            ("/nacos/v1/auth/users/login", b"username=nacos", 400, b"password: is required"),
            ("/nope", None, 404, b"no such path"),
        ):
            answer = yield threads.deferToThread(get, url + path, data)
            self.assertEqual(answer[0], status, (path, answer))
            self.assertIn(expected, answer[1], path)
        self.assertEqual(process.output.count(b"listen beyond loopback"), 1)
        self.assertIn(b"listen beyond loopback", process.output)

    @defer.inlineCallbacks
    def test_udpPush(self):
        """
        A v1 client's UDP socket of the test's own lists a service with its
        C{udpPort} and is pushed the change a msgpack client makes (gzipped
        once 1 KiB or more); it acknowledges each push, which is then not
        sent again, and the node counts no failed push.
        """
        process, host, port = yield self.startNode("--http-listen", "tcp:0:interface=127.0.0.1")
        match = yield waitFor(lambda: re.search(rb"serving HTTP on (127\.0\.0\.1:\d+)", process.output),
                              START_TIMEOUT, "the HTTP port")
        url = f"http://{match.group(1).decode()}"
        yield waitFor(lambda: b"Nacos UDP pushes from 127.0.0.1:" in process.output, START_TIMEOUT, "UDP pushes")
        receiver = Receiver()
        udp = reactor.listenUDP(0, receiver, interface="127.0.0.1")
        self.addCleanup(udp.stopListening)
        status, body = yield threads.deferToThread(
            get, f"{url}/nacos/v1/ns/instance/list?serviceName=DEFAULT_GROUP@@orders&clientIP=127.0.0.1"
                 f"&udpPort={udp.getHost().port}")
        self.assertEqual((status, json.loads(body)["hosts"]), (200, []))
        client = yield connect([f"{host}:{port}"], reactor=reactor, timeout=5)
        self.addCleanup(client.close)

        @defer.inlineCallbacks
        def pushed(ip, compressed):
            yield waitFor(lambda: receiver.received, PUSH_TIMEOUT, f"the push of {ip}")
            [(datagram, sender)] = receiver.received
            del receiver.received[:]
            self.assertEqual(datagram[:2] == b"\x1f\x8b", compressed)
            push = json.loads(gzip.decompress(datagram) if compressed else datagram)
            self.assertEqual(push["type"], "dom")
            data = json.loads(push["data"])
            self.assertEqual(data["name"], "DEFAULT_GROUP@@orders")
            self.assertIn(ip, [h["ip"] for h in data["hosts"]])
            # The ack, as the Java client writes it, from the address pushed to.
            ack = {"type": "push-ack", "lastRefTime": str(push["lastRefTime"]), "data": ""}
            udp.write(json.dumps(ack).encode(), sender)

        yield client.register("orders", "10.0.0.5", 8080)
        yield pushed("10.0.0.5", compressed=False)
        yield client.register("orders", "10.0.0.6", 8080, metadata={"note": "x" * 1500})
        yield pushed("10.0.0.6", compressed=True)
        # Acknowledged: nothing is sent again once Nacos' wait for an ack
        # is over, and no push failed.
        yield deferLater(reactor, ACK_TIMEOUT + 1, lambda: None)
        self.assertEqual(receiver.received, [])
        status, body = yield threads.deferToThread(get, f"{url}/metrics")
        self.assertIn(b"distro_pushes_failed_total 0.0", body)
        self.assertRegex(body.decode(), r"distro_pushes_total [2-9]")
