# -*- test-case-name: tests.test_http_naming -*-
"""
How Nacos' open API reads its parameters (what Nacos' server does, and
its texts): blank means absent, integers as Java's C{parseInt}, booleans
as Java's C{parseBoolean} or commons-lang's C{toBoolean}, services as
Nacos' service name filter makes them.
"""

import re

from distro import model
from distro.http.answers import HttpError, document, param, status
from distro.nacos import naming
from distro.nacos.naming import NacosError

# Nacos 3's Result codes (ErrorCode) for what the v3 client API refuses.
_V3_CODES = {
    400: (20002, "parameter validate error"),
    403: (10001, "access denied"),
    404: (20004, "resource not found"),
}
_V3_MISSING = (10000, "parameter missing")
_V3_SERVER = (30000, "server error")

# Commons-lang's C{BooleanUtils.toBoolean} words (Nacos' writes), and
# their opposites; anything else is refused.
_TRUE = frozenset(["true", "on", "yes", "y", "t", "1"])
_FALSE = frozenset(["false", "off", "no", "n", "f", "0"])


class Missing(HttpError):
    """
    A required parameter absent, with Nacos' text.
    """

    def __init__(self, text):
        super().__init__(400, text)


def required(request, name):
    """
    A parameter that must be given (not blank), as text.

    @raise Missing: with Nacos' text, when it is not.
    """
    value = optional(request, name)
    if value is None:
        raise Missing(f"Param '{name}' is required.")
    return value


def parseBoolean(request, name):
    """
    A boolean as Nacos reads it (Java's C{parseBoolean}): C{true} in any
    case; anything else, or nothing, is false.
    """
    return (param(request, name, required=False) or "").strip().lower() == "true"


def optional(request, name):
    """
    A parameter, C{None} when absent or blank (Nacos' C{optional}).
    """
    value = param(request, name, required=False)
    if value is None or not value.strip():
        return None
    return value


# An integer as Java's parseInt reads one (and fits in one).
INTEGER = re.compile(r"[-+]?[0-9]{1,10}\Z")


def integer(request, name, default, message=None):
    """
    An integer parameter, C{default} when absent or blank.

    @raise HttpError: 400 with C{message} (else one naming it) for
        anything else.
    """
    value = optional(request, name)
    if value is None:
        return default
    value = value.strip()
    if not INTEGER.match(value) or not -2**31 <= int(value) < 2**31:
        raise HttpError(400, message or f"{name}: must be an integer")
    return int(value)


def nacosError(error):
    """
    The L{HttpError} of a L{NacosError} from the Nacos port's parsing.
    """
    return HttpError(400, error.message)


def flag(request, name, default, *spellings):
    """
    The boolean parameter C{name} (or the first of C{spellings} given), as
    Nacos' writes read it (C{BooleanUtils.toBoolean}); C{default} when
    absent or blank.

    @raise HttpError: 400 naming it, for anything but those words.
    """
    for spelling in (name, *spellings):
        value = optional(request, spelling)
        if value is not None:
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise HttpError(400, f"{spelling}: must be true or false")
    return default


def serviceOf(request, namespace):
    """
    The service a v1 request names in C{namespace}: C{serviceName} as
    C{group@@name}, or a name in C{groupName} (blank: C{DEFAULT_GROUP}),
    as Nacos' service name filter makes it, with its texts.
    """
    name = (param(request, "serviceName", required=False) or "").strip()
    if not name:
        raise Missing("Param 'serviceName' is required.")
    if "@@" in name:
        parts = name.split("@@")
        while parts and not parts[-1]:
            parts.pop()  # as Java's split, which Nacos checks it with
        if len(parts) <= 1:
            raise HttpError(400, "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'")
        if not parts[0]:
            raise HttpError(400, "Param 'serviceName' is illegal, groupName can't be empty")
    group = optional(request, "groupName") or model.DEFAULT_GROUP
    try:
        return naming.serviceKey({"namespace": namespace, "groupName": group, "serviceName": name})
    except NacosError as e:
        raise nacosError(e)


def refusedV3(request, error):
    """
    A refusal (an L{HttpError} or a L{distro.errors.RequestError}) as
    Nacos 3's client API writes it: C{{"code", "message", "data"}}, with
    the reason in C{data}.
    """
    code = error.status if isinstance(error, HttpError) else status(error)
    if isinstance(error, Missing):
        reason = _V3_MISSING
    else:
        reason = _V3_CODES.get(code, _V3_SERVER)
    return document(request, code, {"code": reason[0], "message": reason[1], "data": error.message})
