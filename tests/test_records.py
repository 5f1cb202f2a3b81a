"""
Tests for L{distro.cluster.records}: a client's C{client_state} cut into
pieces within a frame limit (PROTOCOL.md 5.2 rule 7), instance records and
deltas.
"""

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from distro.clients import Client
from distro.cluster import records
from distro.model import ServiceKey, parseInstance, parseRecord
from distro.wire import BAD_REQUEST, LIMIT_EXCEEDED, RequestError


def bigClient(services=3, perService=40, metadataBytes=500):
    client = Client("n0#boot#1", True, "n0", epoch=2, revision=9, resumeTokenHash="h")
    for s in range(services):
        held = client.services[ServiceKey("public", "DEFAULT_GROUP", f"svc-{s}")] = {}
        for n in range(perService):
            instance = parseInstance(
                {"ip": f"10.{s}.0.{n + 1}", "port": 80, "metadata": {"m": "x" * metadataBytes}},
                writeTs=n,
            )
            held[instance.instanceId] = instance
    client.services[ServiceKey("public", "DEFAULT_GROUP", "emptied")] = {}
    return client


def decode(frame):
    return msgpack.unpackb(frame[4:], raw=False)


def merged(messages):
    """
    Service name -> sorted instance ids, over every message.
    """
    out = {}
    for message in messages:
        for service, instances in message["services"]:
            held = out.setdefault(service["name"], [])
            held.extend(f"{i[0]}#{i[1]}" for i in instances)
    return {name: sorted(ids) for name, ids in out.items()}


class ClientStateFramesTests(SynchronousTestCase):
    def test_fitsInOne(self):
        """
        A client that fits is one frame, the plain C{client_state}.
        """
        client = bigClient(perService=2, metadataBytes=10)
        (frame,) = records.clientStateFrames(client, 64 * 1024)
        self.assertEqual(decode(frame), records.clientState(client))
        self.assertNotIn("part", decode(frame))

    def test_pieces(self):
        """
        A larger client is cut into frames within the limit, numbered from
        0, all but the last with C{more}; together they hold exactly the
        client's services (the emptied one included) and instances, with
        the same header in each.
        """
        client = bigClient()
        whole = records.clientState(client)
        limit = 8192
        frames = records.clientStateFrames(client, limit)
        self.assertGreaterEqual(len(frames), 8)
        messages = [decode(f) for f in frames]
        for n, (frame, message) in enumerate(zip(frames, messages)):
            self.assertLessEqual(len(frame), limit)
            self.assertEqual(message["part"], n)
            self.assertEqual(message.get("more", False), n < len(frames) - 1)
            for key in ("op", "client_id", "owner", "epoch", "revision", "resume_token_hash"):
                self.assertEqual(message[key], whole[key])
        self.assertEqual(merged(messages), merged([whole]))
        self.assertIn("emptied", merged(messages))

    def test_pieceNearlyFull(self):
        """
        Pieces are filled: each but the last would have overflowed with the
        next instance.
        """
        limit = 8192
        frames = records.clientStateFrames(bigClient(), limit)
        self.assertGreater(min(len(f) for f in frames[:-1]), limit - 700)

    def test_instanceTooLarge(self):
        """
        A limit that cannot hold one instance raises L{RecordTooLarge}
        (a configuration the node refuses at start).
        """
        with self.assertRaises(records.RecordTooLarge):
            records.clientStateFrames(bigClient(metadataBytes=5000), 4096)


def _service(name):
    return ServiceKey("public", "DEFAULT_GROUP", name)


