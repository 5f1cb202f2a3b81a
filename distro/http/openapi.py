# -*- test-case-name: tests.test_http -*-
"""
Nacos' open API for naming over HTTP (v1, and the v3 client API): what
heartbeat clients and scripts ask of a Nacos server.
"""

from distro.auth import normalNamespace
from distro.http.answers import HttpError, credential, param
from distro.nacos.naming import PERSISTENT_REFUSED


class OpenApi:
    """
    The routes of Nacos' naming open API.
    """

    def __init__(self, node):
        self.node = node
        self.routes = {
            b"/nacos/v1/ns/instance": {b"POST": self._instanceV1, b"PUT": self._instanceV1},
        }

    def _instanceV1(self, request):
        """
        C{POST /nacos/v1/ns/instance}: what an SDK sends over HTTP is a
        persistent instance (ephemeral ones go over gRPC), which distro
        does not hold; an ephemeral one needs the heartbeats of an HTTP
        client, which this port does not serve yet.
        """
        grant = self.node.authority.grant(credential(request))
        namespace = normalNamespace(param(request, "namespaceId", required=False) or "")
        grant.check(namespace, "namespaceId")
        name = param(request, "serviceName")
        if not name:
            raise HttpError(400, "serviceName: is required")
        param(request, "ip")
        port = param(request, "port")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise HttpError(400, "port: must be an integer 1..65535")
        ephemeral = (param(request, "ephemeral", required=False) or "true").lower()
        if ephemeral not in ("true", "false"):
            raise HttpError(400, "ephemeral: must be true or false")
        if ephemeral == "false":
            raise HttpError(400, PERSISTENT_REFUSED)
        raise HttpError(
            501,
            "ephemeral: instances registered over HTTP (heartbeat clients) are not served yet; "
            "use a Nacos 2.x/3.x SDK, which registers over gRPC",
        )
