# -*- test-case-name: tests.test_http_overrides -*-
"""
The operators' overrides over HTTP (docs/http.md, PROTOCOL.md 5.7):

    GET    /v1/overrides[?namespace=NS]
    PUT    /v1/overrides/{namespace}/{group}/{name}/{ip}/{port}[?cluster=C]
    DELETE /v1/overrides/{namespace}/{group}/{name}/{ip}/{port}[?cluster=C]

A C{PUT} names the fields it changes in a JSON body (C{{"enabled": false,
"why": "disk failing"}}; C{null} removes a field from the override), or as
parameters (C{?enabled=false&why=...}; an empty value removes the field).
Who may write is the node's rule for operators, on every port
(L{distro.interfaces.IAuthority.checkOperator}).
"""

import json

from distro import model
from distro.errors import BadRequest
from distro.http.answers import HttpError, credential, document, later, param, pathSegment
from distro.overrides import CHANGES, parseChanges

PREFIX = b"/v1/overrides/"
JSON = b"application/json"

# What a parameter of a PUT may say of a boolean field.
_BOOLEANS = {"true": True, "false": False}


def _asBadRequest(call, *args):
    try:
        return call(*args)
    except BadRequest as e:
        raise HttpError(400, e.message)


class OverrideRoutes:
    """
    The routes of the operators' overrides.
    """

    def __init__(self, node):
        self.node = node
        self.routes = {b"/v1/overrides": {b"GET": self._list}}
        self.prefixes = {PREFIX: {b"PUT": self._put, b"DELETE": self._delete}}

    def _grant(self, request):
        return self.node.authority.grant(credential(request))

    def _list(self, request):
        grant = self._grant(request)
        namespace = param(request, "namespace", required=False)
        if namespace is not None:
            namespace = _asBadRequest(model.parseNamespace, namespace)
        return document(request, 200, {"overrides": [o.toWire() for o in self.node.listOverrides(grant, namespace)]})

    def _instance(self, request):
        """
        The service and instance id of the path.
        """
        parts = request.path[len(PREFIX):].split(b"/")
        if len(parts) != 5:
            raise HttpError(404, "path: not /v1/overrides/{namespace}/{group}/{name}/{ip}/{port}")
        namespace, group, name, ip, port = (
            pathSegment(raw, field) for raw, field in zip(parts, ("namespace", "group", "name", "ip", "port")))
        try:
            service = model.parseService({"namespace": namespace, "group": group, "name": name})
        except BadRequest as e:
            raise HttpError(400, e.message.removeprefix("service."))
        if not (port.isascii() and port.isdigit()):
            raise HttpError(400, "port: must be an integer 1..65535")
        cluster = param(request, "cluster", required=False) or model.DEFAULT_CLUSTER
        try:
            instanceId = model.parseInstanceRef({"ip": ip, "port": int(port), "cluster": cluster})
        except BadRequest as e:
            raise HttpError(400, e.message.removeprefix("instance."))
        return service, instanceId

    def _fields(self, request):
        """
        What a PUT asks: its JSON body's map, or its parameters.
        """
        if JSON in (request.getHeader(b"content-type") or b"").lower():
            try:
                body = json.loads(request.content.read() or b"{}")
            except ValueError:
                raise HttpError(400, "body: is not JSON")
            if type(body) is not dict:
                raise HttpError(400, "body: must be a JSON object")
            return body
        fields = {}
        for name in CHANGES + ("why",):
            value = param(request, name, required=False)
            if value is None:
                continue
            if value == "" and name != "why":
                fields[name] = None
            elif name in ("enabled", "removed"):
                if value.lower() not in _BOOLEANS:
                    raise HttpError(400, f"{name}: must be true or false")
                fields[name] = _BOOLEANS[value.lower()]
            elif name == "weight":
                try:
                    fields[name] = float(value)
                except ValueError:
                    raise HttpError(400, "weight: must be a number")
            elif name == "metadata":
                try:
                    fields[name] = json.loads(value)
                except ValueError:
                    raise HttpError(400, "metadata: must be a JSON object")
            else:
                fields[name] = value
        return fields

    def _put(self, request):
        grant = self._grant(request)
        service, instanceId = self._instance(request)
        fields = self._fields(request)
        changes = _asBadRequest(parseChanges, fields, self.node.config.max_metadata_bytes)
        d = self.node.writeOverride(grant, _host(request), service, instanceId, changes, fields.get("why"))
        return later(request, d, lambda request, written: document(request, 200, {"override": written.toWire()}))

    def _delete(self, request):
        grant = self._grant(request)
        service, instanceId = self._instance(request)
        d = self.node.clearOverride(grant, _host(request), service, instanceId,
                                    param(request, "why", required=False))
        return later(request, d, lambda request, cleared: document(request, 200, {"cleared": cleared is not None}))


def _host(request):
    return getattr(request.getClientAddress(), "host", None)
