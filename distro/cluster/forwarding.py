# -*- test-case-name: tests.test_forwarding -*-
"""
Writes one member forwards to another (PROTOCOL.md 5.6): a heartbeat
client's writes and beats go to the member responsible for it, chosen by
the same stable hash on every node.

A member sends C{forward} on its own link to the responsible member, which
applies it and answers C{forwarded} on that link. Both need the link's
L{FORWARD} capability (5.1.1): a member of an earlier release is never
sent one, and is never made responsible.
"""

import hashlib
import itertools

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from distro.errors import DOMAIN_CODES, INTERNAL, UNAVAILABLE, BadRequest, RequestError
from distro.heartbeats import BEAT_NOT_FOUND, BEAT_OK, KINDS, Write
from distro.model import parsePort, parseRecord, parseService

# The capability of a link that carries forwarded writes.
FORWARD = "forward"


def _score(address, clientId):
    return hashlib.blake2b(f"{address}\n{clientId}".encode("utf-8"), digest_size=8).digest()


def responsible(clientId, addresses):
    """
    The address, of C{addresses} (the members that may be responsible),
    responsible for the heartbeat client C{clientId}: the highest
    BLAKE2b-64 of C{address + "\\n" + clientId} (rendezvous hashing: when
    a member goes or comes, only the clients it gains or loses move).
    """
    return max(addresses, key=lambda address: _score(address, clientId))


def forwardMessage(n, write):
    """
    The C{forward} message of C{write}, numbered C{n} on its link.
    """
    return {
        "op": "forward",
        "id": n,
        "kind": write.kind,
        "ip": write.ip,
        "port": write.port,
        "service": write.service.toWire(),
        "instance": None if write.instance is None else write.instance.toRecord(),
    }


def parseForward(message, maxMetadataBytes):
    """
    The C{(id, Write)} of a C{forward} message.

    @raise BadRequest: naming the offending field.
    """
    n = message.get("id")
    if type(n) is not int or n < 0:
        raise BadRequest("id", "must be an integer >= 0")
    kind = message.get("kind")
    if kind not in KINDS:
        raise BadRequest("kind", f"must be one of {', '.join(KINDS)}")
    ip = message.get("ip")
    if type(ip) is not str or not ip:
        raise BadRequest("ip", "must be a non-empty string")
    port = parsePort(message.get("port"), "port")
    service = parseService(message.get("service"))
    record = message.get("instance")
    instance = None if record is None else parseRecord(record, "instance", maxMetadataBytes)
    if instance is None and kind in ("register", "update"):
        raise BadRequest("instance", f"is required for {kind}")
    return n, Write(kind, ip, port, service, instance)


def forwardedMessage(n, result=None, error=None):
    """
    The answer to C{forward} C{n}: its C{result} (a beat's C{[code,
    intervalMs]}, else nil), or its C{error} (a L{RequestError}).
    """
    message = {"op": "forwarded", "id": n}
    if error is not None:
        message["code"] = error.code if error.code in DOMAIN_CODES else INTERNAL
        message["message"] = error.message
    else:
        message["result"] = None if result is None else list(result)
    return message


class Forwarding:
    """
    The forwards this node sent, awaiting their answers: each fails with
    C{UNAVAILABLE} if its link goes first or no answer comes within
    C{timeout} seconds.
    """

    log = Logger()

    def __init__(self, clock, timeout):
        self.clock = clock
        self.timeout = timeout
        self._numbers = itertools.count()
        # id -> (Deferred, timer, link)
        self._pending = {}

    def send(self, link, write):
        """
        Forward C{write} over C{link} (an authenticated outbound link that
        speaks L{FORWARD}); a L{Deferred} of its result.
        """
        if link is None or FORWARD not in link.dialect.capabilities:
            return fail(RequestError(UNAVAILABLE, "the responsible member is not reachable now; try again"))
        n = next(self._numbers)
        d = Deferred()
        timer = self.clock.callLater(self.timeout, self._timedOut, n)
        self._pending[n] = (d, timer, link, write.kind)
        link.sendMessage(forwardMessage(n, write))
        return d

    def pendingCount(self):
        return len(self._pending)

    def _timedOut(self, n):
        d = self._pending.pop(n)[0]
        d.errback(RequestError(UNAVAILABLE, "the responsible member did not answer in time; try again"))

    def answered(self, message):
        """
        A C{forwarded} answer arrived.
        """
        n = message.get("id")
        entry = self._pending.pop(n, None) if type(n) is int else None
        if entry is None:
            return  # timed out, or not ours
        d, timer, _, kind = entry
        timer.cancel()
        code = message.get("code")
        if code is not None:
            text = message.get("message")
            d.errback(RequestError(code if code in DOMAIN_CODES else INTERNAL,
                                   text if type(text) is str else "refused by the responsible member"))
            return
        result = _result(kind, message.get("result"))
        if result is _MALFORMED:
            d.errback(RequestError(INTERNAL, "the responsible member answered a malformed result"))
        else:
            d.callback(result)

    def linkDown(self, link):
        """
        C{link} ended: what was sent on it gets no answer. (It may have
        been applied: every write is safe to send again.)
        """
        for n in [n for n, entry in self._pending.items() if entry[2] is link]:
            d, timer = self._pending.pop(n)[:2]
            timer.cancel()
            d.errback(RequestError(UNAVAILABLE, "the link to the responsible member was lost; try again"))

    def stop(self):
        """
        Fail every forward waiting (the node is shutting down).
        """
        pending, self._pending = self._pending, {}
        for d, timer, _, _ in pending.values():
            timer.cancel()
            d.errback(RequestError(UNAVAILABLE, "this node is shutting down"))


_MALFORMED = object()


def _result(kind, result):
    """
    The result of a forwarded write of C{kind} as its answer gives it, or
    L{_MALFORMED}: a beat's C{(code, intervalMs)}, nothing for the others.
    """
    if kind != "beat":
        return None if result is None else _MALFORMED
    if (type(result) is not list or len(result) != 2 or result[0] not in (BEAT_OK, BEAT_NOT_FOUND)
            or type(result[1]) is not int or result[1] <= 0):
        return _MALFORMED
    return tuple(result)
