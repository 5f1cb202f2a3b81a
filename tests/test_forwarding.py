"""
Tests for L{distro.cluster.forwarding}: heartbeat clients across a cluster
(PROTOCOL.md 5.6), on the in-process cluster of real nodes: one member
responsible for each, writes and beats forwarded to it from any member,
and taken over, with nothing vanishing, when the members change.
"""

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from distro.cluster.dialect import Offer
from twisted.internet.task import Clock

from distro.cluster.dialect import Dialect
from distro.cluster.forwarding import FORWARD, Forwarding, forwardMessage, parseForward, responsible
from distro.errors import BAD_REQUEST, INTERNAL, UNAVAILABLE, RequestError
from distro.heartbeats import BEAT_OK, Write
from distro.model import Instance
from tests._cluster import DROP, HOLD, FakeCluster, peerAddress, serviceKey

ORDERS = "orders"


def register(ip, cluster="DEFAULT"):
    return Write("register", ip, 8080, serviceKey(ORDERS), Instance(ip, 8080, cluster, 1.0, True, True, {}))


def beat(ip):
    return Write("beat", ip, 8080, serviceKey(ORDERS))


class ResponsibleTests(SynchronousTestCase):
    def test_stableAndSpread(self):
        """
        The same members give the same answer whatever their order; the
        clients spread over the members; removing a member moves only the
        clients it had.
        """
        members = [peerAddress(i) for i in range(3)]
        ids = [f"10.0.{n // 250}.{n % 250}:8080" for n in range(600)]
        chosen = {c: responsible(c, members) for c in ids}
        self.assertEqual(chosen, {c: responsible(c, list(reversed(members))) for c in ids})
        counts = sorted(list(chosen.values()).count(m) for m in members)
        self.assertGreater(counts[0], 150)
        fewer = {c: responsible(c, members[:2]) for c in ids}
        moved = [c for c in ids if fewer[c] != chosen[c]]
        self.assertEqual(sorted(moved), sorted(c for c in ids if chosen[c] == members[2]))


class ForwardMessageTests(SynchronousTestCase):
    def test_roundTrip(self):
        write = register("10.0.0.1", cluster="eu.west")
        n, parsed = parseForward(forwardMessage(7, write), 8192)
        self.assertEqual(n, 7)
        self.assertEqual(parsed[:4], write[:4])
        self.assertTrue(parsed.instance.sameContent(write.instance))
        self.assertEqual(parseForward(forwardMessage(8, beat("10.0.0.1")), 8192), (8, beat("10.0.0.1")))

    def test_badFields(self):
        """
        Every malformed field of C{forward} is refused, named.
        """
        good = forwardMessage(1, register("10.0.0.1"))
        for field, value in (
            ("id", -1), ("id", "1"), ("kind", "poke"), ("ip", ""), ("ip", 3), ("port", 0),
            ("port", "80"), ("service", "orders"), ("instance", [1, 2]), ("instance", None),
        ):
            message = dict(good, **{field: value})
            e = self.assertRaises(RequestError, parseForward, message, 8192)
            self.assertEqual(e.code, BAD_REQUEST)
            self.assertIn(field, e.message)


class _Link:
    """
    A link that speaks L{FORWARD} and keeps what is sent on it.
    """

    dialect = Dialect(3, [FORWARD])

    def __init__(self):
        self.sent = []

    def sendMessage(self, message):
        self.sent.append(message)


