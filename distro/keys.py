# -*- test-case-name: tests.test_config -*-
"""
How a configuration key is declared and checked: each part of the node (the
core, the cluster, every port) declares its own keys with L{key} in a
dataclass of its own, and L{distro.config.Config} is all of them together.
"""

from dataclasses import field

from twisted.internet.endpoints import serverFromString

from distro import tls, tlslisten

# Parsing an endpoint string does not touch the reactor it is given.
_NO_REACTOR = object()


class ConfigError(Exception):
    """
    The configuration is wrong; the message names the key.
    """

    def __init__(self, key, problem):
        super().__init__(f"configuration key {key!r}: {problem}")
        self.key = key


def keyField(default, doc, check=None):
    """
    A configuration key: a dataclass field with its C{default}, its C{doc}
    (the command line's help) and its C{check(key, value)}, which raises
    L{ConfigError}.
    """
    meta = {"doc": doc, "check": check, "default": default}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def positive(key, value):
    if value <= 0:
        raise ConfigError(key, "must be greater than 0")


def nonNegative(key, value):
    if value < 0:
        raise ConfigError(key, "must not be negative")


def endpoint(key, value):
    """
    A Twisted server endpoint string (TLS ones only when TLS can be had).
    """
    if tlslisten.isTLSEndpoint(value):
        try:
            tls.requireTLS()
        except tls.TLSUnavailable as e:
            raise ConfigError(key, str(e))
    try:
        serverFromString(_NO_REACTOR, value)
    except Exception as e:
        raise ConfigError(key, f"not a Twisted server endpoint string ({e})")


def optionalEndpoint(key, value):
    """
    A Twisted server endpoint string, or empty (the port is off).
    """
    if value:
        endpoint(key, value)
