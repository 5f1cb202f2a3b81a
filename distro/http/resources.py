# -*- test-case-name: tests.test_http -*-
"""
What the HTTP port serves (docs/http.md, docs/nacos.md): one resource
routing each request by path and method to a group of routes, each group a
module of its own (health, logins, metrics, Nacos' open API writes and
reads, distro's JSON API).

Every answer is JSON but Nacos' v1 errors, which are text as Nacos writes
them, and the metrics' text. A bad parameter is a 4xx naming it.
"""

from twisted.web import resource

from distro.errors import RequestError
from distro.http.answers import HttpError, document, refused
from distro.http.api import JsonApi
from distro.http.health import Health
from distro.http.logins import Logins
from distro.http.metrics import Scrapes
from distro.http.naming import Naming
from distro.http.openapi import OpenApi
from distro.http.udppush import UdpPush


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
                  Naming(node, pushes), JsonApi(node))
        for group in groups:
            for path, methods in group.routes.items():
                self._routes.setdefault(path, {}).update(methods)
            self._prefixes.extend(getattr(group, "prefixes", {}).items())

    def _methods(self, path):
        methods = self._routes.get(path.rstrip(b"/") or b"/")
        if methods is not None:
            return methods
        for prefix, methods in self._prefixes:
            if path.startswith(prefix):
                return methods
        return None

    def render(self, request):
        methods = self._methods(request.path)
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
