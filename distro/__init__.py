"""
distro: a service registry for microservices, speaking the Distro protocol of
Nacos' naming service.

@var __version__: this release's version (what C{distro --version} and
    C{twistd distro-node --version} print, and a node logs at start).
"""

__version__ = "0.1.0"
