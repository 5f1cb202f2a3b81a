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
