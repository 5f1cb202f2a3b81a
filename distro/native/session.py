# -*- test-case-name: tests.test_server -*-
"""
The client port (PROTOCOL.md section 4): one L{ClientSession} per connection,
dispatching requests by C{op} to the node (L{distro.interfaces.INode}).
"""

import struct

import msgpack
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from distro import model
from distro.address import describeAddress
from distro.handshake import HandshakeDeadline, ProducerRegistration
from distro.native.views import packedPieces, packedSize
from distro.overrides import parseChanges, parseInstanceId
from distro.rebalance import DEFAULT_RATE, MAX_RATE
from distro.requeststats import UNKNOWN
from distro.watchdog import Watchdog
from distro.wire import (
    FRAME_TOO_LARGE,
    HELLO_REQUIRED,
    INTERNAL,
    LIMIT_EXCEEDED,
    NOT_READY,
    PROTOCOL_VERSION,
    UNAUTHORIZED,
    UNKNOWN_OP,
    UNSUPPORTED_VERSION,
    BadRequest,
    FrameProtocol,
    LimitExceeded,
    RequestError,
    encode,
    noDelay,
)

_MAX_PAGE_SIZE = 1000

# A batch of more instances than this is read and registered this many per
# slice, over the node's turns (L{distro.interfaces.ITurns}).
_SLICE = 256

# A connection whose send buffer stays full (the client reads nothing) for
# this many idle timeouts is reset (PROTOCOL.md 4.4).
STALLED_IDLE_TIMEOUTS = 3
_PREFIX = struct.Struct("!I")
_PUSH_HEAD = b"\x83" + msgpack.packb("op") + msgpack.packb("push") + msgpack.packb("seq")
_REPLY_HEAD = b"\x83" + msgpack.packb("op") + msgpack.packb("ok") + msgpack.packb("re")
_EMPTY_REPLY_HEAD = b"\x82" + msgpack.packb("op") + msgpack.packb("ok") + msgpack.packb("re")
# The frame of most replies, {"op": "ok", "re": id}, for an id below 2**32:
# this head, then the id as msgpack's uint 32 (0xce and four bytes).
_EMPTY_REPLY_FRAME_HEAD = _PREFIX.pack(len(_EMPTY_REPLY_HEAD) + 5) + _EMPTY_REPLY_HEAD + b"\xce"
_UINT32 = struct.Struct("!I")
_SERVICE_INFO_KEY = msgpack.packb("service_info")

# The port's name in its request metrics, and the code a success counts as.
PORT = "distro"
OK = "OK"


def _requestId(message):
    rid = message.get("id")
    if type(rid) is int and rid > 0:
        return rid
    return None


def _optionalBool(message, key):
    value = message.get(key)
    if value is None:
        return False
    if type(value) is not bool:
        raise BadRequest(key, "must be a boolean")
    return value


def _optionalInt(message, key, default, low, high):
    value = message.get(key)
    if value is None:
        return default
    if type(value) is not int:
        raise BadRequest(key, "must be an integer")
    if not low <= value <= high:
        raise BadRequest(key, f"must be in {low}..{high}")
    return value


class _Reply:
    """
    A successful result whose C{service_info} is already packed, spliced into
    the reply frame without packing the view again.
    """

    __slots__ = ("info",)

    def __init__(self, info):
        self.info = info


