# -*- test-case-name: tests.property.test_fuzz -*-
"""
Property tests for the client port: whatever bytes, msgpack values or
near-valid requests a connection sends, the node answers each with C{ok} or
a well-formed C{error}, logs no unexpected exception, keeps the data of other
clients, and goes on serving new connections (PROTOCOL.md section 2: "a node
never answers bad input by crashing, by closing other connections, or by
losing data it already holds").
"""

import copy
import struct

import msgpack
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from distro import wire
from distro.model import ServiceKey
from distro.native import views
from tests._factories import instance
from tests._node import NodeHarness, hostIds, service

_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

OPS = [
    "hello",
    "register",
    "deregister",
    "batch_register",
    "query",
    "subscribe",
    "unsubscribe",
    "services",
    "members",
    "ping",
    "bye",
]

KEEP_SERVICE = {"namespace": "keep", "group": "G", "name": "sentinel"}
KEEP_KEY = ServiceKey("keep", "G", "sentinel")
KEEP_INSTANCE = instance(ip="10.9.9.9", port=9999, cluster="K", metadata={"k": "v"})

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)

values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)

# Maps whose keys are not all strings: still valid msgpack, never a valid frame.
oddMaps = st.dictionaries(
    st.integers(-5, 5) | st.text(max_size=5) | st.binary(max_size=5) | st.booleans(),
    values,
    min_size=1,
    max_size=5,
)

requests = st.fixed_dictionaries(
    {"op": st.sampled_from(OPS) | values, "id": st.integers(1, 2**32) | values},
    optional={
        key: values
        for key in [
            "service",
            "instance",
            "instances",
            "clusters",
            "healthy_only",
            "namespace",
            "group",
            "page",
            "size",
            "proto",
            "token",
            "resume",
            "agent",
        ]
    },
)

_SERVICE = {"namespace": "public", "group": "g", "name": "svc"}
_INSTANCE = {
    "ip": "10.2.0.1",
    "port": 80,
    "cluster": "c1",
    "weight": 2.5,
    "healthy": True,
    "enabled": True,
    "metadata": {"a": "b"},
}
VALID = [
    {"op": "register", "id": 5, "service": _SERVICE, "instance": _INSTANCE},
    {
        "op": "batch_register",
        "id": 5,
        "service": _SERVICE,
        "instances": [_INSTANCE, dict(_INSTANCE, port=81, ip="host.example")],
    },
    {"op": "query", "id": 5, "service": _SERVICE, "clusters": ["c1", "c2"], "healthy_only": True},
    {
        "op": "deregister",
        "id": 5,
        "service": _SERVICE,
        "instance": {"ip": "10.2.0.1", "port": 80, "cluster": "c1"},
    },
    {"op": "subscribe", "id": 5, "service": _SERVICE, "clusters": ["c1"]},
    {"op": "services", "id": 5, "namespace": "public", "group": "g", "page": 1, "size": 10},
]


def paths(value, prefix=()):
    """
    Every path (a tuple of keys and indices) to a part of C{value}.
    """
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        path = prefix + (key,)
        yield path
        yield from paths(child, path)


@st.composite
def nearValid(draw):
    """
    A valid request with one part replaced by a random value, or deleted.
    """
    request = copy.deepcopy(draw(st.sampled_from(VALID)))
    path = draw(st.sampled_from(list(paths(request))))
    parent = request
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[path[-1]] = draw(values)
    elif isinstance(parent, list):
        parent.pop(path[-1])
    else:
        del parent[path[-1]]
    return request


