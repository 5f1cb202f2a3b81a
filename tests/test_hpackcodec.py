"""
Tests for L{distro.hpackcodec}: HPACK decoding against the RFC's examples
and the C{hpack} library's encoder, every malformed block refused, and the
server's literals read back by the C{hpack} library's decoder.
"""

import random

import hpack
from twisted.trial.unittest import SynchronousTestCase

from distro.hpackcodec import (Decoder, HeaderListTooLarge, HPACKError, huffmanDecoded, indexed, literal,
                               literalOfIndexedName)


class DecoderTests(SynchronousTestCase):
    def test_rfcExample(self):
        """
        RFC 7541 C.4: three requests with Huffman coding, the dynamic table
        carried from one to the next.
        """
        decoder = Decoder()
        first = decoder.decode(bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"))
        self.assertEqual(first, ((b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                                 (b":authority", b"www.example.com")))
        second = decoder.decode(bytes.fromhex("828684be5886a8eb10649cbf"))
        self.assertEqual(second[-1], (b"cache-control", b"no-cache"))
        self.assertEqual(second[3], (b":authority", b"www.example.com"))

    def test_againstEncoder(self):
        """
        What the C{hpack} library encodes (indexing, Huffman or not, table
        size updates, evictions from a small table) decodes to what it was,
        block after block.
        """
        rng = random.Random(19)
        names = [b":path", b"content-type", b"grpc-timeout", b"user-agent", b"x-custom", b"te"]
        encoder, decoder = hpack.Encoder(), Decoder()
        for round in range(400):
            if round % 50 == 25:
                encoder.header_table_size = rng.choice([0, 256, 4096])
            headers = [(rng.choice(names), bytes(rng.randrange(256) for _ in range(rng.randrange(30))))
                       for _ in range(rng.randrange(1, 8))]
            block = encoder.encode(headers, huffman=rng.random() < 0.7)
            self.assertEqual(decoder.decode(block), tuple(headers))

    def test_huffman(self):
        """
        Every byte value survives Huffman coding; EOS, or padding that is
        not ones, is refused.
        """
        encoder = hpack.huffman.HuffmanEncoder(hpack.huffman_constants.REQUEST_CODES,
                                               hpack.huffman_constants.REQUEST_CODES_LENGTH)
        everything = bytes(range(256))
        self.assertEqual(huffmanDecoded(encoder.encode(everything)), everything)
        self.assertEqual(huffmanDecoded(b""), b"")
        for bad in (b"\xff\xff\xff\xff", b"\x00"):  # EOS; "0" then zero padding
            self.assertRaises(HPACKError, huffmanDecoded, bad)
        # Padding of 8 ones or more is refused: "a" (00011) then 11 ones.
        self.assertEqual(huffmanDecoded(b"\x1f"), b"a")
        self.assertRaises(HPACKError, huffmanDecoded, b"\x1f\xff")

    def test_malformed(self):
        """
        Each malformed block is refused with L{HPACKError}.
        """
        for block in (
            b"\x80",  # index 0
            b"\xbe",  # index 62, the dynamic table empty
            b"\xff\xff\xff\xff\xff\xff\x7f",  # an integer past 32 bits
            b"\xff",  # ends inside an integer
            b"\x40\x05ab",  # a name longer than the block
            b"\x40",  # ends before a string
            b"\x3f\xe2\x1f",  # a table size of 4097: past the maximum
            b"\x82\x20",  # a table size update after a field
        ):
            self.assertRaises(HPACKError, Decoder().decode, block)

    def test_tableSizeUpdate(self):
        """
        A table size update at a block's start shrinks the table: entries
        past it are evicted.
        """
        decoder = Decoder()
        decoder.decode(b"\x40\x01a\x01b")  # a: b, indexed (62)
        self.assertEqual(decoder.decode(b"\xbe"), ((b"a", b"b"),))
        self.assertEqual(decoder.decode(b"\x20\x82"), ((b":method", b"GET"),))
        self.assertRaises(HPACKError, decoder.decode, b"\xbe")

    def test_unchangedBlocksKept(self):
        """
        A block that changes nothing in the table is decoded once while the
        table stays: the same list again; once the table changes, it is
        decoded again against it.
        """
        decoder = Decoder()
        decoder.decode(b"\x40\x01a\x01b")  # a: b at 62
        first = decoder.decode(b"\x82\xbe")
        self.assertIs(decoder.decode(b"\x82\xbe"), first)
        decoder.decode(b"\x40\x01c\x01d")  # c: d at 62, a: b at 63
        self.assertEqual(decoder.decode(b"\x82\xbe"), ((b":method", b"GET"), (b"c", b"d")))
        changed = decoder.decode(b"\x20")  # the table emptied
        self.assertEqual(changed, ())
        self.assertRaises(HPACKError, decoder.decode, b"\x82\xbe")

    def test_listTooLarge(self):
        """
        A list past the bound is refused once the block is decoded whole,
        so that the table stays the peer's: the next block decodes.
        """
        encoder, decoder = hpack.Encoder(), Decoder(maxListSize=100)
        big = encoder.encode([(b"x-big", b"v" * 80), (b"x-small", b"1")])
        self.assertRaises(HeaderListTooLarge, decoder.decode, big)
        self.assertEqual(decoder.decode(encoder.encode([(b"x-small", b"1")])), ((b"x-small", b"1"),))


    def test_againstDecoder(self):
        """
        Blocks the C{hpack} library's encoder made, a byte of one in three
        changed (the dynamic table carried over six blocks, its size
        changed), and random bytes are refused, or decoded to the same
        list, as by its decoder; so are random Huffman strings, whole or
        with a bit flipped.
        """
        rng = random.Random(7541)
        names = [b":path", b"content-type", b"grpc-timeout", b"x-custom", b"te", b"x-other"]

        def outcomes(blocks):
            ours, theirs = Decoder(maxListSize=10 ** 9), hpack.Decoder(max_header_list_size=10 ** 9)
            for block in blocks:
                try:
                    mine = list(ours.decode(block))
                except HPACKError:
                    mine = None
                try:
                    other = [(bytes(name), bytes(value)) for name, value in theirs.decode(block, raw=True)]
                except hpack.HPACKError:
                    other = None
                yield mine, other
                if mine is None or other is None:
                    return

        for _ in range(300):
            for mine, other in outcomes([rng.randbytes(rng.randrange(1, 12))]):
                self.assertEqual(mine, other)
            encoder = hpack.Encoder()
            blocks = []
            for _ in range(6):
                if rng.random() < 0.3:
                    encoder.header_table_size = rng.choice([0, 64, 256, 4096])
                block = encoder.encode([(rng.choice(names), rng.randbytes(rng.randrange(100)))
                                        for _ in range(rng.randrange(1, 6))], huffman=rng.random() < 0.5)
                if rng.random() < 0.3:
                    at = rng.randrange(len(block))
                    block = block[:at] + bytes([rng.randrange(256)]) + block[at + 1:]
                blocks.append(block)
            for mine, other in outcomes(blocks):
                self.assertEqual(mine, other, blocks)
        encoder = hpack.huffman.HuffmanEncoder(hpack.huffman_constants.REQUEST_CODES,
                                               hpack.huffman_constants.REQUEST_CODES_LENGTH)
        for _ in range(2000):
            data = encoder.encode(rng.randbytes(rng.randrange(6)))
            if data and rng.random() < 0.5:
                data = data[:-1] + bytes([data[-1] ^ (1 << rng.randrange(8))])
            try:
                other = hpack.huffman_table.decode_huffman(data)
            except hpack.HPACKDecodingError:
                other = None
            try:
                mine = huffmanDecoded(data)
            except HPACKError:
                mine = None
            self.assertEqual(mine, other, data)


class LiteralTests(SynchronousTestCase):
    def test_readBack(self):
        """
        The server's fields decode, with the C{hpack} library, to what they
        say, long values included.
        """
        block = (indexed(8) + literalOfIndexedName(31, b"application/grpc")
                 + literalOfIndexedName(4, b"/x") + literal(b"grpc-message", b"m" * 300))
        self.assertEqual(hpack.Decoder().decode(block, raw=True),
                         [(b":status", b"200"), (b"content-type", b"application/grpc"), (b":path", b"/x"),
                          (b"grpc-message", b"m" * 300)])
