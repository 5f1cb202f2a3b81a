# -*- test-case-name: tests.test_server -*-
"""
Tests for L{distro.native.session} and L{distro.node}: the client port of
PROTOCOL.md section 4 (handshake, requests, pushes, liveness) and its
framing (section 1), driven over in-memory transports on a L{task.Clock}.
"""

import math
import struct

import msgpack
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro import wire
from distro.interfaces import IClientManager, INode, IRegistry
from distro.model import ServiceKey
from distro.turns import Turns
from distro.watchdog import Watchdog
from tests._factories import instance
from tests._node import ADVERTISE, NODE_ID, NodeHarness, hostIds, service
from tests._turns import CostlyRemovals, CostlySteps, SteppedTimer, nextTurn


ORDERS = ServiceKey("public", "DEFAULT_GROUP", "orders")


def frame(body):
    """
    A frame holding C{body} exactly, whatever it is.
    """
    return struct.pack("!I", len(body)) + body


class ErrorAssertions:
    """
    Assertions on C{error} replies.
    """

    def assertError(self, reply, code, startsWith=None, re="any"):
        """
        C{reply} is an C{error} frame with C{code}, a non-empty message that
        starts with C{startsWith}, and (unless C{"any"}) C{re}.
        """
        self.assertEqual(reply["op"], "error", reply)
        self.assertEqual(reply["code"], code, reply)
        self.assertIsInstance(reply["message"], str)
        self.assertTrue(reply["message"], reply)
        if startsWith is not None:
            self.assertTrue(
                reply["message"].startswith(startsWith),
                f"{reply['message']!r} does not start with {startsWith!r}",
            )
        if re != "any":
            self.assertEqual(reply["re"], re, reply)

    def assertBadRequest(self, connection, op, field, **fields):
        """
        C{op} with C{fields} is answered with C{BAD_REQUEST} naming C{field},
        and the connection stays usable.
        """
        reply = connection.request(op, **fields)
        self.assertError(reply, wire.BAD_REQUEST, field + ":")
        self.assertFalse(connection.closing)
        connection.ok("ping")


class NodeInterfaceTests(SynchronousTestCase):
    """
    The parts of a L{distro.node.Node} provide the seams of
    L{distro.interfaces}.
    """

    def test_managerProvidesIClientManager(self):
        """
        A node's client manager provides L{IClientManager}.
        """
        node = NodeHarness().node
        self.assertTrue(verifyObject(IClientManager, node.manager))

    def test_registryProvidesIRegistry(self):
        """
        A node's registry provides L{IRegistry}.
        """
        node = NodeHarness().node
        self.assertTrue(verifyObject(IRegistry, node.registry))

    def test_nodeProvidesINode(self):
        """
        A node provides L{INode}, all a port may ask of it.
        """
        node = NodeHarness().node
        self.assertTrue(verifyObject(INode, node))

    def test_portsAskOnlyINode(self):
        """
        The ports reach none of the node's parts (its manager, registry,
        pusher), and ask it only what L{INode} names.
        """
        import os
        import re

        import distro

        allowed = set(INode.names(all=True)) | {"stop"}
        root = os.path.dirname(distro.__file__)
        sources = [os.path.join(d, f) for d in ("nacos", "http", "native")
                                   for f in os.listdir(os.path.join(root, d)) if f.endswith(".py")]
        for name in sources:
            with open(os.path.join(root, name)) as f:
                used = set(re.findall(r"\bnode\.([A-Za-z_]+)", f.read()))
            self.assertEqual(used - allowed, set(), name)


class HelloTests(SynchronousTestCase, ErrorAssertions):
    """
    The handshake of PROTOCOL.md 4.1.
    """

    def setUp(self):
        self.harness = NodeHarness(heartbeat_ms=1500, idle_timeout_ms=4500)

    def test_reply(self):
        """
        A successful C{hello} answers every field of 4.1.
        """
        connection = self.harness.connect()
        reply = connection.hello()
        self.assertEqual(reply["op"], "ok")
        self.assertEqual(reply["re"], 1)
        self.assertEqual(reply["proto"], 1)
        self.assertEqual(reply["node"], NODE_ID)
        self.assertIsInstance(reply["client_id"], str)
        self.assertTrue(reply["client_id"])
        self.assertIsInstance(reply["resume_token"], str)
        self.assertGreaterEqual(len(reply["resume_token"]), 16)
        self.assertIs(reply["resumed"], False)
        self.assertIs(reply["ready"], True)
        self.assertEqual(reply["heartbeat_ms"], 1500)
        self.assertEqual(reply["idle_timeout_ms"], 4500)
        self.assertEqual(reply["members"], [ADVERTISE])
        self.assertFalse(connection.closing)

    def test_uniqueClientIds(self):
        """
        Every connection gets its own client id and resume token.
        """
        replies = [self.harness.client().helloReply for _ in range(3)]
        self.assertEqual(len({r["client_id"] for r in replies}), 3)
        self.assertEqual(len({r["resume_token"] for r in replies}), 3)

    def test_notReady(self):
        """
        A node still loading answers C{ready: false}.
        """
        self.harness.node.ready = False
        reply = self.harness.connect().hello()
        self.assertIs(reply["ready"], False)

    def test_helloRequired(self):
        """
        A first frame other than C{hello} gets C{HELLO_REQUIRED} and the
        connection is closed; nothing sent after it is answered.
        """
        connection = self.harness.connect()
        connection.sendRaw(
            wire.encode({"op": "ping", "id": 7})
            + wire.encode({"op": "hello", "id": 8, "proto": 1})
        )
        (reply,) = connection.frames()
        self.assertError(reply, wire.HELLO_REQUIRED, re=7)
        self.assertTrue(connection.closing)
        connection.send({"op": "hello", "id": 9, "proto": 1})
        self.assertEqual(connection.frames(), [])
        self.assertEqual(self.harness.node.manager.clients, {})

    def test_unsupportedVersion(self):
        """
        A C{proto} other than 1 gets C{UNSUPPORTED_VERSION}, then the
        connection is closed.
        """
        for proto in [2, 0, "1", None, 1.0]:
            connection = self.harness.connect()
            reply = connection.hello(proto=proto)
            self.assertError(reply, wire.UNSUPPORTED_VERSION, re=1)
            self.assertTrue(connection.closing, proto)
        self.assertEqual(self.harness.node.manager.clients, {})

    def test_secondHello(self):
        """
        A second C{hello} is a C{BAD_REQUEST} naming C{op}; the session and
        its client id are kept.
        """
        connection = self.harness.client()
        clientId = connection.helloReply["client_id"]
        self.assertBadRequest(connection, "hello", "op", proto=1)
        self.assertEqual(list(self.harness.node.manager.clients), [clientId])

    def test_resumeUnknown(self):
        """
        A C{resume} naming a client the node does not know gets
        C{resumed: false}, a new client id, and C{resume_refused:
        "unknown_client"}.
        """
        connection = self.harness.connect()
        reply = connection.hello(resume={"client_id": "node-x#b#1", "resume_token": "t"})
        self.assertEqual(reply["op"], "ok")
        self.assertIs(reply["resumed"], False)
        self.assertEqual(reply["resume_refused"], "unknown_client")
        self.assertNotEqual(reply["client_id"], "node-x#b#1")

    def test_noResumeNoRefusal(self):
        """
        A C{hello} without C{resume} has no C{resume_refused}; neither has a
        granted one.
        """
        first = self.harness.client()
        self.assertNotIn("resume_refused", first.helloReply)
        first.ok("register", service=service(), instance=instance())
        first.lose()
        reply = self.harness.connect().hello(
            resume={"client_id": first.helloReply["client_id"],
                    "resume_token": first.helloReply["resume_token"]}
        )
        self.assertIs(reply["resumed"], True)
        self.assertNotIn("resume_refused", reply)

    def test_resumeWrongToken(self):
        """
        A C{resume} with a wrong token does not take the client over.
        """
        first = self.harness.client()
        first.ok("register", service=service(), instance=instance())
        first.lose()
        clientId = first.helloReply["client_id"]
        reply = self.harness.connect().hello(
            resume={"client_id": clientId, "resume_token": "wrong"}
        )
        self.assertIs(reply["resumed"], False)
        self.assertEqual(reply["resume_refused"], "wrong_token")
        self.assertNotEqual(reply["client_id"], clientId)

    def test_resumeTakesOverLiveConnection(self):
        """
        A C{resume} while the old connection is still open (half-open, say)
        closes the old one; its end removes nothing, and writes through the
        new connection act on the same client.
        """
        first = self.harness.client()
        first.ok("register", service=service(), instance=instance())
        clientId = first.helloReply["client_id"]
        resume = {"client_id": clientId, "resume_token": first.helloReply["resume_token"]}
        second = self.harness.connect()
        self.assertIs(second.hello(resume=resume)["resumed"], True)
        self.assertTrue(first.transport.disconnecting)
        first.lose()
        self.harness.clock.advance(60)
        self.assertEqual(len(self.harness.query()["hosts"]), 1)
        second.ok("batch_register", service=service(), instances=[instance()])
        second.ok("redo_done")
        self.assertIs(second.ok("deregister", service=service(), instance=instance())["removed"], True)
        self.assertEqual(self.harness.query()["hosts"], [])

    def test_resumeFieldTypes(self):
        """
        C{resume.client_id} and C{resume.resume_token} must be strings.
        """
        connection = self.harness.connect()
        reply = connection.hello(resume={"client_id": 1, "resume_token": "t"})
        self.assertError(reply, wire.BAD_REQUEST, "resume.client_id:")
        reply = connection.hello(resume={"client_id": "c"})
        self.assertError(reply, wire.BAD_REQUEST, "resume.resume_token:")

    def test_resumeNotMap(self):
        """
        A C{resume} that is not a map is a C{BAD_REQUEST} naming it, and the
        handshake may be tried again.
        """
        connection = self.harness.connect()
        reply = connection.hello(resume="x")
        self.assertError(reply, wire.BAD_REQUEST, "resume:")
        self.assertFalse(connection.closing)
        self.assertEqual(connection.hello()["op"], "ok")

    def test_resume(self):
        """
        A C{resume} within the disconnect grace, with the right token, keeps
        the client id and its instances (PROTOCOL.md 4.1).
        """
        first = self.harness.client()
        first.ok("register", service=service(), instance=instance())
        first.lose()
        clientId = first.helloReply["client_id"]
        resume = {"client_id": clientId, "resume_token": first.helloReply["resume_token"]}
        reply = self.harness.connect().hello(resume=resume)
        self.assertIs(reply["resumed"], True)
        self.assertEqual(reply["client_id"], clientId)
        self.harness.clock.advance(60)
        self.assertEqual(len(self.harness.query()["hosts"]), 1)

    def resumed(self):
        """
        A session that registered one instance and lost its connection, and
        a new connection that resumed it.
        """
        first = self.harness.client()
        first.ok("register", service=service(), instance=instance())
        first.lose()
        resume = {
            "client_id": first.helloReply["client_id"],
            "resume_token": first.helloReply["resume_token"],
        }
        second = self.harness.connect()
        reply = second.hello(resume=dict(resume, epoch=4))
        self.assertIs(reply["resumed"], True)
        return second, reply

    def test_resumeEpoch(self):
        """
        The hello reply carries the session's epoch: 1 for a new client,
        above both the held one and the presented one for a resume; the
        reply to C{redo_done} carries the epoch the client now has.
        """
        self.assertEqual(self.harness.client().helloReply["epoch"], 1)
        second, reply = self.resumed()
        self.assertEqual(reply["epoch"], 5)
        self.assertEqual(second.ok("redo_done")["epoch"], 5)
        self.assertEqual(second.ok("redo_done")["epoch"], 5)  # nothing to end: no change

    def test_restoringShowsTheHeldClient(self):
        """
        Until C{redo_done} a resumed session's writes build the client's new
        state: queries keep showing what the node held; at C{redo_done} the
        client becomes exactly what was re-sent.
        """
        second, _ = self.resumed()
        other = instance(ip="10.1.0.9")
        second.ok("batch_register", service=service(), instances=[other])
        self.assertEqual(hostIds(self.harness.query()), ["10.1.0.1#8080#DEFAULT"])
        second.ok("redo_done")
        self.assertEqual(hostIds(self.harness.query()), ["10.1.0.9#8080#DEFAULT"])

    def test_restoreAbandoned(self):
        """
        A resumed session that ends before C{redo_done} changes nothing: the
        client is kept as held, and its disconnect grace starts again.
        """
        second, _ = self.resumed()
        second.ok("batch_register", service=service(), instances=[])
        second.lose()
        self.assertEqual(len(self.harness.query()["hosts"]), 1)
        self.harness.clock.advance(60)
        self.assertEqual(self.harness.query()["hosts"], [])

    def test_byeWhileRestoring(self):
        """
        C{bye} before C{redo_done} ends the session for good: the client's
        instances go at once.
        """
        second, _ = self.resumed()
        second.ok("bye")
        self.assertEqual(self.harness.query()["hosts"], [])

    def test_resumeEpochType(self):
        """
        C{resume.epoch} must be an integer >= 0.
        """
        connection = self.harness.connect()
        for epoch in ("1", -1, 1.5):
            reply = connection.hello(resume={"client_id": "c", "resume_token": "t", "epoch": epoch})
            self.assertError(reply, wire.BAD_REQUEST, "resume.epoch:")

    def test_resumeWhileLoading(self):
        """
        A node still loading cluster data answers the resume of a client it
        does not hold with C{NOT_READY} and closes the connection; one it
        holds resumes.
        """
        first = self.harness.client()
        first.ok("register", service=service(), instance=instance())
        self.harness.node.ready = False
        connection = self.harness.connect()
        reply = connection.hello(resume={"client_id": "node-x#b#1", "resume_token": "t"})
        self.assertError(reply, wire.NOT_READY, "resume:")
        self.assertTrue(connection.transport.disconnecting)
        resume = {
            "client_id": first.helloReply["client_id"],
            "resume_token": first.helloReply["resume_token"],
        }
        self.assertIs(self.harness.connect().hello(resume=resume)["resumed"], True)

    def test_clientIdsDifferAcrossBoots(self):
        """
        Two nodes with the same node id but different boot ids (a restart)
        never hand out the same client id.
        """
        first = NodeHarness(bootId="boot-1").client().helloReply["client_id"]
        second = NodeHarness(bootId="boot-2").client().helloReply["client_id"]
        self.assertNotEqual(first, second)
        self.assertTrue(first.startswith(NODE_ID))
        self.assertTrue(second.startswith(NODE_ID))


