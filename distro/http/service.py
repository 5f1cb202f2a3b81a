# -*- test-case-name: tests.test_http -*-
"""
The HTTP port's service: a L{twisted.web.server.Site} over the node's
resources, listening on C{http_listen}.
"""

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web import server
from zope.interface import implementer

from distro.admission import PortConnections
from distro.http.channel import BoundedChannel, BoundedRequest
from distro.http.resources import NodeResource
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
    The HTTP port (C{http_listen}).

    @param collector: the process' L{distro.collector.CollectorWatch}, whose
        pauses the metrics show, if it has one.
    """

    log = Logger()
    name = "http"

    def __init__(self, node, reactor, *, collector=None):
        self.node = node
        self.reactor = reactor
        self.site = BoundedSite(NodeResource(node, collector=collector), node)
        self.port = None
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

    def stopService(self):
        super().stopService()
        self.node.portClosed(self)
        if self.port is not None:
            return self.port.stopListening()
