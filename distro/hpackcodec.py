# -*- test-case-name: tests.test_hpackcodec -*-
"""
HPACK (RFC 7541), as a gRPC server needs it: a decoder of any header block
a client sends (its dynamic table, Huffman strings, every representation),
bounded, and the literals the server's own blocks are made of.

The server never indexes what it sends: its blocks are literals without
indexing (or static table references), made once per kind of answer, so it
keeps no encoder state; when a client lowers its table size, the server's
next block starts with a table size update to 0 (L{distro.http2}).

The decoder is written for what clients send again and again: a block of
one-byte references and a short Huffman value or two costs a few
microseconds, and a block that changes nothing in the table (all
references: what grpcio sends for each call after its first) is decoded
once while the table stays as it is.
"""



class HPACKError(Exception):
    """
    A header block that cannot be decoded: the connection's compression
    state is lost (HTTP/2's C{COMPRESSION_ERROR}).
    """


class HeaderListTooLarge(Exception):
    """
    A header block decoded whole (the decoder's state is kept) whose list
    is larger than allowed.
    """


TABLE_SIZE = 4096
# Blocks that change nothing in the table, kept decoded: at most this many,
# each of at most _CACHED_BLOCK bytes.
_CACHED_BLOCKS = 8
_CACHED_BLOCK = 128
# An entry's size beyond its name and value's (RFC 7541 4.1).
ENTRY_OVERHEAD = 32

# RFC 7541 Appendix A: the static table (index 1 is its first entry).
STATIC_TABLE = (
    (b':authority', b''),
    (b':method', b'GET'),
    (b':method', b'POST'),
    (b':path', b'/'),
    (b':path', b'/index.html'),
    (b':scheme', b'http'),
    (b':scheme', b'https'),
    (b':status', b'200'),
    (b':status', b'204'),
    (b':status', b'206'),
    (b':status', b'304'),
    (b':status', b'400'),
    (b':status', b'404'),
    (b':status', b'500'),
    (b'accept-charset', b''),
    (b'accept-encoding', b'gzip, deflate'),
    (b'accept-language', b''),
    (b'accept-ranges', b''),
    (b'accept', b''),
    (b'access-control-allow-origin', b''),
    (b'age', b''),
    (b'allow', b''),
    (b'authorization', b''),
    (b'cache-control', b''),
    (b'content-disposition', b''),
    (b'content-encoding', b''),
    (b'content-language', b''),
    (b'content-length', b''),
    (b'content-location', b''),
    (b'content-range', b''),
    (b'content-type', b''),
    (b'cookie', b''),
    (b'date', b''),
    (b'etag', b''),
    (b'expect', b''),
    (b'expires', b''),
    (b'from', b''),
    (b'host', b''),
    (b'if-match', b''),
    (b'if-modified-since', b''),
    (b'if-none-match', b''),
    (b'if-range', b''),
    (b'if-unmodified-since', b''),
    (b'last-modified', b''),
    (b'link', b''),
    (b'location', b''),
    (b'max-forwards', b''),
    (b'proxy-authenticate', b''),
    (b'proxy-authorization', b''),
    (b'range', b''),
    (b'referer', b''),
    (b'refresh', b''),
    (b'retry-after', b''),
    (b'server', b''),
    (b'set-cookie', b''),
    (b'strict-transport-security', b''),
    (b'transfer-encoding', b''),
    (b'user-agent', b''),
    (b'vary', b''),
    (b'via', b''),
    (b'www-authenticate', b''),
)

# RFC 7541 Appendix B: each symbol's Huffman code (0-255, then EOS) as
# (code, length in bits).
HUFFMAN_CODES = (
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28), (0xfffffe5, 28),
    (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28),
    (0xfffffef, 28), (0xffffff0, 28), (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10),
    (0xf9, 8), (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6),
    (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7),
    (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5),
    (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
    (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14),
    (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23),
    (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23),
    (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21),
    (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22),
    (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22),
    (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23),
    (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21),
    (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27),
    (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22),
    (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27),
    (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26), (0x3fffffff, 30),
)


