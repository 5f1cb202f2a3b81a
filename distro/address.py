# -*- test-case-name: tests.test_address -*-
"""
Addresses as users and files write them: C{host:port}, an IPv6 literal in
brackets (C{[::1]:9850}). One rule set for the client library, the CLI,
C{cluster.conf} and what a node says it listens on.
"""

__all__ = ["parseAddress", "formatAddress", "describeAddress"]


def parseAddress(text, *, defaultPort=None):
    """
    Parse one C{host:port} address. With C{defaultPort}, the port may be
    left out (C{"10.0.0.1"}, C{"[::1]"}).

    @return: C{(host, port)}; an IPv6 host without its brackets.
    @raise ValueError: saying what is wrong with C{text}.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"not a host:port address: {text!r}")
        portText = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, portText = text.split(":")
    elif ":" in text:
        raise ValueError(f"IPv6 addresses must be written [host]:port: {text!r}")
    else:
        host, portText = text, None
    if not host:
        raise ValueError(f"not a host:port address: {text!r}")
    if portText is None:
        if defaultPort is None:
            raise ValueError(f"no port in {text!r} (host:port)")
        return host, defaultPort
    if not portText.isdigit() or not 0 < int(portText) < 65536:
        raise ValueError(f"not a port number in {text!r}")
    return host, int(portText)


def formatAddress(host, port):
    """
    The text form of C{(host, port)}, the inverse of L{parseAddress}.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describeAddress(address):
    """
    A transport's address (L{IPv4Address}, L{IPv6Address}) for a log line:
    C{host:port}, not its repr; another kind of address as its text.
    """
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return formatAddress(host, port)
    return str(address)