@implementer(IPushProducer)
class ClientSession(FrameProtocol):
    """
    One client connection: handshake, requests, pushes and liveness.

    It registers itself as the transport's producer: when the send buffer is
    full, pushes are held (only the newest view of each subscription waits),
    frames already received wait unhandled and the connection stops reading,
    so a client that does not read cannot make the node buffer without bound.
    What is written past the transport's own buffer while it is full is
    counted against C{max_unsent_bytes}: a reply that would not fit is
    refused with C{LIMIT_EXCEEDED}, a push that would not fit closes the
    connection. While the node is not reading, the client's silence is not
    counted against it; a client that reads nothing at all for
    L{STALLED_IDLE_TIMEOUTS} idle timeouts is reset.
    """

    log = Logger()
    client = None
    resumeToken = None
    resumed = False
    grant = None
    _bye = False
    _closing = None
    _handshake = None
    _producing = None
    sendPaused = False
    _unsent = 0

    def __init__(self, node):
        super().__init__()
        self.node = node
        self._seconds = node.clock.seconds
        self._requests = node.requests.port(PORT, OPS, OK)
        self.maxFrame = node.config.max_frame
        self._seq = 0
        idle = node.config.idle_timeout_ms / 1000.0
        self.watchdog = Watchdog(
            node.clock, idle, self._silent,
            stalledLimit=STALLED_IDLE_TIMEOUTS * idle, stalled=self._stalled,
        )
        self.channel = None
        self._answering = False  # a reply comes later: frames wait for it
        self._lost = False

    # Connection

    def connectionMade(self):
        self.peer = self.transport.getPeer()
        noDelay(self.transport)
        refusal = self.factory.admit(self)
        if refusal is not None:
            self.sendError(None, LIMIT_EXCEEDED, refusal)
            self.closeConnection()
            return
        self.channel = self.node.pushChannel(self._sendPush)
        self._producing = ProducerRegistration(self.transport, self)
        self.watchdog.start()
        # Until hello succeeds, small frames only (PROTOCOL.md 1).
        self._handshake = HandshakeDeadline(
            self, self.node.clock, self.node.config.handshake_timeout_ms / 1000.0,
            self._handshakeTimedOut,
        )

    def _handshakeTimedOut(self):
        self.sendError(None, HELLO_REQUIRED, "hello: not done within handshake_timeout_ms")
        self.closeConnection()

    def connectionLost(self, reason):
        self._lost = True
        self.watchdog.end()
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        if self._handshake is not None:
            self._handshake.cancel()
        if self._producing is not None:
            self._producing.end()
        if self.channel is not None:
            self.channel.close()
        if self.client is not None:
            self.node.sessionEnded(self, orderly=self._bye)
        self.factory.connectionEnded(self)

    # IPushProducer: told by the transport when its send buffer fills/drains.

    def pauseProducing(self):
        # While the node is not reading, the client's silence is not
        # counted (its heartbeats may be waiting in the socket).
        self.watchdog.hold()
        self.sendPaused = True
        self.pauseHandling()
        self.channel.pause()
        self.transport.pauseProducing()

    def resumeProducing(self):
        self.sendPaused = False
        self._unsent = 0
        self.watchdog.release()
        if self.closing:
            return
        self.transport.resumeProducing()
        if not self._answering:
            self.resumeHandling()
        if not self.sendPaused and not self.closing:
            self.channel.resume()

    def stopProducing(self):
        pass

    def closeConnection(self):
        # Nothing may follow the last reply (bye, or an error that ends the
        # connection): not even a push for this client's own instances going.
        if self.channel is not None:
            self.channel.close()
        if self._handshake is not None:
            self._handshake.cancel()
        super().closeConnection()
        # A client that does not read would keep what is unsent (and the
        # connection) forever: it gets the idle timeout to take it.
        self.watchdog.stop()
        if self._closing is None:
            self._closing = self.node.clock.callLater(
                self.node.config.idle_timeout_ms / 1000.0, self.transport.abortConnection
            )

    def _write(self, data):
        self.transport.write(data)
        self._wrote(len(data))

    def _wrote(self, size):
        if self.sendPaused:
            # Past the transport's buffer (counting the write that filled it).
            self._unsent += size

    def _room(self):
        """
        How many more bytes may be written now within C{max_unsent_bytes}.
        """
        return self.node.config.max_unsent_bytes - self._unsent

    def _tooLarge(self, what, size):
        """
        The L{LimitExceeded} for C{what} of C{size} bytes that would not fit.
        """
        return LimitExceeded(
            "max_unsent_bytes",
            f"{what} of {size} bytes does not fit within {self.node.config.max_unsent_bytes}",
        )

    def _fits(self, info):
        """
        Raise L{LimitExceeded} unless a reply carrying C{info} fits.
        """
        size = packedSize(info) + 64
        if size > self._room():
            raise self._tooLarge("a reply", size)

    # Liveness

    def _silent(self, silent):
        self.log.debug("closing {peer}: silent for {silent:.1f}s", peer=describeAddress(self.peer), silent=silent)
        self.transport.abortConnection()

    def _stalled(self, stalled):
        # A client that takes nothing for STALLED_IDLE_TIMEOUTS idle
        # timeouts is hung (its kernel still holds the socket open).
        self.log.debug(
            "closing {peer}: it read nothing for {stalled:.1f}s", peer=describeAddress(self.peer), stalled=stalled
        )
        self.transport.abortConnection()

    # Requests

    def frameReceived(self, body):
        self.watchdog.heard()
        FrameProtocol.frameReceived(self, body)

    def messageReceived(self, message):
        # Every request is counted here, once, with its code and duration
        # (one answered later, when it is).
        started = self._seconds()
        op = message.get("op")
        if type(op) is not str:
            op = UNKNOWN
        code = self._handle(message, op, started)
        if code is not None:
            self._requests.record(op, code, self._seconds() - started)

    def _handle(self, message, op, started):
        """
        Answer one request: return the code it was answered with (C{OK} for
        a success), or C{None} for one answered later.
        """
        rid = _requestId(message)
        if self.client is None and op != "hello":
            self.sendError(rid, HELLO_REQUIRED, "the first frame must be hello")
            self.closeConnection()
            return HELLO_REQUIRED
        handler = self._handlers.get(op)
        try:
            if rid is None:
                raise BadRequest("id", "must be an integer > 0")
            if handler is None:
                raise RequestError(UNKNOWN_OP, f"unknown op {message.get('op')!r}"[:200])
            result = handler(self, message)
        except RequestError as e:
            self.sendError(rid, e.code, e.message)
            if e.code in (UNSUPPORTED_VERSION, UNAUTHORIZED) or (
                e.code == NOT_READY and self.client is None
            ):
                # The client has to go elsewhere (or give up).
                self.closeConnection()
            return e.code
        except Exception:
            self.log.failure("request {op} failed", op=op)
            self.sendError(rid, INTERNAL, "internal error")
            return INTERNAL
        # (Deferred's metaclass is ABCMeta: isinstance costs 0.4 us, so the
        # usual replies are told first.)
        if result is not None and type(result) is not dict and isinstance(result, Deferred):
            # Answered over several turns (a large batch): the frames after
            # it wait, so that replies keep their order.
            self._answering = True
            self.pauseHandling()
            result.addCallbacks(self._answered, self._notAnswered, (rid, op, started), None,
                                (rid, op, started))
            return None
        self._reply(rid, result)
        if self._bye:
            self.closeConnection()
            self.node.sessionEnded(self, orderly=True)
        return OK

    def _answered(self, result, rid, op, started):
        self._answering = False
        self._requests.record(op, OK, self._seconds() - started)
        if self._lost:
            return
        try:
            self._reply(rid, result)
        finally:
            self._handleWaiting()

    def _notAnswered(self, failure, rid, op, started):
        self._answering = False
        code = failure.value.code if failure.check(RequestError) else INTERNAL
        self._requests.record(op, code, self._seconds() - started)
        if self._lost:
            return
        try:
            if failure.check(RequestError):
                self.sendError(rid, failure.value.code, failure.value.message)
            else:
                self.log.failure("request {op} failed", failure, op=op)
                self.sendError(rid, INTERNAL, "internal error")
        finally:
            self._handleWaiting()

    def badFrame(self, error):
        # Not a request anyone can name: counted as an unknown op.
        self._requests.record(UNKNOWN, error.code, 0.0)
        FrameProtocol.badFrame(self, error)

    def lengthLimitExceeded(self, length):
        self._requests.record(UNKNOWN, FRAME_TOO_LARGE, 0.0)
        FrameProtocol.lengthLimitExceeded(self, length)

    def _handleWaiting(self):
        """
        The reply that came later went: the frames that waited for it are
        handled (unless the client reads nothing, or the session ends).
        """
        if not self.sendPaused and not self.closing:
            self.resumeHandling()

    def _reply(self, rid, result):
        if type(result) is _Reply:
            head = _REPLY_HEAD + msgpack.packb(rid) + _SERVICE_INFO_KEY
            self._writeFrame(head, result.info)
            return
        if not result:
            # Most replies (register, ping...): nothing but the envelope.
            if rid < 2**32:
                self._write(_EMPTY_REPLY_FRAME_HEAD + _UINT32.pack(rid))
            else:
                body = _EMPTY_REPLY_HEAD + msgpack.packb(rid)
                self._write(_PREFIX.pack(len(body)) + body)
            return
        reply = {"op": "ok", "re": rid}
        reply.update(result)
        data = encode(reply)
        if len(data) > self._room():
            error = self._tooLarge("a reply", len(data))
            self.sendError(rid, error.code, error.message)
            return
        self._write(data)

    def sendMessage(self, message):
        self._write(encode(message))

    def move(self, members, reason):
        """
        Ask the client to resume its session at one of C{members}
        (client-port addresses, the first preferred): a C{move} push
        (PROTOCOL.md 4.5), for C{reason}.
        """
        if self.closing or self._lost:
            return
        self._seq += 1
        self.sendMessage({"op": "push", "seq": self._seq, "move": {"members": members, "reason": reason}})

    def _sendPush(self, info):
        self._seq += 1
        head = _PUSH_HEAD + msgpack.packb(self._seq) + _SERVICE_INFO_KEY
        size = 4 + len(head) + packedSize(info)
        if size > self._room():
            # The subscriber cannot be given this view: rather than let it
            # believe an older one, it is told and disconnected.
            error = self._tooLarge("a push", size)
            self.node.pushFailed()
            self.sendError(None, error.code, error.message)
            self.closeConnection()
            return
        self._writeFrame(head, info)

    def _writeFrame(self, head, info):
        """
        Write one frame of C{head} and C{info}'s packed view, without
        copying the view (its parts are shared by every reply and push).
        """
        size = len(head) + packedSize(info)
        self.transport.writeSequence([_PREFIX.pack(size) + head] + packedPieces(info))
        self._wrote(4 + size)

    def _service(self, message):
        service = model.parseService(message.get("service"))
        self.grant.check(service.namespace, "service.namespace", self._seconds())
        return service

    def _instance(self, value, field):
        return model.parseInstance(value, field, self.node.config.max_metadata_bytes)

    def _requireReady(self):
        if not self.node.ready:
            raise RequestError(NOT_READY, "the node is still loading cluster data")

    def hello(self, message):
        if self.client is not None:
            raise BadRequest("op", "hello was already done on this connection")
        proto = message.get("proto")
        if type(proto) is not int or proto != PROTOCOL_VERSION:
            raise RequestError(
                UNSUPPORTED_VERSION, f"proto: {proto!r} is not supported, this node speaks 1"[:200]
            )
        agent = message.get("agent")
        if agent is not None and type(agent) is not str:
            raise BadRequest("agent", "must be a string")
        token = message.get("token")
        if token is not None and type(token) is not str:
            raise BadRequest("token", "must be a string")
        self.grant = self.node.authority.grant(token)
        resume = message.get("resume")
        if resume is not None:
            if type(resume) is not dict:
                raise BadRequest("resume", "must be a map")
            for key in ("client_id", "resume_token"):
                if type(resume.get(key)) is not str:
                    raise BadRequest(f"resume.{key}", "must be a string")
            epoch = resume.get("epoch", 0)
            if type(epoch) is not int or not 0 <= epoch < 2**63:
                raise BadRequest("resume.epoch", "must be an integer >= 0")
            resume = (resume["client_id"], resume["resume_token"], epoch)
        self.agent = agent
        if self.node.draining:
            raise RequestError(NOT_READY, "this node is draining (stopping); try another node")
        self.client, self.resumeToken, self.resumed, refusal = self.node.sessionStarted(self, resume)
        self._handshake.done()
        node = self.node
        reply = {
            "proto": PROTOCOL_VERSION,
            "node": node.nodeId,
            "client_id": self.client.clientId,
            "resume_token": self.resumeToken,
            "resumed": self.resumed,
            "epoch": self.client.epoch,
            "ready": node.ready,
            "heartbeat_ms": node.config.heartbeat_ms,
            "idle_timeout_ms": node.config.idle_timeout_ms,
            "members": [m["address"] for m in node.members(self._reachedAt()) if m["address"]],
        }
        if refusal is not None:
            reply["resume_refused"] = refusal
        return reply

    def register(self, message):
        service = self._service(message)
        instance = self._instance(message.get("instance"), "instance")
        self.node.register(self.client, service, instance)

    def deregister(self, message):
        service = self._service(message)
        instanceId = model.parseInstanceRef(message.get("instance"), "instance")
        return {"removed": self.node.deregister(self.client, service, instanceId)}

    def batch_register(self, message):
        service = self._service(message)
        instances = message.get("instances")
        if type(instances) is not list:
            raise BadRequest("instances", "must be a list of instances")
        limit = self.node.config.max_instances_per_client
        if len(instances) > limit:
            raise RequestError(
                LIMIT_EXCEEDED, f"max_instances_per_client: more than {limit} instances"
            )
        if len(instances) <= _SLICE or self.client.restoring:
            # A resuming session's redo is applied as it comes.
            parsed = [self._instance(v, f"instances[{i}]") for i, v in enumerate(instances)]
            self.node.batchRegister(self.client, service, parsed)
            return None
        # Thousands of instances: read and registered a slice per turn.
        return self.node.turns.run(self._batchInSlices(service, instances))

    def _batchInSlices(self, service, instances):
        parsed = []
        for i, value in enumerate(instances):
            parsed.append(self._instance(value, f"instances[{i}]"))
            if i % _SLICE == _SLICE - 1:
                yield
        for _ in self.node.batchRegisterInSlices(self.client, service, parsed):
            yield
            if self._lost:
                # Nobody waits for the answer, and the client goes.
                return

    def query(self, message):
        service = self._service(message)
        clusters = model.parseClusters(message.get("clusters"))
        healthyOnly = _optionalBool(message, "healthy_only")
        self._requireReady()
        info = self.node.serviceInfo(service, clusters, healthyOnly)
        self._fits(info)
        return _Reply(info)

    def subscribe(self, message):
        service = self._service(message)
        clusters = model.parseClusters(message.get("clusters"))
        self._requireReady()
        info = self.node.serviceInfo(service, clusters)
        self._fits(info)
        self.node.subscribe(self.client, self.channel, service, clusters, info)
        return _Reply(info)

    def unsubscribe(self, message):
        service = self._service(message)
        clusters = model.parseClusters(message.get("clusters"))
        self.node.unsubscribe(self.client, self.channel, service, clusters)

    def services(self, message):
        namespace = model.parseNamespace(message.get("namespace"))
        self.grant.check(namespace, "namespace", self._seconds())
        group = model.parseGroup(message.get("group"))
        page = _optionalInt(message, "page", 1, 1, 2**31)
        size = _optionalInt(message, "size", 100, 1, _MAX_PAGE_SIZE)
        count, entries = self.node.services(namespace, group, page, size)
        return {
            "count": count,
            "services": [{"group": g, "name": n, "instances": c} for g, n, c in entries],
        }

    def members(self, message):
        return {"members": self.node.members(self._reachedAt())}

    def _reachedAt(self):
        # The host this connection reached: its client can use it.
        return getattr(self.transport.getHost(), "host", None)

    def _overridden(self, message):
        """
        The service and instance id an override op names: C{instance} as
        in C{deregister}, or C{instance_id}.
        """
        service = model.parseService(message.get("service"))
        if "instance_id" in message:
            return service, parseInstanceId(message["instance_id"])
        return service, model.parseInstanceRef(message.get("instance"), "instance")

    def override(self, message):
        service, instanceId = self._overridden(message)
        changes = parseChanges(message, self.node.config.max_metadata_bytes)
        d = self.node.writeOverride(self.grant, getattr(self.peer, "host", None), service,
                                    instanceId, changes, message.get("why"))
        return d.addCallback(lambda written: {"override": written.toWire()})

    def override_clear(self, message):
        service, instanceId = self._overridden(message)
        d = self.node.clearOverride(self.grant, getattr(self.peer, "host", None), service,
                                    instanceId, message.get("why"))
        return d.addCallback(lambda cleared: {"cleared": cleared is not None})

    def rebalance(self, message):
        rate = message.get("rate", DEFAULT_RATE)
        if type(rate) not in (int, float) or not 0 < rate <= MAX_RATE:
            raise BadRequest("rate", f"must be a number of sessions per second in (0, {MAX_RATE}]")
        return self.node.rebalance(self.grant, getattr(self.peer, "host", None), float(rate), asking=self)

    def overrides(self, message):
        namespace = message.get("namespace")
        if namespace is not None:
            namespace = model.parseNamespace(namespace)
        return {"overrides": [o.toWire() for o in self.node.listOverrides(self.grant, namespace)]}

    def ping(self, message):
        return None

    def redo_done(self, message):
        if self.client.restoring:
            self.client = self.node.resumeDone(self)
        return {"epoch": self.client.epoch}

    def bye(self, message):
        if self.client.restoring:
            # Leaving for good: what the session re-sent goes with it.
            self.client = self.node.resumeDone(self)
        self._bye = True
        return None

    _handlers = {
        "hello": hello,
        "register": register,
        "deregister": deregister,
        "batch_register": batch_register,
        "query": query,
        "subscribe": subscribe,
        "unsubscribe": unsubscribe,
        "services": services,
        "members": members,
        "override": override,
        "override_clear": override_clear,
        "overrides": overrides,
        "rebalance": rebalance,
        "ping": ping,
        "redo_done": redo_done,
        "bye": bye,
    }


# The ops a request may name (any other counts as unknown).
OPS = frozenset(ClientSession._handlers)


class ClientPortFactory(Factory):
    """
    Accepts client connections for a node, as its admission allows
    (L{distro.admission}).
    """

    noisy = False

    def __init__(self, node):
        self.node = node
        self.sessions = set()

    def buildProtocol(self, addr):
        session = ClientSession(self.node)
        session.factory = self
        return session

    def admit(self, session):
        """
        Count C{session} with the node's admission (one count for every
        port); return why it is refused, or C{None}.
        """
        host = getattr(session.peer, "host", None)
        if not self.node.admission.admit(host):
            return self.node.admission.refusal(host)
        self.sessions.add(session)
        return None

    def connectionEnded(self, session):
        """
        Forget C{session}.
        """
        if session in self.sessions:
            self.sessions.discard(session)
            self.node.admission.release(getattr(session.peer, "host", None))
