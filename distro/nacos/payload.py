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
"""

__all__ = ["Payload", "PayloadError", "decode", "encode"]

from typing import NamedTuple


class PayloadError(ValueError):
    """
    Bytes that are not a well-formed C{Payload}.
    """


class Payload(NamedTuple):
    type: str
    headers: dict
    clientIp: str
    body: bytes


# Wire types.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(value):
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number, data):
    """
    A length-delimited field: its key, length and bytes.
    """
    return _varint(number << 3 | _BYTES) + _varint(len(data)) + data


def _text(number, value):
    return _field(number, value.encode("utf-8")) if value else b""


def encode(payload):
    """
    The bytes of C{payload} (a L{Payload}).
    """
    metadata = _text(3, payload.type)
    for key, value in payload.headers.items():
        metadata += _field(7, _text(1, key) + _text(2, value))
    metadata += _text(8, payload.clientIp)
    body = _field(2, payload.body) if payload.body else b""
    return _field(2, metadata) + _field(3, body)


def _readVarint(data, offset):
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


def _fields(data):
    """
    C{(number, wireType, value)} of each field of a message: C{value} is the
    bytes of a length-delimited field, the integer of a varint, C{None} for
    fixed-size ones (never used here, skipped).
    """
    offset = 0
    end = len(data)
    while offset < end:
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


def decode(data):
    """
    The L{Payload} in C{data}.

    @raise PayloadError: if C{data} is not a well-formed C{Payload}.
    """
    data = memoryview(data)
    type_, headers, clientIp, body = "", {}, "", b""
    for number, wireType, value in _fields(data):
        if number == 2 and wireType == _BYTES:
            for n, w, v in _fields(value):
                if n == 3:
                    type_ = _string(v, w, "metadata.type")
                elif n == 8:
                    clientIp = _string(v, w, "metadata.clientIp")
                elif n == 7:
                    if w != _BYTES:
                        raise PayloadError("metadata.headers: not an entry")
                    key = entry = ""
                    for en, ew, ev in _fields(v):
                        if en == 1:
                            key = _string(ev, ew, "metadata.headers key")
                        elif en == 2:
                            entry = _string(ev, ew, "metadata.headers value")
                    headers[key] = entry
        elif number == 3 and wireType == _BYTES:
            for n, w, v in _fields(value):
                if n == 2:
                    if w != _BYTES:
                        raise PayloadError("body.value: not bytes")
                    body = bytes(v)
    return Payload(type_, headers, clientIp, body)
