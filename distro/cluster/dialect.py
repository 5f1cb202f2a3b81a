# -*- test-case-name: tests.test_dialect -*-
"""
What two members speak on a link (PROTOCOL.md 5.1): the peer protocol's
version, the highest both offer, and the capabilities both have.

Each end of a handshake offers a range of versions and a set of
capabilities; an end that offers no range speaks only the one version it
names (a member from before ranges), one that names no capabilities has
none. What a later version or a capability brings (an op, a field, a value
a record may hold) is sent only on links that speak it, and a receiver
refuses it on any other: so a member of an earlier release is never sent
what it would refuse (and, refusing it, leave out of its digests' repairs).
"""

from distro.errors import BadRequest

# The versions of the peer protocol this node speaks.
LOWEST = 3
HIGHEST = 3

# What this node can do beyond what its lowest version says: carry the
# writes of heartbeat clients forwarded between members (5.6; the name is
# distro.cluster.forwarding.FORWARD), and the operators' overrides (5.7;
# distro.cluster.overridesync.OVERRIDES).
CAPABILITIES = frozenset(["forward", "overrides"])

# What a handshake may name: more, or longer, capabilities are refused.
MAX_CAPABILITIES = 64
MAX_CAPABILITY_CHARS = 64


class NoCommonVersion(Exception):
    """
    The two ends' ranges of versions do not meet.
    """


class Dialect:
    """
    What a link speaks, once its handshake is done.

    @ivar version: the peer protocol's version on the link.
    @ivar capabilities: the capabilities both ends have.
    """

    __slots__ = ("version", "capabilities")

    def __init__(self, version, capabilities):
        self.version = version
        self.capabilities = frozenset(capabilities)

    def __repr__(self):
        return f"<Dialect {self.version} {sorted(self.capabilities)}>"


def _version(value, field):
    if type(value) is not int or value < 1:
        raise BadRequest(field, "must be an integer >= 1")
    return value


def parseCapabilities(value):
    """
    The capabilities a handshake frame names (C{caps}; none if absent).

    @raise BadRequest: if C{caps} is not a list of at most
        L{MAX_CAPABILITIES} short strings.
    """
    if value is None:
        return frozenset()
    if type(value) is not list or len(value) > MAX_CAPABILITIES:
        raise BadRequest("caps", f"must be a list of at most {MAX_CAPABILITIES} strings")
    for name in value:
        if type(name) is not str or not 0 < len(name) <= MAX_CAPABILITY_CHARS:
            raise BadRequest("caps", f"must be strings of 1 to {MAX_CAPABILITY_CHARS} characters")
    return frozenset(value)


class Offer:
    """
    What this node offers in a handshake: its range of versions and its
    capabilities. A node offers what it speaks; a test may make it speak
    what a member from before spoke.
    """

    def __init__(self, lowest=LOWEST, highest=HIGHEST, capabilities=CAPABILITIES):
        if not 1 <= lowest <= highest:
            raise ValueError(f"versions {lowest} to {highest}: not a range")
        self.lowest = lowest
        self.highest = highest
        self.capabilities = frozenset(capabilities)

    def challenge(self):
        """
        The acceptor's fields of C{challenge}: its lowest version as
        C{proto}, its highest as C{proto_max} and its capabilities as
        C{caps}, each of the last two left out when it says nothing more
        (a member from before sends exactly what it always sent).
        """
        fields = {"proto": self.lowest}
        if self.highest != self.lowest:
            fields["proto_max"] = self.highest
        if self.capabilities:
            fields["caps"] = sorted(self.capabilities)
        return fields

    def answer(self, challenge):
        """
        The connector's choice, given the acceptor's C{challenge}.

        @return: C{(fields, dialect)}: the fields of C{peer_hello} (the
            chosen version as C{proto}) and what the link will speak.
        @raise NoCommonVersion: if the ranges do not meet.
        @raise BadRequest: if the challenge's versions or capabilities are
            malformed.
        """
        lowest = _version(challenge.get("proto"), "proto")
        highest = challenge.get("proto_max")
        highest = lowest if highest is None else _version(highest, "proto_max")
        if highest < lowest:
            raise BadRequest("proto_max", "must be at least proto")
        theirs = parseCapabilities(challenge.get("caps"))
        version = min(self.highest, highest)
        if version < max(self.lowest, lowest):
            raise NoCommonVersion(
                f"the member speaks {lowest} to {highest}, this node {self.lowest} to {self.highest}"
            )
        fields = {"proto": version}
        if self.capabilities:
            fields["caps"] = sorted(self.capabilities)
        return fields, Dialect(version, self.capabilities & theirs)

    def accept(self, hello):
        """
        What the link speaks, given the connector's C{peer_hello}.

        @raise NoCommonVersion: if the chosen version is not one this node
            speaks.
        @raise BadRequest: if the versions or capabilities are malformed.
        """
        version = _version(hello.get("proto"), "proto")
        if not self.lowest <= version <= self.highest:
            raise NoCommonVersion(
                f"proto: this node speaks {self.lowest} to {self.highest}, not {version}"
            )
        theirs = parseCapabilities(hello.get("caps"))
        return Dialect(version, self.capabilities & theirs)
