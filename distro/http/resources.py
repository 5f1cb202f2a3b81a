# -*- test-case-name: tests.test_http -*-
"""
What the HTTP port serves (docs/http.md, docs/nacos.md): one resource
routing each request by path and method to a group of routes, each group a
module of its own (health, logins, metrics, Nacos' open API writes and
reads, distro's JSON API, the operators' overrides).

Every answer is JSON but Nacos' v1 errors, which are text as Nacos writes
them, and the metrics' text. A bad parameter is a 4xx naming it.
"""

from twisted.web import resource, server

from distro.errors import RequestError
from distro.http.answers import HttpError, document, refused
from distro.http.api import JsonApi
from distro.http.health import Health
from distro.http.logins import Logins
from distro.http.metrics import Scrapes
from distro.http.naming import Naming
from distro.http.openapi import OpenApi
from distro.http.overrides import OverrideRoutes
from distro.http.udppush import UdpPush
from distro.requeststats import UNKNOWN

# The port's name in its request metrics.
PORT = "http"


class NodeResource(resource.Resource):
    """
    The HTTP port's one resource: routes by method and path.

    A group has C{routes} (path -> method -> handler) and may have
    C{prefixes} (a path prefix ending in C{/} -> method -> handler, for the
    paths below it). A handler takes the request and returns its body, or
    L{twisted.web.server.NOT_DONE_YET}; it refuses by raising L{HttpError}
    or L{RequestError}. Groups may serve other methods of one path.

    @param pushes: the port's L{UdpPush} (one that never listens, if not
        given: nothing is pushed).
    """

    isLeaf = True

    def __init__(self, node, *, collector=None, pushes=None):
        super().__init__()
        self.node = node
        self._routes = {}
        self._prefixes = []
        pushes = UdpPush(node) if pushes is None else pushes
        groups = (Health(node), Logins(node), Scrapes(node, collector=collector), OpenApi(node),
                  Naming(node, pushes), JsonApi(node), OverrideRoutes(node))
        for group in groups:
            for path, methods in group.routes.items():
                self._routes.setdefault(path, {}).update(methods)
            self._prefixes.extend(getattr(group, "prefixes", {}).items())
        # Each request is counted by its route (its path, or a prefix and
        # "*"): a path that is no route counts as unknown.
        self._ops = {path: path.decode("utf-8") for path in self._routes}
        self._ops.update((prefix, prefix.decode("utf-8") + "*") for prefix, _ in self._prefixes)
        self._requests = node.requests.port(PORT, self._ops.values(), 200)

    def _route(self, path):
        """
        C{(route, methods)} of C{path}, or C{(None, None)}.
        """
        route = path.rstrip(b"/") or b"/"
        methods = self._routes.get(route)
        if methods is not None:
            return route, methods
        for prefix, methods in self._prefixes:
            if path.startswith(prefix):
                return prefix, methods
        return None, None

    def render(self, request):
        # Every request is counted here, once, with its status and
        # duration: one answered later when it finishes.
        started = self.node.clock.seconds()
        route, methods = self._route(request.path)
        op = self._ops.get(route, UNKNOWN)
        try:
            body = self._answer(request, methods)
        except Exception:
            # twisted.web answers 500 (and logs it).
            self._requests.record(op, 500, self.node.clock.seconds() - started)
            raise
        if body is not server.NOT_DONE_YET or request.finished:
            self._requests.record(op, request.code, self.node.clock.seconds() - started)
        else:
            request.notifyFinish().addBoth(
                lambda _: self._requests.record(op, request.code, self.node.clock.seconds() - started)
            )
        return body

    def _answer(self, request, methods):
        if methods is None:
            return document(request, 404, {"code": 404, "message": "no such path"})
        # HEAD as GET (load balancers' probes); twisted.web sends no body.
        handler = methods.get(b"GET" if request.method == b"HEAD" else request.method)
        if handler is None:
            allowed = set(methods) | ({b"HEAD"} if b"GET" in methods else set())
            request.setHeader(b"Allow", b", ".join(sorted(allowed)))
            return document(request, 405, {"code": 405, "message": "method: not allowed here"})
        try:
            return handler(request)
        except (HttpError, RequestError) as e:
            return refused(request, e)
