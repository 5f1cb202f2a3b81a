"""
Tests for L{distro.nacos.payload}: the Nacos C{Payload} in protobuf's wire
format, checked against Google's protobuf library (the message types built
here from their field numbers, as a Nacos SDK's generated code has them).
"""

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from distro.nacos.payload import Payload, PayloadError, decode, encode, encodedOnce, varint


def _messages():
    """
    C{(Payload, Metadata)} message classes of protobuf, from a descriptor of
    the Nacos proto (no package; Metadata.type = 3, headers = 7 (a map),
    clientIp = 8; Payload.metadata = 2, body = 3 (google.protobuf.Any)).
    """
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    F = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(
        name="nacos_payload_test.proto", syntax="proto3", dependency=["google/protobuf/any.proto"]
    )
    metadata = f.message_type.add(name="Metadata")
    metadata.field.add(name="type", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    metadata.field.add(name="clientIp", number=8, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    metadata.field.add(name="headers", number=7, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                       type_name=".Metadata.HeadersEntry")
    entry = metadata.nested_type.add(name="HeadersEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    payload = f.message_type.add(name="Payload")
    payload.field.add(name="metadata", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                      type_name=".Metadata")
    payload.field.add(name="body", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                      type_name=".google.protobuf.Any")
    pool.Add(f)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("Payload")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("Metadata")),
    )


ProtoPayload, ProtoMetadata = _messages()

text = st.text(max_size=40)
payloads = st.builds(
    Payload,
    type=text,
    headers=st.dictionaries(text, text, max_size=4),
    clientIp=text,
    body=st.binary(max_size=200),
)


class PayloadTests(SynchronousTestCase):
    def test_example(self):
        body = b'{"namespace":"public","serviceName":"orders"}'
        data = encode(Payload("InstanceRequest", {"app": "shop"}, "10.0.0.7", body))
        message = ProtoPayload.FromString(data)
        self.assertEqual(message.metadata.type, "InstanceRequest")
        self.assertEqual(dict(message.metadata.headers), {"app": "shop"})
        self.assertEqual(message.metadata.clientIp, "10.0.0.7")
        self.assertEqual(message.body.value, body)
        self.assertEqual(message.body.type_url, "")

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(payloads)
    def test_ours_read_by_protobuf(self, payload):
        message = ProtoPayload.FromString(encode(payload))
        self.assertEqual(
            (message.metadata.type, dict(message.metadata.headers), message.metadata.clientIp,
             message.body.value),
            tuple(payload),
        )

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(payloads, st.text(max_size=20))
    def test_protobufs_read_by_ours(self, payload, typeUrl):
        message = ProtoPayload()
        message.metadata.type = payload.type
        message.metadata.clientIp = payload.clientIp
        message.metadata.headers.update(payload.headers)
        message.body.value = payload.body
        message.body.type_url = typeUrl
        self.assertEqual(decode(message.SerializeToString()), payload)

    def test_unknownFieldsSkipped(self):
        """
        Fields this protocol does not have, of every wire type, are skipped.
        """
        data = encode(Payload("T", {}, "", b"{}"))
        # field 9 varint 150, field 10 fixed64, field 11 bytes, field 12 fixed32
        extra = b"\x48\x96\x01" + b"\x51" + b"\x00" * 8 + b"\x5a\x02hi" + b"\x65" + b"\x00" * 4
        self.assertEqual(decode(extra + data + extra), Payload("T", {}, "", b"{}"))

    def test_empty(self):
        self.assertEqual(decode(b""), Payload("", {}, "", b""))

    def test_malformed(self):
        """
        Truncated or impossible input is a L{PayloadError}, never another
        exception.
        """
        good = encode(Payload("InstanceRequest", {"k": "v"}, "1.2.3.4", b"{}"))
        for bad in (
            good[:-1],  # truncated
            b"\x12\x05abc",  # a length past the end
            b"\x12",  # a key without its value
            b"\x80",  # a truncated varint key
            b"\x00",  # field number 0
            b"\x13",  # a group (wire type 3)
            b"\x12\x02\x1a\x01",  # metadata.type truncated
            b"\x12\x03\x1a\x01\xff",  # metadata.type not UTF-8
            b"\x12\x02\x18\x01",  # metadata.type as a varint
            b"\x1a\x02\x10\x01",  # body.value as a varint
            b"\x12\x02\x38\x01",  # a headers entry as a varint
            b"\x48" + b"\xff" * 11,  # a varint too long
        ):
            self.assertRaises(PayloadError, decode, bad)

    def test_bounded(self):
        """
        A message is refused past C{MAX_FIELDS} fields walked, C{MAX_HEADERS}
        headers or a header of C{MAX_HEADER_BYTES}, wherever they are
        (found from outside: 4M unknown varint fields held the reactor for
        1.2 s, 1.3M headers for 1.05 s).
        """
        from distro.nacos import payload

        good = encode(Payload("T", {f"h{n}": "v" for n in range(payload.MAX_HEADERS)}, "", b"{}"))
        self.assertEqual(len(decode(good).headers), payload.MAX_HEADERS)
        varints = b"\x48\x00" * 4_000_000
        for bad in (
            varints + good,
            encode(Payload("T", {}, "", b"{}")) + b"\x12" + varint(len(varints)) + varints,
            encode(Payload("T", {f"h{n}": "v" for n in range(payload.MAX_HEADERS + 1)}, "", b"{}")),
            # metadata of 1.3M header entries {"k": "v"}
            b"\x12" + varint(8 * 1_300_000) + b"\x3a\x06\x0a\x01k\x12\x01v" * 1_300_000,
            encode(Payload("T", {"accessToken": "x" * payload.MAX_HEADER_BYTES}, "", b"{}")),
        ):
            error = self.assertRaises(PayloadError, decode, bad)
            self.assertRegex(str(error), "more than|over")

    @settings(max_examples=500, derandomize=True, deadline=None)
    @given(st.binary(max_size=64))
    def test_anyBytes(self, data):
        """
        Whatever the bytes, decoding gives a L{Payload} or a L{PayloadError}.
        """
        try:
            decode(data)
        except PayloadError:
            pass


    def test_sharedMetadata(self):
        """
        Requests that send the same metadata share its decoded headers, read
        only; a body of any size comes through whole.
        """
        headers = {"app": "shop", "accessToken": "t0k3n"}
        first, second = (decode(encode(Payload("InstanceRequest", headers, "10.0.0.7", body)))
                         for body in (b"{}", b"x" * 20_000))
        self.assertEqual(first, Payload("InstanceRequest", headers, "10.0.0.7", b"{}"))
        self.assertEqual(second.body, b"x" * 20_000)
        self.assertIs(first.headers, second.headers)
        with self.assertRaises(TypeError):
            first.headers["accessToken"] = "other"
        self.assertEqual(decode(encode(Payload("T", {}, "", b"{}"))).headers, {})

    def test_encodedOnce(self):
        """
        A payload kept for the process (an answer made once) is encoded
        once: the same bytes each time. Any other is encoded afresh.
        """
        kept = encodedOnce(Payload("InstanceResponse", {}, "", b'{"resultCode":200}'))
        self.assertIs(encode(kept), encode(kept))
        self.assertEqual(decode(encode(kept)), kept)
        other = Payload(*kept)
        self.assertIsNot(encode(other), encode(kept))
        self.assertEqual(encode(other), encode(kept))

    def test_longMetadataNotShared(self):
        """
        Metadata over 1 KiB (a long token) is decoded each time, the same.
        """
        payload = Payload("InstanceRequest", {"accessToken": "x" * 4000}, "10.0.0.7", b"{}")
        first, second = decode(encode(payload)), decode(encode(payload))
        self.assertEqual((first, second), (payload, payload))
        self.assertIsNot(first.headers, second.headers)

    def test_sharedMetadataCountsItsFields(self):
        """
        Metadata looked up, not walked, still spends its fields of
        C{MAX_FIELDS}: a message is refused past it whether its metadata
        was seen before or not.
        """
        from distro.nacos import payload

        headers = {f"h{n}": "v" for n in range(payload.MAX_HEADERS)}  # 193 fields with its type
        unknown = b"\x48\x00" * (payload.MAX_FIELDS - 193 - 3)
        for type_ in ("First", "First", "Second"):
            good = encode(Payload(type_, headers, "", b"{}"))
            self.assertEqual(decode(unknown + good).type, type_)
            error = self.assertRaises(PayloadError, decode, b"\x48\x00" + unknown + good)
            self.assertRegex(str(error), "more than")

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(payloads, payloads)
    def test_concatenatedMerged(self, first, second):
        """
        Two Payloads one after the other are one, merged as protobuf parses
        it: the later's fields over the earlier's, the headers of both.
        """
        data = encode(first) + encode(second)
        message = ProtoPayload.FromString(data)
        decoded = decode(data)
        self.assertEqual(
            (decoded.type, dict(decoded.headers), decoded.clientIp, decoded.body),
            (message.metadata.type, dict(message.metadata.headers), message.metadata.clientIp,
             message.body.value),
        )

    def test_usualShapeFaultsAsWalked(self):
        """
        A message of the usual shape that is malformed is refused for its
        first fault in the order a walk reads it: its metadata's before its
        body's.
        """
        badMetadata = b"\x12\x02\x1a\xff"  # metadata.type's length cut short
        tooLong = b"\x1a" + b"\xff" * 11 + b"\x01"  # body of a 12-byte length
        error = self.assertRaises(PayloadError, decode, badMetadata + tooLong)
        self.assertEqual(str(error), "truncated varint")
