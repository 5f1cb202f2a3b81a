"""
Tests for L{distro.http.udppush}: Nacos' UDP push to v1 clients that list
with a C{udpPort}, over a fake datagram transport on the node's clock (a
real node and a real UDP receiver: L{tests.process.test_http}).
"""

import gzip
import json

from twisted.internet.address import IPv4Address

from distro.http import udppush
from distro.http.udppush import ACK_TIMEOUT
from distro.model import ServiceKey

from ._factories import instance
from ._node import service
from .test_http_naming import LIST, NamingTestCase

CLIENT = ("127.0.0.1", 4000)


class FakeDatagramTransport:
    """
    What a listening UDP port offers its protocol: C{write} to an address
    (kept in C{written}).
    """

    def __init__(self):
        self.written = []

    def write(self, datagram, address):
        self.written.append((datagram, address))

    def getHost(self):
        return IPv4Address("UDP", "127.0.0.1", 5000)

    def take(self):
        written, self.written = self.written, []
        return written


def decode(datagram):
    """
    The push in C{datagram} (gunzipped when compressed), its C{data}
    parsed.
    """
    if datagram[:2] == b"\x1f\x8b":
        datagram = gzip.decompress(datagram)
    push = json.loads(datagram)
    push["data"] = json.loads(push["data"])
    return push


class UdpPushTestCase(NamingTestCase):
    def start(self, **config):
        # The tests' client lists from 10.0.0.7 and names its own
        # addresses (as a client behind a proxy): allowed here.
        config.setdefault("udp_push_to_any_ip", True)
        super().start(**config)
        self.pushes = self.service.pushes
        self.udp = FakeDatagramTransport()
        self.pushes.makeConnection(self.udp)

    def listen(self, address=CLIENT, **params):
        """
        List C{orders} as a v1 client at C{address} that takes pushes.
        """
        params.setdefault("serviceName", "orders")
        return self.read(LIST, clientIP=address[0], udpPort=str(address[1]), **params)

    def pushed(self):
        """
        The pushes sent since the last call, once this turn's changes are
        pushed: C{[(push, address)]}.
        """
        self.harness.clock.advance(0)
        return [(decode(datagram), address) for datagram, address in self.udp.take()]

    def timers(self):
        """
        The timers of the UDP pushes (expiries, retries) pending.
        """
        return [call for call in self.harness.clock.getDelayedCalls()
                if getattr(call.func, "__self__", None) is self.pushes]

    def ack(self, push, address=CLIENT, lastRefTime=None):
        value = push["lastRefTime"] if lastRefTime is None else lastRefTime
        # As the Java client writes it: the number as text.
        self.pushes.datagramReceived(
            json.dumps({"type": "push-ack", "lastRefTime": str(value), "data": ""}).encode(), address)