class PendingTests(SynchronousTestCase):
    """
    L{Forwarding}: the forwards sent, awaiting their answers.
    """

    def setUp(self):
        self.clock = Clock()
        self.forwarding = Forwarding(self.clock, 3.0)
        self.link = _Link()

    def sent(self, write):
        results = []
        self.forwarding.send(self.link, write).addBoth(results.append)
        return results

    def test_answers(self):
        """
        A beat's answer is its C{(code, interval)}; another write's is
        nothing; a refusal is its error; a result of the wrong form is an
        C{INTERNAL} error, not what the member sent.
        """
        beating, registering, refused = [self.sent(beat("10.0.0.1")), self.sent(register("10.0.0.1")),
                                         self.sent(beat("10.0.0.2"))]
        ids = [m["id"] for m in self.link.sent]
        self.forwarding.answered({"op": "forwarded", "id": ids[0], "result": [10200, 5000]})
        self.forwarding.answered({"op": "forwarded", "id": ids[1], "result": None})
        self.forwarding.answered({"op": "forwarded", "id": ids[2], "code": BAD_REQUEST, "message": "port: no"})
        self.assertEqual(beating, [(10200, 5000)])
        self.assertEqual(registering, [None])
        self.assertEqual((refused[0].value.code, refused[0].value.message), (BAD_REQUEST, "port: no"))
        for write, result in ((beat("10.0.0.1"), None), (beat("10.0.0.1"), [7, 5000]),
                              (beat("10.0.0.1"), [10200, "5000"]), (register("10.0.0.1"), [10200, 5000])):
            results = self.sent(write)
            self.forwarding.answered({"op": "forwarded", "id": self.link.sent[-1]["id"], "result": result})
            self.assertEqual(results[0].value.code, INTERNAL, result)
        self.assertEqual(self.forwarding.pendingCount(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self):
        """
        Stopping fails every forward waiting, several on one link too.
        """
        results = self.sent(register("10.0.0.1")) + self.sent(register("10.0.0.2"))
        waiting = [self.sent(beat("10.0.0.1")), self.sent(beat("10.0.0.2"))]
        self.forwarding.stop()
        self.assertEqual([r[0].value.code for r in waiting], [UNAVAILABLE, UNAVAILABLE])
        self.assertEqual((results, self.forwarding.pendingCount(), self.clock.getDelayedCalls()), ([], 0, []))


class ForwardingTests(SynchronousTestCase):
    def setUp(self):
        self.cluster = FakeCluster(3)
        self.addCleanup(self.cluster.close)

    def start(self):
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def responsibleIndex(self, ip):
        clientId = f"{ip}:8080"
        answers = {self.cluster.node(i).cluster.responsibleFor(clientId) for i in self.cluster.live()}
        for i in self.cluster.live():
            if self.cluster.node(i).cluster.responsibleFor(clientId) is None:
                return i
        raise AssertionError(f"no member responsible for {clientId}: {answers}")

    def ipAt(self, index, other=None):
        """
        An address whose client member C{index} is responsible for.
        """
        for n in range(1, 250):
            ip = f"10.1.0.{n}"
            if self.responsibleIndex(ip) == index:
                return ip
        raise AssertionError("none")

    def send(self, index, write):
        results = []
        self.cluster.node(index).heartbeatWrite(write).addBoth(results.append)
        self.cluster.flush()
        (result,) = results
        if isinstance(result, Failure):
            raise result.value
        return result

    def hosts(self):
        return [[(h.ip, h.healthy) for h in self.cluster.view(i, ORDERS).hosts] for i in self.cluster.live()]

    def test_writesGoToTheResponsibleMember(self):
        """
        A registration at any member is applied by the responsible one,
        which owns the client and replicates it: every member shows it.
        """
        self.start()
        for target in range(3):
            ip = self.ipAt(target)
            for at in range(3):
                self.send(at, register(ip))
                owner = self.cluster.held(target, f"{ip}:8080")
                self.assertTrue(owner.native)
                for other in range(3):
                    if other != target:
                        self.assertFalse(self.cluster.held(other, f"{ip}:8080").native)
        self.assertEqual(len(self.hosts()[0]), 3)
        self.assertEqual(self.hosts(), [self.hosts()[0]] * 3)

    def test_beatsForwarded(self):
        """
        Beats sent to a member that is not responsible keep the instance
        healthy; when they stop, the owner marks it unhealthy, then
        removes it, everywhere.
        """
        self.start()
        ip = self.ipAt(0)
        self.send(1, register(ip))
        for _ in range(8):
            self.cluster.advance(5)
            self.assertEqual(self.send(2, beat(ip)), (BEAT_OK, 5000))
        self.assertEqual(self.hosts(), [[(ip, True)]] * 3)
        self.cluster.advance(16)
        self.assertEqual(self.hosts(), [[(ip, False)]] * 3)
        self.cluster.advance(15)
        self.assertEqual(self.hosts(), [[]] * 3)

    def test_responsibleMemberCrashes(self):
        """
        The responsible member crashes: once it is down, the member now
        responsible takes the client over; no member ever stops showing
        the instance, and beats (to any member left) keep it.
        """
        self.start()
        ip = self.ipAt(2)
        self.send(0, register(ip))
        self.cluster.crash(2)
        for _ in range(40):
            self.cluster.advance(0.1)
            self.assertEqual(self.hosts(), [[(ip, True)]] * 2)
        now = self.responsibleIndex(ip)
        self.assertIn(now, (0, 1))
        self.assertTrue(self.cluster.held(now, f"{ip}:8080").native)
        for _ in range(8):
            self.assertEqual(self.send(1 - now, beat(ip)), (BEAT_OK, 5000))
            self.cluster.advance(5)
        self.assertEqual(self.hosts(), [[(ip, True)]] * 2)

    def test_responsibleUnreachable(self):
        """
        While the responsible member cannot be reached (crashed, not yet
        found down), a member takes its writes itself, holding the client
        meanwhile: the SDK's registration does not fail. Once the member
        is down, the member now responsible owns it; restarted, the first
        takes it back.
        """
        self.start()
        ip = self.ipAt(2)
        self.cluster.crash(2)
        self.assertIsNone(self.send(0, register(ip)))
        self.assertTrue(self.cluster.held(0, f"{ip}:8080").native)
        self.assertEqual(self.hosts(), [[(ip, True)]] * 2)
        self.cluster.advance(1.0)  # down_after_ms
        now = self.responsibleIndex(ip)
        self.assertTrue(self.cluster.held(now, f"{ip}:8080").native)
        self.assertFalse(self.cluster.held(1 - now, f"{ip}:8080").native)
        self.cluster.restart(2)
        self.cluster.advance(1.0)
        self.assertTrue(self.cluster.held(2, f"{ip}:8080").native)
        self.assertEqual(self.hosts(), [[(ip, True)]] * 3)

    def test_healedPartition(self):
        """
        A member cut off for longer than the beat timeout took the client
        over and, getting no beats, marked it unhealthy. Once healed, its
        takeover outranks the owner's; the owner, responsible and beaten
        all along, takes it back with its own beats' health at once: it
        never shows the instance unhealthy, and a third member only until
        the takeback reaches it (0.2 s here), not until the next beat.
        """
        self.start()
        ip = self.ipAt(1)
        self.send(1, register(ip))
        self.cluster.isolate(0)
        for step in range(200):
            self.cluster.advance(0.1)
            if step % 50 == 0:
                self.send(1, beat(ip))
        self.assertEqual(self.hosts()[1:], [[(ip, True)]] * 2)
        self.assertEqual(self.hosts()[0], [(ip, False)])
        self.cluster.heal()
        unhealthy = []
        for step in range(30):
            self.cluster.advance(0.1)
            hosts = self.hosts()
            self.assertEqual(hosts[1], [(ip, True)], step)
            unhealthy.append(hosts[2] != [(ip, True)])
        self.assertLessEqual(sum(unhealthy), 2)
        self.assertEqual(self.hosts(), [[(ip, True)]] * 3)
        self.assertTrue(self.cluster.held(1, f"{ip}:8080").native)

    def test_sweepsOnlyWhenCandidatesChange(self):
        """
        A member that goes SUSPICIOUS and comes back UP changes no one's
        responsibility: no takeover sweep; one that goes DOWN does.
        """
        self.start()
        told = []
        node = self.cluster.node(0)
        node.membersChanged = lambda: told.append(self.cluster.slots[0].clock.seconds())
        self.cluster.stall(2)
        self.cluster.advance(0.45)  # past peer_timeout_ms, short of down_after_ms
        self.assertEqual(node.cluster.membership.state(self.cluster.slots[2].nodeId), "SUSPICIOUS")
        self.cluster.unstall(2)
        self.cluster.advance(0.3)
        self.assertEqual(node.cluster.membership.state(self.cluster.slots[2].nodeId), "UP")
        self.assertEqual(told, [])
        self.cluster.crash(2)
        self.cluster.advance(1.0)
        self.assertEqual(len(told), 1)

    def test_restartedMemberTakesItBack(self):
        """
        A member that restarts is responsible again for its clients: it
        takes them over from the member that held them meanwhile.
        """
        self.start()
        ip = self.ipAt(2)
        self.send(0, register(ip))
        self.cluster.crash(2)
        self.cluster.advance(2)
        self.cluster.restart(2)
        self.cluster.advance(1)
        self.assertTrue(self.cluster.held(2, f"{ip}:8080").native)
        self.assertFalse(self.cluster.held(0, f"{ip}:8080").native)
        self.assertFalse(self.cluster.held(1, f"{ip}:8080").native)
        self.assertEqual(self.hosts(), [[(ip, True)]] * 3)

    def test_quickRestart(self):
        """
        The responsible member restarts before anyone finds it down (a
        rolling restart): it lost its clients, which its new life's
        snapshot does not name. The member responsible without it takes
        them over at once, and the restarted member takes them back: no
        member ever stops showing the instance.
        """
        self.start()
        ip = self.ipAt(2)
        self.send(0, register(ip))
        self.cluster.restart(2, settle=False)
        for _ in range(60):
            self.cluster.advance(0.05)
            self.assertEqual(self.hosts()[:2], [[(ip, True)]] * 2)
        self.assertTrue(self.cluster.held(2, f"{ip}:8080").native)
        self.assertEqual(self.hosts(), [[(ip, True)]] * 3)

    def test_twoQuickRestarts(self):
        """
        Two members restart at once, one of them the responsible member:
        the third, the only one holding the client, takes it over (whoever
        would be responsible without the restarted member may have lost
        it too), and the member responsible takes it back.
        """
        self.start()
        ip = self.ipAt(1)
        self.send(2, register(ip))
        self.cluster.crash(0)
        self.cluster.crash(1)
        self.cluster.restart(0, settle=False)
        self.cluster.restart(1, settle=False)
        for _ in range(60):
            self.cluster.advance(0.05)
            self.assertEqual(self.hosts()[2], [(ip, True)])
        self.assertEqual(self.hosts(), [[(ip, True)]] * 3)
        self.assertTrue(self.cluster.held(self.responsibleIndex(ip), f"{ip}:8080").native)

    def test_loadingMemberRefuses(self):
        """
        A member still loading answers a forward C{UNAVAILABLE} (the
        client's record may not have come yet: a deregister would miss it,
        a registration outrank it with one service of its several).
        """
        self.start()
        ip = self.ipAt(2)
        self.send(0, register(ip))
        self.cluster.crash(2)
        self.cluster.advance(1.0)  # down: node 0 or 1 took it over
        taker = next(i for i in (0, 1) if self.cluster.held(i, f"{ip}:8080").native)
        other = 1 - taker
        release = self.cluster.intercept(
            lambda src, dst, m: HOLD if (src, dst) == (taker, 2) and m.get("op") == "snapshot_begin" else None)
        self.cluster.restart(2, settle=False)
        self.cluster.flush()
        self.assertFalse(self.cluster.node(2).ready)
        self.assertEqual(self.cluster.node(other).cluster.responsibleFor(f"{ip}:8080"), peerAddress(2))
        e = self.assertRaises(RequestError, self.send, other, Write("deregister", ip, 8080, serviceKey(ORDERS)))
        self.assertEqual(e.code, UNAVAILABLE)
        release()
        self.cluster.advance(1.0)
        self.assertTrue(self.cluster.node(2).ready)
        self.assertIsNone(self.send(other, Write("deregister", ip, 8080, serviceKey(ORDERS))))
        self.assertEqual(self.hosts(), [[]] * 3)

    def test_malformedForwardAnswered(self):
        """
        A malformed C{forward} with an id is answered C{forwarded} with
        the refusal (its sender fails it at once, naming the field).
        """
        self.start()
        frames = self.cluster.record()
        self.cluster.feed(0, 1).link.sendMessage(dict(forwardMessage(99, register("10.1.0.1")), port=0))
        self.cluster.flush()
        answers = [m for _, _, m in frames if m.get("op") == "forwarded" and m.get("id") == 99]
        self.assertEqual(len(answers), 1)
        self.assertEqual(answers[0]["code"], BAD_REQUEST)
        self.assertIn("port", answers[0]["message"])

    def test_noAnswer(self):
        """
        A forward whose answer does not come in time fails C{UNAVAILABLE};
        so does one whose link is lost.
        """
        self.start()
        ip = self.ipAt(2)
        self.cluster.intercept(lambda src, dst, m: DROP if m.get("op") == "forward" else None)
        results = []
        self.cluster.node(0).heartbeatWrite(register(ip)).addBoth(results.append)
        self.cluster.flush()
        self.assertEqual(results, [])
        self.cluster.advance(0.35)
        self.assertEqual(results[0].value.code, UNAVAILABLE)
        self.assertEqual(self.cluster.node(0).cluster.forwarding.pendingCount(), 0)
        results = []
        self.cluster.node(0).heartbeatWrite(register(ip)).addBoth(results.append)
        self.cluster.crash(2)
        self.assertEqual(results[0].value.code, UNAVAILABLE)
        self.assertEqual(self.cluster.node(0).cluster.forwarding.pendingCount(), 0)

    def test_previousRelease(self):
        """
        A member that does not speak C{forward} (an earlier release) is
        never responsible once its links are known: its clients go to the
        others.
        """
        self.cluster.slots[2].offer = Offer(3, 3, ())
        self.start()
        for n in range(1, 40):
            ip = f"10.1.0.{n}"
            for i in (0, 1):
                self.assertNotEqual(self.cluster.node(i).cluster.responsibleFor(f"{ip}:8080"),
                                    peerAddress(2))
        ip = "10.1.0.1"
        self.send(0, register(ip))
        self.send(1, register(ip))
        self.assertEqual(self.hosts(), [[(ip, True)]] * 3)

    def test_forwardNeedsTheCapability(self):
        """
        A C{forward} on a link that does not speak L{FORWARD} is refused
        as bad data, and nothing is applied.
        """
        self.cluster.slots[0].offer = Offer(3, 3, ())
        self.start()
        frames = self.cluster.record()
        link = self.cluster.feed(0, 1).link
        self.assertNotIn(FORWARD, link.dialect.capabilities)
        link.sendMessage(forwardMessage(1, register("10.1.0.1")))
        self.cluster.flush()
        errors = [m for src, dst, m in frames if m.get("op") == "error"]
        self.assertEqual(len(errors), 1)
        self.assertIn("forward", errors[0]["message"])
        self.assertEqual(self.hosts(), [[]] * 3)
