# -*- test-case-name: tests.test_http -*-
"""
Health and readiness: distro's own (C{/health}, C{/ready}) and the probes
of a Nacos server that load balancers and operators' scripts ask.
"""

from distro.http.answers import document


class Health:
    """
    The health routes of a node.
    """

    def __init__(self, node):
        self.node = node
        self.routes = {
            b"/health": {b"GET": self._health},
            b"/ready": {b"GET": self._ready},
            b"/nacos/v1/ns/operator/metrics": {b"GET": self._metrics},
            b"/nacos/v3/admin/core/state/liveness": {b"GET": self._liveness},
            b"/nacos/v3/admin/core/state/readiness": {b"GET": self._readiness},
        }

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
        return document(request, 200, health)

    def _ready(self, request):
        if self.node.draining:
            return document(request, 503, {"status": "DOWN", "node": self.node.nodeId,
                                           "reason": "draining"})
        if not self.node.ready:
            return document(request, 503, {"status": "DOWN", "node": self.node.nodeId,
                                           "reason": "loading cluster data"})
        return document(request, 200, {"status": "UP", "node": self.node.nodeId})

    def _metrics(self, request):
        return document(request, 200, {"status": "UP"})

    def _liveness(self, request):
        return document(request, 200, {"code": 0, "message": "success", "data": "ok"})

    def _readiness(self, request):
        if self.node.draining:
            return document(request, 500, {"code": 30000, "message": "server is not ready: draining",
                                           "data": None})
        if not self.node.ready:
            return document(request, 500, {"code": 30000, "message": "server is not ready: loading cluster data",
                                           "data": None})
        return document(request, 200, {"code": 0, "message": "success", "data": "ok"})
