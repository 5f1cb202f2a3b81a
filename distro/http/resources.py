# -*- test-case-name: tests.test_http -*-
"""
What the HTTP port serves (docs/nacos.md, README): health and readiness,
Nacos' logins, Nacos' health endpoints, and Nacos' v1 instance registration
(which distro refuses for persistent instances, with the same message as
the gRPC port).

Every answer is JSON but Nacos' v1 errors, which are text as Nacos writes
them. A bad parameter is a 4xx naming it.
"""

import json

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from distro.auth import normalNamespace
from distro.http.metrics import CONTENT_TYPE, Metrics
from distro.nacos.naming import PERSISTENT_REFUSED
from distro.errors import FORBIDDEN, LIMIT_EXCEEDED, UNAUTHORIZED, RequestError


# Logins of one address checked at once, at most (each costs a password
# hash; the node's authority bounds them all together).
MAX_LOGINS_PER_IP = 4


class HttpError(Exception):
    """
    A request refused with C{status} and C{message} (naming the parameter).
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _param(request, name, required=True):
    """
    The first value of parameter C{name} (query string or form body), as
    text.
    """
    values = request.args.get(name.encode("ascii"))
    if not values:
        if required:
            raise HttpError(400, f"{name}: is required")
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, f"{name}: is not UTF-8")


def _credential(request):
    """
    The token a request carries: the C{accessToken} parameter or header,
    or an C{Authorization: Bearer} header.
    """
    token = _param(request, "accessToken", required=False)
    if token:
        return token
    header = request.getHeader("accessToken")
    if header:
        return header
    authorization = request.getHeader("Authorization") or ""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


class NodeResource(resource.Resource):
    """
    The HTTP port's one resource: routes by method and path.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, node, *, collector=None):
        super().__init__()
        self.node = node
        # address -> its logins being checked
        self._logins = {}
        self._routes = {
            b"/health": {b"GET": self._health},
            b"/ready": {b"GET": self._ready},
            b"/nacos/v1/auth/users/login": {b"POST": self._login},
            b"/nacos/v1/auth/login": {b"POST": self._login},
            b"/nacos/v3/auth/user/login": {b"POST": self._login},
            b"/nacos/v1/ns/operator/metrics": {b"GET": self._metrics},
            b"/nacos/v3/admin/core/state/liveness": {b"GET": self._liveness},
            b"/nacos/v3/admin/core/state/readiness": {b"GET": self._readiness},
            b"/nacos/v1/ns/instance": {b"POST": self._instanceV1, b"PUT": self._instanceV1},
            b"/metrics": {b"GET": self._prometheus},
            b"/nacos/actuator/prometheus": {b"GET": self._nacosPrometheus},
        }
        self._exposition = Metrics(node, collector=collector)

    def render(self, request):
        methods = self._routes.get(request.path.rstrip(b"/") or b"/")
        if methods is None:
            return self._json(request, 404, {"code": 404, "message": "no such path"})
        # HEAD as GET (load balancers' probes); twisted.web sends no body.
        handler = methods.get(b"GET" if request.method == b"HEAD" else request.method)
        if handler is None:
            allowed = set(methods) | ({b"HEAD"} if b"GET" in methods else set())
            request.setHeader(b"Allow", b", ".join(sorted(allowed)))
            return self._json(request, 405, {"code": 405, "message": "method: not allowed here"})
        try:
            return handler(request)
        except HttpError as e:
            return self._error(request, e.status, e.message)
        except RequestError as e:
            return self._error(request, _status(e), e.message)

    # Answers

    def _json(self, request, status, document):
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    def _error(self, request, status, message):
        """
        A refusal: text for Nacos' v1 paths (as Nacos writes them), else
        JSON C{{"code", "message"}}.
        """
        if request.path.startswith(b"/nacos/v1/"):
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return message.encode("utf-8")
        return self._json(request, status, {"code": status, "message": message, "data": None})

    def _later(self, request, d, answer):
        """
        Answer C{request} when C{d} fires: C{answer(result)} gives the
        document; a refusal becomes its error.
        """
        gone = []
        request.notifyFinish().addErrback(gone.append)  # the client left

        def done(result):
            if gone:
                return
            if isinstance(result, Failure):
                error = result.value
                if isinstance(error, RequestError):
                    body = self._error(request, _status(error), error.message)
                else:
                    self.log.failure("HTTP {path} failed", result, path=request.path[:100])
                    body = self._error(request, 500, "internal error")
            else:
                body = self._json(request, 200, answer(result))
            request.write(body)
            request.finish()

        d.addBoth(done)
        return server.NOT_DONE_YET

    # Health

    def _health(self, request):
        health = {"status": "UP", "node": self.node.nodeId}
        if not self.node.authority.enabled:
            # Anyone may ask for health (a load balancer does, without a
            # token): where the ports are and how busy, only a node open to
            # all tells.
            health["ports"] = [
                {"name": port.name, "address": port.address, "connections": port.connectionCount()}
                for port in self.node.ports()
            ]
        return self._json(request, 200, health)

    def _ready(self, request):
        if not self.node.ready:
            return self._json(request, 503, {"status": "DOWN", "node": self.node.nodeId,
                                             "reason": "loading cluster data"})
        return self._json(request, 200, {"status": "UP", "node": self.node.nodeId})

    def _metrics(self, request):
        return self._json(request, 200, {"status": "UP"})

    def _liveness(self, request):
        return self._json(request, 200, {"code": 0, "message": "success", "data": "ok"})

    def _readiness(self, request):
        if not self.node.ready:
            return self._json(request, 500, {"code": 30000, "message": "server is not ready: loading cluster data",
                                             "data": None})
        return self._json(request, 200, {"code": 0, "message": "success", "data": "ok"})

    # Logins

    def _login(self, request):
        """
        A login; at most L{MAX_LOGINS_PER_IP} of one address at once (each
        costs a password hash), past it 503.
        """
        username = _param(request, "username")
        password = _param(request, "password")
        ip = request.getClientAddress().host
        if self._logins.get(ip, 0) >= MAX_LOGINS_PER_IP:
            raise HttpError(503, "logins: too many at once from this address, try again")
        self._logins[ip] = self._logins.get(ip, 0) + 1

        def done(result):
            left = self._logins[ip] - 1
            if left:
                self._logins[ip] = left
            else:
                del self._logins[ip]
            return result

        return self._later(request, self.node.authority.login(username, password).addBoth(done),
                           _loginDocument)

    # Prometheus

    def _metricsAllowed(self, request):
        """
        On a node with auth, metrics (counts over every namespace) are for a
        credential granted every namespace, or an admin's.
        """
        if not self.node.authority.enabled:
            return
        self.node.authority.grant(_credential(request)).checkEvery("metrics")

    def _text(self, request, body):
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        return body

    def _prometheus(self, request):
        self._metricsAllowed(request)
        return self._text(request, self._exposition.distro())

    def _nacosPrometheus(self, request):
        self._metricsAllowed(request)
        return self._text(request, self._exposition.nacos())

    # Nacos' v1 instances

    def _instanceV1(self, request):
        """
        C{POST /nacos/v1/ns/instance}: what an SDK sends over HTTP is a
        persistent instance (ephemeral ones go over gRPC), which distro
        does not hold; an ephemeral one needs the heartbeats of an HTTP
        client, which this port does not serve yet.
        """
        grant = self.node.authority.grant(_credential(request))
        namespace = normalNamespace(_param(request, "namespaceId", required=False) or "")
        grant.check(namespace, "namespaceId")
        name = _param(request, "serviceName")
        if not name:
            raise HttpError(400, "serviceName: is required")
        _param(request, "ip")
        port = _param(request, "port")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise HttpError(400, "port: must be an integer 1..65535")
        ephemeral = (_param(request, "ephemeral", required=False) or "true").lower()
        if ephemeral not in ("true", "false"):
            raise HttpError(400, "ephemeral: must be true or false")
        if ephemeral == "false":
            raise HttpError(400, PERSISTENT_REFUSED)
        raise HttpError(
            501,
            "ephemeral: instances registered over HTTP (heartbeat clients) are not served yet; "
            "use a Nacos 2.x/3.x SDK, which registers over gRPC",
        )


def _loginDocument(result):
    return {"accessToken": result.token, "tokenTtl": result.ttl, "globalAdmin": result.admin,
            "username": result.user}


def _status(error):
    """
    The HTTP status of a refusal: 403 for credentials (as Nacos answers),
    503 for a limit, else 400.
    """
    if error.code in (UNAUTHORIZED, FORBIDDEN):
        return 403
    if error.code == LIMIT_EXCEEDED:
        return 503
    return 400
