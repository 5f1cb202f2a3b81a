# -*- test-case-name: tests.test_http_naming -*-
"""
Nacos' open API reads over HTTP (docs/nacos.md): the instances of a
service (v1, which a v1 client polls and may list with a C{udpPort} to be
pushed to, and the v3 client API), one instance, and a page of service
names, in Nacos' bodies.

Nacos' v1 paths read C{serviceName} as C{group@@name}, or as a name in
C{groupName}; they answer a refusal in text, and their texts where Nacos
has one (C{Param 'serviceName' is required.}). The v3 client API answers
Nacos 3's C{Result}, C{{"code", "message", "data"}}, refusals too.
"""

import ipaddress

from distro import model
from distro.auth import normalNamespace
from distro.errors import RequestError
from distro.http.answers import HttpError, credential, document, later, param, text
from distro.http.nacosparams import Missing, integer, nacosError, optional, parseBoolean, refusedV3, serviceOf
from distro.nacos import naming
from distro.nacos.naming import NacosError, httpHost

V1 = b"/nacos/v1/ns"
V3 = b"/nacos/v3/client/ns"


def serviceBody(info, clusters, lastRefTime):
    """
    The JSON text of the v1 C{ServiceInfo} of C{info} (what C{instance/list}
    answers and a UDP push carries): C{name} as C{group@@name} (Nacos'
    adaptation for v1 clients), beside C{groupName}; each host with its
    heartbeat settings.

    @param clusters: the cluster filter as the client gave it.
    """
    body = naming.serviceInfo(info, clusters, lastRefTime, httpHost)
    body["name"] = naming.groupedName(info.service)
    return naming.encodeBody(body).decode("utf-8")


def _address(text):
    """
    The one spelling of an IP address (an IPv4-mapped IPv6 address as the
    IPv4 one).

    @raise ValueError: if C{text} is no IP address.
    """
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).compressed


