"""
Tests for L{distro.nacos.connection}: one Nacos SDK connection to a real
node on a clock, spoken to payload by payload (no gRPC, no sockets).
"""

import json

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from distro import model
from distro.nacos import connection as nacos
from distro.nacos import naming
from distro.nacos.connection import NacosConnection
from distro.nacos.payload import Payload
from distro.turns import Turns
from tests import _factories
from tests._node import NodeHarness
from tests._turns import CostlySteps, SteppedTimer, TickingTimer, nextTurn, settled

ORDERS = model.ServiceKey("public", "DEFAULT_GROUP", "orders")


def request(type_, headers=None, **body):
    return Payload(type_, headers or {}, "", json.dumps(body).encode())


def instance(ip="10.0.0.7", port=8080, **fields):
    return _factories.instance(ip, port, **{"ephemeral": True, **fields})


class ConnectionTestCase(SynchronousTestCase):
    def setUp(self):
        self.harness = NodeHarness()
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.connection, self.sent = self.connect()

    def connect(self, setUp=True):
        connection = NacosConnection(self.node, "c-1", "10.0.0.7")
        sent = []
        connection.send = sent.append
        connection.closed = False

        def close():
            connection.closed = True

        connection.close = close
        if setUp:
            connection.streamReceived(request(
                "ConnectionSetupRequest", clientVersion="Nacos-Java-Client:v2.5.1",
                labels={"source": "sdk", "module": "naming"}, abilityTable={},
            ))
            self.assertEqual([p.type for p in sent], ["SetupAckRequest"])
            sent.clear()
        return connection, sent

    def ask(self, type_, connection=None, headers=None, **body):
        """
        Send one unary request; return C{(response type, body)}.
        """
        response = (connection or self.connection).request(request(type_, headers, **body))
        response = settled(self.clock, response)
        return response.type, json.loads(response.body)

    def ok(self, type_, **body):
        responseType, reply = self.ask(type_, **body)
        self.assertEqual(reply["resultCode"], 200, reply)
        self.assertEqual((reply["errorCode"], reply["success"]), (0, True))
        return responseType, reply

    def error(self, type_, code, connection=None, headers=None, **body):
        responseType, reply = self.ask(type_, connection, headers, **body)
        self.assertEqual(responseType, "ErrorResponse")
        self.assertEqual((reply["resultCode"], reply["errorCode"], reply["success"]), (500, code, False))
        return reply["message"]

    def hosts(self, service=ORDERS):
        return [(i.ip, i.port, i.cluster) for i in self.node.registry.serviceInfo(service).hosts]