class AuthTests(SynchronousTestCase, ErrorAssertions):
    """
    C{auth_tokens}: who may connect, and to which namespaces.
    """

    def setUp(self):
        self.harness = NodeHarness(
            auth_tokens={"all-secret": ["*"], "team-secret": ["team", "public"]}
        )

    def test_missingToken(self):
        """
        Without a token, C{hello} gets C{UNAUTHORIZED} and the connection is
        closed.
        """
        connection = self.harness.connect()
        self.assertError(connection.hello(), wire.UNAUTHORIZED, re=1)
        self.assertTrue(connection.closing)
        self.assertEqual(self.harness.node.manager.clients, {})

    def test_wrongToken(self):
        """
        An unknown token gets C{UNAUTHORIZED} and the connection is closed.
        """
        for token in ["all-secreT", "", "all-secret-and-more"]:
            connection = self.harness.connect()
            self.assertError(connection.hello(token=token), wire.UNAUTHORIZED, re=1)
            self.assertTrue(connection.closing)

    def test_noTokensConfigured(self):
        """
        Without C{auth_tokens} any token, or none, is accepted.
        """
        harness = NodeHarness()
        self.assertEqual(harness.connect().hello()["op"], "ok")
        self.assertEqual(harness.connect().hello(token="whatever")["op"], "ok")

    def test_wildcardToken(self):
        """
        A token granting C{*} may use any namespace.
        """
        connection = self.harness.client(token="all-secret")
        connection.ok("register", service=service(namespace="other"), instance=instance())
        connection.ok("query", service=service(namespace="other"))
        connection.ok("services", namespace="other")

    def test_loginToken(self):
        """
        A user's login token (the HTTP port's) opens a session for the
        user's namespaces; once it expires, the session's requests get
        C{UNAUTHORIZED} (a session keeps no grant past its token).
        """
        from distro.auth import hashPassword

        harness = NodeHarness(auth_users={"app": {"password": hashPassword("pw", n=4),
                                                  "namespaces": ["team"]}})
        results = []
        harness.node.authority.login("app", "pw").addCallback(results.append)
        connection = harness.client(token=results[0].token)
        connection.ok("register", service=service(namespace="team"), instance=instance())
        self.assertError(connection.request("register", service=service(), instance=instance()),
                         wire.FORBIDDEN)
        harness.clock.advance(harness.config.auth_token_ttl_ms / 1000.0)
        self.assertError(connection.request("query", service=service(namespace="team")),
                         wire.UNAUTHORIZED)
        self.assertError(harness.connect().hello(token=results[0].token), wire.UNAUTHORIZED, re=1)

    def _teamClient(self):
        return self.harness.client(token="team-secret")

    def assertForbidden(self, reply, namespace):
        """
        C{reply} is C{FORBIDDEN} naming C{namespace}.
        """
        self.assertError(reply, wire.FORBIDDEN)
        self.assertIn(repr(namespace), reply["message"])

    def test_grantedNamespaces(self):
        """
        A token's namespaces, and the default one when granted, are usable.
        """
        connection = self._teamClient()
        connection.ok("register", service=service(namespace="team"), instance=instance())
        connection.ok("register", service=service(), instance=instance())
        info = connection.ok("query", service=service(namespace="team"))["service_info"]
        self.assertEqual(len(info["hosts"]), 1)
        self.assertEqual(connection.ok("services", namespace="team")["count"], 1)

    def test_forbiddenRegister(self):
        """
        C{register} outside the token's namespaces is C{FORBIDDEN}, and
        nothing is registered.
        """
        connection = self._teamClient()
        reply = connection.request(
            "register", service=service(namespace="other"), instance=instance()
        )
        self.assertForbidden(reply, "other")
        self.assertEqual(self.harness.node.registry.views, {})
        self.assertFalse(connection.closing)

    def test_forbiddenBatchRegister(self):
        """
        C{batch_register} outside the token's namespaces is C{FORBIDDEN}.
        """
        connection = self._teamClient()
        reply = connection.request(
            "batch_register", service=service(namespace="other"), instances=[instance()]
        )
        self.assertForbidden(reply, "other")
        self.assertEqual(self.harness.node.registry.views, {})

    def test_forbiddenQuery(self):
        """
        C{query} outside the token's namespaces is C{FORBIDDEN}.
        """
        admin = self.harness.client(token="all-secret")
        admin.ok("register", service=service(namespace="other"), instance=instance())
        reply = self._teamClient().request("query", service=service(namespace="other"))
        self.assertForbidden(reply, "other")

    def test_forbiddenSubscribe(self):
        """
        C{subscribe} outside the token's namespaces is C{FORBIDDEN} and no
        subscription is made.
        """
        connection = self._teamClient()
        reply = connection.request("subscribe", service=service(namespace="other"))
        self.assertForbidden(reply, "other")
        self.assertEqual(connection.session.channel.subscriptions, {})

    def test_forbiddenServices(self):
        """
        C{services} for a namespace outside the token's is C{FORBIDDEN}.
        """
        reply = self._teamClient().request("services", namespace="other")
        self.assertForbidden(reply, "other")

    def test_forbiddenDefaultNamespace(self):
        """
        A token that does not grant C{public} cannot use the default
        namespace by leaving it out.
        """
        harness = NodeHarness(auth_tokens={"t": ["team"]})
        connection = harness.client(token="t")
        self.assertForbidden(connection.request("query", service=service()), "public")
        self.assertForbidden(connection.request("services"), "public")


