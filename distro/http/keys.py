# -*- test-case-name: tests.test_config -*-
"""
The configuration keys of the HTTP port.
"""

from dataclasses import dataclass

from distro.keys import keyField, optionalEndpoint, positive


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