class PushTests(UdpPushTestCase):
    def test_pushed(self):
        """
        A client that listed a view with a C{udpPort} is pushed its change
        at the end of the turn, to C{clientIP:udpPort}: Nacos' C{dom} push
        whose C{data} is the list's body (the view now), with a
        C{lastRefTime} in nanoseconds; the node counts it.
        """
        self.publish(ip="10.0.0.1")
        listed = self.listen()
        self.assertEqual(self.pushed(), [])
        self.publish(ip="10.0.0.2")
        [(push, address)] = self.pushed()
        self.assertEqual(address, CLIENT)
        self.assertEqual(sorted(push), ["data", "lastRefTime", "type"])
        self.assertEqual(push["type"], "dom")
        self.assertIsInstance(push["lastRefTime"], int)
        now = self.read(LIST, serviceName="orders")
        self.assertGreater(push["data"].pop("lastRefTime"), listed["lastRefTime"])
        now.pop("lastRefTime")
        self.assertEqual(push["data"], now)
        self.assertEqual([h["ip"] for h in now["hosts"]], ["10.0.0.1", "10.0.0.2"])
        self.assertEqual(self.node.pushStats().sent, 1)
        self.assertEqual(self.node.counts()["subscriptions"], 1)

    def test_onlyItsView(self):
        """
        A target is pushed the view it listed (its service, its cluster
        filter as it gave it), all hosts healthy or not, as Nacos pushes.
        """
        self.listen(clusters="a", healthyOnly="true")
        self.publish("other", ip="10.0.0.1", cluster="a")
        self.publish(ip="10.0.0.2", cluster="b")
        self.assertEqual(self.pushed(), [])
        self.publish(ip="10.0.0.3", cluster="a", healthy=False)
        [(push, _)] = self.pushed()
        self.assertEqual(push["data"]["clusters"], "a")
        self.assertEqual([(h["ip"], h["healthy"]) for h in push["data"]["hosts"]], [("10.0.0.3", False)])

    def test_onlyTheRequestsAddress(self):
        """
        By default a C{clientIP} other than the request's address is no
        target (the node aims no datagram at a third party); the request's
        own, given or not (an IPv4-mapped form too), is.
        """
        self.start(udp_push_to_any_ip=False)
        self.assertEqual(self.listen(("10.9.9.9", 4000))["name"], "DEFAULT_GROUP@@orders")
        self.assertEqual(self.pushes.targets(), {})
        self.listen(("::ffff:10.0.0.7", 4000))
        self.listen(("10.0.0.7", 4001))
        self.read(LIST, serviceName="orders", udpPort="4002")
        self.assertEqual(sorted(self.pushes.targets()), [("10.0.0.7", 4000), ("10.0.0.7", 4001),
                                                         ("10.0.0.7", 4002)])

    def test_clientAddress(self):
        """
        Without C{clientIP}, the target is the request's address.
        """
        self.read(LIST, serviceName="orders", udpPort="4000")
        self.publish(ip="10.0.0.1")
        [(_, address)] = self.pushed()
        self.assertEqual(address, ("10.0.0.7", 4000))

    def test_severalTargets(self):
        """
        Each address and view is a target of its own; one address may
        follow several views.
        """
        self.listen()
        self.listen(("127.0.0.1", 4001))
        self.listen(serviceName="pay")
        self.publish(ip="10.0.0.1")
        self.assertEqual(sorted(a for _, a in self.pushed()), [CLIENT, ("127.0.0.1", 4001)])
        self.publish("pay", ip="10.0.0.1")
        [(push, address)] = self.pushed()
        self.assertEqual((push["data"]["name"], address), ("DEFAULT_GROUP@@pay", CLIENT))
        self.assertEqual(self.pushes.targets(), {
            CLIENT: {(self.orders(), None), (self.orders("pay"), None)},
            ("127.0.0.1", 4001): {(self.orders(), None)},
        })

    def orders(self, name="orders"):
        return ServiceKey("public", "DEFAULT_GROUP", name)

    def test_coalesced(self):
        """
        The changes of one turn are one push.
        """
        self.listen()
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            self.publisher.send({"op": "register", "id": self.publisher.nextId(), "service": service("orders"),
                                 "instance": instance(ip)})
        [(push, _)] = self.pushed()
        self.assertEqual(len(push["data"]["hosts"]), 3)
        self.assertEqual(self.node.pushStats().coalesced, 2)
        self.publisher.frames()

    def test_gzipFromOneKiB(self):
        """
        A push of 1 KiB or more is gzipped, as Nacos does; a smaller one is
        plain JSON.
        """
        self.listen()
        self.publish(ip="10.0.0.1")
        [(datagram, _)] = self.settled()
        self.assertLess(len(datagram), udppush.COMPRESS_FROM)
        self.assertEqual(datagram[:1], b"{")
        self.publisher.ok("batch_register", service=service("orders"),
                          instances=[instance(f"10.0.1.{i}") for i in range(1, 50)])
        [(datagram, _)] = self.settled()
        self.assertEqual(datagram[:2], b"\x1f\x8b")
        self.assertEqual(len(decode(datagram)["data"]["hosts"]), 49)

    def settled(self):
        self.harness.clock.advance(0)
        return self.udp.take()

    def test_tooLarge(self):
        """
        A push larger than a datagram holds, gzipped, is not sent: a failed
        push.
        """
        self.patch(udppush, "MAX_DATAGRAM", 200)
        self.listen()
        self.publish(ip="10.0.0.1", metadata={"k": "v" * 300})
        self.assertEqual(self.pushed(), [])
        self.assertEqual(self.node.pushStats().failed, 1)
        self.assertEqual(self.pushes.waiting(), 0)


