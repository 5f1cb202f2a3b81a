# -*- test-case-name: tests.test_config -*-
"""
The configuration keys of the HTTP port.
"""

from dataclasses import dataclass

from distro.keys import keyField, nonNegative, optionalEndpoint, positive


@dataclass
class HttpKeys:
    """
    The HTTP port.
    """

    http_listen: str = keyField(
        "tcp:8848",
        "HTTP port (Nacos login and open API, /health, /ready), as a Twisted server endpoint "
        "string; empty disables it.",
        optionalEndpoint,
    )
    max_watches_per_ip: int = keyField(
        256,
        "Watches (Server-Sent Events streams and blocking queries held open) of the JSON API one "
        "remote IP may hold at once; past it a watch is refused with 429.",
        positive,
    )
    udp_push_max_targets: int = keyField(
        10000,
        "Nacos' UDP push: at most this many push targets (a v1 client's udpPort and a view it "
        "lists) on this node; past it, a list is answered but pushes nothing. 0 turns UDP push off.",
        nonNegative,
    )
    udp_push_to_any_ip: bool = keyField(
        False,
        "Nacos' UDP push: whether a v1 client's clientIP may name an address other than the one "
        "its request comes from. Off: such a list is answered but pushes nothing, so that nobody "
        "who reaches the HTTP port aims the node's datagrams at a third party.",
    )
    udp_push_expiry_ms: int = keyField(
        30000,
        "Nacos' UDP push: a target not listing its view again for this long is forgotten "
        "(Nacos 2 forgets such a client after 30 s).",
        positive,
    )
