# -*- test-case-name: tests.test_overridefile,tests.test_auth -*-
"""
Work that blocks (a password's scrypt, a file's fsync), run off the
reactor's thread.
"""

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads


def runnerFor(clock):
    """
    C{(function, *args) -> Deferred}: in the thread pool of C{clock} when it
    is a reactor with one (the node's), else in place (a test's clock).
    """
    if IReactorThreads.providedBy(clock):
        return lambda function, *args: threads.deferToThreadPool(
            clock, clock.getThreadPool(), function, *args)
    return defer.maybeDeferred
