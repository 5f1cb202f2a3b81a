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

# Server requests on the stream wait for their ack this long; a push not
# acked in time is sent again (its latest view) at most this many times,
# then the connection is closed (its SDK reconnects and subscribes again).
ACK_TIMEOUT = 10.0
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
        self._unacked = {}  # requestId -> (subscription key, timer, attempt)
        self._lastRefTime = 0
        self._subscriptions = {}  # ServiceKey -> clusters string asked for

    # Unary requests

    def request(self, payload):
        """
        Answer one unary request: the response L{Payload}.
        """
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
        if body.get("subscribe", True) is False:
            self.node.manager.unsubscribe(self.client, service, clusters)
            self.node.pusher.unsubscribe(self.channel, service, clusters)
            self._subscriptions.pop((service, clusters), None)
            info = self.node.registry.serviceInfo(service, clusters)
        else:
            info = self.node.registry.serviceInfo(service, clusters)
            self.node.manager.subscribe(self.client, service, clusters)
            self.node.pusher.subscribe(self.channel, service, clusters, info.checksum)
            self._subscriptions[(service, clusters)] = clustersText
        return "SubscribeServiceResponse", {
            "serviceInfo": naming.serviceInfo(info, clustersText, self._refTime()),
        }

    def _serviceList(self, body):
        try:
            namespace = model.parseNamespace(body.get("namespace") or naming.DEFAULT_NAMESPACE)
            group = model.parseGroup(body.get("groupName") or model.DEFAULT_GROUP, "groupName")
        except ProtocolError as e:
            raise NacosError(INVALID_PARAM, e.message)
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
        self.log.info(
            "Nacos connection {id} from {ip} set up ({version}, module {module})",
            id=self.connectionId, ip=self.peerIp, version=self.clientVersion or "?",
            module=self.labels.get("module", "?"),
        )

    def ended(self):
        """
        The connection is gone (the SDK closed it, or it broke): its client
        goes after the disconnect grace, like any unorderly end.
        """
        for _, timer, _ in self._unacked.values():
            if timer.active():
                timer.cancel()
        self._unacked.clear()
        if self.channel is not None:
            self.channel.close()
        if self.client is not None:
            self.node.sessionEnded(self, orderly=False)
        self.send = self.close = None

    def closeConnection(self):
        """
        The node asks the connection to end (its client moved elsewhere, or
        the node stops).
        """
        if self.close is not None:
            self.close()

    # Pushes

    def _push(self, info, attempt=1):
        key = (info.service, info.clusters)
        clustersText = self._subscriptions.get(key, "")
        requestId = str(next(self._ids))
        body = naming.encodeBody({
            "requestId": requestId,
            "module": "naming",
            "serviceInfo": naming.serviceInfo(info, clustersText, self._refTime()),
        })
        timer = self.node.clock.callLater(ACK_TIMEOUT, self._ackTimedOut, requestId)
        self._unacked[requestId] = (key, timer, attempt)
        if len(self._unacked) >= MAX_UNACKED_PUSHES and self.channel is not None:
            self.channel.pause()
        if self.send is not None:
            self.send(Payload("NotifySubscriberRequest", {}, "", body))

    def _acked(self, payload):
        try:
            body = naming.parseBody(payload.body)
        except NacosError:
            return
        entry = self._unacked.pop(body.get("requestId"), None)
        if entry is None:
            return
        _, timer, _ = entry
        if timer.active():
            timer.cancel()
        if self.channel is not None and self.channel.paused and len(self._unacked) < MAX_UNACKED_PUSHES:
            self.channel.resume()

    def _ackTimedOut(self, requestId):
        entry = self._unacked.pop(requestId, None)
        if entry is None:
            return
        (service, clusters), _, attempt = entry
        if attempt >= PUSH_ATTEMPTS:
            self.log.warn(
                "Nacos connection {id} acked no push of {service} in {attempts} attempts; closing",
                id=self.connectionId, service=str(service), attempts=attempt,
            )
            self.closeConnection()
            return
        if (service, clusters) in self._subscriptions:
            self._push(self.node.registry.serviceInfo(service, clusters), attempt + 1)
