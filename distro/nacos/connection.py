# -*- test-case-name: tests.test_nacos_connection -*-
"""
One Nacos SDK connection to the node (docs/nacos.md): a native client of the
node once it has set up, its naming requests, and its pushes.

A connection is the SDK's gRPC channel (one TCP connection): its unary
requests and its bi-directional stream share it. The SDK checks the server
with a unary C{ServerCheckRequest}, then opens the stream with a
C{ConnectionSetupRequest}; only then is it a client of the node (a naming
client if its C{labels.module} is C{naming}), and its other requests are
served. Each request is a L{distro.nacos.payload.Payload}; this module
answers it with another, and writes server requests (pushes) with
C{send(payload)}, which the gRPC glue puts on the stream.

Nacos keeps one published entry per service per connection: a register
replaces the connection's instances in that service, a batch replaces the
set, a deregister removes them all, which is
L{distro.interfaces.IClientManager.batchRegister} of one, many or none.
"""

import itertools
from types import GeneratorType

from twisted.logger import Logger

from distro import model
from distro.nacos import naming
from distro.nacos.naming import (
    INVALID_PARAM,
    INVALID_SERVER_STATUS,
    NO_HANDLER,
    NO_RIGHT,
    OVER_THRESHOLD,
    SUCCESS,
    UN_REGISTER,
    NacosError,
)
from distro.nacos.payload import Payload, encodedOnce
from distro.ratelog import RateLimitedLog
from distro.watchdog import Watchdog
from distro.errors import LimitExceeded, RequestError

# Pushes as the Nacos server makes them: a push not acked within
# PUSH_ACK_TIMEOUT (Nacos' pushTaskTimeout), or acked with an error, is sent
# again PUSH_RETRY_DELAY later (Nacos' retry delay) with the newest view, for
# as long as the subscription lasts; a newer view goes at once, acked or not.
# Only a connection found dead (ClientDetectionRequest unanswered, or gRPC's
# keepalive) is closed.
PUSH_ACK_TIMEOUT = 5.0
PUSH_RETRY_DELAY = 1.0

# Server requests given up on, kept per connection so that answers without a
# requestId still match in order; past it the oldest go.
MAX_PLACEHOLDERS = 256

# How a server request was answered.
ACKED = "acked"
REFUSED = "refused"
TIMED_OUT = "timed out"


# The answers of one string field (an instance registered, deregistered),
# made once: at most this many kinds kept.
_CONSTANT = {}
_CONSTANT_LIMIT = 64

# Requests any connection may make, as in Nacos (the connection's own
# upkeep, no data).
_UNSECURED = frozenset({"HealthCheckRequest"})

# The response type of each secured request, which carries its refusal.
_RESPONSE_TYPES = {
    "InstanceRequest": "InstanceResponse",
    "BatchInstanceRequest": "BatchInstanceResponse",
    "PersistentInstanceRequest": "InstanceResponse",
    "ServiceQueryRequest": "QueryServiceResponse",
    "SubscribeServiceRequest": "SubscribeServiceResponse",
    "ServiceListRequest": "ServiceListResponse",
}

# What the node can do, told to an SDK that negotiates abilities
# (SetupAckRequest): a persistent instance may come over gRPC, where it is
# refused with a clear message (an SDK not told falls back to HTTP). The
# abilities of Nacos 3 distro does not have (fuzzyWatch, lock, mcp) are
# not claimed.
SERVER_ABILITIES = {"supportPersistentInstanceByGrpc": True}


# A connection's labels kept, at most: the SDKs send a handful (source,
# module, app name...).
MAX_LABELS = 32
MAX_LABEL_CHARS = 256


def _printable(text, limit=MAX_LABEL_CHARS):
    """
    C{text} cut to C{limit} characters, lone surrogates escaped: safe to
    keep and to log.
    """
    text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _labels(value):
    """
    The labels of a set up worth keeping: at most L{MAX_LABELS} string
    entries, each cut to L{MAX_LABEL_CHARS}.
    """
    if type(value) is not dict:
        return {}
    kept = {}
    for key, label in value.items():
        if len(kept) >= MAX_LABELS:
            break
        if type(label) is str:
            kept[_printable(key)] = _printable(label)
    return kept


def errorPayload(code, message):
    """
    An C{ErrorResponse} with Nacos' C{errorCode} C{code}.
    """
    return Payload("ErrorResponse", {}, "", naming.encodeBody(naming.errorResponse(code, message)))