class InstanceRecordTests(SynchronousTestCase):
    """
    Instance records, the replication form of an instance (PROTOCOL.md 5.2):
    C{[ip, port, cluster, weight, healthy, enabled, metadata, write_ts]}.
    """

    def test_roundTrip(self):
        instance = parseInstance(
            {"ip": "2001:DB8::1", "port": 80, "cluster": "c1", "weight": 2, "healthy": False,
             "metadata": {"zone": "a"}},
            writeTs=17,
        )
        record = instance.toRecord()
        self.assertEqual(record, ["2001:db8::1", 80, "c1", 2.0, False, True, {"zone": "a"}, 17])
        parsed = parseRecord(msgpack.unpackb(msgpack.packb(record)))
        self.assertTrue(parsed.sameContent(instance))
        self.assertEqual((parsed.instanceId, parsed.writeTs), (instance.instanceId, 17))

    def test_badRecords(self):
        """
        A record that is not an array of eight, or has a bad field, is
        refused naming the field.
        """
        good = ["10.0.0.1", 80, "DEFAULT", 1.0, True, True, {}, 5]
        cases = [({"ip": "10.0.0.1"}, "r"), (good[:7], "r"), (good + [1], "r")]
        for index, bad, field in (
            (0, 7, "r.ip"), (0, "", "r.ip"), (1, 0, "r.port"), (1, "80", "r.port"),
            (2, "a b", "r.cluster"), (2, None, "r.cluster"), (3, -1, "r.weight"),
            (3, "1", "r.weight"), (4, None, "r.healthy"), (5, 1, "r.enabled"),
            (6, None, "r.metadata"), (6, {"k": 1}, "r.metadata"), (7, 1.5, "r.write_ts"),
            (7, None, "r.write_ts"),
        ):
            record = list(good)
            record[index] = bad
            cases.append((record, field))
        for record, field in cases:
            error = self.assertRaises(RequestError, parseRecord, record, "r")
            self.assertEqual(error.code, BAD_REQUEST, record)
            self.assertTrue(error.message.startswith(field + ":"), (record, error.message))

    def test_metadataLimit(self):
        """
        The metadata limit is the caller's, even for a map equal to one
        already kept under a larger limit.
        """
        record = ["10.0.0.1", 80, "DEFAULT", 1.0, True, True, {"k": "v" * 100}, 5]
        parseRecord(list(record), "r", 1000)
        error = self.assertRaises(RequestError, parseRecord, list(record), "r", 50)
        self.assertEqual(error.code, LIMIT_EXCEEDED)


class DeltaTests(SynchronousTestCase):
    """
    C{delta}: changes grouped by service, and their validation.
    """

    def client(self):
        client = Client("n0#boot#1", True, "n0", epoch=2, revision=5)
        return client

    def test_groupedByService(self):
        a, b = _service("a"), _service("b")
        one = parseInstance({"ip": "10.0.0.1", "port": 1}, writeTs=3)
        two = parseInstance({"ip": "10.0.0.2", "port": 1}, writeTs=4)
        message = records.delta(
            self.client(), 3, [(a, one), (b, two), (a, two)], [(b, "10.0.0.9#1#DEFAULT")]
        )
        self.assertEqual(message["put"], [
            [a.toWire(), [one.toRecord(), two.toRecord()]],
            [b.toWire(), [two.toRecord()]],
        ])
        self.assertEqual(message["remove"], [[b.toWire(), ["10.0.0.9#1#DEFAULT"]]])
        self.assertEqual((message["base_revision"], message["revision"]), (3, 5))
        wired = msgpack.unpackb(msgpack.packb(message))
        header, base, revision, put, remove = records.parseDelta(wired, 8192)
        self.assertEqual((header.clientId, header.owner, header.epoch), ("n0#boot#1", "n0", 2))
        self.assertEqual((base, revision), (3, 5))
        self.assertEqual(
            [(s, i.instanceId, i.writeTs) for s, i in put],
            [(a, one.instanceId, 3), (a, two.instanceId, 4), (b, two.instanceId, 4)],
        )
        self.assertEqual(remove, [(b, "10.0.0.9#1#DEFAULT")])

    def test_badDeltas(self):
        """
        A bad field of a delta is refused naming it, down to the record.
        """
        good = records.delta(
            self.client(), 4, [(_service("a"), parseInstance({"ip": "10.0.0.1", "port": 1}))],
            [(_service("a"), "10.0.0.2#1#DEFAULT")],
        )
        second = parseInstance({"ip": "10.0.0.3", "port": 1}).toRecord()

        def bad(change):
            message = msgpack.unpackb(msgpack.packb(good))
            message["put"][0][1].append(list(second))
            change(message)
            return message

        def setPort(m):
            m["put"][0][1][1][1] = 0

        for change, field in (
            (lambda m: m.update(revision=4), "revision"),
            (lambda m: m.update(put={}), "put"),
            (lambda m: m["put"].append(["x"]), "put[1]"),
            (lambda m: m["put"][0].__setitem__(1, {}), "put[0].instances"),
            (setPort, "put[0].instances[1].port"),
            (lambda m: m["put"][0][0].update(name=""), "put[0].service.name"),
            (lambda m: m["remove"][0].__setitem__(1, "10.0.0.2#1#DEFAULT"), "remove[0].instance_ids"),
            (lambda m: m["remove"][0][1].append(7), "remove[0].instance_ids"),
        ):
            error = self.assertRaises(RequestError, records.parseDelta, bad(change), 8192)
            self.assertEqual(error.code, BAD_REQUEST)
            self.assertTrue(error.message.startswith(field + ":"), (field, error.message))
