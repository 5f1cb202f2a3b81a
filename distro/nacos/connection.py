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

from twisted.logger import Logger

from distro import model
from distro.nacos import naming
from distro.nacos.naming import (
    INVALID_PARAM,
    INVALID_SERVER_STATUS,
    NO_HANDLER,
    OVER_THRESHOLD,
    UN_REGISTER,
    NacosError,
)
from distro.nacos.payload import Payload
from distro.wire import LimitExceeded, ProtocolError

# A server request on the stream waits idle_timeout_ms for its ack; a push
# not acked in time is sent again (its latest view) at most this many times,
# then the connection is closed (its SDK reconnects and subscribes again).
PUSH_ATTEMPTS = 3
# Pushes in flight (sent, not acked) per connection: past it, the pusher
# holds this connection's pushes (the newest view waits).
MAX_UNACKED_PUSHES = 16


def _serverTime(clock):
    return int(clock.seconds() * 1000)


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

    def __init__(self, node, connectionId, peerIp=""):
        self.node = node
        self.connectionId = connectionId
        self.peerIp = peerIp
        self.client = None
        self.labels = {}
        self.clientVersion = ""
        self.send = None
        self.close = None
        self.channel = None
        self._ids = itertools.count(1)
        # requestId -> (timer, acked, timedOut) of each server request sent
        # and not acked yet.
        self._asked = {}
        self._pushesInFlight = 0
        self._lastActive = 0.0
        self._idleCheck = None
        self._detecting = False
        self._lastRefTime = 0
        # (ServiceKey, clusters tuple) -> the clusters string asked for
        self._subscriptions = {}

    # Unary requests

    def request(self, payload):
        """
        Answer one unary request: the response L{Payload}.
        """
        self._lastActive = self.node.clock.seconds()
        try:
            if not self.node.ready:
                raise NacosError(INVALID_SERVER_STATUS, "the node is still loading cluster data")
            if payload.type == "ServerCheckRequest":
                return self._respond("ServerCheckResponse", {
                    "connectionId": self.connectionId, "supportAbilityNegotiation": False,
                })
            handler = self._handlers.get(payload.type)
            if handler is None:
                raise NacosError(NO_HANDLER, f"no handler for {payload.type[:100]!r}")
            if self.client is None:
                raise NacosError(UN_REGISTER, "the connection is not set up (ConnectionSetupRequest)")
            body = naming.parseBody(payload.body)
            responseType, fields = handler(self, body)
            return self._respond(responseType, fields)
        except NacosError as e:
            return self._error(e.code, e.message)
        except LimitExceeded as e:
            return self._error(OVER_THRESHOLD, e.message)
        except ProtocolError as e:
            return self._error(INVALID_PARAM, e.message)
        except Exception:
            self.log.failure("Nacos request {type} failed", type=payload.type[:100])
            return self._error(naming.SERVER_ERROR, "internal error")

    def _respond(self, responseType, fields):
        return Payload(responseType, {}, "", naming.encodeBody(naming.response(fields)))

    def _error(self, code, message):
        return Payload("ErrorResponse", {}, "", naming.encodeBody(naming.errorResponse(code, message)))

    def _maxMetadata(self):
        return self.node.config.max_metadata_bytes

    def _instance(self, body):
        service = naming.serviceKey(body)
        kind = body.get("type")
        if kind == "registerInstance":
            instance = naming.parseInstance(body.get("instance"), "instance", self._maxMetadata())
            self.node.manager.batchRegister(self.client, service, [instance])
        elif kind == "deregisterInstance":
            self.node.manager.batchRegister(self.client, service, [])
        else:
            raise NacosError(INVALID_PARAM, f"type: {str(kind)[:100]!r} is not registerInstance or deregisterInstance")
        return "InstanceResponse", {"type": kind}

    def _batchInstance(self, body):
        service = naming.serviceKey(body)
        kind = body.get("type")
        if kind != "batchRegisterInstance":
            raise NacosError(INVALID_PARAM, f"type: {str(kind)[:100]!r} is not batchRegisterInstance")
        instances = naming.parseInstances(body.get("instances"), self._maxMetadata())
        self.node.manager.batchRegister(self.client, service, instances)
        return "BatchInstanceResponse", {"type": kind}

    def _persistentInstance(self, body):
        raise NacosError(
            INVALID_PARAM,
            "instance.ephemeral: distro holds ephemeral instances only (persistent instances "
            "are not supported)",
        )

    def _query(self, body):
        service = naming.serviceKey(body)
        clustersText = body.get("cluster") or ""
        clusters = naming.parseClusters(clustersText)
        info = self.node.registry.serviceInfo(service, clusters, naming.healthyOnly(body))
        return "QueryServiceResponse", {
            "serviceInfo": naming.serviceInfo(info, clustersText, self._refTime()),
        }

    def _subscribe(self, body):
        service = naming.serviceKey(body)
        clustersText = body.get("clusters") or ""
        clusters = naming.parseClusters(clustersText)
        info = self.node.registry.serviceInfo(service, clusters)
        if body.get("subscribe", True) is False:
            self.node.unsubscribe(self.client, self.channel, service, clusters)
            self._subscriptions.pop((service, clusters), None)
        else:
            self.node.subscribe(self.client, self.channel, service, clusters, info)
            self._subscriptions[(service, clusters)] = clustersText
        return "SubscribeServiceResponse", {
            "serviceInfo": naming.serviceInfo(info, clustersText, self._refTime()),
        }

    def _serviceList(self, body):
        # A ProtocolError is answered INVALID_PARAM by request().
        namespace = model.parseNamespace(body.get("namespace") or naming.DEFAULT_NAMESPACE)
        group = model.parseGroup(body.get("groupName") or model.DEFAULT_GROUP, "groupName")
        page, size = body.get("pageNo", 1), body.get("pageSize", 10)
        for name, value in (("pageNo", page), ("pageSize", size)):
            if type(value) is not int or not 1 <= value <= 2**31:
                raise NacosError(INVALID_PARAM, f"{name}: must be an integer >= 1")
        count, entries = self.node.registry.services(namespace, group, page, min(size, 1000))
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
        self._lastActive = self.node.clock.seconds()
        if payload.type == "ConnectionSetupRequest":
            self._setUp(payload)
            return
        if payload.type.endswith("Response"):
            self._acked(payload)
            return
        self.log.info(
            "Nacos connection {id} sent {type} on its stream; ignored",
            id=self.connectionId, type=payload.type[:100],
        )

    def _setUp(self, payload):
        if self.client is not None:
            return
        try:
            body = naming.parseBody(payload.body)
        except NacosError:
            body = {}
        labels = body.get("labels")
        self.labels = labels if type(labels) is dict else {}
        version = body.get("clientVersion")
        self.clientVersion = version if type(version) is str else ""
        # A session of the node: a native client, replicated like any.
        self.client, _, _ = self.node.sessionStarted(self)
        self.channel = self.node.pusher.channel(self._push)
        self._scheduleIdleCheck()
        self.log.info(
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
        for timer, _, _ in self._asked.values():
            if timer.active():
                timer.cancel()
        self._asked.clear()
        if self._idleCheck is not None and self._idleCheck.active():
            self._idleCheck.cancel()
        self._idleCheck = None
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
            acked=self.closeConnection,
            timedOut=self.closeConnection,
        )

    # Server requests on the stream, acked by the SDK

    def ackTimeout(self):
        """
        How long a server request waits for its ack, in seconds:
        C{idle_timeout_ms}.
        """
        return self.node.config.idle_timeout_ms / 1000.0

    def _ask(self, requestType, fields, acked, timedOut):
        requestId = str(next(self._ids))
        timer = self.node.clock.callLater(self.ackTimeout(), self._timedOut, requestId)
        self._asked[requestId] = (timer, acked, timedOut)
        if self.send is not None:
            body = naming.encodeBody(dict(fields, requestId=requestId))
            self.send(Payload(requestType, {}, "", body))

    def _acked(self, payload):
        try:
            body = naming.parseBody(payload.body)
        except NacosError:
            return
        requestId = body.get("requestId")
        entry = self._asked.pop(requestId, None) if type(requestId) is str else None
        if entry is None:
            return
        timer, acked, timedOut = entry
        if timer.active():
            timer.cancel()
        # Judged by resultCode (some SDKs ack with success false): an SDK
        # that failed to apply it answers an error, handled like no answer.
        resultCode = body.get("resultCode", naming.SUCCESS)
        (acked if resultCode == naming.SUCCESS else timedOut)()

    def _timedOut(self, requestId):
        entry = self._asked.pop(requestId, None)
        if entry is not None:
            entry[2]()

    # Idle connections

    def _scheduleIdleCheck(self):
        self._idleCheck = self.node.clock.callLater(
            self.node.config.idle_timeout_ms / 2000.0, self._checkIdle
        )

    def _checkIdle(self):
        """
        A connection silent for C{idle_timeout_ms} (an SDK sends a health
        check every few seconds when it has nothing else to say) is asked
        C{ClientDetectionRequest}; if it does not ack, it is closed.
        """
        self._idleCheck = None
        silent = self.node.clock.seconds() - self._lastActive
        if silent >= self.node.config.idle_timeout_ms / 1000.0 and not self._detecting:
            self._detecting = True
            self._ask("ClientDetectionRequest", {"module": "internal"},
                      acked=self._detected, timedOut=self._undetected)
        if self.close is not None:
            self._scheduleIdleCheck()

    def _detected(self):
        self._detecting = False

    def _undetected(self):
        self.log.info("Nacos connection {id} answers nothing; closing", id=self.connectionId)
        self.closeConnection()

    # Pushes

    def _push(self, info, attempt=1):
        key = (info.service, info.clusters)
        self._pushesInFlight += 1
        if self._pushesInFlight >= MAX_UNACKED_PUSHES and self.channel is not None:
            self.channel.pause()
        self._ask(
            "NotifySubscriberRequest",
            {"module": "naming",
             "serviceInfo": naming.serviceInfo(info, self._subscriptions.get(key, ""), self._refTime())},
            acked=self._pushAcked,
            timedOut=lambda: self._pushTimedOut(key, attempt),
        )

    def _pushAcked(self):
        self._pushesInFlight -= 1
        if self.channel is not None and self.channel.paused and self._pushesInFlight < MAX_UNACKED_PUSHES:
            self.channel.resume()

    def _pushTimedOut(self, key, attempt):
        self._pushAcked()  # no longer in flight
        service, clusters = key
        if attempt >= PUSH_ATTEMPTS:
            self.log.warn(
                "Nacos connection {id} acked no push of {service} in {attempts} attempts; closing",
                id=self.connectionId, service=str(service), attempts=attempt,
            )
            self.closeConnection()
        elif key in self._subscriptions:
            self._push(self.node.registry.serviceInfo(service, clusters), attempt + 1)
