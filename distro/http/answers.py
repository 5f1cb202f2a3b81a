# -*- test-case-name: tests.test_http -*-
"""
How the HTTP port reads a request's parameters and credential, and writes
its answers: JSON documents, refusals that name what was wrong (text on
Nacos' v1 paths, as Nacos writes them), and answers given later.
"""

import json
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server

from distro.errors import (
    FORBIDDEN,
    LIMIT_EXCEEDED,
    NOT_FOUND,
    NOT_READY,
    UNAUTHORIZED,
    UNAVAILABLE,
    RequestError,
)

log = Logger()


class HttpError(Exception):
    """
    A request refused with C{status} and C{message} (naming the parameter).
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def param(request, name, required=True):
    """
    The first value of parameter C{name} (query string or form body), as
    text; C{None} when absent and not C{required}.

    @raise HttpError: 400 naming it, when required and absent, or not UTF-8.
    """
    values = request.args.get(name.encode("ascii"))
    if not values:
        if required:
            raise HttpError(400, f"{name}: is required")
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, f"{name}: is not UTF-8")


def credential(request):
    """
    The token a request carries: the C{accessToken} parameter or header,
    or an C{Authorization: Bearer} header.
    """
    token = param(request, "accessToken", required=False)
    if token:
        return token
    header = request.getHeader("accessToken")
    if header:
        return header
    authorization = request.getHeader("Authorization") or ""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def document(request, status, body):
    """
    Answer C{body} as JSON with C{status}.
    """
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def text(request, status, body, contentType=b"text/plain; charset=utf-8"):
    """
    Answer C{body} (text) with C{status}.
    """
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", contentType)
    return body.encode("utf-8") if isinstance(body, str) else body


def refusal(request, status, message):
    """
    A refusal: text for Nacos' v1 paths (as Nacos writes them), else
    JSON C{{"code", "message", "data"}}.
    """
    if request.path.startswith(b"/nacos/v1/"):
        return text(request, status, message)
    return document(request, status, {"code": status, "message": message, "data": None})


def status(error):
    """
    The HTTP status of a L{RequestError}: 403 for credentials (as Nacos
    answers), 404 for what is not held, 503 for a limit, a node still
    loading or a member that cannot be reached (a Nacos client tries
    another node), else 400.
    """
    if error.code in (UNAUTHORIZED, FORBIDDEN):
        return 403
    if error.code == NOT_FOUND:
        return 404
    if error.code in (LIMIT_EXCEEDED, NOT_READY, UNAVAILABLE):
        return 503
    return 400


def refused(request, error):
    """
    The answer to a request refused with C{error} (an L{HttpError} or a
    L{RequestError}).
    """
    if isinstance(error, HttpError):
        return refusal(request, error.status, error.message)
    return refusal(request, status(error), error.message)


def later(request, d, answer, refuse=refused):
    """
    Answer C{request} when C{d} fires: C{answer(request, result)} writes
    the body (or answers later still: L{server.NOT_DONE_YET}); a refusal
    becomes its error (written by C{refuse(request, error)}), anything
    else a 500 (logged).
    """
    gone = []
    request.notifyFinish().addErrback(gone.append)  # the client left

    def done(result):
        if gone:
            return
        if isinstance(result, Failure):
            error = result.value
            if isinstance(error, (RequestError, HttpError)):
                body = refuse(request, error)
            else:
                log.failure("HTTP {path} failed", result, path=request.path[:100])
                body = refusal(request, 500, "internal error")
        else:
            body = answer(request, result)
            if body is server.NOT_DONE_YET:
                return
        request.write(body)
        request.finish()

    d.addBoth(done)
    return server.NOT_DONE_YET


def pathSegment(raw, name):
    """
    One segment of a request's path, percent-decoded, as text.

    @raise HttpError: 400 naming C{name}, when it is not UTF-8.
    """
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, f"{name}: is not UTF-8")