def _huffmanMachine():
    """
    The Huffman decoder as a state machine over 4-bit nibbles: for each
    state (a node of the code's tree, 0 the root) and nibble,
    C{(next state, the byte completed or -1, whether the next state may
    end a string)}; a nibble that reaches EOS is C{None}.
    """
    children = [[None, None]]  # per internal node: child node or ("leaf", symbol)
    for symbol, (code, length) in enumerate(HUFFMAN_CODES):
        node = 0
        for shift in range(length - 1, -1, -1):
            bit = (code >> shift) & 1
            if shift == 0:
                children[node][bit] = ("leaf", symbol)
            else:
                if children[node][bit] is None:
                    children.append([None, None])
                    children[node][bit] = len(children) - 1
                node = children[node][bit]
    # A string may end at the root, or inside a code of up to 7 one bits
    # (a prefix of EOS, the padding).
    ending = {0}
    node = 0
    for _ in range(7):
        node = children[node][1]
        ending.add(node)
    machine = []
    for state in range(len(children)):
        for nibble in range(16):
            node, emitted = state, -1
            for shift in (3, 2, 1, 0):
                child = children[node][(nibble >> shift) & 1]
                if isinstance(child, tuple):
                    if child[1] == 256:
                        node = None
                        break
                    emitted, node = child[1], 0
                else:
                    node = child
            machine.append(None if node is None else (node, emitted, node in ending))
    return machine


_HUFFMAN = _huffmanMachine()


def huffmanDecoded(data):
    """
    C{data} (Huffman-coded bytes) decoded; L{HPACKError} if it is not a
    valid string (EOS in it, or padding that is not a short run of ones).
    """
    machine = _HUFFMAN
    out = bytearray()
    state, ends = 0, True
    for byte in data:
        step = machine[(state << 4) | (byte >> 4)]
        if step is None:
            raise HPACKError("EOS in a Huffman string")
        state, emitted, _ = step
        if emitted >= 0:
            out.append(emitted)
        step = machine[(state << 4) | (byte & 15)]
        if step is None:
            raise HPACKError("EOS in a Huffman string")
        state, emitted, ends = step
        if emitted >= 0:
            out.append(emitted)
    if not ends:
        raise HPACKError("a Huffman string's padding is not a prefix of EOS")
    return bytes(out)


def _integer(data, at, prefix):
    """
    The integer of C{prefix} bits starting at C{data[at]}:
    C{(value, next offset)}.
    """
    limit = (1 << prefix) - 1
    value = data[at] & limit
    at += 1
    if value < limit:
        return value, at
    shift = 0
    while True:
        if at >= len(data):
            raise HPACKError("a header block ends inside an integer")
        byte = data[at]
        at += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 28:
            raise HPACKError("an integer of more than 32 bits")


def _string(data, at):
    """
    The string starting at C{data[at]}: C{(bytes, next offset)}.
    """
    if at >= len(data):
        raise HPACKError("a header block ends before a string")
    huffman = data[at] & 0x80
    length, at = _integer(data, at, 7)
    end = at + length
    if end > len(data):
        raise HPACKError("a string longer than its header block")
    value = data[at:end]
    return (huffmanDecoded(value) if huffman else value), end


