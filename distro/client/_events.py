# -*- test-case-name: tests.test_client_session -*-
"""
What happens to a client session, as its listeners are told.
"""

from enum import Enum

__all__ = ["SessionEvent"]


class SessionEvent(str, Enum):
    """
    A change of a L{distro.client.DistroClient}'s session.
    """

    #: A node accepted the session for the first time.
    CONNECTED = "connected"
    #: The connection was lost; the client is moving to another node, and
    #: the cluster keeps its registrations while it does.
    SUSPENDED = "suspended"
    #: The session resumed on a new connection, with its identity: nobody
    #: saw its registrations go.
    RESUMED = "resumed"
    #: The session could not be resumed (the cluster had let it expire): a
    #: new one took its place and the registrations were sent again under
    #: a new identity; meanwhile they may have been gone.
    LOST = "lost"
    #: No node answers, and a query or subscription was answered from the
    #: last view the client holds (a subscription's, or the cache
    #: directory's), or the client started without a node, serving its
    #: cache directory. Told once until a node takes the session again.
    OFFLINE = "offline"
