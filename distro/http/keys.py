# -*- test-case-name: tests.test_config -*-
"""
The configuration keys of the HTTP port.
"""

from dataclasses import dataclass

from distro.keys import keyField, optionalEndpoint


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
