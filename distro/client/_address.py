# -*- test-case-name: tests.test_client_session -*-
"""
Server addresses as users write them: C{"host:port"}, with IPv6 literals in
brackets (C{"[::1]:9850"}), several joined by commas.
"""

from distro.address import formatAddress
from distro.address import parseAddress as _parseAddress

__all__ = ["DEFAULT_PORT", "parseAddress", "parseServers", "formatAddress"]

DEFAULT_PORT = 9850


def parseAddress(text):
    """
    Parse one C{"host:port"} address (L{distro.address.parseAddress}); a
    missing port means L{DEFAULT_PORT}: C{"10.0.0.1"} and C{"[::1]"} are
    accepted too.

    @return: C{(host, port)}; an IPv6 host is returned without brackets.
    @raise ValueError: if C{text} is not an address.
    """
    return _parseAddress(text, defaultPort=DEFAULT_PORT)


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
