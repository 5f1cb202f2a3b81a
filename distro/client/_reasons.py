# -*- test-case-name: tests.test_client_reasons -*-
"""
Why a connection attempt to a server failed, in a few words a person acts
on: C{"connection refused"}, C{"timed out"}, C{"TLS handshake failed:
certificate verify failed"}...

A TLS client dialing a plain port and a plain client dialing a TLS port
fail in ways that look alike from far (the connection goes without an
answer); the words here tell them apart where the failure shows it, so that
the program can say what to change.
"""

from twisted.internet import error
from twisted.internet.defer import CancelledError

from ._errors import DistroError, NotConnected, RequestTimeout

__all__ = [
    "REFUSED",
    "TIMED_OUT",
    "SILENT_CLOSE",
    "TLS_FAILED",
    "NOT_TLS",
    "SPEAKS_TLS",
    "describe",
]

REFUSED = "connection refused"
TIMED_OUT = "timed out"
#: A plain client at a TLS port: the TLS server drops what it cannot read
#: as TLS without a word (a distro node answers every hello, even to refuse).
SILENT_CLOSE = "closed the connection without answering hello"
TLS_FAILED = "TLS handshake failed"
#: A TLS client at a plain port: its first bytes back are not TLS.
NOT_TLS = f"{TLS_FAILED}: the port does not speak TLS"
#: A plain client whose first bytes back are a TLS record.
SPEAKS_TLS = "the port speaks TLS"

# OpenSSL's words for a first answer that is not a TLS record.
_NOT_TLS_ERRORS = ("wrong version number", "packet length too long", "http request",
                   "unknown protocol", "record layer failure")


def _openSSLReasons(value):
    """
    The reasons of an C{OpenSSL.SSL.Error}, or L{None} if C{value} is not
    one (pyOpenSSL is optional: without it there is no TLS failure).
    """
    try:
        from OpenSSL.SSL import Error
    except ImportError:
        return None
    if not isinstance(value, Error):
        return None
    reasons = []
    for entry in value.args[0] if value.args and isinstance(value.args[0], list) else ():
        if isinstance(entry, tuple) and entry and entry[-1]:
            reasons.append(str(entry[-1]))
    return reasons or [str(value)]


def describe(failure, connection=None):
    """
    Say why a connection attempt failed.

    @param failure: the attempt's L{Failure}: of the endpoint's C{connect},
        or of C{hello} on C{connection}.
    @param connection: the L{distro.client._protocol.ClientConnection} the
        attempt got as far as, if any.
    @return: a short text, without the address.
    """
    value = failure.value
    if isinstance(value, error.ConnectionRefusedError):
        return REFUSED
    if isinstance(value, (error.TimeoutError, CancelledError, RequestTimeout)):
        return TIMED_OUT
    if isinstance(value, error.DNSLookupError):
        return "cannot resolve the host name"
    if isinstance(value, error.NoRouteError):
        return "no route to host"
    if isinstance(value, DistroError):
        return f"refused the session: {value.code}: {value.message}"
    if isinstance(value, NotConnected):
        cause = value.__cause__
        reasons = _openSSLReasons(cause)
        if reasons is not None:
            if any(known in reason for reason in reasons for known in _NOT_TLS_ERRORS):
                return NOT_TLS
            return f"{TLS_FAILED}: {', '.join(reasons)}"
        if connection is not None:
            if connection.refusal is not None:
                return f"refused the connection: {connection.refusal}"
            if connection.answeredTLS:
                return SPEAKS_TLS
            if not connection.received:
                return SILENT_CLOSE
        if cause is not None:
            return f"connection lost: {cause}"
    return str(value)