class SetUpTests(ConnectionTestCase):
    def test_serverCheck(self):
        """
        C{ServerCheckRequest} is answered before the set up, with the
        connection's id, and ability negotiation, as Nacos 2.x and 3.x do.
        """
        connection, _ = self.connect(setUp=False)
        responseType, reply = self.ask("ServerCheckRequest", connection)
        self.assertEqual(responseType, "ServerCheckResponse")
        self.assertEqual(reply["connectionId"], "c-1")
        self.assertIs(reply["supportAbilityNegotiation"], True)

    def test_abilities(self):
        """
        An SDK that sends its C{abilityTable} (the Java and Python SDKs)
        is told the server's in C{SetupAckRequest}, persistent instances
        over gRPC among them, so that the Java SDK never falls back to
        HTTP for them; one that sends none (Go, Rust) is told nothing.
        """
        for table, expected in (({"fuzzyWatch": True}, 1), (None, 0)):
            connection, sent = self.connect(setUp=False)
            connection.streamReceived(request("ConnectionSetupRequest", labels={}, abilityTable=table))
            self.assertEqual(len(sent), expected)
        connection, sent = self.connect(setUp=False)
        connection.streamReceived(request("ConnectionSetupRequest", abilityTable={}))
        ((kind, ack),) = [(p.type, json.loads(p.body)) for p in sent]
        self.assertEqual(kind, "SetupAckRequest")
        self.assertIs(ack["abilityTable"]["supportPersistentInstanceByGrpc"], True)
        self.assertNotIn("requestId", ack)  # no answer expected

    def test_notSetUp(self):
        """
        Before its C{ConnectionSetupRequest}, a connection's naming requests
        get C{UN_REGISTER} (301), and it is no client of the node.
        """
        connection, _ = self.connect(setUp=False)
        message = self.error("InstanceRequest", 301, connection, serviceName="orders",
                             type="registerInstance", instance=instance())
        self.assertIn("ConnectionSetupRequest", message)
        self.assertIsNone(connection.client)
        self.assertEqual(self.hosts(), [])

    def test_setUpMakesANativeClient(self):
        client = self.connection.client
        self.assertTrue(client.native)
        self.assertIs(self.node.sessions[client.clientId], self.connection)
        self.assertEqual(self.connection.labels["module"], "naming")
        self.assertEqual(self.connection.clientVersion, "Nacos-Java-Client:v2.5.1")

    def test_labelsBounded(self):
        """
        A set up keeps at most C{MAX_LABELS} string labels, each cut, and a
        client version without lone surrogates (found from outside: 2.8M
        empty maps in labels were kept; a lone surrogate dropped the set-up
        log line).
        """
        connection, _ = self.connect(setUp=False)
        labels = {f"k{n}": "v" * 1000 for n in range(100)}
        labels.update({"module": "naming", "nested": [{}] * 1000})
        connection.streamReceived(request("ConnectionSetupRequest", labels=labels,
                                          clientVersion="Nacos-\ud800-Client"))
        self.assertLessEqual(len(connection.labels), nacos.MAX_LABELS)
        self.assertTrue(all(len(v) <= nacos.MAX_LABEL_CHARS for v in connection.labels.values()))
        self.assertNotIn("nested", connection.labels)
        connection.clientVersion.encode("utf-8")

    def test_strayMessagesLoggedSparingly(self):
        """
        Messages a client sends on its stream that mean nothing are logged
        a few times per interval, the rest counted (found from outside:
        372k one-byte payloads wrote 27.9 MB of log in 11 s).
        """
        from twisted.logger import Logger

        from distro.ratelog import RateLimitedLog

        events = []
        connection = NacosConnection(self.node, "c-2", "10.0.0.7",
                                     RateLimitedLog(self.clock, Logger(observer=events.append)))
        for _ in range(10000):
            connection.streamReceived(request("FooRequest"))
        self.assertLessEqual(len(events), 5)

    def test_notReady(self):
        """
        A node still loading answers every request with
        C{INVALID_SERVER_STATUS} (300), the server check included.
        """
        self.node.ready = False
        self.error("ServerCheckRequest", 300)
        self.error("ServiceQueryRequest", 300, serviceName="orders")

    def test_draining(self):
        """
        A draining node refuses the server check of a new connection
        (C{INVALID_SERVER_STATUS}: the SDK picks another server), and asks
        its connections to move with C{ConnectResetRequest} to another
        server of the SDK's list; their other requests are still served.
        """
        self.successResultOf(self.node.drain())
        self.assertIn("draining", self.error("ServerCheckRequest", 300))
        self.ok("ServiceQueryRequest", serviceName="orders", namespace="public", groupName="DEFAULT_GROUP",
                cluster="", healthyOnly=False, udpPort=0)
        self.connection.move(["10.0.0.2:9850"], "draining")
        ((kind, body),) = [(p.type, json.loads(p.body)) for p in self.sent]
        self.assertEqual((kind, body["serverIp"], body["module"]), ("ConnectResetRequest", "", "internal"))

    def test_unknownType(self):
        self.assertIn("FooRequest", self.error("FooRequest", 302))

    def test_badJson(self):
        response = self.connection.request(Payload("InstanceRequest", {}, "", b"{not json"))
        reply = json.loads(response.body)
        self.assertEqual((response.type, reply["errorCode"]), ("ErrorResponse", 502))

    def test_ended(self):
        """
        A connection that ends leaves its instances for the disconnect grace,
        then they go.
        """
        self.ok("InstanceRequest", serviceName="orders", type="registerInstance", instance=instance())
        self.connection.ended()
        self.assertEqual(len(self.hosts()), 1)
        self.clock.advance(self.node.config.disconnect_grace_ms / 1000.0 + 0.1)
        self.assertEqual(self.hosts(), [])


