# -*- test-case-name: tests.test_tap -*-
"""
Listening on a port at start, the same way for every port of a node: a
Twisted endpoint string, bound before twistd carries on, a failure stopping
the start with an error that names the port's key.
"""

from twisted.internet.endpoints import serverFromString

from distro.address import formatAddress


class CannotListen(Exception):
    """
    A port of the node cannot listen where its key says: the start fails,
    naming the key.
    """

    def __init__(self, key, description, reason):
        super().__init__(f"{key}: cannot listen on {description} ({reason})")
        self.key = key


def named(key, description):
    """
    An errback turning a failure to listen on C{description} into
    L{CannotListen} naming C{key}.
    """

    def fail(failure):
        raise CannotListen(key, description, failure.getErrorMessage())

    return fail


def listenNow(reactor, description, factory, *, key):
    """
    Listen on the endpoint C{description} (the value of the configuration
    key C{key}) with C{factory}; return the listening port and its
    C{host:port}.

    @raise CannotListen: naming C{key}, when it cannot listen (a node that
        cannot listen is useless: twistd's start fails).
    """
    results, failures = [], []
    d = serverFromString(reactor, description).listen(factory)
    d.addErrback(named(key, description))
    d.addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    port = results[0]
    host = port.getHost()
    return port, formatAddress(host.host, host.port)