class _Fuzzed:
    """
    One node per example: a client holding data that must survive, and the
    connection that gets the fuzz.
    """

    def __init__(self, test, hello=True):
        self.test = test
        self.harness = NodeHarness(max_frame=64 * 1024, push_delay_ms=20, idle_timeout_ms=600_000)
        self.keeper = self.harness.client(host="10.9.9.9")
        self.keeper.ok("register", service=KEEP_SERVICE, instance=KEEP_INSTANCE)
        self.keeper.ok("subscribe", service=KEEP_SERVICE)
        self.keeperId = self.keeper.helloReply["client_id"]
        self.keeperView = views.wireMap(self.harness.node.registry.serviceInfo(KEEP_KEY))
        self.connection = self.harness.client() if hello else self.harness.connect()
        self.frames = []
        self.sentOps = set()

    def sendRaw(self, data):
        self.connection.sendRaw(data)
        self.frames.extend(self.connection.frames())

    def send(self, message):
        if isinstance(message, dict) and message.get("op") == "bye":
            self.sentOps.add("bye")
        self.sendRaw(wire.encode(message))

    def check(self, inSync=True):
        """
        Everything written was well-formed, nothing unexpected was logged,
        the keeper's data is intact and the node still serves. If C{inSync}
        (only whole frames were sent) and the fuzzed connection is still
        open, it still answers.
        """
        test = self.test
        test.assertEqual(test.flushLoggedErrors(), [])
        closedBy = set()
        for frame in self.frames:
            op = frame.get("op")
            test.assertIn(op, ("ok", "error", "push"), frame)
            event(frame.get("code", op))
            if op == "push":
                test.assertIsInstance(frame["seq"], int)
                test.assertIsInstance(frame["service_info"], dict)
                continue
            test.assertIn("re", frame)
            test.assertTrue(frame["re"] is None or type(frame["re"]) is int, frame)
            if op == "error":
                test.assertIn(frame["code"], wire.ERROR_CODES, frame)
                test.assertNotEqual(frame["code"], wire.INTERNAL, frame)
                test.assertIsInstance(frame["message"], str)
                test.assertTrue(frame["message"], frame)
                closedBy.add(frame["code"])
        if self.connection.closing:
            test.assertTrue(
                closedBy & {wire.FRAME_TOO_LARGE, wire.HELLO_REQUIRED, wire.UNSUPPORTED_VERSION}
                or "bye" in self.sentOps,
                f"closed without a reason: {self.frames!r}",
            )
        elif inSync and self.connection.session.client is not None:
            self.connection.ok("ping")
        self.connection.lose()
        self.harness.clock.advance(60)

        node = self.harness.node
        keeper = node.manager.clients[self.keeperId]
        test.assertEqual(list(keeper.services), [KEEP_KEY])
        test.assertEqual(list(keeper.instances(KEEP_KEY)), ["10.9.9.9#9999#K"])
        test.assertEqual(views.wireMap(node.registry.serviceInfo(KEEP_KEY)), self.keeperView)
        test.assertFalse(self.keeper.closing)
        test.assertEqual(self.keeper.takePushes(), [])
        self.keeper.ok("ping")
        assertConsistent(test, node)

        fresh = self.harness.client(host="10.8.8.8")
        fresh.ok("register", service=service("after"), instance=instance())
        info = fresh.ok("query", service=service("after"))["service_info"]
        test.assertEqual(hostIds(info), ["10.1.0.1#8080#DEFAULT"])
        kept = fresh.ok("query", service=KEEP_SERVICE)["service_info"]
        test.assertEqual(kept, self.keeperView)
        test.assertEqual(test.flushLoggedErrors(), [])


def assertConsistent(test, node):
    """
    The registry's publisher index matches what the clients hold, and each
    client's instance count matches its instances.
    """
    held = set()
    for client in node.manager.clients.values():
        count = 0
        for svc, instances in client.services.items():
            test.assertTrue(instances, f"empty service {svc} kept for {client}")
            count += len(instances)
            held.update((svc, iid, client.clientId) for iid in instances)
        test.assertEqual(client.instanceCount, count, client)
    indexed = set()
    for svc, view in node.registry.views.items():
        for iid in view.publishers:
            indexed.update((svc, iid, cid) for cid in view.publishersOf(iid))
    test.assertEqual(indexed, held)


def frame(body):
    """
    A frame holding C{body} exactly.
    """
    return struct.pack("!I", len(body)) + body


class ClientPortFuzzTests(SynchronousTestCase):
    """
    Random input on the client port never hurts the node.
    """

    @_SETTINGS
    @given(
        st.lists(
            st.binary(max_size=64) | st.binary(max_size=200).map(frame),
            min_size=1,
            max_size=8,
        )
    )
    def test_randomBytes(self, chunks):
        """
        Random bytes, raw or inside well-formed length prefixes, after
        C{hello}.
        """
        fuzzed = _Fuzzed(self)
        for chunk in chunks:
            fuzzed.sendRaw(chunk)
        fuzzed.check(inSync=False)

    @_SETTINGS
    @given(st.lists(values | oddMaps, min_size=1, max_size=5))
    def test_randomValues(self, messages):
        """
        Random msgpack values, each as one frame, after C{hello}.
        """
        fuzzed = _Fuzzed(self)
        for message in messages:
            fuzzed.sendRaw(frame(msgpack.packb(message, use_bin_type=True)))
        fuzzed.check()

    @_SETTINGS
    @given(st.lists(requests, min_size=1, max_size=5))
    def test_randomRequests(self, messages):
        """
        Maps with a known (or random) C{op} and random fields.
        """
        fuzzed = _Fuzzed(self)
        for message in messages:
            fuzzed.send(message)
        fuzzed.check()

    @_SETTINGS
    @given(st.lists(nearValid(), min_size=1, max_size=4))
    def test_nearValid(self, messages):
        """
        Valid C{register}, C{batch_register}, C{query} (and other) requests
        with one part mutated to a random value or deleted.
        """
        fuzzed = _Fuzzed(self)
        for message in messages:
            fuzzed.send(message)
        fuzzed.check()

    @_SETTINGS
    @given(values | requests | oddMaps)
    def test_beforeHello(self, message):
        """
        A random first frame is answered with an error (or is a good
        C{hello}); the node goes on.
        """
        fuzzed = _Fuzzed(self, hello=False)
        fuzzed.sendRaw(frame(msgpack.packb(message, use_bin_type=True)))
        fuzzed.check()