class AckTests(UdpPushTestCase):
    def setUp(self):
        super().setUp()
        self.listen()
        self.publish(ip="10.0.0.1")
        [(self.push, _)] = self.pushed()

    def test_ackStopsRetries(self):
        """
        An ack (C{push-ack} with the push's C{lastRefTime}, as a number or
        as text) from the address pushed to ends the push.
        """
        self.ack(self.push)
        self.assertEqual(self.pushes.waiting(), 0)
        self.harness.clock.advance(ACK_TIMEOUT * 2.5)
        self.assertEqual(self.pushed(), [])
        self.assertEqual(self.node.pushStats().failed, 0)
        self.publish(ip="10.0.0.2")
        [(push, _)] = self.pushed()
        self.pushes.datagramReceived(
            json.dumps({"type": "push-ack", "lastRefTime": push["lastRefTime"]}).encode(), CLIENT)
        self.assertEqual(self.pushes.waiting(), 0)

    def test_retriedThenFailed(self):
        """
        A push not acknowledged within 10 s is sent once more, the same
        datagram; not acknowledged 10 s later, it failed (counted).
        """
        self.harness.clock.advance(ACK_TIMEOUT - 0.1)
        self.assertEqual(self.pushed(), [])
        self.harness.clock.advance(0.1)
        [(again, address)] = self.pushed()
        self.assertEqual((again, address), (self.push, CLIENT))
        self.assertEqual(self.node.pushStats().failed, 0)
        self.harness.clock.advance(ACK_TIMEOUT)
        self.assertEqual(self.pushed(), [])
        self.assertEqual(self.node.pushStats().failed, 1)
        self.assertEqual(self.pushes.waiting(), 0)
        self.harness.clock.advance(ACK_TIMEOUT * 3)
        self.assertEqual((self.pushed(), self.node.pushStats().failed), ([], 1))

    def test_ackOfTheRetry(self):
        self.harness.clock.advance(ACK_TIMEOUT)
        self.pushed()
        self.ack(self.push)
        self.harness.clock.advance(ACK_TIMEOUT * 2)
        self.assertEqual((self.pushed(), self.node.pushStats().failed), ([], 0))

    def test_strayDatagrams(self):
        """
        What acks no push (another address, another time, not an ack, not
        JSON) is ignored.
        """
        for data, address in (
            (json.dumps({"type": "push-ack", "lastRefTime": self.push["lastRefTime"]}), ("127.0.0.2", 4000)),
            (json.dumps({"type": "push-ack", "lastRefTime": self.push["lastRefTime"]}), ("127.0.0.1", 4001)),
            (json.dumps({"type": "push-ack", "lastRefTime": self.push["lastRefTime"] + 1}), CLIENT),
            (json.dumps({"type": "other", "lastRefTime": self.push["lastRefTime"]}), CLIENT),
            (json.dumps({"type": "push-ack", "lastRefTime": "x"}), CLIENT),
            (json.dumps({"type": "push-ack"}), CLIENT),
            (json.dumps([1]), CLIENT),
            ("\xff", CLIENT),
        ):
            data = data.encode("latin-1") if data == "\xff" else data.encode()
            self.pushes.datagramReceived(data, address)
        self.assertEqual(self.pushes.waiting(), 1)

    def test_newerPushReplaces(self):
        """
        A newer push of the view replaces the one waiting for its ack: only
        the newest is sent again, and only it may fail.
        """
        self.publish(ip="10.0.0.2")
        [(newer, _)] = self.pushed()
        self.assertEqual(self.pushes.waiting(), 1)
        self.ack(self.push)  # too late: it changes nothing
        self.harness.clock.advance(ACK_TIMEOUT)
        self.assertEqual(self.pushed(), [(newer, CLIENT)])
        self.harness.clock.advance(ACK_TIMEOUT)
        self.assertEqual(self.node.pushStats().failed, 1)


