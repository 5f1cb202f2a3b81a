# -*- test-case-name: tests.test_config -*-
"""
The configuration keys of the Nacos gRPC port.
"""

from dataclasses import dataclass

from distro.keys import ConfigError, keyField
from distro.nacos.listen import NacosListenError, parseListen


def _nacosListen(key, value):
    try:
        parseListen(value)
    except NacosListenError as e:
        raise ConfigError(key, str(e))


# A gathered write is at most this late (microseconds).
MAX_WRITE_GATHER_US = 100000


def _gather(key, value):
    if not 0 <= value <= MAX_WRITE_GATHER_US:
        raise ConfigError(key, f"must be between 0 and {MAX_WRITE_GATHER_US}")


@dataclass
class NacosKeys:
    """
    The Nacos gRPC port.
    """

    nacos_listen: str = keyField(
        "tcp:9848",
        "Nacos gRPC port (where a Nacos SDK given host:8848 dials): tcp:PORT or "
        "tcp:PORT:interface=HOST; empty disables it.",
        _nacosListen,
    )
    nacos_write_gather_us: int = keyField(
        1000,
        "A Nacos connection written to less than this long ago (microseconds) writes again "
        "once this long has passed, with every reply and push ready by then: a busy SDK "
        "reads its replies together, not one wake-up each. 0: everything is written at once.",
        _gather,
    )
