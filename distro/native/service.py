# -*- test-case-name: tests.test_tap -*-
"""
distro's own client port as a service of the node: it listens on C{listen},
learns the address it is bound to (what clients and peers are told, unless
C{advertise} says), and writes it to C{port_file} when asked.
"""

import os

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import implementer

from distro import __version__
from distro.address import formatAddress
from distro.interfaces import IFrontEnd
from distro.keys import ConfigError
from distro.listening import listenNow
from distro.native.session import ClientPortFactory


def withBacklog(description, backlog):
    """
    The server endpoint string C{description}, listening with C{backlog}
    pending connections if it is a TCP or TLS port that does not name its
    own.
    """
    kind = description.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6", "ssl") and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


@implementer(IFrontEnd)
class ClientPortService(Service):
    """
    Listens on the client port (distro's own protocol) and learns the
    address it is bound to.
    """

    log = Logger()
    name = "distro"

    def __init__(self, node, reactor):
        self.node = node
        self.reactor = reactor
        self.port = None
        self.address = None
        self.factory = ClientPortFactory(node)

    def connectionCount(self):
        return len(self.factory.sessions)

    def startService(self):
        super().startService()
        config = self.node.config
        self.port, self.address = listenNow(
            self.reactor, withBacklog(config.listen, config.listen_backlog), self.factory,
            key="listen", value=config.listen,
        )
        self.node.portOpened(self)
        address = self.address
        host = self.port.getHost()
        self.node.clientPortBound(formatAddress(host.host, host.port))
        self.log.info(
            "distro {version} node {node} serving clients on {address}",
            version=__version__,
            node=self.node.nodeId,
            address=address,
        )
        if self.node.config.port_file:
            # Written aside and renamed, so a reader never sees a partial file.
            path = self.node.config.port_file
            try:
                with open(path + ".tmp", "w") as f:
                    f.write(address + "\n")
                os.replace(path + ".tmp", path)
            except OSError as e:
                raise ConfigError("port_file", f"cannot write {path}: {e.strerror}") from e

    def stopService(self):
        super().stopService()
        self.node.portClosed(self)
        if self.node.config.port_file and self.port is not None:
            # A stale file would point the next reader at a dead port.
            try:
                os.remove(self.node.config.port_file)
            except OSError:
                pass
        if self.port is not None:
            return self.port.stopListening()
