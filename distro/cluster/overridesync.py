# -*- test-case-name: tests.test_overridesync -*-
"""
Replicating the operator overrides (PROTOCOL.md 5.7) on links that speak
the C{overrides} capability.

Unlike clients, overrides have no owner: every member holds them all and
merges what it is told, last writer wins (L{distro.overrides}). A member
sends an entry written at it to every member at once; a link that comes up
starts with every entry the sender holds; and each C{verify_interval_ms}
every member sends the digest of its map, so that a member that missed
something (its link was down, it was stopped) asks for the whole map and
gets it within one interval.
"""

import msgpack
from twisted.logger import Logger
from zope.interface import implementer

from distro.interfaces import IOverrideObserver
from distro.wire import BAD_REQUEST, RequestError, encode, errorMessage

OVERRIDES = "overrides"

_DIGEST_BYTES = 8


def digestBytes(digest):
    return digest.to_bytes(_DIGEST_BYTES, "big")


# An overrides frame's body up to its entries' array: {"op": "overrides",
# "entries": [...]}, the entries packed once each.
_ENTRIES_HEAD = b"\x82" + msgpack.packb("op") + msgpack.packb("overrides") + msgpack.packb("entries")


def _entriesFrame(packedEntries):
    """
    The C{overrides} frame of entries already packed (each packed once,
    while their frames were measured).
    """
    body = _ENTRIES_HEAD + msgpack.Packer().pack_array_header(len(packedEntries)) + b"".join(packedEntries)
    return len(body).to_bytes(4, "big") + body


@implementer(IOverrideObserver)
class OverrideSync:
    """
    Sends and receives the overrides of one node.

    @param overrides: the node's L{distro.interfaces.IOverrides}.
    @param links: returns the outbound links that are up (each with
        C{dialect} and C{write(frame)}).
    @param maxFrame: C{peer_max_frame}.
    """

    log = Logger()

    def __init__(self, overrides, links, maxFrame):
        self.overrides = overrides
        self.links = links
        self.maxFrame = maxFrame
        overrides.addObserver(self)

    def _speaking(self):
        return [link for link in self.links() if OVERRIDES in link.dialect.capabilities]

    # Sending

    def framesOfAll(self):
        """
        The C{overrides} frames that carry every entry held, each within
        half of C{peer_max_frame}.
        """
        budget = self.maxFrame // 2
        frames, batch, size = [], [], 0
        for override in self.overrides.entries.values():
            try:
                packed = msgpack.packb(override.toWire(), use_bin_type=True)
            except Exception:
                # Never kept (every entry is checked as members check it);
                # were one, it would cost only itself, not the link.
                self.log.failure("not sent: override {key}", key=override.key)
                continue
            if batch and size + len(packed) > budget:
                frames.append(_entriesFrame(batch))
                batch, size = [], 0
            batch.append(packed)
            size += len(packed)
        if batch:
            frames.append(_entriesFrame(batch))
        return frames

    def sendAll(self, link):
        """
        Send C{link}'s member every entry (its link just came up, or it
        asked: its digest differs).
        """
        if OVERRIDES in link.dialect.capabilities:
            for frame in self.framesOfAll():
                link.write(frame)

    def sendDigests(self):
        """
        Tell every member the digest of the map (each verify interval),
        unless it is empty: a member holding entries tells its own, and the
        other side asks (a cluster without overrides sends nothing).
        """
        links = self._speaking() if self.overrides.entries else ()
        if links:
            frame = encode({"op": "override_digest", "hash": digestBytes(self.overrides.digest),
                            "count": len(self.overrides.entries)})
            for link in links:
                link.write(frame)

    # IOverrideObserver

    def overrideChanged(self, override, written):
        if not written:
            return  # a member's: it told everyone itself
        links = self._speaking()
        if links:
            frame = encode({"op": "overrides", "entries": [override.toWire()]})
            for link in links:
                link.write(frame)

    def overridesForgotten(self, keys):
        pass

    # Receiving (on the inbound link of the member that sent it)

    def received(self, link, message):
        """
        An C{overrides} or C{override_digest} frame from C{link}'s member:
        apply it; return the answer to send back on C{link}, or C{None}.
        """
        op = message.get("op")
        if link.dialect is None or OVERRIDES not in link.dialect.capabilities:
            return errorMessage(None, BAD_REQUEST, f"op: {op} needs the overrides capability")
        if op == "override_digest":
            digest = message.get("hash")
            if type(digest) is not bytes or len(digest) != _DIGEST_BYTES:
                return errorMessage(None, BAD_REQUEST, f"hash: must be {_DIGEST_BYTES} bytes")
            if digest != digestBytes(self.overrides.digest):
                return {"op": "override_ask"}
            return None
        entries = message.get("entries")
        if type(entries) is not list:
            return errorMessage(None, BAD_REQUEST, "entries: must be a list")
        refused = None
        for i, value in enumerate(entries):
            try:
                override = self.overrides.ofWire(value, f"entries[{i}]")
            except RequestError as e:
                # The others are applied: one bad entry costs nobody the rest.
                refused = refused or e
                continue
            self.overrides.merge(override)
        if refused is not None:
            self.log.warn("refused an override from {peer}: {error}", peer=link.nodeId, error=refused.message)
            return errorMessage(None, refused.code, refused.message)
        return None