class RegisterTests(SynchronousTestCase, ErrorAssertions):
    """
    C{register}, C{deregister} and C{batch_register}.
    """

    def setUp(self):
        self.harness = NodeHarness()
        self.connection = self.harness.client()

    def query(self, **fields):
        return self.connection.ok("query", service=service(), **fields)["service_info"]

    def test_register(self):
        """
        C{register} answers an empty result and the instance is in the view,
        with its defaults and C{instance_id}.
        """
        reply = self.connection.ok(
            "register", service=service(), instance=instance(metadata={"zone": "a"})
        )
        self.assertEqual(reply, {"op": "ok", "re": reply["re"]})
        info = self.query()
        self.assertEqual(
            info["service"], {"namespace": "public", "group": "DEFAULT_GROUP", "name": "orders"}
        )
        self.assertEqual(
            info["hosts"],
            [
                {
                    "ip": "10.1.0.1",
                    "port": 8080,
                    "cluster": "DEFAULT",
                    "weight": 1.0,
                    "healthy": True,
                    "enabled": True,
                    "metadata": {"zone": "a"},
                    "instance_id": "10.1.0.1#8080#DEFAULT",
                }
            ],
        )
        self.assertIsNone(info["clusters"])
        self.assertIsInstance(info["checksum"], str)
        self.assertIsInstance(info["revision"], int)

    def test_registerReplaces(self):
        """
        Registering the same C{(ip, port, cluster)} again replaces the
        instance; another cluster is another instance.
        """
        self.connection.ok("register", service=service(), instance=instance())
        before = self.query()
        self.connection.ok("register", service=service(), instance=instance(weight=5))
        after = self.query()
        self.assertEqual(hostIds(after), ["10.1.0.1#8080#DEFAULT"])
        self.assertEqual(after["hosts"][0]["weight"], 5.0)
        self.assertNotEqual(after["checksum"], before["checksum"])
        self.assertGreater(after["revision"], before["revision"])
        self.connection.ok("register", service=service(), instance=instance(cluster="B"))
        self.assertEqual(
            hostIds(self.query()), ["10.1.0.1#8080#B", "10.1.0.1#8080#DEFAULT"]
        )

    def test_deregister(self):
        """
        C{deregister} answers C{removed: true} when the instance was there
        and C{false} (not an error) when it was not.
        """
        self.connection.ok("register", service=service(), instance=instance())
        self.connection.ok("register", service=service(), instance=instance(cluster="B"))
        reply = self.connection.ok("deregister", service=service(), instance=instance())
        self.assertIs(reply["removed"], True)
        self.assertEqual(hostIds(self.query()), ["10.1.0.1#8080#B"])
        again = self.connection.ok("deregister", service=service(), instance=instance())
        self.assertIs(again["removed"], False)
        other = self.connection.ok("deregister", service=service("nope"), instance=instance())
        self.assertIs(other["removed"], False)
        self.assertEqual(hostIds(self.query()), ["10.1.0.1#8080#B"])

    def test_deregisterOnlyOwn(self):
        """
        A client cannot deregister another client's instance.
        """
        self.connection.ok("register", service=service(), instance=instance())
        other = self.harness.client()
        reply = other.ok("deregister", service=service(), instance=instance())
        self.assertIs(reply["removed"], False)
        self.assertEqual(len(self.query()["hosts"]), 1)

    def test_batchRegister(self):
        """
        C{batch_register} makes the client's instances in the service exactly
        the list given.
        """
        self.connection.ok("register", service=service(), instance=instance(port=1))
        self.connection.ok("register", service=service(), instance=instance(port=2))
        self.connection.ok("register", service=service("other"), instance=instance(port=9))
        reply = self.connection.ok(
            "batch_register",
            service=service(),
            instances=[instance(port=2, weight=3), instance(port=3)],
        )
        self.assertEqual(reply, {"op": "ok", "re": reply["re"]})
        info = self.query()
        self.assertEqual(hostIds(info), ["10.1.0.1#2#DEFAULT", "10.1.0.1#3#DEFAULT"])
        self.assertEqual(info["hosts"][0]["weight"], 3.0)
        self.assertEqual(len(self.harness.query("other")["hosts"]), 1)

    def test_batchRegisterEmpty(self):
        """
        C{batch_register} with an empty list removes all of the client's
        instances in that service, and only the client's.
        """
        other = self.harness.client()
        other.ok("register", service=service(), instance=instance(port=7))
        self.connection.ok("register", service=service(), instance=instance(port=1))
        self.connection.ok("register", service=service(), instance=instance(port=2))
        self.connection.ok("batch_register", service=service(), instances=[])
        self.assertEqual(hostIds(self.query()), ["10.1.0.1#7#DEFAULT"])
        client = self.harness.node.manager.clients[self.connection.helloReply["client_id"]]
        self.assertEqual(client.instanceCount, 0)


class ExpiriesInTurnsTests(SynchronousTestCase):
    """
    Clients whose disconnect graces end at once are removed over turns,
    a client at a time (found from outside: 20 clients of 2,000 instances
    held the reactor about 100 ms), each push showing a whole client there
    or gone.
    """

    def setUp(self):
        self.timer = SteppedTimer()
        self.harness = NodeHarness(turns=lambda clock: Turns(clock, budget=0.005, timer=self.timer))
        self.costly = CostlyRemovals(self.timer)
        self.harness.node.manager.addObserver(self.costly)
        self.clock = self.harness.clock
        self.subscriber = self.harness.client()
        self.subscriber.ok("subscribe", service=service())
        self.publishers = []
        for n in range(4):
            publisher = self.harness.client()
            publisher.ok("batch_register", service=service(),
                         instances=[instance(f"10.3.{n}.{i}") for i in range(3)])
            self.publishers.append(publisher)
        self.clock.advance(0)
        self.subscriber.takePushes()
        # Reading what was written no longer ends the turn: the test does.
        self.subscriber.clock = None

    def expireAll(self):
        """
        Lose every publisher's connection, then end their graces together:
        the turn where their expiries fire.
        """
        for publisher in self.publishers:
            publisher.lose()
        self.clock.rightNow += self.harness.config.disconnect_grace_ms / 1000.0
        nextTurn(self.clock)

    def test_aClientPerTurn(self):
        """
        Each removal costing more than a turn's budget, one client goes
        per turn, and a ping sent meanwhile is answered after one of them,
        not after all; every push holds whole clients; all go in the end.
        """
        pinger = self.harness.client()
        pinger.clock = None
        self.expireAll()
        self.assertEqual(len(self.costly.removed), 1)
        pingId = pinger.nextId()
        pinger.send({"op": "ping", "id": pingId})
        counts = []
        for turn in range(20):
            nextTurn(self.clock)
            counts += [len(p["service_info"]["hosts"]) for p in self.subscriber.takePushes()]
            if turn == 0:
                self.assertEqual([f["re"] for f in pinger.frames()], [pingId])
                self.assertLessEqual(len(self.costly.removed), 2)
        self.assertEqual(len(self.costly.removed), 4)
        # Whole clients (3 instances each), fewer with each push, to none.
        self.assertEqual([c % 3 for c in counts], [0] * len(counts))
        self.assertEqual(counts, sorted(set(counts), reverse=True))
        self.assertEqual(counts[-1], 0)
        self.assertEqual(self.harness.node.manager.clients.keys(),
                         {self.subscriber.helloReply["client_id"], pinger.helloReply["client_id"]})

    def test_resumedWhileWaiting(self):
        """
        A client that resumes while its removal waits for its turn is
        kept, with its instances.
        """
        self.expireAll()
        last = self.publishers[-1].helloReply
        resumed = self.harness.connect()
        reply = resumed.hello(resume={"client_id": last["client_id"], "resume_token": last["resume_token"]})
        self.assertIs(reply["resumed"], True)
        for _ in range(20):
            nextTurn(self.clock)
        self.assertEqual(len(self.costly.removed), 3)
        self.assertIn(last["client_id"], self.harness.node.manager.clients)


class BatchInSlicesTests(SynchronousTestCase, ErrorAssertions):
    """
    A C{batch_register} of more than 256 instances is read and registered
    a slice per turn (found from outside: 5,000 instances held the reactor
    38-45 ms); the frames after it wait for its reply.
    """

    def setUp(self):
        self.timer = SteppedTimer()
        self.harness = NodeHarness(turns=lambda clock: Turns(clock, budget=0.005, timer=self.timer))
        costly = CostlySteps(self.timer)
        self.steps = costly.revisions
        self.harness.node.manager.addObserver(costly)
        self.connection = self.harness.client()
        self.clock = self.harness.clock

    def batch(self, count, **fields):
        return [instance(f"10.2.{i // 250}.{i % 250}", **fields) for i in range(count)]

    def test_inSlicesRepliesInOrder(self):
        connection = self.connection
        batchId, pingId = connection.nextId(), connection.nextId()
        connection.send({"op": "batch_register", "id": batchId, "service": service(),
                         "instances": self.batch(1000)})
        connection.send({"op": "ping", "id": pingId})
        turns = 0
        replies = []
        while len(replies) < 2:
            nextTurn(self.clock)
            turns += 1
            self.assertLess(turns, 100)
            data = connection.transport.value()[connection._offset:]
            if data:
                replies += [f["re"] for f in connection.frames() if f.get("op") != "push"]
        self.assertEqual(replies, [batchId, pingId])
        self.assertEqual(turns, 3)  # a step per turn after the first
        self.assertEqual(len(self.steps), 4)  # 1,000 in steps of 256
        self.assertEqual(len(self.harness.query("orders")["hosts"]), 1000)

    def test_badInstanceRefusesAll(self):
        instances = self.batch(1000)
        instances[900]["port"] = "x"
        reply = self.connection.request("batch_register", service=service(), instances=instances)
        self.assertError(reply, "BAD_REQUEST", "instances[900].port")
        self.assertEqual(self.steps, [])
        self.connection.ok("ping")

    def test_failureAnsweredInternal(self):
        """
        A batch that fails midway for the node's own fault is answered
        INTERNAL (and logged), and the frames after it are handled.
        """
        def broken(client, service, instances):
            yield
            raise RuntimeError("boom")

        self.patch(self.harness.node, "batchRegisterInSlices", broken)
        reply = self.connection.request("batch_register", service=service(), instances=self.batch(1000))
        self.assertError(reply, "INTERNAL")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.connection.ok("ping")

    def test_connectionLostMidway(self):
        """
        A connection lost while its batch is applied stops it.
        """
        connection = self.connection
        connection.send({"op": "batch_register", "id": connection.nextId(), "service": service(),
                         "instances": self.batch(1000)})
        while not self.steps:
            nextTurn(self.clock)
        connection.session.connectionLost(None)
        for _ in range(20):
            nextTurn(self.clock)
        self.assertEqual(len(self.steps), 1)
        self.assertEqual(len(self.harness.query("orders")["hosts"]), 256)


