# -*- test-case-name: tests.test_http_api -*-
"""
distro's own JSON API (docs/http.md): the members, a namespace's services,
a service's instances, and watches of a service, so that any language
follows a service with a plain HTTP client: Server-Sent Events (the whole
view, then each change) or a blocking query (Consul's C{index} and
C{wait}).

A watch is a subscription of the node's pusher without a client
(L{distro.interfaces.INode.watch}): it is pushed when every port's
subscriptions are, its changes coalesced the same way. Every watch held
open counts against C{max_watches_per_ip}; the client leaving ends it and
frees all it held. A request held open is not subject to the connection's
idle timeout (twisted.web suspends it while a request is handled) nor to
its request deadline (met once the request arrived whole).
"""

import re

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import server
from zope.interface import implementer

from distro import model
from distro.admission import Admission
from distro.errors import NOT_READY, BadRequest, RequestError
from distro.http.answers import HttpError, credential, document, later, param, pathSegment, refused, text
from distro.http.views import dumps, isEncoded, viewJson, viewJsonInSlices

PREFIX = b"/v1/services/"
MAX_PAGE = 2**31
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# A blocking query's wait when not given, and the longest one held.
DEFAULT_WAIT = 30.0
MAX_WAIT = 300.0
# How often an idle event stream is written a comment, so that proxies and
# load balancers (often 60 s) do not drop it, and a client gone silently
# is found by a failed write.
KEEPALIVE = 15.0
# The header of a view's revision (a blocking query's index).
INDEX_HEADER = b"X-Distro-Index"
EVENT_STREAM = b"text/event-stream"

_DURATION = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|s|m|h)?\Z")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_ACTIONS = (b"instances", b"watch")


def parseWait(value):
    """
    A blocking query's C{wait}: C{500ms}, C{30s}, C{2m}, C{1h} or bare
    seconds (C{1.5}), at most L{MAX_WAIT} (a longer one is cut to it).

    @raise HttpError: 400 naming C{wait}.
    """
    match = _DURATION.match(value)
    if match is None:
        raise HttpError(400, "wait: must be a duration such as 500ms, 30s, 2m or seconds")
    return min(float(match.group(1)) * _UNITS[match.group(2)], MAX_WAIT)


def _digits(value):
    """
    Whether C{value} is ASCII digits (C{str.isdigit} takes any script's).
    """
    return value.isascii() and value.isdigit()


def _integer(request, name, default, largest, expected):
    """
    An optional integer parameter 1..C{largest}; C{expected} says what it
    must be, when it is not.
    """
    value = param(request, name, required=False)
    if value is None or value == "":
        return default
    if not _digits(value) or not 1 <= int(value) <= largest:
        raise HttpError(400, f"{name}: must be {expected}")
    return int(value)


def _optional(request, name):
    """
    An optional parameter; empty is absent.
    """
    return param(request, name, required=False) or None


def _service(request):
    """
    The service and the action of C{/v1/services/{namespace}/{group}/{name}/{action}}.
    """
    parts = request.path[len(PREFIX):].split(b"/")
    if len(parts) != 4 or parts[3] not in _ACTIONS:
        raise HttpError(404, "path: not /v1/services/{namespace}/{group}/{name}/instances or .../watch")
    namespace, group, name = (pathSegment(raw, field) for raw, field in zip(parts, ("namespace", "group", "name")))
    try:
        service = model.parseService({"namespace": namespace, "group": group, "name": name})
    except BadRequest as e:
        # The path's parts are named as docs/http.md names them.
        raise HttpError(400, e.message.removeprefix("service."))
    return service, parts[3]


def _answerView(request, info):
    body = viewJson(info)
    request.setHeader(INDEX_HEADER, b"%d" % info.revision)
    # Written now or later (once encoded, or held), never chunked.
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return text(request, 200, body, b"application/json; charset=utf-8")


