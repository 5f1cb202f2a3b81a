# -*- test-case-name: tests.test_nacos_service -*-
"""
The C{nacos_listen} key: where the Nacos gRPC port binds.
"""

from distro.address import formatAddress


class NacosListenError(ValueError):
    """
    A C{nacos_listen} value this node cannot serve.
    """


def parseListen(value):
    """
    The gRPC bind address of a C{nacos_listen} value, C{tcp:PORT} or
    C{tcp:PORT:interface=HOST}; C{None} when it is empty (disabled).

    @raise NacosListenError: for anything else.
    """
    if not value:
        return None
    parts = value.split(":")
    if parts[0] not in ("tcp", "tcp6") or len(parts) < 2 or not parts[1].isdigit():
        raise NacosListenError("must be tcp:PORT or tcp:PORT:interface=HOST, or empty")
    port = int(parts[1])
    if port > 65535:
        raise NacosListenError("the port must be 0..65535")
    host = "::" if parts[0] == "tcp6" else "0.0.0.0"
    rest = ":".join(parts[2:])
    if rest:
        if not rest.startswith("interface="):
            raise NacosListenError("the only option is interface=HOST")
        host = rest[len("interface="):]
    return formatAddress(host, port)


def endpoint(value, backlog=None):
    """
    The Twisted server endpoint string of a C{nacos_listen} value (C{None}
    when it is empty).
    """
    address = parseListen(value)
    if address is None:
        return None
    host, port = address.rsplit(":", 1)
    host = host.strip("[]").replace(":", "\\:")
    kind = "tcp6" if ":" in address.rsplit(":", 1)[0] else "tcp"
    description = f"{kind}:{port}:interface={host}"
    if backlog:
        description += f":backlog={backlog}"
    return description