class TargetTests(UdpPushTestCase):
    def test_forgottenAfterExpiry(self):
        """
        A target that does not list its view again within
        C{udp_push_expiry_ms} is forgotten, with its subscription and any
        push waiting for an ack; listing again keeps it.
        """
        expiry = self.node.config.udp_push_expiry_ms / 1000.0
        self.listen()
        self.harness.clock.advance(expiry - 1)
        self.listen()
        self.harness.clock.advance(expiry - 1)
        self.publish(ip="10.0.0.1")
        self.assertEqual(len(self.pushed()), 1)
        self.harness.clock.advance(1)
        self.assertEqual(self.pushes.targets(), {})
        self.assertEqual(self.pushes.waiting(), 0)
        self.assertEqual(self.node.counts()["subscriptions"], 0)
        self.publish(ip="10.0.0.2")
        self.harness.clock.advance(ACK_TIMEOUT * 3)
        self.assertEqual(self.pushed(), [])
        self.assertEqual(self.node.pushStats().failed, 0)
        self.assertEqual(self.timers(), [])

    def test_expiryConfigured(self):
        self.start(udp_push_expiry_ms=2000)
        self.listen()
        self.harness.clock.advance(2)
        self.assertEqual(self.pushes.targets(), {})

    def test_boundedTargets(self):
        """
        At most C{udp_push_max_targets} are held: a list past it is
        answered, and pushes nothing; a target held lists on.
        """
        self.start(udp_push_max_targets=2)
        self.listen()
        self.listen(serviceName="pay")
        self.assertEqual(len(self.listen(("127.0.0.1", 4001))["hosts"]), 0)
        self.listen()
        self.assertEqual(set(self.pushes.targets()), {CLIENT})
        self.publish(ip="10.0.0.1")
        self.assertEqual([a for _, a in self.pushed()], [CLIENT])

    def test_off(self):
        """
        With C{udp_push_max_targets} 0, or without a socket, nothing is a
        target.
        """
        self.start(udp_push_max_targets=0)
        self.listen()
        self.assertEqual(self.pushes.targets(), {})
        NamingTestCase.start(self)  # a port whose UDP socket is not open
        self.pushes = self.service.pushes
        self.listen()
        self.assertEqual(self.pushes.targets(), {})

    def test_otherFamily(self):
        """
        An address of the family the socket cannot send to is no target;
        a datagram the kernel refuses is one the client did not
        acknowledge.
        """
        self.listen(("::1", 4000))
        self.assertEqual(self.pushes.targets(), {})

        def refused(datagram, address):
            raise OSError("no buffer space")

        self.udp.write = refused
        self.listen()
        self.publish(ip="10.0.0.1")
        self.harness.clock.pump([ACK_TIMEOUT, ACK_TIMEOUT])
        self.assertEqual((self.pushes.waiting(), self.node.pushStats().failed), (0, 1))

    def test_stop(self):
        """
        When the port stops, every target and push is forgotten, their
        timers with them.
        """
        self.listen()
        self.publish(ip="10.0.0.1")
        self.pushed()
        self.pushes.stop()
        self.assertEqual((self.pushes.targets(), self.pushes.waiting()), ({}, 0))
        self.assertEqual(self.node.counts()["subscriptions"], 0)
        self.assertEqual(self.timers(), [])