def _serverTime(clock):
    return int(clock.seconds() * 1000)


# The port's name in its request metrics.
PORT = "nacos"


class NacosConnection:
    """
    One Nacos SDK connection.

    @ivar connectionId: what C{ServerCheckResponse} tells the SDK.
    @ivar client: the node's L{distro.clients.Client} once set up, else
        C{None}.
    @ivar send: writes one L{Payload} on the connection's stream (set by the
        glue when the stream opens).
    @ivar close: closes the connection (set by the glue).
    """

    log = Logger()

    def __init__(self, node, connectionId, peerIp="", notices=None):
        self.node = node
        # Lines a client's messages cause, rate-limited (shared by the port).
        self.notices = notices if notices is not None else RateLimitedLog(node.clock)
        self._requests = node.requests.port(PORT, OPS, SUCCESS)
        self.connectionId = connectionId
        self.peerIp = peerIp
        self.client = None
        self._ended = False
        self.labels = {}
        self.clientVersion = ""
        self.send = None
        self.close = None
        self.channel = None
        self._ids = itertools.count(1)
        # requestId -> (request type, timer, answered) of each server
        # request waiting for its answer, oldest first.
        self._asked = {}
        # (ServiceKey, clusters) -> the requestId of its push waiting for
        # its ack, and the timer of its retry.
        self._pushing = {}
        self._retries = {}
        # (ServiceKey, clusters) -> the newest view to push once encoded.
        self._encoding = {}
        # Requests given up on (superseded, timed out) kept in their place
        # for a late answer: at most MAX_PLACEHOLDERS.
        self._placeholders = 0
        # Once set up, a connection silent for idle_timeout_ms (an SDK sends
        # a health check every few seconds when it has nothing else to say)
        # is asked whether it is there. One that is never set up (a server
        # check before the stream) has none: nothing refers back to it.
        self.watchdog = None
        self._detecting = False
        self._lastRefTime = 0
        # (ServiceKey, clusters tuple) -> the clusters string asked for
        self._subscriptions = {}

    # Unary requests

    def request(self, payload):
        """
        Answer one unary request: the response L{Payload}, or a L{Deferred}
        of it for a request answered over several turns (a large batch).
        """
        if self.watchdog is not None:
            self.watchdog.heard()
        # Every request is counted here, once, with its errorCode (SUCCESS
        # for a success) and duration: one answered over turns when it is.
        started = self.node.clock.seconds()
        steps = self._answer(payload)
        try:
            next(steps)
        except StopIteration as e:
            return self._served(e.value, payload.type, started)
        return self.node.turns.run(steps).addCallback(self._served, payload.type, started)

    def _served(self, answer, requestType, started):
        response, code = answer
        self._requests.record(requestType, code, self.node.clock.seconds() - started)
        return response

    def _answer(self, payload):
        """
        The answer to one request, as a generator (of one step but for a
        batch, whose parse, checks and registration are spread over turns):
        its return value is the response L{Payload} and its code.
        """
        try:
            if not self.node.ready:
                raise NacosError(INVALID_SERVER_STATUS, "the node is still loading cluster data")
            if payload.type == "ServerCheckRequest":
                if self.node.draining:
                    # A new connection: the SDK is to use another server.
                    raise NacosError(INVALID_SERVER_STATUS, "the node is draining (stopping)")
                return self._respond("ServerCheckResponse", {
                    "connectionId": self.connectionId, "supportAbilityNegotiation": True,
                })
            handler = self._handlers.get(payload.type)
            if handler is None:
                raise NacosError(NO_HANDLER, f"no handler for {payload.type[:100]!r}")
            if self.client is None:
                raise NacosError(UN_REGISTER, "the connection is not set up (ConnectionSetupRequest)")
            if payload.type == "BatchInstanceRequest":
                # Thousands of instances: parsed a slice per turn.
                body = yield from naming.parseBodyInSlices(payload.body, self._maxBody())
            else:
                body = naming.parseBody(payload.body, self._maxBody())
            # Every naming request needs a grant of its namespace, as
            # Nacos' @Secured handlers do; the token is the SDK's
            # accessToken header.
            if payload.type not in _UNSECURED:
                # The namespace as the handler reads it (never one
                # checked and another served).
                namespace = naming.namespaceOf(body)
                try:
                    self.node.authority.grant(payload.headers.get("accessToken")).check(namespace)
                except RequestError as e:
                    # As Nacos refuses: the handler's own response type, with
                    # errorCode NO_RIGHT (the Java SDK then logs in again).
                    return Payload(_RESPONSE_TYPES[payload.type], {}, "", naming.encodeBody(
                        naming.errorResponse(NO_RIGHT, e.message))), NO_RIGHT
            answer = handler(self, body)
            if type(answer) is GeneratorType:
                answer = yield from answer
            responseType, fields = answer
            return self._respond(responseType, fields)
        except NacosError as e:
            return self._error(e.code, e.message)
        except LimitExceeded as e:
            return self._error(OVER_THRESHOLD, e.message)
        except RequestError as e:
            return self._error(INVALID_PARAM, e.message)
        except Exception:
            self.notices.failure("request failed", "Nacos request {type} failed", type=_printable(payload.type))
            return self._error(naming.SERVER_ERROR, "internal error")

    def _respond(self, responseType, fields):
        constant = None
        if fields is not None and len(fields) == 1:
            # The constant answers (an instance registered, deregistered):
            # made once.
            ((key, value),) = fields.items()
            if type(value) is str:
                constant = (responseType, key, value)
                cached = _CONSTANT.get(constant)
                if cached is not None:
                    return cached, SUCCESS
        payload = Payload(responseType, {}, "", naming.encodeBody(naming.response(fields)))
        if constant is not None and len(_CONSTANT) < _CONSTANT_LIMIT:
            # Kept, and so encoded once (L{distro.nacos.payload.encodedOnce}).
            _CONSTANT[constant] = encodedOnce(payload)
        return payload, SUCCESS

    def _error(self, code, message):
        return errorPayload(code, message), code

    def _maxMetadata(self):
        return self.node.config.max_metadata_bytes

    def _maxBody(self):
        return naming.maxBody(self.node.config.max_metadata_bytes)

    def _instance(self, body):
        service = naming.serviceKey(body)
        kind = body.get("type")
        if kind == "registerInstance":
            instance = naming.parseInstance(body.get("instance"), "instance", self._maxMetadata())
            self.node.batchRegister(self.client, service, [instance])
        elif kind == "deregisterInstance":
            self.node.batchRegister(self.client, service, [])
        else:
            raise NacosError(INVALID_PARAM, f"type: {str(kind)[:100]!r} is not registerInstance or deregisterInstance")
        return "InstanceResponse", {"type": kind}

    def _batchInstance(self, body):
        service = naming.serviceKey(body)
        kind = body.get("type")
        if kind != "batchRegisterInstance":
            raise NacosError(INVALID_PARAM, f"type: {str(kind)[:100]!r} is not batchRegisterInstance")
        values = body.get("instances")
        limit = self.node.config.max_instances_per_client
        if type(values) is list and len(values) > limit:
            # Refused before any is read (a batch of 320k held the reactor).
            raise LimitExceeded("max_instances_per_client", f"more than {limit} instances")
        # Read and registered a slice per turn (10,000 at once held the
        # reactor 150 ms); the connection's next requests wait for it.
        instances = yield from naming.parseInstancesInSlices(values, self._maxMetadata())
        for _ in self.node.batchRegisterInSlices(self.client, service, instances):
            yield
            if self._ended:
                # Nobody waits for the answer, and the client goes.
                break
        return "BatchInstanceResponse", {"type": kind}

    def _persistentInstance(self, body):
        raise NacosError(INVALID_PARAM, f"instance.{naming.PERSISTENT_REFUSED}")

    def _query(self, body):
        service = naming.serviceKey(body)
        clusters, clustersText = naming.parseClusters(body.get("cluster"), "cluster")
        info = self.node.serviceInfo(service, clusters, naming.healthyOnly(body))
        # A view changed much is encoded over turns (a no-op otherwise).
        yield from naming.hostsJsonInSlices(info)
        return "QueryServiceResponse", {
            "serviceInfo": naming.serviceInfo(info, clustersText, self._refTime()),
        }

    def _subscribe(self, body):
        service = naming.serviceKey(body)
        clusters, clustersText = naming.parseClusters(body.get("clusters"))
        # A view changed much is encoded over turns first; then, in one
        # step, the client subscribes with the view it is answered, so that
        # a push of a newer one can only follow the answer.
        yield from naming.hostsJsonInSlices(self.node.serviceInfo(service, clusters))
        info = self.node.serviceInfo(service, clusters)
        if self._ended:
            pass  # nobody reads the answer, nothing to push to
        elif body.get("subscribe", True) is False:
            self.node.unsubscribe(self.client, self.channel, service, clusters)
            self._subscriptions.pop((service, clusters), None)
            self._stopPushing((service, clusters))
        else:
            self.node.subscribe(self.client, self.channel, service, clusters, info)
            self._subscriptions[(service, clusters)] = clustersText
        return "SubscribeServiceResponse", {
            "serviceInfo": naming.serviceInfo(info, clustersText, self._refTime()),
        }

    def _serviceList(self, body):
        # A RequestError is answered INVALID_PARAM by request().
        namespace = model.parseNamespace(naming.namespaceOf(body))
        group = model.parseGroup(body.get("groupName") or model.DEFAULT_GROUP, "groupName")
        page, size = body.get("pageNo", 1), body.get("pageSize", 10)
        for name, value in (("pageNo", page), ("pageSize", size)):
            if type(value) is not int or not 1 <= value <= 2**31:
                raise NacosError(INVALID_PARAM, f"{name}: must be an integer >= 1")
        count, entries = self.node.services(namespace, group, page, min(size, 1000))
        return "ServiceListResponse", {"count": count, "serviceNames": [n for _, n, _ in entries]}

    def _healthCheck(self, body):
        return "HealthCheckResponse", None

    _handlers = {
        "InstanceRequest": _instance,
        "BatchInstanceRequest": _batchInstance,
        "PersistentInstanceRequest": _persistentInstance,
        "ServiceQueryRequest": _query,
        "SubscribeServiceRequest": _subscribe,
        "ServiceListRequest": _serviceList,
        "HealthCheckRequest": _healthCheck,
    }

    def _refTime(self):
        """
        A C{lastRefTime} above every one this connection was given: SDKs
        drop a view whose time is not newer than their last.
        """
        self._lastRefTime = max(self._lastRefTime + 1, _serverTime(self.node.clock))
        return self._lastRefTime

    # The stream

    def streamReceived(self, payload):
        """
        One payload arrived on the stream: the set up, or an ack.
        """
        if self.watchdog is not None:
            self.watchdog.heard()
        if payload.type == "ConnectionSetupRequest":
            self._setUp(payload)
            return
        if payload.type.endswith("Response"):
            self._acked(payload)
            return
        self.notices.info(
            "stray stream message", "Nacos connection {id} sent {type} on its stream; ignored",
            id=self.connectionId, type=_printable(payload.type),
        )

    def _setUp(self, payload):
        if self.client is not None:
            return
        try:
            body = naming.parseBody(payload.body, self._maxBody())
        except NacosError:
            body = {}
        self.labels = _labels(body.get("labels"))
        version = body.get("clientVersion")
        self.clientVersion = _printable(version) if type(version) is str else ""
        if body.get("abilityTable") is not None and self.send is not None:
            # As Nacos: an SDK that sent its abilities is told the server's
            # (it waits for them), and answers nothing.
            self.send(Payload("SetupAckRequest", {}, "", naming.encodeBody(
                {"abilityTable": SERVER_ABILITIES, "module": "internal", "headers": {}})))
        # A session of the node: a native client, replicated like any.
        self.client, _, _, _ = self.node.sessionStarted(self)
        self.channel = self.node.pushChannel(self._push)
        self.watchdog = Watchdog(
            self.node.clock, self.node.config.idle_timeout_ms / 1000.0, self._silent
        )
        self.watchdog.start()
        self.log.debug(
            "Nacos connection {id} from {ip} set up ({version}, module {module})",
            id=self.connectionId, ip=self.peerIp, version=self.clientVersion or "?",
            module=self.labels.get("module", "?"),
        )

    def ended(self):
        """
        The connection is gone (the SDK closed it, or it broke): its client
        goes after the disconnect grace, like any unorderly end. Safe to call
        twice.
        """
        self._ended = True
        for _, timer, _ in self._asked.values():
            if timer is not None and timer.active():
                timer.cancel()
        self._asked.clear()
        self._placeholders = 0
        self._pushing.clear()
        self._encoding.clear()
        for timer in self._retries.values():
            if timer.active():
                timer.cancel()
        self._retries.clear()
        if self.watchdog is not None:
            self.watchdog.end()
        if self.channel is not None:
            self.channel.close()
        if self.client is not None:
            self.node.sessionEnded(self, orderly=False)
        self.send = self.close = None

    def closeConnection(self):
        """
        The node asks the connection to end (its client moved elsewhere, or
        the node stops). The SDK sees its stream end with an error status,
        and reconnects (to another server of its list, or this one).
        """
        if self.close is not None:
            self.close()

    def reset(self, serverIp="", serverPort=""):
        """
        Ask the SDK to move: C{ConnectResetRequest}, to C{serverIp} and
        C{serverPort} (the port the SDK is given, its HTTP port) if given,
        else to another server of its list. Not every SDK heeds it, so the
        connection is closed when the SDK acks or after C{idle_timeout_ms}.
        """
        self._ask(
            "ConnectResetRequest",
            {"module": "internal", "serverIp": serverIp, "serverPort": str(serverPort),
             "connectionId": self.connectionId},
            lambda outcome: self.closeConnection(),
        )

    def move(self, members, reason):
        """
        Ask the SDK to move (the node drains or rebalances): to another
        server of its own list, since the members' Nacos ports are not
        known here (L{reset}).
        """
        self.reset()

    # Server requests on the stream, answered by the SDK

    def ackTimeout(self):
        """
        How long a server request other than a push waits for its answer,
        in seconds: C{idle_timeout_ms}.
        """
        return self.node.config.idle_timeout_ms / 1000.0

    def _ask(self, requestType, fields, answered, timeout=None):
        """
        Send a server request. C{answered} is called once with L{ACKED} or
        L{REFUSED} when the SDK answers it (judged by C{resultCode}), or with
        L{TIMED_OUT} after C{timeout} seconds (default L{ackTimeout}).
        Return its C{requestId}.
        """
        requestId = str(next(self._ids))
        timer = self.node.clock.callLater(
            self.ackTimeout() if timeout is None else timeout, self._answered, requestId, TIMED_OUT
        )
        self._asked[requestId] = (requestType, timer, answered)
        if self.send is not None:
            # "headers" as Nacos always sends it: the Rust SDK drops a
            # request without it (and answers nothing).
            body = naming.encodeBody(dict(fields, headers={}, requestId=requestId))
            self.send(Payload(requestType, {}, "", body))
        return requestId

    def requestsHeld(self):
        """
        How many server requests this connection remembers: those waiting
        for an answer and those given up on, kept for a late one.
        """
        return len(self._asked)

    def _forget(self, requestId):
        """
        Stop waiting for the answer to C{requestId}: its answer, if it comes,
        changes nothing (it keeps its place, so that answers without a
        C{requestId} are still matched in order).
        """
        entry = self._asked.get(requestId)
        if entry is not None and entry[2] is not None:
            if entry[1].active():
                entry[1].cancel()
            self._placeholder(requestId, entry[0])

    def _placeholder(self, requestId, requestType):
        self._asked[requestId] = (requestType, None, None)
        self._placeholders += 1
        if self._placeholders > MAX_PLACEHOLDERS:
            # An SDK that answers nothing: the oldest places go.
            for oldest, (_, _, answered) in self._asked.items():
                if answered is None:
                    del self._asked[oldest]
                    self._placeholders -= 1
                    break

    def _acked(self, payload):
        """
        An answer to a server request. It names the request by
        C{requestId}; an answer without one (the Rust SDK acks pushes with
        a null C{requestId}) answers the oldest request of its type still
        waiting (C{XResponse} for C{XRequest}; an SDK answers in order).
        """
        try:
            body = naming.parseBody(payload.body, self._maxBody())
        except NacosError:
            return
        requestId = body.get("requestId")
        if requestId is None or requestId == "":
            requestId = self._oldestAsked(payload.type)
        if type(requestId) is not str:
            return
        # Judged by resultCode (some SDKs ack with success false): an SDK
        # that failed to apply a push answers an error.
        resultCode = body.get("resultCode", naming.SUCCESS)
        self._answered(requestId, ACKED if resultCode == naming.SUCCESS else REFUSED)

    def _oldestAsked(self, responseType):
        requestType = None
        if responseType.endswith("Response") and responseType != "ErrorResponse":
            requestType = responseType[:-len("Response")] + "Request"
        for requestId, (kind, _, _) in self._asked.items():
            if requestType is None or kind == requestType:
                return requestId
        return None

    def _answered(self, requestId, outcome):
        entry = self._asked.get(requestId)
        if entry is None:
            return
        requestType, timer, answered = entry
        if answered is None:  # one given up on, answered late
            del self._asked[requestId]
            self._placeholders -= 1
            return
        if outcome is TIMED_OUT:
            self._placeholder(requestId, requestType)
        else:
            del self._asked[requestId]
            if timer.active():
                timer.cancel()
        answered(outcome)

    # Idle connections

    def _silent(self, silent):
        """
        The connection was silent for C{idle_timeout_ms}: it is asked
        C{ClientDetectionRequest}; if it does not answer, it is closed.
        """
        if not self._detecting:
            self._detecting = True
            self._ask("ClientDetectionRequest", {"module": "internal"}, self._detected)

    def _detected(self, outcome):
        self._detecting = False
        if outcome is TIMED_OUT:
            # Any answer, an error too, shows the SDK alive.
            self.log.debug("Nacos connection {id} answers nothing; closing", id=self.connectionId)
            self.closeConnection()
        elif not self._ended:
            self.watchdog.start()

    # Pushes

    def pauseProducing(self):
        """
        The stream holds as many bytes as it may: pushes wait (only the
        fact that a subscription is due is kept).
        """
        if self.channel is not None:
            self.channel.pause()

    def resumeProducing(self):
        """
        The stream took what it held: the due pushes go, with the newest
        views.
        """
        if self.channel is not None and self.channel.paused:
            self.channel.resume()

    def _push(self, info):
        """
        Send the newest view of a subscription, once its hosts are encoded:
        a view changed much is encoded over turns (L{naming.hostsJsonInSlices}),
        and a newer view given meanwhile is sent instead.
        """
        key = (info.service, info.clusters)
        if key in self._encoding:
            self._encoding[key] = info  # the one sent when encoded
            return
        if naming.hostsEncoded(info):
            self._pushNow(key, info)
            return
        self._encoding[key] = info
        self.node.turns.run(self._encode(key)).addErrback(
            lambda failure: self.notices.failure("push failed", "Nacos push failed", failure))

    def _encode(self, key):
        info = None
        try:
            while True:
                info = self._encoding.get(key)
                if info is None:  # the subscription or the connection ended
                    return
                yield from naming.hostsJsonInSlices(info)
                if self._encoding.get(key) is info:
                    del self._encoding[key]
                    self._pushNow(key, info)
                    return
        finally:
            # Whatever happened, the next view starts afresh.
            if info is not None and self._encoding.get(key) is info:
                del self._encoding[key]

    def _pushNow(self, key, info):
        """
        Send C{info}, encoded. It supersedes a push of the subscription
        still waiting for its ack: only the newest is retried.
        """
        previous = self._pushing.pop(key, None)
        if previous is not None:
            self._forget(previous)
        self._pushing[key] = self._ask(
            "NotifySubscriberRequest",
            {"module": "naming",
             "serviceInfo": naming.serviceInfo(info, self._subscriptions.get(key, ""), self._refTime())},
            lambda outcome: self._pushAnswered(key, outcome),
            timeout=PUSH_ACK_TIMEOUT,
        )

    def _pushAnswered(self, key, outcome):
        self._pushing.pop(key, None)
        if outcome is ACKED or key not in self._subscriptions:
            return
        self.node.pushFailed()
        if outcome is TIMED_OUT:
            self.log.debug(
                "Nacos connection {id} acked no push of {service} in time; sending it again",
                id=self.connectionId, service=str(key[0]),
            )
        retry = self._retries.get(key)
        if retry is None or not retry.active():
            self._retries[key] = self.node.clock.callLater(PUSH_RETRY_DELAY, self._retry, key)

    def _stopPushing(self, key):
        self._encoding.pop(key, None)
        requestId = self._pushing.pop(key, None)
        if requestId is not None:
            self._forget(requestId)
        retry = self._retries.pop(key, None)
        if retry is not None and retry.active():
            retry.cancel()

    def _retry(self, key):
        self._retries.pop(key, None)
        if key not in self._pushing and self.channel is not None:
            # Through the channel: it respects a full stream.
            self.channel.again(*key)


# The request types the port serves (any other counts as unknown).
OPS = frozenset(NacosConnection._handlers) | {"ServerCheckRequest"}
