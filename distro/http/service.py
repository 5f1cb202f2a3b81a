# -*- test-case-name: tests.test_http -*-
"""
The HTTP port's service: a L{twisted.web.server.Site} over the node's
resources, listening on C{http_listen}.
"""

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorUDP
from twisted.logger import Logger
from twisted.web import server
from zope.interface import implementer

from distro.address import formatAddress
from distro.admission import PortConnections
from distro.http.channel import BoundedChannel, BoundedRequest
from distro.http.resources import NodeResource
from distro.http.udppush import UdpPush
from distro.interfaces import IFrontEnd
from distro.listening import listenNow


class BoundedSite(server.Site):
    """
    A site of L{BoundedChannel}s, taken as the node's admission allows.
    """

    protocol = BoundedChannel
    requestFactory = BoundedRequest

    def __init__(self, resource, node):
        config = node.config
        super().__init__(resource, timeout=config.idle_timeout_ms / 1000.0, reactor=node.clock)
        self.clock = node.clock
        self.requestTimeout = config.handshake_timeout_ms / 1000.0
        self.channels = PortConnections(node.admission)

    def buildProtocol(self, addr):
        return self.channels.accept(addr, lambda: super(BoundedSite, self).buildProtocol(addr))

    def opened(self, channel):
        self.channels.opened(channel)

    def closed(self, channel):
        self.channels.closed(channel)

    def log(self, request):
        # No access log line per request (health probes would flood it).
        pass


@implementer(IFrontEnd)
class HttpService(Service):
    """
    The HTTP port (C{http_listen}), and the UDP socket of its Nacos pushes
    (an ephemeral port on the same interface; none if
    C{udp_push_max_targets} is 0).

    @param collector: the process' L{distro.collector.CollectorWatch}, whose
        pauses the metrics show, if it has one.
    """

    log = Logger()
    name = "http"

    def __init__(self, node, reactor, *, collector=None):
        self.node = node
        self.reactor = reactor
        self.pushes = UdpPush(node)
        self.site = BoundedSite(NodeResource(node, collector=collector, pushes=self.pushes), node)
        self.port = None
        self.udpPort = None
        self.address = None

    def connectionCount(self):
        return len(self.site.channels)

    def startService(self):
        super().startService()
        self.port, self.address = listenNow(
            self.reactor, self.node.config.http_listen, self.site, key="http_listen"
        )
        self.node.portOpened(self)
        self.log.info("distro node {node} serving HTTP on {address}",
                      node=self.node.nodeId, address=self.address)
        self._listenUdp()

    def _listenUdp(self):
        interface = getattr(self.port.getHost(), "host", None)
        if not self.node.config.udp_push_max_targets or interface is None or not IReactorUDP.providedBy(self.reactor):
            return
        try:
            self.udpPort = self.reactor.listenUDP(0, self.pushes, interface=interface)
        except CannotListenError as e:
            # Pushes are a v1 client's extra: the port serves without them.
            self.log.warn("Nacos UDP push off: cannot open a UDP socket on {interface}: {error}",
                          interface=interface, error=e)
            return
        host = self.udpPort.getHost()
        self.log.info("Nacos UDP pushes from {address}", address=formatAddress(host.host, host.port))

    def stopService(self):
        super().stopService()
        self.node.portClosed(self)
        self.pushes.stop()
        if self.udpPort is not None:
            self.udpPort.stopListening()
            self.udpPort = None
        if self.port is not None:
            return self.port.stopListening()