class QueryTests(SynchronousTestCase, ErrorAssertions):
    """
    C{query}: filters, hidden instances and the separation of namespaces and
    groups.
    """

    def setUp(self):
        self.harness = NodeHarness()
        self.connection = self.harness.client()

    def register(self, svc=None, **fields):
        self.connection.ok("register", service=svc or service(), instance=instance(**fields))

    def query(self, svc=None, **fields):
        return self.connection.ok("query", service=svc or service(), **fields)["service_info"]

    def test_unknownService(self):
        """
        A service nobody publishes has an empty view.
        """
        info = self.query(service("nobody"))
        self.assertEqual(info["hosts"], [])
        self.assertEqual(info["service"]["name"], "nobody")

    def test_clustersFilter(self):
        """
        C{clusters} limits the hosts to those clusters and is echoed.
        """
        self.register(cluster="A", port=1)
        self.register(cluster="B", port=2)
        self.register(cluster="C", port=3)
        info = self.query(clusters=["C", "A"])
        self.assertEqual(hostIds(info), ["10.1.0.1#1#A", "10.1.0.1#3#C"])
        self.assertEqual(sorted(info["clusters"]), ["A", "C"])
        self.assertEqual(len(self.query()["hosts"]), 3)

    def test_healthyOnly(self):
        """
        C{healthy_only} leaves out unhealthy instances; without it they are
        listed.
        """
        self.register(port=1)
        self.register(port=2, healthy=False)
        self.assertEqual(hostIds(self.query(healthy_only=True)), ["10.1.0.1#1#DEFAULT"])
        self.assertEqual(len(self.query(healthy_only=False)["hosts"]), 2)
        self.assertEqual(len(self.query()["hosts"]), 2)

    def test_disabledHidden(self):
        """
        Disabled instances are never returned.
        """
        self.register(port=1)
        self.register(port=2, enabled=False)
        self.assertEqual(hostIds(self.query()), ["10.1.0.1#1#DEFAULT"])
        self.register(port=1, enabled=False)
        self.assertEqual(self.query()["hosts"], [])

    def test_namespacesAndGroupsSeparate(self):
        """
        The same name in another namespace or group is another service.
        """
        self.register(service(), port=1)
        self.register(service(namespace="ns2"), port=2)
        self.register(service(group="G2"), port=3)
        self.assertEqual(hostIds(self.query(service())), ["10.1.0.1#1#DEFAULT"])
        self.assertEqual(hostIds(self.query(service(namespace="ns2"))), ["10.1.0.1#2#DEFAULT"])
        self.assertEqual(hostIds(self.query(service(group="G2"))), ["10.1.0.1#3#DEFAULT"])
        explicit = service(namespace="public", group="DEFAULT_GROUP")
        self.assertEqual(hostIds(self.query(explicit)), ["10.1.0.1#1#DEFAULT"])

    def test_sameInstanceTwoClients(self):
        """
        Two clients publishing the same C{(ip, port, cluster)} show as one
        host; it stays while either publishes it.
        """
        self.register(port=1, weight=2)
        other = self.harness.client()
        self.harness.clock.advance(1)
        other.ok("register", service=service(), instance=instance(port=1, weight=4))
        info = self.query()
        self.assertEqual(hostIds(info), ["10.1.0.1#1#DEFAULT"])
        self.assertEqual(info["hosts"][0]["weight"], 4.0)
        other.ok("deregister", service=service(), instance=instance(port=1))
        info = self.query()
        self.assertEqual(info["hosts"][0]["weight"], 2.0)


class SubscribeTests(SynchronousTestCase, ErrorAssertions):
    """
    C{subscribe} and C{unsubscribe}, and the pushes of 4.3.
    """

    def setUp(self):
        self.harness = NodeHarness(push_delay_ms=20)
        self.clock = self.harness.clock
        self.subscriber = self.harness.client()
        self.publisher = self.harness.client()

    def register(self, **fields):
        self.publisher.ok("register", service=service(), instance=instance(**fields))

    def test_subscribeReply(self):
        """
        C{subscribe} answers the current view.
        """
        self.register(port=1)
        reply = self.subscriber.ok("subscribe", service=service())
        self.assertEqual(hostIds(reply["service_info"]), ["10.1.0.1#1#DEFAULT"])
        self.assertEqual(self.subscriber.takePushes(), [])

    def test_pushes(self):
        """
        After C{subscribe}, each change is pushed with an increasing C{seq}
        and the full view.
        """
        self.subscriber.ok("subscribe", service=service())
        seqs = []
        for port in [1, 2, 3]:
            self.clock.advance(1)
            self.register(port=port)
            (push,) = self.subscriber.takePushes()
            self.assertEqual(set(push), {"op", "seq", "service_info"})
            seqs.append(push["seq"])
            self.assertEqual(
                hostIds(push["service_info"]),
                [f"10.1.0.1#{p}#DEFAULT" for p in range(1, port + 1)],
            )
            self.assertEqual(push["service_info"], self.harness.query())
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertGreater(seqs[0], 0)

    def test_seqPerConnectionAcrossSubscriptions(self):
        """
        C{seq} increases per connection, over all its subscriptions.
        """
        self.subscriber.ok("subscribe", service=service())
        self.subscriber.ok("subscribe", service=service("other"))
        self.register(port=1)
        self.publisher.ok("register", service=service("other"), instance=instance())
        pushes = self.subscriber.takePushes()
        self.assertEqual(len(pushes), 2)
        self.assertLess(pushes[0]["seq"], pushes[1]["seq"])
        names = [p["service_info"]["service"]["name"] for p in pushes]
        self.assertEqual(names, ["orders", "other"])

    def test_unsubscribe(self):
        """
        After C{unsubscribe} no more pushes come.
        """
        self.subscriber.ok("subscribe", service=service())
        self.register(port=1)
        self.assertEqual(len(self.subscriber.takePushes()), 1)
        reply = self.subscriber.ok("unsubscribe", service=service())
        self.assertEqual(reply, {"op": "ok", "re": reply["re"]})
        self.clock.advance(1)
        self.register(port=2)
        self.clock.advance(1)
        self.assertEqual(self.subscriber.takePushes(), [])
        self.assertEqual(self.harness.node.pusher.subscriberCount(ORDERS), 0)

    def test_unsubscribePending(self):
        """
        A push that was due when the subscriber unsubscribed is not sent.
        """
        self.subscriber.ok("subscribe", service=service())
        self.register(port=1)
        self.register(port=2)
        self.assertEqual(len(self.subscriber.takePushes()), 1)
        self.subscriber.ok("unsubscribe", service=service())
        self.clock.advance(1)
        self.assertEqual(self.subscriber.takePushes(), [])

    def test_unsubscribeFilter(self):
        """
        C{unsubscribe} drops only the subscription with that cluster filter.
        """
        self.subscriber.ok("subscribe", service=service())
        self.subscriber.ok("subscribe", service=service(), clusters=["DEFAULT"])
        self.subscriber.ok("unsubscribe", service=service())
        self.register(port=1)
        (push,) = self.subscriber.takePushes()
        self.assertEqual(push["service_info"]["clusters"], ["DEFAULT"])

    def test_firstChangePushedAtOnce(self):
        """
        The first change after a quiet spell is pushed without waiting for
        the clock.
        """
        self.subscriber.ok("subscribe", service=service())
        self.clock.advance(60)
        self.register(port=1)
        (push,) = self.subscriber.takePushes()
        self.assertEqual(hostIds(push["service_info"]), ["10.1.0.1#1#DEFAULT"])
        self.assertEqual(self.clock.getDelayedCalls(), idleTimers(self.harness))

    def test_coalesced(self):
        """
        Changes within C{push_delay_ms} of a push are coalesced into one push
        at the end of the window, with the final view.
        """
        self.subscriber.ok("subscribe", service=service())
        self.register(port=1)
        self.assertEqual(len(self.subscriber.takePushes()), 1)
        self.clock.advance(0.005)
        self.register(port=2)
        self.register(port=3)
        self.register(port=2, weight=7)
        self.clock.advance(0.010)
        self.assertEqual(self.subscriber.takePushes(), [])
        self.clock.advance(0.005)
        (push,) = self.subscriber.takePushes()
        self.assertEqual(
            hostIds(push["service_info"]),
            ["10.1.0.1#1#DEFAULT", "10.1.0.1#2#DEFAULT", "10.1.0.1#3#DEFAULT"],
        )
        self.assertEqual(push["service_info"]["hosts"][1]["weight"], 7.0)
        self.clock.advance(1)
        self.assertEqual(self.subscriber.takePushes(), [])

    def test_otherClusterNoPush(self):
        """
        A change outside the subscriber's cluster filter pushes nothing.
        """
        self.subscriber.ok("subscribe", service=service(), clusters=["A"])
        self.register(cluster="B", port=1)
        self.clock.advance(1)
        self.register(cluster="B", port=2)
        self.clock.advance(1)
        self.assertEqual(self.subscriber.takePushes(), [])
        self.register(cluster="A", port=3)
        (push,) = self.subscriber.takePushes()
        self.assertEqual(hostIds(push["service_info"]), ["10.1.0.1#3#A"])
        self.assertEqual(push["service_info"]["clusters"], ["A"])

    def test_backpressure(self):
        """
        While the transport has paused the session (its send buffer is full)
        nothing more is written, the session stops reading, at most one push
        per subscription waits; on resume exactly one push with the newest
        view is sent.
        """
        self.subscriber.ok("subscribe", service=service())
        self.subscriber.ok("subscribe", service=service(), clusters=["DEFAULT"])
        session = self.subscriber.session
        written = len(self.subscriber.transport.value())
        session.pauseProducing()
        self.assertEqual(self.subscriber.transport.producerState, "paused")
        for i in range(1000):
            self.register(port=1, weight=i)
            if i % 100 == 0:
                self.clock.advance(0.05)
        self.clock.advance(1)
        self.assertEqual(len(self.subscriber.transport.value()), written)
        self.assertLessEqual(session.channel.pendingCount(), 2)
        session.resumeProducing()
        self.assertEqual(self.subscriber.transport.producerState, "producing")
        self.clock.advance(1)
        pushes = self.subscriber.takePushes()
        self.assertEqual(len(pushes), 2)
        for push in pushes:
            self.assertEqual(push["service_info"]["hosts"][0]["weight"], 999.0)
        self.assertEqual(session.channel.pendingCount(), 0)

    def test_sameContentNoPush(self):
        """
        Registering an instance again with the same content changes no view
        and pushes nothing.
        """
        self.subscriber.ok("subscribe", service=service())
        self.register(port=1, metadata={"a": "b"})
        self.assertEqual(len(self.subscriber.takePushes()), 1)
        self.clock.advance(1)
        self.register(port=1, metadata={"a": "b"})
        self.clock.advance(1)
        self.assertEqual(self.subscriber.takePushes(), [])

    def test_revisionIncreases(self):
        """
        The C{revision} of a view increases with every change, also when the
        view becomes empty (PROTOCOL.md 3).
        """
        self.subscriber.ok("subscribe", service=service())
        revisions = []
        for port in [1, 2]:
            self.clock.advance(1)
            self.register(port=port)
            (push,) = self.subscriber.takePushes()
            revisions.append(push["service_info"]["revision"])
        self.clock.advance(1)
        self.publisher.ok("batch_register", service=service(), instances=[])
        (push,) = self.subscriber.takePushes()
        self.assertEqual(push["service_info"]["hosts"], [])
        revisions.append(push["service_info"]["revision"])
        self.assertEqual(revisions, sorted(set(revisions)), revisions)

    def test_resubscribeNoDuplicate(self):
        """
        Subscribing twice to the same view is one subscription: one push per
        change.
        """
        self.subscriber.ok("subscribe", service=service())
        self.subscriber.ok("subscribe", service=service())
        self.register(port=1)
        self.assertEqual(len(self.subscriber.takePushes()), 1)

    def test_subscriptionsEndWithConnection(self):
        """
        When the subscriber's connection is lost its subscriptions are
        forgotten.
        """
        self.subscriber.ok("subscribe", service=service())
        self.subscriber.lose()
        self.assertEqual(self.harness.node.pusher.subscriberCount(ORDERS), 0)
        self.register(port=1)
        self.assertEqual(self.subscriber.takePushes(), [])