class InstanceTests(ConnectionTestCase):
    def test_register(self):
        responseType, reply = self.ok(
            "InstanceRequest", namespace="public", serviceName="orders", groupName="DEFAULT_GROUP",
            type="registerInstance", instance=instance(clusterName="c1", metadata={"v": "1"}),
        )
        self.assertEqual((responseType, reply["type"]), ("InstanceResponse", "registerInstance"))
        self.assertEqual(self.hosts(), [("10.0.0.7", 8080, "c1")])
        (held,) = self.connection.client.instances(ORDERS).values()
        self.assertEqual(held.metadata, {"v": "1"})

    def test_registerReplaces(self):
        """
        One entry per service per connection: a second register replaces
        the first, a deregister removes it whatever it names.
        """
        self.ok("InstanceRequest", serviceName="orders", type="registerInstance", instance=instance())
        self.ok("InstanceRequest", serviceName="orders", type="registerInstance",
                instance=instance("10.0.0.8"))
        self.assertEqual(self.hosts(), [("10.0.0.8", 8080, "DEFAULT")])
        self.ok("InstanceRequest", serviceName="orders", type="deregisterInstance",
                instance=instance("10.9.9.9"))
        self.assertEqual(self.hosts(), [])

    def test_batch(self):
        self.ok("BatchInstanceRequest", serviceName="orders", type="batchRegisterInstance",
                instances=[instance("10.0.0.1"), instance("10.0.0.2")])
        self.assertEqual(len(self.hosts()), 2)
        self.ok("BatchInstanceRequest", serviceName="orders", type="batchRegisterInstance",
                instances=[instance("10.0.0.2")])
        self.assertEqual(self.hosts(), [("10.0.0.2", 8080, "DEFAULT")])

    def test_badRequests(self):
        for type_, body, field in (
            ("InstanceRequest", {"serviceName": "orders", "type": "register", "instance": instance()}, "type"),
            ("InstanceRequest", {"serviceName": "", "type": "registerInstance", "instance": instance()}, "serviceName"),
            ("InstanceRequest", {"serviceName": "orders", "type": "registerInstance", "instance": instance(port=0)}, "instance.port"),
            ("InstanceRequest", {"serviceName": "orders", "type": "registerInstance",
                                 "instance": instance(ephemeral=False)}, "instance.ephemeral"),
            ("BatchInstanceRequest", {"serviceName": "orders", "type": "batchRegisterInstance",
                                      "instances": [instance(), {"ip": "x y", "port": 1}]}, "instances[1].ip"),
            ("PersistentInstanceRequest", {"serviceName": "orders", "type": "registerInstance",
                                           "instance": instance()}, "instance.ephemeral"),
            ("ServiceListRequest", {"pageNo": 0}, "pageNo"),
        ):
            message = self.error(type_, 400, **body)
            self.assertTrue(message.startswith(field + ":"), (type_, body, message))
        self.assertEqual(self.hosts(), [])

    def test_loneSurrogates(self):
        """
        JSON can carry a lone surrogate, which no UTF-8 (nor msgpack, nor a
        peer frame) can hold: refused, naming the field, never stored (found
        in review: a service name was accepted, metadata failed as internal).
        """
        for body, field in (
            ('{"serviceName":"a\\ud800","type":"registerInstance","instance":{"ip":"10.0.0.1","port":1}}',
             "serviceName"),
            ('{"serviceName":"a","groupName":"\\udc00","type":"registerInstance",'
             '"instance":{"ip":"10.0.0.1","port":1}}', "groupName"),
            ('{"serviceName":"a","type":"registerInstance","instance":{"ip":"10.0.0.1","port":1,'
             '"metadata":{"k":"\\ud800"}}}', "instance.metadata"),
        ):
            response = self.connection.request(Payload("InstanceRequest", {}, "", body.encode()))
            reply = json.loads(response.body)
            self.assertEqual((response.type, reply["errorCode"]), ("ErrorResponse", 400), body)
            self.assertTrue(reply["message"].startswith(field + ":"), reply["message"])
        self.assertEqual(self.node.registry.services("public", None, 1, 10), (0, []))

    def test_limit(self):
        """
        A connection publishes at most C{max_instances_per_client}.
        """
        limit = self.node.config.max_instances_per_client
        instances = [instance(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}") for n in range(limit + 1)]
        message = self.error("BatchInstanceRequest", 503, serviceName="orders",
                             type="batchRegisterInstance", instances=instances)
        self.assertIn("max_instances_per_client", message)

    def test_largeBodyRefusedUnread(self):
        """
        A request other than a batch longer than any needs is refused
        before it is parsed (its parse would hold the reactor).
        """
        message = self.error("InstanceRequest", 400, serviceName="orders", type="registerInstance",
                             instance=instance(), pad=[1] * 100_000)
        self.assertIn("body: more than", message)

    def test_largeBatchRefusedUnread(self):
        """
        A batch larger than C{max_instances_per_client} is refused before
        any instance of it is read (found from outside: 320k instances held
        the reactor for 0.8 s): junk past the limit is not even looked at.
        """
        limit = self.node.config.max_instances_per_client
        message = self.error("BatchInstanceRequest", 503, serviceName="orders",
                             type="batchRegisterInstance", instances=[None] * (limit + 1))
        self.assertIn("max_instances_per_client", message)


class BatchInSlicesTests(ConnectionTestCase):
    """
    A batch of thousands is read, checked and registered a slice per turn
    (found from outside: 10,000 instances held the reactor 150 ms in one
    turn); the connection's answer comes when the last slice is in.
    """

    def setUp(self):
        self.timer = SteppedTimer()
        self.harness = NodeHarness(turns=lambda clock: Turns(clock, budget=0.005, timer=self.timer))
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.steps = CostlySteps(self.timer)
        self.node.manager.addObserver(self.steps)
        self.connection, self.sent = self.connect()

    def batch(self, count, first=0):
        return request("BatchInstanceRequest", serviceName="orders", type="batchRegisterInstance",
                       instances=[instance(f"10.1.{i // 250}.{i % 250}") for i in range(first, first + count)])

    def test_oneSlicePerTurn(self):
        answer = self.connection.request(self.batch(1000))
        self.assertIsInstance(answer, Deferred)
        turns = 0
        while not answer.called:
            nextTurn(self.clock)
            turns += 1
            self.assertLessEqual(len(self.steps.revisions), turns + 1)  # one in the turn it came
            self.assertLess(turns, 100)
        self.assertEqual(json.loads(self.successResultOf(answer).body)["resultCode"], 200)
        self.assertEqual(len(self.hosts()), 1000)
        self.assertEqual(len(self.steps.revisions), 4)  # 1,000 in slices of 256

    def test_endedMidway(self):
        """
        A connection that ends while its batch is applied stops it: no
        more slices are applied for nobody.
        """
        answer = self.connection.request(self.batch(1000))
        while not self.steps.revisions:
            nextTurn(self.clock)
        self.connection.ended()
        for _ in range(20):
            nextTurn(self.clock)
        self.assertTrue(answer.called)
        self.assertEqual(len(self.steps.revisions), 1)
        self.assertEqual(len(self.hosts()), 256)

    def test_badInstanceRefusesAll(self):
        """
        An instance at fault anywhere in the batch refuses it whole, before
        any is registered.
        """
        bad = self.batch(1000)
        body = json.loads(bad.body)
        body["instances"][900]["port"] = "x"
        answer = self.connection.request(request("BatchInstanceRequest", **body))
        response = settled(self.clock, answer)
        reply = json.loads(response.body)
        self.assertEqual(reply["errorCode"], 400)
        self.assertIn("instances[900].port", reply["message"])
        self.assertEqual(self.steps.revisions, [])

class AuthTests(ConnectionTestCase):
    """
    With credentials configured, the Nacos port asks the node's one
    authority, as distro's own port does: the SDK's C{accessToken} header
    must grant the request's namespace.
    """

    def setUp(self):
        from distro.auth import hashPassword

        self.harness = NodeHarness(
            auth_tokens={"s3cret": ["public"], "dev-only": ["dev"]},
            auth_users={"app": {"password": hashPassword("pw", n=4), "namespaces": ["dev"]}},
        )
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.connection, self.sent = self.connect()

    def register(self, headers, namespace=""):
        return self.ask("InstanceRequest", headers=headers, namespace=namespace, serviceName="orders",
                        type="registerInstance", instance=instance())

    def test_refusedWithoutGrant(self):
        """
        No token, an unknown one, or one that does not grant the namespace:
        refused with Nacos' C{NO_RIGHT} (403) naming what is wrong, and
        nothing is stored; the server check, the set up and health checks
        need none.
        """
        for headers, namespace, named in (
            (None, "", "accessToken"), ({"accessToken": "wrong"}, "", "accessToken"),
            ({"accessToken": ""}, "public", "accessToken"), ({"accessToken": "s3cret"}, "dev", "namespace"),
        ):
            responseType, reply = self.register(headers, namespace)
            self.assertEqual((responseType, reply["resultCode"], reply["errorCode"], reply["success"]),
                             ("InstanceResponse", 500, 403, False))
            self.assertIn(named, reply["message"])
        # Each in its own response type, as Nacos refuses (the Java SDK logs
        # in again on errorCode 403).
        for type_, responseType in (
            ("ServiceQueryRequest", "QueryServiceResponse"), ("SubscribeServiceRequest", "SubscribeServiceResponse"),
            ("ServiceListRequest", "ServiceListResponse"), ("BatchInstanceRequest", "BatchInstanceResponse"),
            ("PersistentInstanceRequest", "InstanceResponse"),
        ):
            kind, reply = self.ask(type_, serviceName="orders")
            self.assertEqual((kind, reply["errorCode"], reply["message"][:11]), (responseType, 403, "accessToken"))
        self.assertEqual(self.hosts(), [])
        self.ok("HealthCheckRequest")
        connection, _ = self.connect(setUp=False)
        self.assertEqual(self.ask("ServerCheckRequest", connection)[0], "ServerCheckResponse")

    def test_namespaceNotAString(self):
        """
        A namespace that is not a string is refused, never read as public
        past a check of something else (found in review: false, 0, [] and
        {} reached public with a token granting only dev).
        """
        for namespace in (False, 0, [], {}, 7):
            for type_ in ("InstanceRequest", "ServiceQueryRequest", "ServiceListRequest"):
                kind, reply = self.ask(type_, headers={"accessToken": "dev-only"}, namespace=namespace,
                                       serviceName="orders", type="registerInstance", instance=instance())
                self.assertEqual((kind, reply["errorCode"]), ("ErrorResponse", 400), (namespace, type_))
                self.assertIn("namespace", reply["message"])
        self.assertEqual(self.hosts(), [])

    def test_granted(self):
        """
        A configured token, or a user's login token, is accepted for the
        namespaces it grants ("" is public).
        """
        self.assertEqual(self.register({"accessToken": "s3cret"})[1]["resultCode"], 200)
        self.assertEqual(self.hosts(), [("10.0.0.7", 8080, "DEFAULT")])
        results = []
        self.node.authority.login("app", "pw").addCallback(results.append)
        token = results[0].token
        self.assertEqual(self.register({"accessToken": token}, "dev")[1]["resultCode"], 200)
        self.assertEqual(self.register({"accessToken": token}, "public")[1]["errorCode"], 403)


class QueryTests(ConnectionTestCase):
    def setUp(self):
        super().setUp()
        self.ok("BatchInstanceRequest", serviceName="orders", type="batchRegisterInstance",
                instances=[instance("10.0.0.1", clusterName="a"),
                           instance("10.0.0.2", clusterName="b", healthy=False)])

    def test_query(self):
        responseType, reply = self.ok("ServiceQueryRequest", serviceName="orders", cluster="",
                                      healthyOnly=False)
        self.assertEqual(responseType, "QueryServiceResponse")
        info = reply["serviceInfo"]
        self.assertEqual((info["name"], info["groupName"], info["clusters"]),
                         ("orders", "DEFAULT_GROUP", ""))
        self.assertEqual([h["ip"] for h in info["hosts"]], ["10.0.0.1", "10.0.0.2"])

    def test_filters(self):
        for body, ips in (
            ({"cluster": "a"}, ["10.0.0.1"]),
            ({"cluster": "a,b"}, ["10.0.0.1", "10.0.0.2"]),
            ({"healthyOnly": True}, ["10.0.0.1"]),
            ({"healthOnly": True}, ["10.0.0.1"]),
        ):
            _, reply = self.ok("ServiceQueryRequest", serviceName="orders", **body)
            self.assertEqual([h["ip"] for h in reply["serviceInfo"]["hosts"]], ips, body)

    def test_refTimeGrows(self):
        """
        Each ServiceInfo given to a connection has a C{lastRefTime} above
        the last (SDKs drop one that is not newer).
        """
        times = [self.ok("ServiceQueryRequest", serviceName="orders")[1]["serviceInfo"]["lastRefTime"]
                 for _ in range(3)]
        self.assertEqual(times, sorted(set(times)))

    def test_serviceList(self):
        self.ok("InstanceRequest", serviceName="payments", type="registerInstance", instance=instance())
        responseType, reply = self.ok("ServiceListRequest", namespace="", groupName="DEFAULT_GROUP",
                                      pageNo=1, pageSize=1)
        self.assertEqual((responseType, reply["count"], reply["serviceNames"]),
                         ("ServiceListResponse", 2, ["orders"]))
        _, reply = self.ok("ServiceListRequest", pageNo=2, pageSize=1)
        self.assertEqual(reply["serviceNames"], ["payments"])

    def test_healthCheck(self):
        self.assertEqual(self.ok("HealthCheckRequest")[0], "HealthCheckResponse")


class PushTests(ConnectionTestCase):
    def setUp(self):
        super().setUp()
        self.publisher, _ = self.connect()
        _, reply = self.ok("SubscribeServiceRequest", serviceName="orders", clusters="", subscribe=True)
        self.assertEqual(reply["serviceInfo"]["hosts"], [])

    def register(self, ip):
        self.ask("InstanceRequest", self.publisher, serviceName="orders", type="registerInstance",
                 instance=instance(ip))
        self.clock.advance(0)  # pushes go at the end of the turn

    def pushes(self):
        """
        The pushes sent since the last call; the idle checks meanwhile are
        answered, as an SDK does.
        """
        out = []
        for payload in self.sent:
            body = json.loads(payload.body)
            if payload.type == "ClientDetectionRequest":
                self.answer("ClientDetectionResponse", body)
            else:
                out.append((payload.type, body))
        self.sent.clear()
        return out

    def answer(self, responseType, request):
        self.connection.streamReceived(Payload(
            responseType, {}, "",
            json.dumps({"resultCode": 200, "errorCode": 0, "requestId": request["requestId"]}).encode(),
        ))

    def ack(self, push):
        self.answer("NotifySubscriberResponse", push)

    def test_pushedOnChange(self):
        self.register("10.0.0.1")
        ((kind, push),) = self.pushes()
        self.assertEqual(kind, "NotifySubscriberRequest")
        self.assertTrue(push["requestId"].isdigit())
        # As Nacos sends every server request: the Rust SDK drops one
        # without "headers" (found with the SDK).
        self.assertEqual(push["headers"], {})
        self.assertEqual([h["ip"] for h in push["serviceInfo"]["hosts"]], ["10.0.0.1"])
        self.assertEqual(push["serviceInfo"]["name"], "orders")
        self.ack(push)
        self.clock.advance(self.connection.ackTimeout())
        self.assertEqual(self.pushes(), [])  # acked: not sent again

    def test_unackedPushSentAgain(self):
        """
        A push not acked within C{PUSH_ACK_TIMEOUT} is sent again
        C{PUSH_RETRY_DELAY} later with the newest view, for as long as it
        is not acked; the connection is never closed for it (Nacos
        retries, it does not drop the connection).
        """
        self.register("10.0.0.1")
        self.pushes()
        for _ in range(5):
            self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
            ((_, push),) = self.pushes()
            self.assertEqual([h["ip"] for h in push["serviceInfo"]["hosts"]], ["10.0.0.1"])
        self.assertFalse(self.connection.closed)
        failed = self.node.pushStats().failed
        self.assertEqual(failed, 5)  # each unacked push is a failed one, as Nacos counts
        self.ack(push)
        self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
        self.assertEqual(self.pushes(), [])
        self.assertEqual(self.node.pushStats().failed, failed)

    def test_newerViewNotHeld(self):
        """
        A newer view is pushed at once, however many pushes wait for their
        acks; only the newest is sent again if none is acked.
        """
        for n in range(40):
            self.register(f"10.0.1.{n}")
        pushes = self.pushes()
        self.assertEqual(len(pushes), 40)
        self.assertEqual([h["ip"] for h in pushes[-1][1]["serviceInfo"]["hosts"]], ["10.0.1.39"])
        self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
        ((_, again),) = self.pushes()
        self.assertEqual([h["ip"] for h in again["serviceInfo"]["hosts"]], ["10.0.1.39"])

    def nullAck(self, responseType="NotifySubscriberResponse", requestId=None):
        body = {"resultCode": 200, "errorCode": 0, "success": True}
        if requestId != "omitted":
            body["requestId"] = requestId
        self.connection.streamReceived(Payload(responseType, {}, "", json.dumps(body).encode()))

    def test_ackWithoutRequestId(self):
        """
        An ack with a null, empty or missing C{requestId} (the Rust SDK's)
        acks the oldest push waiting: pushes go on, none is sent again and
        the connection stays.
        """
        for requestId in (None, "", "omitted"):
            self.register(f"10.0.0.{len(requestId or 'x')}")
            self.register(f"10.0.1.{len(requestId or 'x')}")
            self.assertEqual(len(self.pushes()), 2)
            self.nullAck(requestId=requestId)
            self.nullAck(requestId=requestId)
            self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
            self.assertEqual(self.pushes(), [])
        self.assertFalse(self.connection.closed)

    def test_ackWithoutRequestIdInOrder(self):
        """
        Answers without C{requestId} are matched in the order the pushes
        were sent, superseded ones included: a push the SDK never answered
        is sent again, not taken for acked by the answer to an older one
        (found in review).
        """
        self.ok("SubscribeServiceRequest", serviceName="billing", clusters="", subscribe=True)
        self.register("10.0.0.1")
        self.register("10.0.0.2")
        self.ask("InstanceRequest", self.publisher, serviceName="billing", type="registerInstance",
                 instance=instance("10.0.0.3"))
        self.clock.advance(0)
        self.assertEqual(len(self.pushes()), 3)
        self.nullAck()  # orders, superseded
        self.nullAck()  # orders, newest; billing's never comes
        self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
        ((_, again),) = self.pushes()
        self.assertEqual(again["serviceInfo"]["name"], "billing")

    def test_requestsHeldBounded(self):
        """
        An SDK that answers nothing costs at most C{MAX_PLACEHOLDERS}
        remembered requests besides those still waiting.
        """
        for n in range(nacos.MAX_PLACEHOLDERS * 3):
            self.register(f"10.0.{n // 250}.{n % 250}")
        self.pushes()
        self.assertLessEqual(self.connection.requestsHeld(), nacos.MAX_PLACEHOLDERS + 1)
        self.advance(nacos.PUSH_ACK_TIMEOUT * 3)
        self.assertLessEqual(self.connection.requestsHeld(), nacos.MAX_PLACEHOLDERS + 1)

    def test_ackWithoutRequestIdOfItsType(self):
        """
        An answer without C{requestId} answers the oldest request of its
        own type: a push ack does not answer an idle check.
        """
        self.clock.advance(self.node.config.idle_timeout_ms / 1000.0)
        ((kind, _),) = [(p.type, p) for p in self.sent]
        self.assertEqual(kind, "ClientDetectionRequest")
        self.sent.clear()
        self.register("10.0.0.1")
        self.pushes()
        self.nullAck("NotifySubscriberResponse")
        self.nullAck("ClientDetectionResponse")
        self.clock.advance(self.connection.ackTimeout())
        self.assertFalse(self.connection.closed)
        self.assertEqual([p.type for p in self.sent if p.type != "ClientDetectionRequest"], [])

    def test_streamFull(self):
        """
        While the stream holds as many bytes as it may, pushes wait; when
        it drains, the newest view goes, once.
        """
        self.connection.pauseProducing()
        for n in range(5):
            self.register(f"10.0.1.{n}")
        self.assertEqual(self.pushes(), [])
        self.connection.resumeProducing()
        ((_, newest),) = self.pushes()
        self.assertEqual([h["ip"] for h in newest["serviceInfo"]["hosts"]], ["10.0.1.4"])

    def test_retryWaitsForFullStream(self):
        """
        A push sent again goes through the push channel: it waits while the
        stream is full.
        """
        self.register("10.0.0.1")
        self.pushes()
        self.connection.pauseProducing()
        self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
        self.assertEqual(self.pushes(), [])
        self.connection.resumeProducing()
        ((_, push),) = self.pushes()
        self.assertEqual([h["ip"] for h in push["serviceInfo"]["hosts"]], ["10.0.0.1"])

    def advance(self, seconds):
        """
        Let C{seconds} pass, a tenth at a time, answering idle checks.
        """
        for _ in range(int(seconds * 10) + 2):
            self.clock.advance(0.1)
            self.sent[:] = [p for p in self.sent if not self._answered(p)]
        self.clock.advance(0)  # the end of the last turn

    def _answered(self, payload):
        if payload.type != "ClientDetectionRequest":
            return False
        self.answer("ClientDetectionResponse", json.loads(payload.body))
        return True

    def test_unsubscribedNotSentAgain(self):
        """
        A push of a subscription that ended meanwhile is not sent again.
        """
        self.register("10.0.0.1")
        self.pushes()
        self.ok("SubscribeServiceRequest", serviceName="orders", clusters="", subscribe=False)
        self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
        self.assertEqual(self.pushes(), [])
        self.assertFalse(self.connection.closed)

    def test_badAcks(self):
        """
        An ack whose C{requestId} is not a string, or names nothing, is
        ignored (found in review: one crashed the stream's reader).
        """
        self.register("10.0.0.1")
        ((_, push),) = self.pushes()
        for requestId in ([], {}, 7, "999"):
            self.connection.streamReceived(Payload(
                "NotifySubscriberResponse", {}, "", json.dumps({"requestId": requestId}).encode()))
        self.connection.streamReceived(Payload("NotifySubscriberResponse", {}, "", b"[not json"))
        self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
        ((_, again),) = self.pushes()  # none of them acked it
        self.ack(again)
        self.advance(nacos.PUSH_ACK_TIMEOUT + nacos.PUSH_RETRY_DELAY)
        self.assertEqual(self.pushes(), [])

    def test_failedAckSentAgain(self):
        """
        An ack with a C{resultCode} other than 200 (the SDK failed to apply
        the push) counts as no ack: the newest view is sent again
        C{PUSH_RETRY_DELAY} later (found in review).
        """
        self.register("10.0.0.1")
        ((_, push),) = self.pushes()
        self.connection.streamReceived(Payload("ErrorResponse", {}, "", json.dumps(
            {"resultCode": 500, "errorCode": 500, "success": False,
             "requestId": push["requestId"]}).encode()))
        self.assertEqual(self.pushes(), [])
        self.clock.advance(nacos.PUSH_RETRY_DELAY)
        ((_, again),) = self.pushes()
        self.assertNotEqual(again["requestId"], push["requestId"])
        self.assertEqual([h["ip"] for h in again["serviceInfo"]["hosts"]], ["10.0.0.1"])

    def test_unsubscribe(self):
        self.ok("SubscribeServiceRequest", serviceName="orders", clusters="", subscribe=False)
        self.register("10.0.0.1")
        self.assertEqual(self.pushes(), [])


class ServerRequestTests(ConnectionTestCase):
    """
    The node's own requests on a connection's stream: idle checks and
    resets.
    """

    def requests(self):
        out = [(p.type, json.loads(p.body)) for p in self.sent]
        self.sent.clear()
        return out

    def answer(self, responseType, request):
        self.connection.streamReceived(Payload(
            responseType, {}, "",
            json.dumps({"resultCode": 200, "success": False, "requestId": request["requestId"]}).encode(),
        ))

    def test_activeNotChecked(self):
        """
        A connection that sends something (its health checks) at least every
        C{idle_timeout_ms} is never asked.
        """
        for _ in range(10):
            self.clock.advance(self.node.config.idle_timeout_ms / 2000.0)
            self.ok("HealthCheckRequest")
        self.assertEqual(self.requests(), [])

    def test_idleChecked(self):
        """
        A silent connection is asked C{ClientDetectionRequest}; answered, it
        stays; not answered within C{idle_timeout_ms}, it is closed.
        """
        idle = self.node.config.idle_timeout_ms / 1000.0
        self.clock.advance(idle)
        ((kind, request),) = self.requests()
        self.assertEqual((kind, request["module"], request["headers"]), ("ClientDetectionRequest", "internal", {}))
        self.assertTrue(request["requestId"].isdigit())
        self.answer("ClientDetectionResponse", request)  # judged by resultCode, not success
        self.clock.advance(self.connection.ackTimeout())
        self.assertFalse(self.connection.closed)
        self.requests()
        self.clock.advance(idle + self.connection.ackTimeout())
        self.assertTrue(self.connection.closed)

    def test_reset(self):
        """
        C{reset} asks the SDK to move (where to, if given: the port the SDK
        is given, as a string) and closes the connection once it acks, or
        after C{idle_timeout_ms} for an SDK that ignores it.
        """
        self.connection.reset("10.0.0.2", 8848)
        ((kind, request),) = self.requests()
        self.assertEqual(kind, "ConnectResetRequest")
        self.assertEqual((request["serverIp"], request["serverPort"], request["connectionId"]),
                         ("10.0.0.2", "8848", "c-1"))
        self.assertFalse(self.connection.closed)
        self.answer("ConnectResetResponse", request)
        self.assertTrue(self.connection.closed)
        other, sent = self.connect()
        other.reset()
        self.assertEqual(json.loads(sent[-1].body)["serverIp"], "")
        self.clock.advance(self.connection.ackTimeout())
        self.assertTrue(other.closed)

    def test_endedCancelsTimers(self):
        """
        A connection that ended leaves no timer behind.
        """
        self.connection.reset()
        self.connection.ended()
        self.connection.ended()  # twice is harmless
        self.assertEqual(self.clock.getDelayedCalls(), [])


class EncodedInSlicesTests(ConnectionTestCase):
    """
    The JSON of a view changed much is made a chunk (256 hosts) per slice,
    over turns, before its push or query answer goes (found from outside:
    the push of a 10,000-host view held the reactor 40 ms).
    """

    pushes = PushTests.pushes
    answer = PushTests.answer

    def setUp(self):
        self.harness = NodeHarness(turns=lambda clock: Turns(clock, budget=0.005, timer=TickingTimer(0.003)))
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.connection, self.sent = self.connect()
        self.publisher, _ = self.connect()
        self.ok("SubscribeServiceRequest", serviceName="orders", clusters="", subscribe=True)

    def publish(self, count, first=0):
        """
        The publisher's instances become C{count} new ones (in one step).
        """
        self.node.batchRegister(self.publisher.client, ORDERS, [
            model.parseInstance({"ip": f"10.2.{i // 250}.{i % 250}", "port": 80})
            for i in range(first, first + count)])

    def turnsUntilPushed(self):
        for turns in range(1, 50):
            nextTurn(self.clock)
            pushes = self.pushes()
            if pushes:
                return turns, pushes
        self.fail("never pushed")

    def test_pushEncodedOverTurns(self):
        self.publish(1000)
        turns, ((kind, push),) = self.turnsUntilPushed()
        self.assertGreater(turns, 2)  # a chunk per turn
        self.assertEqual(len(push["serviceInfo"]["hosts"]), 1000)

    def test_newerViewSupersedes(self):
        """
        A view given while an older one is encoded is the one pushed.
        """
        self.publish(3000)
        nextTurn(self.clock)
        nextTurn(self.clock)
        self.assertEqual(self.pushes(), [])
        self.publish(600, first=3000)
        turns, ((kind, push),) = self.turnsUntilPushed()
        ips = sorted(h["ip"] for h in push["serviceInfo"]["hosts"])
        self.assertEqual(len(ips), 600)
        self.assertEqual(ips[0], "10.2.12.0")  # the 3000th: the newer view only
        for _ in range(10):
            nextTurn(self.clock)
        self.assertEqual(self.pushes(), [])

    def test_unsubscribedWhileEncoded(self):
        self.publish(1000)
        nextTurn(self.clock)
        self.ask("SubscribeServiceRequest", serviceName="orders", clusters="", subscribe=False)
        for _ in range(20):
            nextTurn(self.clock)
        self.assertEqual(self.pushes(), [])

    def test_endedWhileEncoded(self):
        self.publish(1000)
        nextTurn(self.clock)
        self.connection.ended()
        for _ in range(20):
            nextTurn(self.clock)
        self.assertEqual(self.sent, [])

    def test_queryEncodedOverTurns(self):
        self.publish(1000)
        answer = self.connection.request(request("ServiceQueryRequest", serviceName="orders", cluster=""))
        self.assertIsInstance(answer, Deferred)
        reply = json.loads(settled(self.clock, answer).body)
        self.assertEqual(len(reply["serviceInfo"]["hosts"]), 1000)
        # Encoded now: the next query is answered at once.
        again = self.connection.request(request("ServiceQueryRequest", serviceName="orders", cluster=""))
        self.assertNotIsInstance(again, Deferred)

    def test_subscribeAnsweredBeforeItsPushes(self):
        """
        A subscribe of a view encoded over turns is answered before any
        push of the subscription, and what the SDK ends up holding (the
        view with the highest lastRefTime) is the newest (found in review:
        a push of a newer view could go before the answer with the older
        one, whose later lastRefTime made the SDK keep it).
        """
        self.publish(3000)
        late, lateSent = self.connect()
        answer = late.request(request("SubscribeServiceRequest", serviceName="orders", clusters="",
                                      subscribe=True))
        self.assertIsInstance(answer, Deferred)
        nextTurn(self.clock)
        self.publish(600, first=3000)  # the view changes while it is encoded
        reply = json.loads(settled(self.clock, answer).body)
        self.assertEqual([p.type for p in lateSent], [])  # nothing before the answer
        for _ in range(30):
            nextTurn(self.clock)
        views = [reply["serviceInfo"]] + [json.loads(p.body)["serviceInfo"] for p in lateSent
                                          if p.type == "NotifySubscriberRequest"]
        held = max(views, key=lambda v: v["lastRefTime"])
        self.assertEqual(len(held["hosts"]), 600)

    def test_pushEncodedWithinTheBudget(self):
        """
        A push due when the turn's budget is spent encodes nothing at once
        (found in review: each of 40 subscribers encoded a chunk in the
        same turn).
        """
        timer = SteppedTimer()
        self.harness = NodeHarness(turns=lambda clock: Turns(clock, budget=0.005, timer=timer))
        self.node = self.harness.node
        self.clock = self.harness.clock
        self.connection, self.sent = self.connect()
        self.publisher, _ = self.connect()
        self.ok("SubscribeServiceRequest", serviceName="orders", clusters="", subscribe=True)
        self.publish(1000)
        info = self.node.serviceInfo(ORDERS)
        self.node.turns.available()
        timer.now += 0.006  # the turn's budget is spent
        self.connection._push(info)
        self.assertFalse(any(g.isEncoded(("nacos", "DEFAULT_GROUP@@orders")) for g in info.hostGroups()))
        for _ in range(10):
            timer.now += 0.006
            nextTurn(self.clock)
        ((kind, push),) = self.pushes()
        self.assertEqual(len(push["serviceInfo"]["hosts"]), 1000)

    def test_pushAfterAFailedEncoding(self):
        """
        A push whose encoding failed is logged, and the subscription's
        next views are pushed (found in review: the failed one stayed
        "being encoded", and every later push waited behind it).
        """
        real = naming.hostsJsonInSlices

        def broken(info):
            yield
            raise RuntimeError("boom")

        self.patch(naming, "hostsJsonInSlices", broken)
        self.publish(1000)
        for _ in range(10):
            nextTurn(self.clock)
        self.assertEqual(self.pushes(), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.patch(naming, "hostsJsonInSlices", real)
        self.publish(900)
        turns, ((kind, push),) = self.turnsUntilPushed()
        self.assertEqual(len(push["serviceInfo"]["hosts"]), 900)
