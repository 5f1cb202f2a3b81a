# -*- test-case-name: tests.test_admission -*-
"""
Which client connections a node takes, one count for every port (distro's
own, Nacos gRPC, HTTP): at most C{max_connections_per_ip} from one remote
IP, and at most as many in all as the node's file descriptors allow less a
reserve, kept for its peers, its own files and its other ports: a port full
of connections never leaves the node unable to accept a peer's link or a
client of another port (found from outside: 1,004 unary-only gRPC
connections ran the node out of descriptors, and a fresh msgpack client was
reset).
"""

import resource

# Descriptors never given to client connections: peer links, log and data
# files, listening sockets, the resolver.
RESERVED_DESCRIPTORS = 128


def raiseDescriptorLimit():
    """
    Raise this process's soft limit of open files to its hard limit (a
    server's usual first step); return the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ValueError, OSError):
        return soft


class Admission:
    """
    The client connections a node holds, per remote IP and in all.

    @param maxPerIp: connections from one IP (0: unlimited).
    @param maxTotal: connections in all (C{None}: unlimited).
    """

    def __init__(self, maxPerIp=0, maxTotal=None):
        self.maxPerIp = maxPerIp
        self.maxTotal = maxTotal
        self.count = 0
        self._perIp = {}

    @classmethod
    def forProcess(cls, maxPerIp):
        """
        An admission for this process: its descriptor limit (raised to
        the hard limit) less L{RESERVED_DESCRIPTORS}.
        """
        return cls(maxPerIp, max(1, raiseDescriptorLimit() - RESERVED_DESCRIPTORS))

    def refusal(self, ip):
        """
        Why a new connection from C{ip} would be refused (the limit's key
        and what it holds), or C{None} if it may be taken.
        """
        if self.maxPerIp and self._perIp.get(ip, 0) >= self.maxPerIp:
            return f"max_connections_per_ip: {self.maxPerIp} connections from this IP"
        if self.maxTotal is not None and self.count >= self.maxTotal:
            return f"the node holds {self.count} client connections, all its file descriptors allow"
        return None

    def admit(self, ip):
        """
        Count a new connection from C{ip}; return whether it may be taken
        (a refused one is not counted).
        """
        if self.refusal(ip) is not None:
            return False
        self._perIp[ip] = self._perIp.get(ip, 0) + 1
        self.count += 1
        return True

    def release(self, ip):
        """
        A connection from C{ip} that was admitted ended.
        """
        left = self._perIp.get(ip, 0) - 1
        if left > 0:
            self._perIp[ip] = left
        else:
            self._perIp.pop(ip, None)
        self.count = max(0, self.count - 1)


class PortConnections:
    """
    The open connections of one port, each taken as the node's
    L{Admission} allows and released when it closes.
    """

    def __init__(self, admission):
        self.admission = admission
        self._open = set()

    def accept(self, addr, build):
        """
        A new connection from C{addr}: C{build()}'s protocol, or C{None}
        (the connection is then closed at once) if it is refused.
        """
        ip = getattr(addr, "host", None)
        if not self.admission.admit(ip):
            return None
        connection = build()
        connection.remoteIp = ip
        return connection

    def opened(self, connection):
        self._open.add(connection)

    def closed(self, connection):
        if connection in self._open:
            self._open.discard(connection)
            self.admission.release(connection.remoteIp)

    def __iter__(self):
        return iter(list(self._open))

    def __len__(self):
        return len(self._open)