class ServicesTests(SynchronousTestCase, ErrorAssertions):
    """
    C{services}: listing, paging and filtering.
    """

    def setUp(self):
        self.harness = NodeHarness()
        self.connection = self.harness.client()
        for group, name, count in [
            ("DEFAULT_GROUP", "a", 2),
            ("DEFAULT_GROUP", "b", 1),
            ("DEFAULT_GROUP", "c", 1),
            ("G2", "d", 3),
        ]:
            for port in range(1, count + 1):
                self.connection.ok(
                    "register", service=service(name, group=group), instance=instance(port=port)
                )
        self.connection.ok(
            "register", service=service("e", namespace="ns2"), instance=instance()
        )

    def test_all(self):
        """
        Without arguments: every service of C{public}, with its instance
        count.
        """
        reply = self.connection.ok("services")
        self.assertEqual(reply["count"], 4)
        self.assertEqual(
            reply["services"],
            [
                {"group": "DEFAULT_GROUP", "name": "a", "instances": 2},
                {"group": "DEFAULT_GROUP", "name": "b", "instances": 1},
                {"group": "DEFAULT_GROUP", "name": "c", "instances": 1},
                {"group": "G2", "name": "d", "instances": 3},
            ],
        )

    def test_paging(self):
        """
        C{page} and C{size} select one page; C{count} is the total.
        """
        first = self.connection.ok("services", page=1, size=3)
        second = self.connection.ok("services", page=2, size=3)
        beyond = self.connection.ok("services", page=3, size=3)
        self.assertEqual([s["name"] for s in first["services"]], ["a", "b", "c"])
        self.assertEqual([s["name"] for s in second["services"]], ["d"])
        self.assertEqual(beyond["services"], [])
        self.assertEqual({first["count"], second["count"], beyond["count"]}, {4})

    def test_sizeMax(self):
        """
        C{size} up to 1000 is accepted; above it, or below 1, is a
        C{BAD_REQUEST} naming C{size}. A bad C{page} names C{page}.
        """
        self.assertEqual(self.connection.ok("services", size=1000)["count"], 4)
        for size in [1001, 0, -1, "10", 2.5]:
            self.assertBadRequest(self.connection, "services", "size", size=size)
        for page in [0, -1, "1"]:
            self.assertBadRequest(self.connection, "services", "page", page=page)

    def test_groupFilter(self):
        """
        C{group} lists only that group's services.
        """
        reply = self.connection.ok("services", group="G2")
        self.assertEqual(reply["count"], 1)
        self.assertEqual(reply["services"], [{"group": "G2", "name": "d", "instances": 3}])
        self.assertEqual(self.connection.ok("services", group="none")["count"], 0)

    def test_namespace(self):
        """
        C{namespace} lists that namespace only.
        """
        reply = self.connection.ok("services", namespace="ns2")
        self.assertEqual(
            reply["services"], [{"group": "DEFAULT_GROUP", "name": "e", "instances": 1}]
        )
        self.assertEqual(self.connection.ok("services", namespace="none")["count"], 0)

    def test_disabledNotCounted(self):
        """
        The instance count is what a query returns: disabled ones are left
        out; a service whose instances are all gone is not listed.
        """
        self.connection.ok(
            "register", service=service("a"), instance=instance(port=1, enabled=False)
        )
        self.connection.ok("batch_register", service=service("b"), instances=[])
        reply = self.connection.ok("services")
        self.assertEqual(
            [(s["name"], s["instances"]) for s in reply["services"]],
            [("a", 1), ("c", 1), ("d", 3)],
        )


class SmallOpsTests(SynchronousTestCase, ErrorAssertions):
    """
    C{members}, C{ping} and C{bye}.
    """

    def setUp(self):
        self.harness = NodeHarness()
        self.connection = self.harness.client()

    def test_members(self):
        """
        C{members} lists this node, C{UP}, as itself, with its client-port
        address.
        """
        reply = self.connection.ok("members")
        self.assertEqual(
            reply["members"],
            [{"node": NODE_ID, "address": ADVERTISE, "state": "UP", "self": True}],
        )

    def test_membersAtTheAddressReached(self):
        """
        A standalone node on every interface, without C{advertise}, shows
        itself (in C{members} and in C{hello}'s failover list) at the
        address the asking connection reached, which that client can use,
        not at the machine's host name.
        """
        harness = NodeHarness(advertise="")
        harness.node.clientPortBound("0.0.0.0:9850")
        connection = harness.connect()
        connection.transport.hostAddr = IPv4Address("TCP", "192.0.2.7", 9850)
        self.assertEqual(connection.hello()["members"], ["192.0.2.7:9850"])
        self.assertEqual(
            connection.ok("members")["members"],
            [{"node": NODE_ID, "address": "192.0.2.7:9850", "state": "UP", "self": True}],
        )

    def test_membersAtTheInterface(self):
        """
        A node on one interface shows itself at that interface.
        """
        harness = NodeHarness(advertise="")
        harness.node.clientPortBound("127.0.0.1:9850")
        connection = harness.client()
        self.assertEqual(connection.ok("members")["members"][0]["address"], "127.0.0.1:9850")

    def test_ping(self):
        """
        C{ping} answers an empty result.
        """
        reply = self.connection.ok("ping")
        self.assertEqual(reply, {"op": "ok", "re": reply["re"]})

    def test_anyRequestId(self):
        """
        An empty result answers its request's id, small or large (the
        usual ids go in a prebuilt frame, the others through msgpack).
        """
        for rid in (1, 127, 128, 2**16, 2**32 - 1, 2**32, 2**63 - 1):
            reply = self.connection.roundTrip({"op": "ping", "id": rid})
            self.assertEqual(reply, {"op": "ok", "re": rid})

    def test_unknownFieldsIgnored(self):
        """
        Unknown keys in a request are ignored.
        """
        self.connection.ok("ping", future={"x": [1, 2]})
        self.connection.ok("register", service=service(extra=1), instance=instance(extra=True))

    def test_bye(self):
        """
        C{bye} is answered, then the connection is closed and the client's
        instances are removed at once; another subscriber gets a push.
        """
        subscriber = self.harness.client()
        subscriber.ok("subscribe", service=service())
        self.connection.ok("register", service=service(), instance=instance())
        self.assertEqual(len(subscriber.takePushes()), 1)
        self.harness.clock.advance(1)
        clientId = self.connection.helloReply["client_id"]
        reply = self.connection.ok("bye")
        self.assertEqual(reply, {"op": "ok", "re": reply["re"]})
        self.assertTrue(self.connection.closing)
        self.assertNotIn(clientId, self.harness.node.manager.clients)
        (push,) = subscriber.takePushes()
        self.assertEqual(push["service_info"]["hosts"], [])
        self.connection.send({"op": "ping", "id": 99})
        self.assertEqual(self.connection.frames(), [])
        self.connection.lose(orderly=True)
        self.assertEqual(self.harness.clock.getDelayedCalls(), idleTimers(self.harness))
        self.assertEqual(self.harness.query()["hosts"], [])

    def test_byeNothingAfterReply(self):
        """
        Once C{bye} is answered nothing more is written on that connection,
        not even a push caused by its own instances going away.
        """
        self.connection.ok("subscribe", service=service())
        self.connection.ok("register", service=service(), instance=instance())
        self.connection.takePushes()
        self.harness.clock.advance(1)
        rid = self.connection.nextId()
        self.connection.send({"op": "bye", "id": rid})
        frames = self.connection.frames()
        self.assertEqual(frames, [{"op": "ok", "re": rid}])