class JsonApi:
    """
    The routes of distro's JSON API.

    @ivar watches: the L{Admission} of the watches held open, per remote
        address.
    """

    def __init__(self, node):
        self.node = node
        self.watches = Admission(node.config.max_watches_per_ip)
        self.routes = {
            b"/v1/members": {b"GET": self._members},
            b"/v1/services": {b"GET": self._services},
        }
        self.prefixes = {PREFIX: {b"GET": self._service}}

    def _grant(self, request):
        return self.node.authority.grant(credential(request))

    def _members(self, request):
        self._grant(request)
        reachedAt = getattr(request.getHost(), "host", None)
        return document(request, 200, {"members": self.node.members(reachedAt)})

    def _services(self, request):
        grant = self._grant(request)
        namespace = param(request, "namespace", required=False)
        group = _optional(request, "group")
        try:
            namespace = model.parseNamespace(namespace)
            group = model.parseGroup(group)
        except BadRequest as e:
            raise HttpError(400, e.message)
        grant.check(namespace, "namespace", self.node.clock.seconds())
        page = _integer(request, "page", 1, MAX_PAGE, "a positive integer")
        size = _integer(request, "size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, f"an integer 1..{MAX_PAGE_SIZE}")
        count, entries = self.node.services(namespace, group, page, size)
        return document(request, 200, {
            "count": count,
            "services": [{"group": g, "name": n, "instances": c} for g, n, c in entries],
        })

    def _service(self, request):
        grant = self._grant(request)
        service, action = _service(request)
        grant.check(service.namespace, "namespace", self.node.clock.seconds())
        clusters = _optional(request, "clusters")
        if clusters is not None:
            try:
                clusters = model.parseClusters(clusters.split(","))
            except BadRequest as e:
                raise HttpError(400, e.message)
        healthy = (_optional(request, "healthy") or "false").lower()
        if healthy not in ("true", "false"):
            raise HttpError(400, "healthy: must be true or false")
        healthy = healthy == "true"
        if action == b"instances":
            def answer():
                return _answerView(request, self.node.serviceInfo(service, clusters, healthy))
        else:
            how = _watchParameters(request)

            def answer():
                return self._watch(request, grant, service, clusters, healthy, *how)
        self._ready()
        return self._encodedFirst(request, self.node.serviceInfo(service, clusters, healthy), answer)

    def _ready(self):
        if not self.node.ready:
            raise RequestError(NOT_READY, "node: still loading cluster data; ask another node")

    def _encodedFirst(self, request, info, answer):
        """
        C{answer()} once the JSON of C{info} is made: at once when it is
        (nearly always), else after it is made over turns (a large view
        changed much), the request then answered as if it came then.
        """
        if isEncoded(info):
            return answer()

        def answerNow(request, _):
            try:
                return answer()
            except (HttpError, RequestError) as e:
                return refused(request, e)

        return later(request, self.node.turns.run(viewJsonInSlices(info)), answerNow)

    def _watch(self, request, grant, service, clusters, healthy, sse, index, wait):
        info = self.node.serviceInfo(service, clusters, healthy)
        if request.method == b"HEAD" or not (sse or index is not None):
            return _answerView(request, info)
        if not sse and (index != info.revision or wait == 0):
            return _answerView(request, info)
        self._admit(request)
        watch = (EventStream if sse else BlockingQuery)(self, request, service, clusters, healthy)
        watch.start(info, grant, wait)
        return server.NOT_DONE_YET

    def _admit(self, request):
        if not self.watches.admit(_address(request)):
            limit = self.watches.maxPerIp
            raise HttpError(429, f"max_watches_per_ip: {limit} watches already open from this address")

    def released(self, request):
        """
        A watch of C{request} ended.
        """
        self.watches.release(_address(request))


def _watchParameters(request):
    """
    How a watch is asked for: C{(sse, index, wait)}, whether as an event
    stream, the blocking query's index (or C{None}) and wait.
    """
    stream = _optional(request, "stream")
    if stream is not None and stream != "sse":
        raise HttpError(400, "stream: must be sse")
    index = _optional(request, "index")
    if index is not None:
        if not _digits(index) or int(index) >= 2**63:
            raise HttpError(400, "index: must be an integer >= 0 (a view's revision)")
        index = int(index)
    wait = _optional(request, "wait")
    wait = DEFAULT_WAIT if wait is None else parseWait(wait)
    sse = stream is not None or EVENT_STREAM in (request.getHeader(b"accept") or b"")
    return sse, index, wait


def _address(request):
    return getattr(request.getClientAddress(), "host", None)


class _Watch:
    """
    One watch held open: a push channel of its own watching the view, and
    what ends it (the client leaving, or the watch answered). Subclasses
    say what a change and the start do.
    """

    log = Logger()

    def __init__(self, api, request, service, clusters, healthy):
        self.api = api
        self.node = api.node
        self.request = request
        self.service = service
        self.clusters = clusters
        self.healthy = healthy
        self.checksum = None
        # The newest view to send, while its JSON is made over turns.
        self._encoding = None
        self.ended = False
        self._gone = False
        self._timers = []
        self.channel = self.node.pushChannel(self._pushed)
        request.notifyFinish().addErrback(self._left)

    def start(self, info, grant, wait):
        """
        C{info} was read just now: watch for its next change.
        """
        self.checksum = info.checksum
        # The pusher compares what it pushes with the view it last pushed:
        # the view of the cluster filter alone (health is filtered here).
        pushed = self.node.serviceInfo(self.service, self.clusters) if self.healthy else info
        self.node.watch(self.channel, self.service, self.clusters, pushed)

    def later(self, seconds, f, *args):
        """
        Call C{f(*args)} in C{seconds}, unless the watch ended by then.
        """
        self._timers.append(self.node.clock.callLater(seconds, f, *args))

    def _pushed(self, info):
        if self.ended:
            return
        if self.healthy:
            info = self.node.serviceInfo(self.service, self.clusters, True)
        if info.checksum == self.checksum:
            return
        self.checksum = info.checksum
        if self._encoding is None and isEncoded(info):
            self.changed(info)
            return
        # A view changed much: its JSON is made over turns, then the newest
        # view given meanwhile is sent.
        running, self._encoding = self._encoding is not None, info
        if not running:
            self.node.turns.run(self._encode()).addErrback(
                lambda failure: self.log.failure("HTTP watch push failed", failure))

    def _encode(self):
        while not self.ended:
            info = self._encoding
            yield from viewJsonInSlices(info)
            if self._encoding is info:
                self._encoding = None
                if not self.ended:
                    self.changed(info)
                return

    def changed(self, info):
        """
        The view is now C{info} (its JSON made): tell the client.
        """
        raise NotImplementedError()

    def _left(self, reason):
        self._gone = True
        self.end()

    def end(self):
        """
        The watch ends: everything it holds is freed. Safe to call twice.
        """
        if self.ended:
            return
        self.ended = True
        self.channel.close()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        self.api.released(self.request)

    def finish(self):
        """
        End the watch and its answer (the client still there).
        """
        request = self.request
        self.end()
        if not self._gone:
            if request.producer is not None:
                request.unregisterProducer()
            request.finish()


class BlockingQuery(_Watch):
    """
    A blocking query held open: answered with the view when it changes, or
    when its wait ends (at the latest when its login token expires).
    """

    def start(self, info, grant, wait):
        """
        Hold the query until the view changes from C{info}, or C{wait}
        passes.
        """
        super().start(info, grant, wait)
        if grant.expires is not None:
            wait = min(wait, max(0.0, grant.expires - self.node.clock.seconds()))
        self.later(wait, self._waited)

    def _waited(self):
        if self._encoding is not None:
            return  # a change is being encoded: its view answers, next turns
        self._answer(self.node.serviceInfo(self.service, self.clusters, self.healthy))

    def changed(self, info):
        """
        The view changed: answer it.
        """
        self._answer(info)

    def _answer(self, info):
        if self.ended:
            return
        body = _answerView(self.request, info)
        self.end()
        if not self._gone:
            self.request.write(body)
            self.request.finish()


@implementer(IPushProducer)
class EventStream(_Watch):
    """
    A watch as Server-Sent Events: the whole view first, then the view at
    each change, an event each (C{event: view}, C{id:} its revision,
    C{data:} its JSON); a comment every L{KEEPALIVE} seconds. While the
    client does not read, pushes wait in the pusher (one pending flag, no
    queue of views); a client that read nothing for C{idle_timeout_ms} is
    dropped. A login token's stream ends when the token expires.
    """

    _stalled = None

    def start(self, info, grant, wait):
        """
        Answer the stream, C{info} its first event.
        """
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        # nginx would otherwise buffer the stream.
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.registerProducer(self, True)
        self._event(info)
        super().start(info, grant, wait)
        self.later(KEEPALIVE, self._keepAlive)
        if grant.expires is not None:
            self.later(max(0.0, grant.expires - self.node.clock.seconds()), self._expired)

    def _event(self, info):
        self.request.write(
            b"event: view\nid: %d\ndata: %s\n\n" % (info.revision, viewJson(info))
        )

    def changed(self, info):
        """
        The view changed: an event of it.
        """
        self._event(info)

    def _keepAlive(self):
        self._timers = [t for t in self._timers if t.active()]
        if self.ended:
            return
        if self._stalled is None:
            self.request.write(b": keep-alive\n\n")
        self.later(KEEPALIVE, self._keepAlive)

    def _expired(self):
        if not self.ended:
            self.request.write(b"event: end\ndata: %s\n\n" % dumps(
                {"message": "token: expired (log in again)"}).encode())
            self.finish()

    # IPushProducer: the connection's send buffer.

    def pauseProducing(self):
        """
        The connection cannot take more: pushes wait in the pusher, and the
        client has C{idle_timeout_ms} to read.
        """
        if self.ended or self._stalled is not None:
            return
        self.channel.pause()
        self._stalled = self.node.clock.callLater(
            self.node.config.idle_timeout_ms / 1000.0, self._stall
        )
        self._timers.append(self._stalled)

    def resumeProducing(self):
        """
        The connection takes data again: what is due is sent.
        """
        if self._stalled is None:
            return
        if self._stalled.active():
            self._stalled.cancel()
        self._stalled = None
        if not self.ended:
            self.channel.resume()

    def stopProducing(self):
        """
        The connection is going: the watch ends.
        """
        self.end()

    def _stall(self):
        self.log.info("HTTP watch of {service} dropped: its client read nothing for {seconds} s",
                      service=str(self.service), seconds=self.node.config.idle_timeout_ms / 1000.0)
        transport = self.request.channel.transport if self.request.channel is not None else None
        self.end()
        if transport is not None:
            transport.abortConnection()
