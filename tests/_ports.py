"""
Free ports of 127.0.0.1 for tests that start real nodes on fixed ports.

A port chosen by binding port 0 comes from the kernel's ephemeral range,
the range outgoing connections take their local ports from: released and
handed to a node a moment later, it may by then be the local end of some
connection (another node's to its peer, an SDK's), and the node cannot
listen on it. These ports are chosen below that range, where only a
listener that asks for a port by number can take it.
"""

import random
import socket

LOWEST = 10000
# Linux's default ephemeral range starts here.
DEFAULT_EPHEMERAL_START = 32768


def ephemeralStart():
    """
    The first port of the kernel's ephemeral range.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def _free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def freePorts(count, *, spacing=None):
    """
    C{count} distinct ports of 127.0.0.1 below the ephemeral range that
    nothing is bound to now. With C{spacing}, each port P comes with
    P + C{spacing} free too (a Nacos HTTP port and its gRPC port 1000 above).
    """
    end = ephemeralStart() - (spacing or 0)
    if end - LOWEST < 1000:
        raise AssertionError(f"too few ports below the ephemeral range {end}")
    chosen = []
    for _ in range(1000):
        port = random.randrange(LOWEST, end)
        taken = {p for c in chosen for p in (c, c + (spacing or 0))}
        if port in taken or (spacing and port + spacing in taken):
            continue
        if _free(port) and (not spacing or _free(port + spacing)):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise AssertionError(f"no {count} free ports below {end}")