def idleTimers(harness):
    """
    The idle timers of the connections still open on C{harness}.
    """
    return [
        c for c in harness.clock.getDelayedCalls() if isinstance(getattr(c.func, "__self__", None), Watchdog)
    ]


class BadRequestTests(SynchronousTestCase, ErrorAssertions):
    """
    Bad fields get C{BAD_REQUEST} naming the field; the connection stays
    usable and nothing is changed.
    """

    def setUp(self):
        self.harness = NodeHarness()
        self.connection = self.harness.client()

    def tearDown(self):
        self.assertEqual(self.harness.node.registry.views, {})

    def badInstance(self, field, **fields):
        """
        C{register} of C{instance()} updated with C{fields} names C{field}.
        """
        self.assertBadRequest(
            self.connection,
            "register",
            f"instance.{field}",
            service=service(),
            instance=instance(**fields),
        )

    def test_missingId(self):
        """
        A request without an integer C{id} > 0 is a C{BAD_REQUEST} naming
        C{id}, answered with C{re} nil.
        """
        for rid in [None, 0, -1, "1", 1.0, True]:
            message = {"op": "ping"}
            if rid is not None:
                message["id"] = rid
            reply = self.connection.roundTrip(message)
            self.assertError(reply, wire.BAD_REQUEST, "id:", re=None)
        self.connection.ok("ping")

    def test_missingService(self):
        """
        C{register} and C{query} without C{service} name C{service}.
        """
        self.assertBadRequest(self.connection, "register", "service", instance=instance())
        self.assertBadRequest(self.connection, "query", "service")
        self.assertBadRequest(self.connection, "subscribe", "service", service="orders")

    def test_serviceNameType(self):
        """
        A C{service.name} that is not a string, or missing, names
        C{service.name}.
        """
        for name in [1, None, ["x"], b"orders", ""]:
            self.assertBadRequest(
                self.connection,
                "register",
                "service.name",
                service={"name": name},
                instance=instance(),
            )
        self.assertBadRequest(self.connection, "query", "service.name", service={})

    def test_groupAtAt(self):
        """
        C{@@} in C{service.group} names C{service.group}.
        """
        self.assertBadRequest(
            self.connection,
            "register",
            "service.group",
            service=service(group="a@@b"),
            instance=instance(),
        )

    def test_nameAtAt(self):
        """
        C{@@} in C{service.name} names C{service.name}.
        """
        self.assertBadRequest(
            self.connection, "query", "service.name", service=service("a@@b")
        )

    def test_namespaceLength(self):
        """
        A namespace over 256 bytes, or holding a control character, names
        C{service.namespace}.
        """
        for namespace in ["n" * 257, "a\x00b", 5]:
            self.assertBadRequest(
                self.connection, "query", "service.namespace", service=service(namespace=namespace)
            )

    def test_port(self):
        """
        A port of 0, 70000, a string or a boolean names C{instance.port}.
        """
        for port in [0, 70000, "80", True, None, 80.0, -1]:
            self.badInstance("port", port=port)

    def test_ip(self):
        """
        An ip that is neither an address nor a host name names
        C{instance.ip}.
        """
        for ip in ["", "not a host", "-a.b", 127, None, "a..b"]:
            self.badInstance("ip", ip=ip)

    def test_cluster(self):
        """
        A bad cluster name names C{instance.cluster}.
        """
        for cluster in ["", "a b", "x" * 65, "é", 3]:
            self.badInstance("cluster", cluster=cluster)

    def test_weight(self):
        """
        A weight of -1, 10001, NaN, infinity or a string names
        C{instance.weight}.
        """
        for weight in [-1, 10001, math.nan, math.inf, "1", True]:
            self.badInstance("weight", weight=weight)

    def test_healthy(self):
        """
        C{healthy: "yes"} names C{instance.healthy}; C{enabled} likewise.
        """
        self.badInstance("healthy", healthy="yes")
        self.badInstance("healthy", healthy=1)
        self.badInstance("enabled", enabled="no")

    def test_metadata(self):
        """
        Metadata that is not a map of strings names C{instance.metadata}.
        """
        for metadata in [{"a": 1}, {"a": None}, {"a": ["b"]}, ["a"], "a=b"]:
            self.badInstance("metadata", metadata=metadata)

    def test_instanceNotMap(self):
        """
        An C{instance} that is not a map names C{instance}.
        """
        for value in [None, [], "10.0.0.1:80"]:
            self.assertBadRequest(
                self.connection, "register", "instance", service=service(), instance=value
            )
        self.assertBadRequest(
            self.connection, "deregister", "instance", service=service(), instance=None
        )

    def test_instancesNotList(self):
        """
        C{instances} that is not a list names C{instances}; a bad element
        names its index.
        """
        for value in [None, {}, instance(), "x"]:
            self.assertBadRequest(
                self.connection, "batch_register", "instances", service=service(), instances=value
            )
        self.assertBadRequest(
            self.connection,
            "batch_register",
            "instances[1].port",
            service=service(),
            instances=[instance(), instance(port=0)],
        )

    def test_clusters(self):
        """
        A C{clusters} filter that is not a list of names names C{clusters}.
        """
        self.assertBadRequest(
            self.connection, "query", "clusters", service=service(), clusters="A"
        )
        self.assertBadRequest(
            self.connection, "subscribe", "clusters[0]", service=service(), clusters=["a b"]
        )

    def test_healthyOnly(self):
        """
        A non-boolean C{healthy_only} names it.
        """
        self.assertBadRequest(
            self.connection, "query", "healthy_only", service=service(), healthy_only="yes"
        )


class LimitTests(SynchronousTestCase, ErrorAssertions):
    """
    C{LIMIT_EXCEEDED}, naming the limit.
    """

    def test_maxMetadataBytes(self):
        """
        Metadata encoding larger than C{max_metadata_bytes} is refused.
        """
        harness = NodeHarness(max_metadata_bytes=100)
        connection = harness.client()
        connection.ok("register", service=service(), instance=instance(metadata={"k": "v" * 80}))
        reply = connection.request(
            "register", service=service(), instance=instance(port=2, metadata={"k": "v" * 100})
        )
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_metadata_bytes")
        self.assertEqual(len(harness.query()["hosts"]), 1)

    def test_maxInstancesRegister(self):
        """
        C{register} of one instance more than C{max_instances_per_client}
        (over all services) is refused; replacing a held one is not.
        """
        harness = NodeHarness(max_instances_per_client=3)
        connection = harness.client()
        connection.ok("register", service=service(), instance=instance(port=1))
        connection.ok("register", service=service(), instance=instance(port=2))
        connection.ok("register", service=service("other"), instance=instance(port=3))
        reply = connection.request("register", service=service(), instance=instance(port=4))
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_instances_per_client")
        connection.ok("register", service=service(), instance=instance(port=2, weight=9))
        self.assertEqual(len(harness.query()["hosts"]), 2)
        other = harness.client()
        other.ok("register", service=service(), instance=instance(port=4))

    def test_maxInstancesBatchRegister(self):
        """
        C{batch_register} that would leave the client over
        C{max_instances_per_client} is refused and changes nothing.
        """
        harness = NodeHarness(max_instances_per_client=3)
        connection = harness.client()
        reply = connection.request(
            "batch_register",
            service=service(),
            instances=[instance(port=p) for p in range(1, 5)],
        )
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_instances_per_client")
        connection.ok("register", service=service("other"), instance=instance(port=9))
        reply = connection.request(
            "batch_register",
            service=service(),
            instances=[instance(port=p) for p in range(1, 4)],
        )
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_instances_per_client")
        self.assertEqual(harness.query()["hosts"], [])
        connection.ok(
            "batch_register",
            service=service(),
            instances=[instance(port=p) for p in range(1, 3)],
        )
        self.assertEqual(len(harness.query()["hosts"]), 2)

    def test_maxSubscriptions(self):
        """
        A subscription over C{max_subscriptions_per_client} is refused;
        renewing a held one is not.
        """
        harness = NodeHarness(max_subscriptions_per_client=2)
        connection = harness.client()
        connection.ok("subscribe", service=service("a"))
        connection.ok("subscribe", service=service("a"), clusters=["X"])
        reply = connection.request("subscribe", service=service("b"))
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_subscriptions_per_client")
        connection.ok("subscribe", service=service("a"))
        self.assertEqual(len(connection.session.channel.subscriptions), 2)
        connection.ok("unsubscribe", service=service("a"))
        connection.ok("subscribe", service=service("b"))

    def test_maxConnectionsPerIp(self):
        """
        A connection over C{max_connections_per_ip} gets C{LIMIT_EXCEEDED}
        with C{re} nil and is closed; other IPs are still accepted, and once
        a connection ends its IP may connect again.
        """
        harness = NodeHarness(max_connections_per_ip=2)
        first = harness.client(host="10.0.0.1")
        harness.client(host="10.0.0.1")
        refused = harness.connect(host="10.0.0.1")
        (reply,) = refused.frames()
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_connections_per_ip", re=None)
        self.assertTrue(refused.closing)
        refused.send({"op": "hello", "id": 1, "proto": 1})
        self.assertEqual(refused.frames(), [])
        refused.lose()
        harness.client(host="10.0.0.2")
        first.lose()
        harness.client(host="10.0.0.1")
        self.assertEqual(len(harness.factory.sessions), 3)


    def test_maxConnectionsPerIpReconnect(self):
        """
        With C{max_connections_per_ip} 1, an IP whose connection ended (by
        C{bye} or otherwise) may connect again, many times over.
        """
        harness = NodeHarness(max_connections_per_ip=1)
        for i in range(3):
            connection = harness.client(host="10.0.0.1")
            (reply,) = harness.connect(host="10.0.0.1").frames()
            self.assertError(reply, wire.LIMIT_EXCEEDED, "max_connections_per_ip")
            if i % 2:
                connection.ok("bye")
            connection.lose(orderly=bool(i % 2))
        self.assertEqual(harness.factory.sessions, set())


