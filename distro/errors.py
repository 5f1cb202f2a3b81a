# -*- test-case-name: tests.test_errors -*-
"""
The errors of the domain: what a request can be refused for, whichever
port it came by. Each carries a code (the names below) and a message that
names the field or limit at fault; each port maps the code to its own terms
(distro's protocol sends the code as it is, PROTOCOL.md 2; the Nacos port
an C{errorCode}; the HTTP port a status). Nothing here knows a port.
"""

__all__ = [
    "BAD_REQUEST",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "LIMIT_EXCEEDED",
    "NOT_READY",
    "INTERNAL",
    "NOT_FOUND",
    "UNAVAILABLE",
    "DOMAIN_CODES",
    "RequestError",
    "BadRequest",
    "LimitExceeded",
]

BAD_REQUEST = "BAD_REQUEST"  # a field missing, of the wrong type or out of range
UNAUTHORIZED = "UNAUTHORIZED"  # no credential, or one not valid
FORBIDDEN = "FORBIDDEN"  # a credential that does not grant what is asked
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"  # a configured limit would be exceeded
NOT_READY = "NOT_READY"  # the node is still loading what the cluster holds
INTERNAL = "INTERNAL"  # the node failed; nothing the request did
NOT_FOUND = "NOT_FOUND"  # a change of something that is not held (an instance to update)
UNAVAILABLE = "UNAVAILABLE"  # the member that must apply it cannot be reached now: try again

DOMAIN_CODES = frozenset(
    [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, LIMIT_EXCEEDED, NOT_READY, INTERNAL, NOT_FOUND, UNAVAILABLE]
)


class RequestError(Exception):
    """
    A request refused.

    @ivar code: one of L{DOMAIN_CODES}, or a port's own code (distro's
        protocol adds its framing ones, L{distro.wire.ERROR_CODES}).
    @ivar message: human readable text; for C{BAD_REQUEST} it starts with the
        offending field, for C{LIMIT_EXCEEDED} it names the limit.
    """

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code}: {self.message}"


class BadRequest(RequestError):
    """
    A field is missing, of the wrong type or out of range.
    """

    def __init__(self, field, problem):
        super().__init__(BAD_REQUEST, f"{field}: {problem}")
        self.field = field


class LimitExceeded(RequestError):
    """
    A configured limit would be exceeded.
    """

    def __init__(self, limit, detail):
        super().__init__(LIMIT_EXCEEDED, f"{limit}: {detail}")
        self.limit = limit
