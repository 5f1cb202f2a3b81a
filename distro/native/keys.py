# -*- test-case-name: tests.test_config -*-
"""
The configuration keys of distro's own port.
"""

from dataclasses import dataclass

from distro.keys import endpoint, keyField, positive


@dataclass
class NativeKeys:
    """
    distro's own client port: where it listens, where it says it is bound,
    how often its clients beat.
    """

    listen: str = keyField("tcp:9850", "Client port, as a Twisted server endpoint string.", endpoint)
    port_file: str = keyField("", "If set, the bound client address is written to this file.")
    heartbeat_ms: int = keyField(3000, "How often clients must send a frame.", positive)