class OtherErrorTests(SynchronousTestCase, ErrorAssertions):
    """
    C{UNKNOWN_OP}, C{NOT_READY} and C{INTERNAL}.
    """

    def setUp(self):
        self.harness = NodeHarness()
        self.connection = self.harness.client()

    def test_unknownOp(self):
        """
        An unknown C{op} gets C{UNKNOWN_OP} with the request's id; the
        connection stays usable.
        """
        for op in ["frobnicate", 5, None, "Register"]:
            reply = self.connection.request(op)
            self.assertError(reply, wire.UNKNOWN_OP, re=reply["re"])
            self.assertIsNotNone(reply["re"])
        self.assertFalse(self.connection.closing)
        self.connection.ok("ping")

    def test_notReady(self):
        """
        While the node is not ready, C{query} and C{subscribe} get
        C{NOT_READY}; writes are accepted.
        """
        self.harness.node.ready = False
        reply = self.connection.request("query", service=service())
        self.assertError(reply, wire.NOT_READY)
        reply = self.connection.request("subscribe", service=service())
        self.assertError(reply, wire.NOT_READY)
        self.assertEqual(self.connection.session.channel.subscriptions, {})
        self.connection.ok("register", service=service(), instance=instance())
        self.connection.ok("batch_register", service=service("b"), instances=[instance()])
        self.connection.ok("ping")
        self.harness.node.ready = True
        info = self.connection.ok("query", service=service())["service_info"]
        self.assertEqual(len(info["hosts"]), 1)

    def test_internal(self):
        """
        A handler failing unexpectedly is answered with C{INTERNAL} and
        logged; the connection keeps working.
        """
        registry = self.harness.node.registry

        def broken(*args, **kwargs):
            raise RuntimeError("boom")

        registry.serviceInfo = broken
        reply = self.connection.request("query", service=service())
        self.assertError(reply, wire.INTERNAL, re=reply["re"])
        self.assertIsNotNone(reply["re"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(self.connection.closing)
        del registry.serviceInfo
        self.connection.ok("register", service=service(), instance=instance())
        info = self.connection.ok("query", service=service())["service_info"]
        self.assertEqual(len(info["hosts"]), 1)


class FramingTests(SynchronousTestCase, ErrorAssertions):
    """
    Framing (PROTOCOL.md section 1) on the client port.
    """

    def setUp(self):
        self.harness = NodeHarness(max_frame=8192, max_metadata_bytes=4096)
        self.connection = self.harness.client()

    def assertBadFrame(self, body):
        """
        A frame holding C{body} gets C{BAD_FRAME} with C{re} nil; the
        connection stays open and the next request works.
        """
        self.connection.sendRaw(frame(body))
        (reply,) = self.connection.frames()
        self.assertError(reply, wire.BAD_FRAME, re=None)
        self.assertFalse(self.connection.closing)
        self.connection.ok("ping")

    def test_invalidMsgpack(self):
        """
        A body that is not msgpack is a C{BAD_FRAME}.
        """
        self.assertBadFrame(b"\xc1")
        self.assertBadFrame(b"\x82\xa2op")
        self.assertBadFrame(b"")
        self.assertBadFrame(b"\x81\xa2op\xa3\xff\xfe\xfd")

    def test_notMap(self):
        """
        A msgpack value other than a map is a C{BAD_FRAME}.
        """
        for value in [[1, 2], "ping", None, 5]:
            self.assertBadFrame(msgpack.packb(value))

    def test_trailingBytes(self):
        """
        Bytes after the value inside one frame are a C{BAD_FRAME}.
        """
        self.assertBadFrame(msgpack.packb({"op": "ping", "id": 50}) + b"\x01")

    def test_nonStringKeys(self):
        """
        A map with keys that are not strings is a C{BAD_FRAME}.
        """
        self.assertBadFrame(msgpack.packb({1: "ping"}))
        self.assertBadFrame(msgpack.packb({b"op": "ping", b"id": 1}, use_bin_type=True))
        self.assertBadFrame(msgpack.packb({"op": "ping", "id": 1, "x": {1: 2}}))

    def test_badFrameBeforeHello(self):
        """
        A bad frame before C{hello} is answered and the handshake can still
        be done.
        """
        connection = self.harness.connect()
        connection.sendRaw(frame(b"\xc1"))
        (reply,) = connection.frames()
        self.assertError(reply, wire.BAD_FRAME, re=None)
        self.assertEqual(connection.hello()["op"], "ok")

    def test_frameTooLarge(self):
        """
        A length prefix over C{max_frame} gets C{FRAME_TOO_LARGE} and that
        connection is closed; other connections go on.
        """
        other = self.harness.client()
        self.connection.sendRaw(struct.pack("!I", 8193) + b"\x80" * 100)
        (reply,) = self.connection.frames()
        self.assertError(reply, wire.FRAME_TOO_LARGE, re=None)
        self.assertTrue(self.connection.closing)
        self.connection.send({"op": "ping", "id": 5})
        self.assertEqual(self.connection.frames(), [])
        self.connection.lose()
        self.assertFalse(other.closing)
        other.ok("ping")
        self.harness.client().ok("ping")

    def test_nothingAfterFrameTooLarge(self):
        """
        After the C{FRAME_TOO_LARGE} error nothing more is written on that
        connection, not even a push for one of its subscriptions.
        """
        self.connection.ok("subscribe", service=service())
        self.connection.sendRaw(struct.pack("!I", 9000))
        (reply,) = self.connection.frames()
        self.assertError(reply, wire.FRAME_TOO_LARGE)
        self.harness.client().ok("register", service=service(), instance=instance())
        self.harness.clock.advance(1)
        self.assertEqual(self.connection.frames(), [])

    def test_frameAtLimit(self):
        """
        A frame of exactly C{max_frame} bytes is accepted.
        """
        message = {"op": "ping", "id": 77, "pad": ""}
        base = len(msgpack.packb(message))
        message["pad"] = "x" * (8192 - base - 2)
        body = msgpack.packb(message)
        self.assertEqual(len(body), 8192)
        reply = self.connection.roundTrip(message)
        self.assertEqual(reply, {"op": "ok", "re": 77})

    def test_split(self):
        """
        A frame split across many C{dataReceived} calls, one byte each, is
        read whole.
        """
        data = wire.encode(
            {"op": "register", "id": 3, "service": service(), "instance": instance()}
        )
        for i in range(len(data)):
            self.assertEqual(self.connection.frames(), [])
            self.connection.sendRaw(data[i : i + 1])
        self.assertEqual(self.connection.frames(), [{"op": "ok", "re": 3}])

    def test_severalFramesAtOnce(self):
        """
        Several frames in one C{dataReceived} are each answered, in order.
        """
        data = b"".join(wire.encode({"op": "ping", "id": i}) for i in range(10, 15))
        self.connection.sendRaw(data + wire.encode({"op": "ping", "id": 15})[:3])
        self.assertEqual([f["re"] for f in self.connection.frames()], [10, 11, 12, 13, 14])
        self.connection.sendRaw(wire.encode({"op": "ping", "id": 15})[3:])
        self.assertEqual(self.connection.frames(), [{"op": "ok", "re": 15}])


class LivenessTests(SynchronousTestCase, ErrorAssertions):
    """
    Idle connections and the disconnect grace (PROTOCOL.md 4.4).
    """

    def setUp(self):
        self.harness = NodeHarness(
            heartbeat_ms=1000, idle_timeout_ms=3000, disconnect_grace_ms=2000
        )
        self.clock = self.harness.clock

    def test_idleClosed(self):
        """
        A connection silent for C{idle_timeout_ms} is aborted.
        """
        connection = self.harness.client()
        self.clock.advance(2.9)
        self.assertFalse(connection.transport.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(connection.transport.disconnected)

    def test_idleBeforeHello(self):
        """
        A connection that never says anything is aborted too.
        """
        connection = self.harness.connect()
        self.clock.advance(3)
        self.assertTrue(connection.transport.disconnected)

    def test_pingsKeepAlive(self):
        """
        A connection that sends a frame every C{heartbeat_ms} stays open.
        """
        connection = self.harness.client()
        for _ in range(20):
            self.clock.advance(1)
            connection.ok("ping")
        self.assertFalse(connection.closing)
        self.clock.advance(2.5)
        self.assertFalse(connection.closing)
        self.clock.advance(0.5)
        self.assertTrue(connection.transport.disconnected)

    def test_anyFrameIsLife(self):
        """
        Any frame, even a bad one, counts as a sign of life.
        """
        connection = self.harness.client()
        for _ in range(5):
            self.clock.advance(2)
            connection.sendRaw(frame(b"\xc1"))
        self.assertFalse(connection.closing)

    def test_disconnectGrace(self):
        """
        After a connection ends without C{bye}, its instances stay for
        C{disconnect_grace_ms}, then vanish; a subscriber sees the push.
        """
        publisher = self.harness.client()
        publisher.ok("register", service=service(), instance=instance())
        subscriber = self.harness.client()
        subscriber.ok("subscribe", service=service())
        clientId = publisher.helloReply["client_id"]
        publisher.lose()
        self.clock.advance(1.9)
        subscriber.ok("ping")
        self.assertIn(clientId, self.harness.node.manager.clients)
        self.assertEqual(subscriber.takePushes(), [])
        self.assertEqual(len(self.harness.query()["hosts"]), 1)
        self.clock.advance(0.1)
        self.assertNotIn(clientId, self.harness.node.manager.clients)
        (push,) = subscriber.takePushes()
        self.assertEqual(push["service_info"]["hosts"], [])
        self.assertEqual(self.harness.query()["hosts"], [])

    def test_idleThenGrace(self):
        """
        A connection closed for being idle is a non-orderly end: the grace
        applies.
        """
        publisher = self.harness.client()
        publisher.ok("register", service=service(), instance=instance())
        clientId = publisher.helloReply["client_id"]
        self.clock.advance(3)
        self.assertTrue(publisher.transport.disconnected)
        publisher.lose()
        self.assertIn(clientId, self.harness.node.manager.clients)
        self.clock.advance(2)
        self.assertNotIn(clientId, self.harness.node.manager.clients)

    def test_byeNoGrace(self):
        """
        After C{bye} the client's instances vanish at once.
        """
        publisher = self.harness.client()
        publisher.ok("register", service=service(), instance=instance())
        publisher.ok("bye")
        self.assertEqual(self.harness.query()["hosts"], [])
        publisher.lose(orderly=True)
        self.assertEqual(self.harness.query()["hosts"], [])

    def test_noInstancesNoGrace(self):
        """
        A client without instances is forgotten as soon as its connection
        ends.
        """
        connection = self.harness.client()
        clientId = connection.helloReply["client_id"]
        connection.lose()
        self.assertNotIn(clientId, self.harness.node.manager.clients)
        self.assertEqual(self.harness.node.sessions, {})


class FlowControlTests(SynchronousTestCase, ErrorAssertions):
    """
    A client that does not read its replies (PROTOCOL.md 4.3.1): the node
    stops serving it instead of buffering, bounds what waits past the send
    buffer by C{max_unsent_bytes}, and does not call it silent meanwhile.
    """

    def setUp(self):
        self.harness = NodeHarness(
            heartbeat_ms=1000, idle_timeout_ms=3000, max_unsent_bytes=20000
        )
        self.clock = self.harness.clock
        publisher = self.harness.client()
        publisher.ok(
            "batch_register",
            service=service(),
            instances=[instance(port=p) for p in range(1, 41)],
        )

    def query(self, rid):
        return wire.encode({"op": "query", "id": rid, "service": service()})

    def test_pipelinedRequestsWait(self):
        """
        Requests that arrived while the send buffer is full are not handled
        until the client has read: each drain of the buffer answers the next
        one, in order, and the last is answered in the end.
        """
        reader = self.harness.client(bufferSize=1000)
        reader.sendRaw(b"".join(self.query(rid) for rid in range(100, 150)))
        (first,) = reader.frames()
        self.assertEqual((first["op"], first["re"]), ("ok", 100))
        self.assertTrue(reader.session.handlingPaused)
        self.clock.advance(1)
        self.assertEqual(reader.frames(), [])
        answered = [first["re"]]
        for _ in range(49):
            reader.transport.drain()
            answered += [f["re"] for f in reader.frames()]
        self.assertEqual(answered, list(range(100, 150)))

    def test_pushesWaitToo(self):
        """
        A subscriber whose buffer is full gets no push until it read; then
        the newest view.
        """
        subscriber = self.harness.client(bufferSize=1000)
        subscriber.ok("subscribe", service=service())
        self.assertTrue(subscriber.session.sendPaused)
        publisher = self.harness.client()
        publisher.ok("register", service=service(), instance=instance(port=99))
        self.clock.advance(1)
        self.assertEqual(subscriber.takePushes(), [])
        subscriber.transport.drain()
        self.clock.advance(1)
        (push,) = subscriber.takePushes()
        self.assertEqual(len(push["service_info"]["hosts"]), 41)

    def test_replyTooLarge(self):
        """
        A reply that would not fit within C{max_unsent_bytes} is refused with
        C{LIMIT_EXCEEDED} naming the limit; a refused C{subscribe} does not
        subscribe, and the connection goes on.
        """
        self.harness.client().ok(
            "batch_register",
            service=service("big"),
            instances=[instance(port=p, metadata={"k": "v" * 1000}) for p in range(1, 41)],
        )
        connection = self.harness.client()
        reply = connection.request("query", service=service("big"))
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_unsent_bytes:")
        reply = connection.request("subscribe", service=service("big"))
        self.assertError(reply, wire.LIMIT_EXCEEDED, "max_unsent_bytes:")
        self.assertEqual(connection.session.channel.subscriptions, {})
        self.assertFalse(connection.closing)
        connection.ok("query", service=service())

    def test_pushTooLarge(self):
        """
        A push that would not fit within C{max_unsent_bytes} is replaced by
        a C{LIMIT_EXCEEDED} error frame and the connection is closed: the
        subscriber is never left believing an older view.
        """
        subscriber = self.harness.client()
        subscriber.ok("subscribe", service=service("growing"))
        publisher = self.harness.client()
        publisher.ok(
            "batch_register",
            service=service("growing"),
            instances=[instance(port=p, metadata={"k": "v" * 1000}) for p in range(1, 41)],
        )
        self.clock.advance(1)
        (error,) = subscriber.frames()
        self.assertError(error, wire.LIMIT_EXCEEDED, "max_unsent_bytes:", re=None)
        self.assertTrue(subscriber.closing)
        self.assertEqual(self.harness.node.pushStats().failed, 1)

    def test_notSilentWhileNotRead(self):
        """
        While the node does not read from a connection (its buffer is full),
        the client's silence does not count; it counts again from when the
        node resumes reading.
        """
        subscriber = self.harness.client(bufferSize=1000)
        subscriber.ok("subscribe", service=service())
        self.assertTrue(subscriber.session.sendPaused)
        self.clock.advance(8.9)
        self.assertFalse(subscriber.closing)
        subscriber.transport.drain()
        self.clock.advance(2.9)
        self.assertFalse(subscriber.closing)
        self.clock.advance(0.2)
        self.assertTrue(subscriber.transport.disconnected)

    def test_hungReaderReset(self):
        """
        A client that reads nothing at all for three idle timeouts (hung,
        its kernel keeping the socket open) is reset, as a lost connection:
        its instances go after the disconnect grace.
        """
        hung = self.harness.client(bufferSize=1000)
        hung.ok("register", service=service("mine"), instance=instance(port=7))
        hung.ok("subscribe", service=service())
        self.assertTrue(hung.session.sendPaused)
        self.clock.advance(8.9)
        self.assertFalse(hung.transport.disconnected)
        self.clock.advance(0.2)
        self.assertTrue(hung.transport.disconnected)
        hung.lose()
        self.clock.advance(self.harness.config.disconnect_grace_ms / 1000.0)
        self.assertEqual(self.harness.query("mine")["hosts"], [])

    def test_closedNonReaderReset(self):
        """
        A connection the node closes but whose client does not take what is
        left to send is reset after C{idle_timeout_ms}.
        """
        connection = self.harness.connect()
        connection.send({"op": "ping", "id": 1})
        self.assertTrue(connection.closing)
        self.assertFalse(connection.transport.disconnected)
        self.clock.advance(3)
        self.assertTrue(connection.transport.disconnected)


class HandshakeLimitTests(SynchronousTestCase, ErrorAssertions):
    """
    Before C{hello} a connection may send small frames only, and must say
    it within C{handshake_timeout_ms} (PROTOCOL.md 1).
    """

    def setUp(self):
        self.harness = NodeHarness(
            heartbeat_ms=20000, idle_timeout_ms=60000, handshake_timeout_ms=2000
        )
        self.clock = self.harness.clock

    def test_bigFrameBeforeHello(self):
        """
        A length prefix above 64 KiB before C{hello} is C{FRAME_TOO_LARGE}
        and the connection is closed: the node does not buffer up to
        C{max_frame} for somebody it does not know.
        """
        connection = self.harness.connect()
        connection.sendRaw((64 * 1024 + 1).to_bytes(4, "big") + b"\x00" * 100)
        (reply,) = connection.frames()
        self.assertError(reply, wire.FRAME_TOO_LARGE, re=None)
        self.assertTrue(connection.closing)

    def test_bigFrameAfterHello(self):
        """
        After C{hello} the port's C{max_frame} applies.
        """
        connection = self.harness.client()
        metadata = {"k": "v" * 6000}
        instances = [instance(port=p, metadata=metadata) for p in range(1, 21)]
        connection.ok("batch_register", service=service(), instances=instances)
        self.assertEqual(len(self.harness.query()["hosts"]), 20)

    def test_deadline(self):
        """
        A connection that has not said C{hello} within
        C{handshake_timeout_ms} gets C{HELLO_REQUIRED} naming the key and is
        closed, however it trickles bytes meanwhile.
        """
        connection = self.harness.connect()
        connection.sendRaw((1000).to_bytes(4, "big"))
        for _ in range(19):
            connection.sendRaw(b"\x00")
            self.clock.advance(0.1)
        self.assertEqual(connection.frames(), [])
        self.clock.advance(0.11)
        (reply,) = connection.frames()
        self.assertError(reply, wire.HELLO_REQUIRED, "hello:", re=None)
        self.assertIn("handshake_timeout_ms", reply["message"])
        self.assertTrue(connection.closing)

    def test_noDeadlineAfterRefusal(self):
        """
        A hello refused (and the connection closed) is the last frame: the
        deadline does not add another.
        """
        connection = self.harness.connect()
        reply = connection.hello(proto=99)
        self.assertError(reply, wire.UNSUPPORTED_VERSION)
        self.clock.advance(2.5)
        self.assertEqual(connection.frames(), [])

    def test_noDeadlineAfterHello(self):
        connection = self.harness.client()
        self.clock.advance(10)
        self.assertFalse(connection.closing)
