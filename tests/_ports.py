"""
Free ports of 127.0.0.1 for tests that start real nodes on fixed ports.
"""

import socket


def freePorts(count):
    """
    C{count} distinct ports of 127.0.0.1 that nothing listens on: bound at
    once (so they differ), then released.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
