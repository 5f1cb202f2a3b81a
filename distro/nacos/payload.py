# -*- test-case-name: tests.test_nacos_payload -*-
"""
The one message of the Nacos gRPC protocol, C{Payload}, in protobuf's wire
format (docs/nacos.md):

    message Metadata { string type = 3; map<string, string> headers = 7; string clientIp = 8; }
    message Payload { Metadata metadata = 2; google.protobuf.Any body = 3; }
    message Any { string type_url = 1; bytes value = 2; }

C{metadata.type} names the request or response class; C{body.value} is its
JSON. Encoded and decoded here directly (three small messages), so that the
node needs no generated code: a L{Payload} is C{(type, headers, clientIp,
body)} with C{body} the JSON bytes. Decoding skips unknown fields, as
protobuf does, and refuses malformed input with L{PayloadError}.

Decoding walks at most L{MAX_FIELDS} fields and keeps at most
L{MAX_HEADERS} headers of at most L{MAX_HEADER_BYTES} each: a message of
millions of fields is refused after a few hundred, in microseconds, never
walked whole on the reactor.
"""

__all__ = ["Payload", "PayloadError", "decode", "encode", "encodedOnce"]

from types import MappingProxyType
from typing import NamedTuple

from distro.shared import Shared


class PayloadError(ValueError):
    """
    Bytes that are not a well-formed C{Payload}.
    """


class Payload(NamedTuple):
    type: str
    headers: dict  # read-only when decoded
    clientIp: str
    body: bytes


# What a Payload holds, at most: a real one has a few fields and headers
# (the SDKs send an accessToken, app name, client version and the like).
MAX_FIELDS = 512
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8192

# Wire types.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def varint(value):
    """
    C{value} as a protobuf varint.
    """
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The keys of the length-delimited fields of numbers 1 to 8 (all a Payload has).
_KEYS = {number: varint(number << 3 | _BYTES) for number in range(1, 9)}


def _field(number, data):
    """
    A length-delimited field: its key, length and bytes.
    """
    length = len(data)
    return b"".join((_KEYS[number], _ONE_BYTE[length] if length < 0x80 else varint(length), data))


def _text(number, value):
    return _field(number, value.encode("utf-8")) if value else b""


# The payloads made once and kept for the process (L{encodedOnce}), by id,
# with their bytes: each holds its payload, so no other object takes its id.
_CONSTANTS = {}


def encodedOnce(payload):
    """
    C{payload}, which its maker keeps for the life of the process (the
    same answer to every request of a kind): L{encode} then gives the bytes
    encoded once. Its maker bounds how many it makes.
    """
    if id(payload) not in _CONSTANTS:
        _CONSTANTS[id(payload)] = (payload, _encoded(payload))
    return payload


def encode(payload):
    """
    The bytes of C{payload} (a L{Payload}).
    """
    known = _CONSTANTS.get(id(payload))
    if known is not None and known[0] is payload:
        return known[1]
    return _encoded(payload)


def _encoded(payload):
    parts = [_text(3, payload.type)]
    for key, value in payload.headers.items():
        parts.append(_field(7, _text(1, key) + _text(2, value)))
    parts.append(_text(8, payload.clientIp))
    metadata = b"".join(parts)
    body = _field(2, payload.body) if payload.body else b""
    return _field(2, metadata) + _field(3, body)


