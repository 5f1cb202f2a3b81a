# -*- test-case-name: tests.test_logformat -*-
"""
What the node's logs hold and how: the events at C{log_level} and above
(what each client does, connecting, resuming, disconnecting, is at debug;
Twisted's C{ClientService} says every retry of a peer link at info, which
the cluster's own line when a link goes down or comes up replaces), and,
with C{log_format = "json"}, each event as one JSON object of plain fields.
"""

import json

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)
from zope.interface import implementer

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}

# Namespaces whose info lines come by the dozen and say nothing the node's
# own lines do not: shown only at debug.
_CHATTY = ("twisted.application._client_service",)


def levelPredicate(level):
    """
    The filter of C{log_level} C{level} (a name of L{LEVELS}).
    """
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    if level == "info":
        for namespace in _CHATTY:
            predicate.setLogLevelForNamespace(namespace, LogLevel.warn)
    return predicate


def filtered(observer, level):
    """
    C{observer}, given only the events of C{log_level} C{level} and above.
    """
    return FilteringLogObserver(observer, [levelPredicate(level)])


def plain(value):
    """
    C{value} as JSON holds it without an object's repr: text, numbers,
    booleans and null as they are, bytes decoded, collections item by
    item, anything else as its text.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return str(value)


@implementer(ILogObserver)
class JsonLines:
    """
    Writes each event to C{out} as one line of JSON: C{time}, C{level},
    C{namespace}, the formatted C{message}, the event's own fields (each
    L{plain}), and a failure's C{traceback}; not Twisted's private fields
    (the logger, the source object, the format flattened).
    """

    def __init__(self, out):
        self.out = out

    def __call__(self, event):
        level = event.get("log_level")
        record = {
            "time": event.get("log_time"),
            "level": level.name if level is not None else None,
            "namespace": event.get("log_namespace"),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if not key.startswith("log_") and key not in record:
                record[key] = plain(value)
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
