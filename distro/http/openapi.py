# -*- test-case-name: tests.test_http_openapi -*-
"""
Nacos' open API for the writes of heartbeat clients (docs/nacos.md): v1's
C{/nacos/v1/ns/instance} (register, deregister, update) and
C{/nacos/v1/ns/instance/beat}, and the v3 client API's
C{/nacos/v3/client/ns/instance} (register, or a beat with
C{heartBeat=true}; deregister).

Each becomes a L{distro.heartbeats.Write} of the client C{ip:port}, which
the node applies or forwards to the member responsible for it; but an
update by an operator is an operator's override (PROTOCOL.md 5.7), of any
instance, however registered: what Nacos 2 makes of it too (its instance
metadata), and an update of its own instance by a v1 client that is no
operator stays the update of its heartbeat client. Parameters
come from the query string or a form body, on every method, read as
Nacos' server reads them: C{serviceName} may be C{group@@name}, booleans
are Nacos' (C{true}, C{on}, C{yes}, C{y}, C{t}, any case), C{enabled} may
be spelled C{enable}, C{clusterName} may be C{cluster} and defaults to
C{DEFAULT}, C{metadata} is a JSON object or C{k=v,k=v}.
"""

import json

from distro import model
from distro.auth import normalNamespace
from distro.heartbeats import BEAT_NOT_FOUND, Write
from distro.http.answers import HttpError, credential, document, later, param, refused, text
from distro.errors import BadRequest, RequestError
from distro.http.nacosparams import flag, integer, optional, refusedV3, required, serviceOf
from distro.nacos.naming import PERSISTENT_REFUSED
from distro.overrides import parseChanges

# Nacos 3's code for a beat of an instance it does not hold (the caller
# registers again), in its Result.
INSTANCE_NOT_FOUND = 21003


def _port(request):
    required(request, "port")
    port = integer(request, "port", None, "port: must be an integer 1..65535")
    if not 1 <= port <= 65535:
        raise HttpError(400, "port: must be an integer 1..65535")
    return port


