"""
Tests for L{distro.cluster.records}: a client's C{client_state} cut into
pieces within a frame limit (PROTOCOL.md 5.2 rule 7).
"""

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from distro.clients import Client
from distro.cluster import records
from distro.model import ServiceKey, parseInstance


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
            held.extend(f"{i['ip']}#{i['port']}" for i in instances)
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