class Decoder:
    """
    One connection's HPACK decoder (its peer's dynamic table).

    @param maxListSize: the largest header list a block may carry (names,
        values and 32 bytes per field, as SETTINGS_MAX_HEADER_LIST_SIZE
        counts).
    @param maxTableSize: the dynamic table size the peer may use at most
        (the SETTINGS_HEADER_TABLE_SIZE this side announced).
    """

    __slots__ = ("maxListSize", "maxTableSize", "_tableSize", "_entries", "_size", "_decoded")

    def __init__(self, *, maxListSize=16384, maxTableSize=TABLE_SIZE):
        self.maxListSize = maxListSize
        self.maxTableSize = maxTableSize
        self._tableSize = maxTableSize  # the peer's current table size
        self._entries = []  # the dynamic table, newest last
        self._size = 0
        self._decoded = {}  # block: its header list, for blocks that change nothing

    def _entry(self, index):
        if index <= 61:
            if index == 0:
                raise HPACKError("header table index 0")
            return STATIC_TABLE[index - 1]
        entries = self._entries
        position = len(entries) - (index - 61)
        if position < 0:
            raise HPACKError(f"header table index {index} past the table")
        return entries[position]

    def _add(self, name, value):
        self._changed()
        size = len(name) + len(value) + ENTRY_OVERHEAD
        entries = self._entries
        if size > self._tableSize:
            entries.clear()
            self._size = 0
            return
        self._size += size
        self._evict(self._tableSize)
        entries.append((name, value))

    def _resize(self, size):
        if size > self.maxTableSize:
            raise HPACKError(f"a table size of {size}, past {self.maxTableSize}")
        self._changed()
        self._tableSize = size
        self._evict(size)

    def _changed(self):
        """
        The table changes: indices name other entries, and no block kept
        decoded holds.
        """
        if self._decoded:
            self._decoded.clear()

    def _evict(self, size):
        """
        Drop the oldest entries until the table takes C{size} bytes at most.
        """
        entries = self._entries
        while self._size > size:
            oldName, oldValue = entries.pop(0)
            self._size -= len(oldName) + len(oldValue) + ENTRY_OVERHEAD

    def _literal(self, data, at, prefix):
        """
        The literal field starting at C{data[at]}, its name a table entry's
        (an index of C{prefix} bits) or a string: C{((name, value), next
        offset)}.
        """
        index, at = _integer(data, at, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, at = _string(data, at)
        value, at = _string(data, at)
        return (name, value), at

    def decode(self, data):
        """
        The header list of block C{data}: C{((name, value), ...)} of bytes;
        the same tuple for the same block while the table is unchanged.

        @raise HPACKError: the block is not valid (the connection must end).
        @raise HeaderListTooLarge: the block was decoded (the table is as
            the peer's) but its list is past C{maxListSize}.
        """
        decoded = self._decoded.get(data)
        if decoded is not None:
            return decoded
        headers, changed = self._decode(data)
        if not changed and len(data) <= _CACHED_BLOCK:
            if len(self._decoded) >= _CACHED_BLOCKS:
                self._decoded.clear()
            self._decoded[data] = headers
        return headers

    def _decode(self, data):
        """
        C{(header list, whether the table changed)} of C{data}.
        """
        headers = []
        changed = False
        listSize = 0
        at, end = 0, len(data)
        entry = self._entry
        while at < end:
            byte = data[at]
            if byte & 0x80:
                # Indexed: a one-byte reference in what clients send again.
                if byte < 0xFF:
                    index = byte & 0x7F
                    at += 1
                else:
                    index, at = _integer(data, at, 7)
                field = entry(index)
            elif byte & 0x40:
                # Literal with incremental indexing.
                field, at = self._literal(data, at, 6)
                self._add(*field)
                changed = True
            elif byte & 0x20:
                # A dynamic table size update: only before the block's fields.
                if headers or listSize:
                    raise HPACKError("a table size update after a header field")
                size, at = _integer(data, at, 5)
                self._resize(size)
                changed = True
                continue
            else:
                # Literal without indexing, or never indexed.
                field, at = self._literal(data, at, 4)
            listSize += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if listSize <= self.maxListSize:
                headers.append(field)
        if listSize > self.maxListSize:
            raise HeaderListTooLarge(f"a header list of {listSize} bytes, past {self.maxListSize}")
        return tuple(headers), changed


def _lengthPrefixed(value):
    """
    An HPACK string, not Huffman-coded: its 7-bit-prefix length, then it.
    """
    length = len(value)
    if length < 0x7F:
        return bytes([length]) + value
    out = bytearray([0x7F])
    length -= 0x7F
    while length >= 0x80:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + value


def literal(name, value):
    """
    The field C{name: value} as a literal not indexed, with a literal name
    (RFC 7541 6.2.2).
    """
    return b"\x00" + _lengthPrefixed(name) + _lengthPrefixed(value)


def literalOfIndexedName(index, value):
    """
    The field named by static table entry C{index} with C{value}, as a
    literal not indexed (RFC 7541 6.2.2).
    """
    if index < 15:
        return bytes([index]) + _lengthPrefixed(value)
    return bytes([0x0F, index - 15]) + _lengthPrefixed(value)


def indexed(index):
    """
    The static table's entry C{index} (RFC 7541 6.1).
    """
    return bytes([0x80 | index])