class Naming:
    """
    The routes of Nacos' open API reads.

    @param pushes: the port's L{distro.http.udppush.UdpPush}, which a
        listing with a C{udpPort} makes a push target.
    """

    def __init__(self, node, pushes):
        self.node = node
        self.pushes = pushes
        self.routes = {
            V1 + b"/instance/list": {b"GET": self._list},
            V1 + b"/instance": {b"GET": self._instance},
            V1 + b"/service/list": {b"GET": self._services},
            V3 + b"/instance/list": {b"GET": self._listV3},
        }

    # What every read checks first: the credential, readiness.

    def _namespace(self, request):
        """
        The namespace a request names (C{namespaceId}, blank meaning
        C{public}), once the request's credential is found to grant it.
        """
        grant = self.node.authority.grant(credential(request))
        namespace = normalNamespace((optional(request, "namespaceId") or "").strip())
        grant.check(namespace, "namespaceId")
        if not self.node.ready:
            raise HttpError(503, "server is not ready: loading cluster data; try again later")
        return namespace

    def _whenEncoded(self, request, info, answer):
        """
        Answer C{answer()} once the JSON of C{info}'s hosts is made: now,
        or over turns for a view changed much (as the Nacos port does).
        """
        if naming.hostsEncoded(info, httpHost):
            return answer()
        d = self.node.turns.run(naming.hostsJsonInSlices(info, httpHost))
        return later(request, d, lambda request, _: answer())

    # GET /nacos/v1/ns/instance/list

    def _list(self, request):
        """
        The instances of a service, enabled ones only, as Nacos' v1
        C{ServiceInfo}. With a C{udpPort}, the client (at C{clientIP}, by
        default the request's address) is pushed the view's changes until
        it stops listing it.
        """
        namespace = self._namespace(request)
        service = serviceOf(request, namespace)
        try:
            clusters, clustersText = naming.parseClusters(optional(request, "clusters"))
        except NacosError as e:
            raise nacosError(e)
        healthyOnly = parseBoolean(request, "healthyOnly")
        udpPort = integer(request, "udpPort", 0)
        if udpPort > 65535:
            raise HttpError(400, "udpPort: must be in 0..65535")
        source = _address(request.getClientAddress().host)
        clientIp = (optional(request, "clientIP") or "").strip()
        if clientIp:
            try:
                clientIp = _address(clientIp)
            except ValueError:
                raise HttpError(400, "clientIP: must be an IP address")
        else:
            clientIp = source
        # Pushed to the address the request comes from only, unless the
        # node allows any (udp_push_to_any_ip): no one aims its datagrams
        # at a third party.
        pushed = udpPort > 0 and (clientIp == source or self.node.config.udp_push_to_any_ip)
        info = self.node.serviceInfo(service, clusters, healthyOnly)

        def answer():
            if pushed:
                # Pushed what changes from the view it is answered (what a
                # push carries: all hosts, healthy or not, as Nacos).
                watched = info if not healthyOnly else self.node.serviceInfo(service, clusters)
                self.pushes.listed((clientIp, udpPort), watched, clustersText)
            body = serviceBody(info, clustersText, self.pushes.refTime())
            return text(request, 200, body, b"application/json; charset=utf-8")

        return self._whenEncoded(request, info, answer)

    # GET /nacos/v1/ns/instance

    def _instance(self, request):
        """
        One instance of a service, found by C{ip}, C{port} and
        C{clusterName} (default C{DEFAULT}), in Nacos' body; 404 with
        Nacos' text when the service has no instance, or not that one.
        """
        namespace = self._namespace(request)
        service = serviceOf(request, namespace)
        cluster = (optional(request, "clusterName") or model.DEFAULT_CLUSTER).strip()
        ip = (param(request, "ip", required=False) or "").strip()
        if not ip:
            raise Missing("Param 'ip' is required.")
        if not (param(request, "port", required=False) or ""):
            raise Missing("Param 'port' is required.")
        illegal = "Param 'port' is illegal, the value should be between 0 and 65535."
        port = integer(request, "port", 0, illegal)
        if not 0 <= port <= 65535:
            raise HttpError(400, illegal)
        try:
            model.parseCluster(cluster, "clusterName")
        except RequestError as e:
            raise HttpError(400, e.message)
        grouped = naming.groupedName(service)
        info = self.node.serviceInfo(service)
        if not info.count:
            raise HttpError(404, f"no ips found for cluster {cluster} in service {grouped}")
        address = model.normalHost(ip)
        for instance in info.hosts:
            if instance.cluster == cluster and instance.ip == address and instance.port == port:
                return document(request, 200, {
                    "service": grouped,
                    "ip": ip,
                    "port": port,
                    "clusterName": cluster,
                    "weight": instance.weight,
                    "healthy": instance.healthy,
                    "instanceId": f"{instance.instanceId}#{grouped}",
                    "metadata": instance.metadata,
                })
        raise HttpError(404, "no matched ip found!")

    # GET /nacos/v1/ns/service/list

    def _services(self, request):
        """
        One page of a group's service names, C{{"count", "doms"}}: Nacos'
        paging (a page number of 0 or less is the first page, a size of 0
        an empty page).
        """
        namespace = self._namespace(request)
        for name in ("pageNo", "pageSize"):
            if not param(request, name, required=False):
                raise Missing(f"Param '{name}' is required.")
        page = integer(request, "pageNo", 1)
        size = integer(request, "pageSize", 10)
        if size < 0:
            raise HttpError(400, "pageSize: must not be negative")
        group = optional(request, "groupName") or model.DEFAULT_GROUP
        try:
            group = model.parseGroup(group, "groupName")
        except RequestError as e:
            raise HttpError(400, e.message)
        if size == 0:
            count, entries = self.node.services(namespace, group, 1, 1)[0], []
        else:
            count, entries = self.node.services(namespace, group, max(page, 1), size)
        return document(request, 200, {"count": count, "doms": [name for _, name, _ in entries]})

    # GET /nacos/v3/client/ns/instance/list

    def _listV3(self, request):
        """
        The v3 client API's list: the enabled instances of a service in
        Nacos 3's C{Result}. Its C{clusterName} defaults to C{DEFAULT}, as
        Nacos 3 fills it in: a list without one shows that cluster only.
        """
        try:
            namespace = self._namespace(request)
            name = (param(request, "serviceName", required=False) or "").strip()
            if not name:
                raise Missing("Required parameter 'serviceName' type String is not present")
            group = optional(request, "groupName") or model.DEFAULT_GROUP
            clustersText = optional(request, "clusterName") or model.DEFAULT_CLUSTER
            try:
                service = naming.serviceKey({"namespace": namespace, "groupName": group, "serviceName": name})
                clusters, _ = naming.parseClusters(clustersText, "clusterName")
            except NacosError as e:
                raise nacosError(e)
        except (HttpError, RequestError) as e:
            return refusedV3(request, e)
        info = self.node.serviceInfo(service, clusters, parseBoolean(request, "healthyOnly"))

        def answer():
            hosts = naming.RawJSON(naming.hostsJson(info, httpHost))
            body = naming.encodeBody({"code": 0, "message": "success", "data": hosts})
            return text(request, 200, body, b"application/json; charset=utf-8")

        return self._whenEncoded(request, info, answer)
