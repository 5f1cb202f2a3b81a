# -*- test-case-name: tests.test_client_session -*-
"""
Server addresses as users write them: C{"host:port"}, with IPv6 literals in
brackets (C{"[::1]:9850"}), several joined by commas.
"""

__all__ = ["DEFAULT_PORT", "parseAddress", "parseServers", "formatAddress"]

DEFAULT_PORT = 9850


def parseAddress(text):
    """
    Parse one C{"host:port"} address.

    A missing port means L{DEFAULT_PORT}: C{"10.0.0.1"} and C{"[::1]"} are
    accepted too.

    @return: C{(host, port)}; an IPv6 host is returned without brackets.
    @raise ValueError: if C{text} is not an address.
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
        return host, DEFAULT_PORT
    if not portText.isdigit() or not 0 < int(portText) < 65536:
        raise ValueError(f"not a port number in {text!r}")
    return host, int(portText)


def parseServers(servers):
    """
    Parse a server list: one string with comma-separated addresses, or an
    iterable of strings each holding one or more of them.

    @return: a list of C{(host, port)} without duplicates, in the given order.
    @raise ValueError: if an address is malformed or there is none.
    """
    if isinstance(servers, str):
        servers = [servers]
    result = []
    for entry in servers:
        for text in entry.split(","):
            if text.strip():
                address = parseAddress(text)
                if address not in result:
                    result.append(address)
    if not result:
        raise ValueError("no server address given")
    return result


def formatAddress(host, port):
    """
    The text form of C{(host, port)}, the inverse of L{parseAddress}.
    """
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