def _asText(metadata):
    """
    A metadata object with its values as text (Nacos' are strings; a
    number or an object is taken as its JSON).
    """
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def metadataOf(text):
    """
    Nacos' metadata parameter: a JSON object (values taken as text), or
    C{k=v,k=v}; empty when absent.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return _asText(value)
    metadata = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HttpError(400, "metadata: must be a JSON object or k=v,k=v")
        metadata[key.strip()] = value.strip()
    return metadata


def _weight(request):
    text = param(request, "weight", required=False)
    if not text:
        return 1.0
    try:
        return float(text)
    except ValueError:
        raise HttpError(400, "weight: must be a number")


def _ephemeral(request):
    if not flag(request, "ephemeral", True):
        raise HttpError(400, PERSISTENT_REFUSED)


def _cluster(request):
    return (param(request, "clusterName", required=False)
            or param(request, "cluster", required=False)
            or model.DEFAULT_CLUSTER)


class OpenApi:
    """
    The routes of Nacos' open API for heartbeat clients' writes.
    """

    def __init__(self, node):
        self.node = node
        v1 = {b"POST": self._register, b"PUT": self._update, b"DELETE": self._deregister}
        self.routes = {
            b"/nacos/v1/ns/instance": v1,
            b"/nacos/v1/ns/instance/beat": {b"PUT": self._beat},
            b"/nacos/v3/client/ns/instance": {b"POST": self._registerV3, b"DELETE": self._deregisterV3},
        }

    # Reading a write

    def _namespace(self, request):
        """
        The namespace a request names (C{namespaceId}, blank meaning
        C{public}), once its credential is found to grant it.
        """
        namespace = normalNamespace((optional(request, "namespaceId") or "").strip())
        self.node.authority.grant(credential(request)).check(namespace, "namespaceId")
        return namespace

    def _instance(self, request):
        """
        The L{model.Instance} a register or update names.
        """
        ip = required(request, "ip")
        port = _port(request)
        return model.parseInstance(
            {
                "ip": ip,
                "port": port,
                "cluster": _cluster(request),
                "weight": _weight(request),
                "healthy": flag(request, "healthy", True),
                "enabled": flag(request, "enabled", True, "enable"),
                "metadata": metadataOf(param(request, "metadata", required=False)),
            },
            "instance",
            self.node.config.max_metadata_bytes,
        )

    def _write(self, request, kind):
        """
        The L{Write} of C{kind} a request names, its credential checked.
        """
        named = serviceOf(request, self._namespace(request))
        if kind in ("register", "update"):
            instance = self._instance(request)
            write = Write(kind, instance.ip, instance.port, named, instance)
        else:
            ip = model.parseIp(required(request, "ip"), "ip")
            write = Write(kind, ip, _port(request), named)
        _ephemeral(request)
        return write

    # v1

    def _register(self, request):
        return self._send(request, self._write(request, "register"), _ok)

    def _update(self, request):
        grant = self.node.authority.grant(credential(request))
        host = getattr(request.getClientAddress(), "host", None)
        try:
            # A Nacos client on the node's own machine updating its own
            # instance is no operator by being there.
            self.node.authority.checkOperator(grant, host, "override", loopback=False)
        except RequestError:
            return self._send(request, self._write(request, "update"), _ok)
        return self._override(request, grant, host)

    def _override(self, request, grant, host):
        """
        An operator's update: the override of the instance named, with
        the fields given (C{weight}, C{enabled} or C{enable}, C{metadata}
        as a patch).
        """
        named = serviceOf(request, self._namespace(request))
        try:
            instanceId = model.parseInstanceRef(
                {"ip": required(request, "ip"), "port": _port(request), "cluster": _cluster(request)})
        except BadRequest as e:
            raise HttpError(400, e.message.removeprefix("instance."))
        changes = {}
        if param(request, "weight", required=False):
            changes["weight"] = _weight(request)
        if optional(request, "enabled") is not None or optional(request, "enable") is not None:
            changes["enabled"] = flag(request, "enabled", True, "enable")
        metadata = param(request, "metadata", required=False)
        if metadata:
            changes["metadata"] = metadataOf(metadata)
        changes = parseChanges(changes, self.node.config.max_metadata_bytes)
        d = self.node.writeOverride(grant, host, named, instanceId, changes, optional(request, "reason"))
        return later(request, d, _ok)

    def _deregister(self, request):
        return self._send(request, self._write(request, "deregister"), _ok)

    def _beat(self, request):
        """
        C{PUT /nacos/v1/ns/instance/beat}: a beat, with the instance it
        keeps alive in C{beat} (JSON, as Nacos' clients send it; an
        instance the client does not hold is registered from it), or a
        light beat naming C{ip} and C{port} alone.
        """
        beat = param(request, "beat", required=False)
        if beat:
            try:
                info = json.loads(beat)
            except ValueError:
                info = None
            if not isinstance(info, dict):
                raise HttpError(400, "beat: must be a JSON object")
            write = self._beatOf(request, info)
        else:
            write = self._write(request, "beat")
        return self._send(request, write, _beatAnswer)

    def _beatOf(self, request, info):
        """
        The beat C{Write} of a beat's JSON: its C{ip}, C{port}, C{cluster},
        C{weight} and C{metadata}; its service the request's, or the
        beat's C{serviceName}.
        """
        namespace = self._namespace(request)
        if optional(request, "serviceName"):
            named = serviceOf(request, namespace)
        else:
            name = info.get("serviceName")
            if not isinstance(name, str) or not name:
                raise HttpError(400, "serviceName: is required")
            group, _, rest = name.rpartition("@@")
            named = model.parseService({"namespace": namespace, "group": group or model.DEFAULT_GROUP,
                                        "name": rest}, "serviceName")
        if info.get("ephemeral") is False:
            raise HttpError(400, PERSISTENT_REFUSED)
        metadata = info.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise HttpError(400, "beat.metadata: must be an object")
        instance = model.parseInstance(
            {
                "ip": info.get("ip"),
                "port": info.get("port"),
                "cluster": info.get("cluster") or _cluster(request),
                "weight": info.get("weight", 1.0),
                "healthy": True,
                "enabled": True,
                "metadata": _asText(metadata),
            },
            "beat",
            self.node.config.max_metadata_bytes,
        )
        return Write("beat", instance.ip, instance.port, named, instance)

    # v3 (the client API): Nacos 3's Result

    def _registerV3(self, request):
        try:
            beat = flag(request, "heartBeat", False)
            write = self._write(request, "beat" if beat else "register")
        except (HttpError, RequestError) as e:
            return refusedV3(request, e)
        return self._send(request, write, _beatResultV3 if beat else _okV3, refusedV3)

    def _deregisterV3(self, request):
        try:
            write = self._write(request, "deregister")
        except (HttpError, RequestError) as e:
            return refusedV3(request, e)
        return self._send(request, write, _okV3, refusedV3)

    # Sending

    def _send(self, request, write, answer, refuse=refused):
        return later(request, self.node.heartbeatWrite(write), answer, refuse)


def _ok(request, result):
    return text(request, 200, "ok")


def _okV3(request, result):
    return document(request, 200, {"code": 0, "message": "success", "data": "ok"})


def _beatAnswer(request, result):
    code, interval = result
    return document(request, 200, {"clientBeatInterval": interval, "code": code, "lightBeatEnabled": True})


def _beatResultV3(request, result):
    code, _ = result
    if code == BEAT_NOT_FOUND:
        return document(request, 200, {"code": INSTANCE_NOT_FOUND, "message": "instance not found", "data": None})
    return _okV3(request, result)

