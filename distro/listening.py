# -*- test-case-name: tests.test_tap -*-
"""
Listening on a port at start, the same way for every port of a node: a
Twisted endpoint string, bound before twistd carries on, a failure stopping
the start.
"""

from twisted.internet.endpoints import serverFromString

from distro.address import formatAddress


def listenNow(reactor, description, factory):
    """
    Listen on the endpoint C{description} with C{factory}; return the
    listening port and its C{host:port}.

    @raise Exception: what the endpoint raised, when it cannot listen (a
        node that cannot listen is useless: twistd's start fails).
    """
    results, failures = [], []
    serverFromString(reactor, description).listen(factory).addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    port = results[0]
    host = port.getHost()
    return port, formatAddress(host.host, host.port)