def _readVarint(data, offset):
    if offset < len(data) and data[offset] < 0x80:
        return data[offset], offset + 1
    result = shift = 0
    while True:
        if offset >= len(data):
            raise PayloadError("truncated varint")
        byte = data[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, offset
        shift += 7
        if shift > 63:
            raise PayloadError("varint too long")


def _fields(data, budget):
    """
    C{(number, wireType, value)} of each field of a message: C{value} is the
    bytes of a length-delimited field, the integer of a varint, C{None} for
    fixed-size ones (never used here, skipped). Each field spends one of
    C{budget} (a one-item list, shared by the whole message).
    """
    offset = 0
    end = len(data)
    while offset < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise PayloadError(f"more than {MAX_FIELDS} fields")
        key, offset = _readVarint(data, offset)
        number, wireType = key >> 3, key & 7
        if number == 0:
            raise PayloadError("field number 0")
        if wireType == _VARINT:
            value, offset = _readVarint(data, offset)
        elif wireType == _BYTES:
            length, offset = _readVarint(data, offset)
            if length > end - offset:
                raise PayloadError("truncated field")
            value = data[offset : offset + length]
            offset += length
        elif wireType in (_FIXED64, _FIXED32):
            offset += 8 if wireType == _FIXED64 else 4
            if offset > end:
                raise PayloadError("truncated field")
            value = None
        else:
            raise PayloadError(f"unsupported wire type {wireType}")
        yield number, wireType, value


def _string(value, wireType, what):
    if wireType != _BYTES:
        raise PayloadError(f"{what}: not a string")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(f"{what}: not UTF-8")


# Metadata decoded before, by its bytes: an SDK sends the same type, headers
# and client IP with every request of a kind, so most are looked up, not
# decoded. Longer ones (rare: large tokens) are decoded each time.
_METADATA = Shared(1024)
_SHARED_METADATA_BYTES = 1024
_NO_HEADERS = MappingProxyType({})
_NO_METADATA = ("", _NO_HEADERS, "")


def _metadata(value, budget):
    """
    C{(type, headers, clientIp)} of a C{Metadata}'s bytes, its headers
    read-only (they may be shared by every request that sent the same).
    """
    key = bytes(value) if len(value) <= _SHARED_METADATA_BYTES else None
    known = _METADATA.get(key) if key is not None else None
    if known is not None:
        fields, decoded = known
        budget[0] -= fields
        if budget[0] < 0:
            raise PayloadError(f"more than {MAX_FIELDS} fields")
        return decoded
    before = budget[0]
    decoded = _merged(value, budget, _NO_METADATA)
    if key is not None:
        _METADATA.share(key, (before - budget[0], decoded))
    return decoded


def _merged(value, budget, metadata):
    """
    C{metadata} (a C{(type, headers, clientIp)}) with the fields of the
    C{Metadata} bytes C{value} read over it, as protobuf merges a message
    sent again: each field read replaces its value, each header entry is
    added.
    """
    type_, headers, clientIp = metadata
    headers = dict(headers)
    for n, w, v in _fields(value, budget):
        if n == 3:
            type_ = _string(v, w, "metadata.type")
        elif n == 8:
            clientIp = _string(v, w, "metadata.clientIp")
        elif n == 7:
            if w != _BYTES:
                raise PayloadError("metadata.headers: not an entry")
            if len(v) > MAX_HEADER_BYTES:
                raise PayloadError(f"metadata.headers: an entry over {MAX_HEADER_BYTES} bytes")
            if len(headers) >= MAX_HEADERS:
                raise PayloadError(f"metadata.headers: more than {MAX_HEADERS}")
            name = entry = ""
            for en, ew, ev in _fields(v, budget):
                if en == 1:
                    name = _string(ev, ew, "metadata.headers key")
                elif en == 2:
                    entry = _string(ev, ew, "metadata.headers value")
            headers[name] = entry
    return (type_, MappingProxyType(headers) if headers else _NO_HEADERS, clientIp)


def _length(data, at):
    """
    The varint at C{at} of C{data} and the offset after it: one and two
    bytes (every length but a body's of 16 KiB or more) read inline.
    """
    first = data[at]
    if first < 0x80:
        return first, at + 1
    second = data[at + 1]
    if second < 0x80:
        return (first & 0x7F) | second << 7, at + 2
    return _readVarint(data, at)


def _usual(data):
    """
    The L{Payload} in C{data} if it has the shape every SDK sends (its
    metadata, then its body holding only a value, each field once), read
    without walking its fields one by one; C{None} for any other shape,
    well-formed or not, and for a malformed one (L{decode} then walks it,
    and tells its first fault as a walk finds it).
    """
    try:
        if data[0] != 0x12:
            return None
        length, at = _length(data, 1)
        metadataEnd = at + length
        if data[metadataEnd] != 0x1A:
            return None
        length, bodyAt = _length(data, metadataEnd + 1)
        if bodyAt + length != len(data) or data[bodyAt] != 0x12:
            return None
        length, valueAt = _length(data, bodyAt + 1)
        if valueAt + length != len(data):
            return None
        # The three fields read spend three of the budget, as a walk would.
        type_, headers, clientIp = _metadata(data[at:metadataEnd], [MAX_FIELDS - 3])
    except (IndexError, PayloadError):
        return None
    return Payload(type_, headers, clientIp, data[valueAt:])


def decode(data):
    """
    The L{Payload} in C{data}; its C{headers} are read-only.

    @raise PayloadError: if C{data} is not a well-formed C{Payload}.
    """
    if type(data) is not bytes:
        data = bytes(data)
    usual = _usual(data)
    if usual is not None:
        return usual
    data = memoryview(data)
    budget = [MAX_FIELDS]
    metadata, body = None, b""
    for number, wireType, value in _fields(data, budget):
        if number == 2 and wireType == _BYTES:
            # Sent again, it is merged into what came before.
            metadata = _metadata(value, budget) if metadata is None else _merged(value, budget, metadata)
        elif number == 3 and wireType == _BYTES:
            for n, w, v in _fields(value, budget):
                if n == 2:
                    if w != _BYTES:
                        raise PayloadError("body.value: not bytes")
                    body = bytes(v)
    return Payload(*(metadata or _NO_METADATA), body)
