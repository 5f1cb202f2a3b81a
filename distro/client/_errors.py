# -*- test-case-name: tests.test_client_protocol -*-
"""
The ways a request made by the client library can fail.
"""

from distro.wire import RequestError

__all__ = ["DistroError", "RequestTimeout", "NotConnected"]


class DistroError(RequestError):
    """
    The node answered a request with an C{error} frame (PROTOCOL.md section 2).

    @ivar code: the error code, one of L{distro.wire.ERROR_CODES} (or a code
        from a newer node this library does not know yet).
    @ivar message: the node's explanation; for C{BAD_REQUEST} it names the
        offending field, for C{LIMIT_EXCEEDED} the limit.
    """


class RequestTimeout(Exception):
    """
    No answer came within the request's timeout.

    @ivar op: the request's C{op}.
    @ivar timeout: the timeout, in seconds.
    """

    def __init__(self, op, timeout):
        super().__init__(op, timeout)
        self.op = op
        self.timeout = timeout

    def __str__(self):
        return f"no answer to {self.op!r} within {self.timeout:g} s"


class NotConnected(Exception):
    """
    There is no connection to a node to carry the request: it was lost while
    the request was outstanding, it could not be made, or the client is closed.

    @ivar reasons: when no server could be reached, why, for each:
        C{{"host:port": "connection refused"}} (C{"timed out"}, C{"TLS
        handshake failed: certificate verify failed"}, ...); empty otherwise.
    """

    def __init__(self, *args, reasons=None):
        super().__init__(*args)
        self.reasons = dict(reasons or {})
