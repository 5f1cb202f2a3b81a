"""
twistd dropin: ``twistd distro-node`` runs a distro registry node.
"""
from twisted.application.service import ServiceMaker

distroNode = ServiceMaker(
    "distro-node", "distro.tap", "A distro service registry node.", "distro-node"
)
