# -*- test-case-name: tests.test_tap -*-
"""
Listening on a port at start, the same way for every port of a node: a
Twisted endpoint string, bound before twistd carries on, a failure stopping
the start with an error that names the port's key.
"""

from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError

from distro.address import formatAddress


class CannotListen(Exception):
    """
    A port of the node cannot listen where its key says: the start fails,
    naming the key.
    """

    def __init__(self, key, description, reason):
        super().__init__(f"{key}: cannot listen on {description} ({reason})")
        self.key = key
        self.description = description
        self.reason = reason


def named(key, value):
    """
    An errback turning a failure to listen where C{value} (the value of the
    configuration key C{key}) says into L{CannotListen} naming the key, its
    cause chained.
    """

    def fail(failure):
        raise CannotListen(key, value, _reason(failure.value)) from failure.value

    return fail


def _reason(error):
    """
    Why a port cannot listen, in a few words: the address and the socket's
    error (Twisted's message says it in a sentence).
    """
    if isinstance(error, CannotListenError) and isinstance(error.socketError, OSError):
        cause = error.socketError.strerror or str(error.socketError)
        return f"{formatAddress(error.interface or '0.0.0.0', error.port)}: {cause}"
    return str(error)


def listenNow(reactor, description, factory, *, key, value=None):
    """
    Listen on the endpoint C{description} with C{factory}; return the
    listening port and its C{host:port}.

    @param key: the configuration key saying where (C{value}, as given,
        if C{description} adds to it).
    @raise CannotListen: naming C{key}, when it cannot listen (a node that
        cannot listen is useless: twistd's start fails).
    """
    results, failures = [], []
    d = serverFromString(reactor, description).listen(factory)
    d.addErrback(named(key, description if value is None else value))
    d.addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    port = results[0]
    host = port.getHost()
    return port, formatAddress(host.host, host.port)
