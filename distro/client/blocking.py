# -*- test-case-name: tests.test_client_blocking -*-
"""
L{BlockingClient}: the client for programs that do not run a Twisted reactor.

It has the methods of L{distro.client.DistroClient}, returning values instead
of L{Deferred}s and raising the same exceptions. Behind it, the global reactor
runs in one daemon thread, started on first use and shared by every
L{BlockingClient} of the process; each call is handed to that thread with
L{blockingCallFromThread}.

Listeners given to L{BlockingClient.subscribe} are called in the reactor
thread: they must not block, must not call the L{BlockingClient} (that would
wait for the thread that is running them), and must hand work to other threads
themselves (a L{queue.Queue} is the usual way).

Clients still open when the interpreter exits are closed (C{bye} is sent).
"""

import atexit
import threading
import weakref
from functools import partial

from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadable import isInIOThread

from ._model import DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_NAMESPACE
from ._protocol import DEFAULT_TIMEOUT
from ._session import DEFAULT_AGENT, connect

__all__ = ["BlockingClient"]

_lock = threading.Lock()
_reactorThread = None
_openClients = weakref.WeakSet()


def _runningReactor():
    """
    The global reactor, running (or about to run) in a daemon thread.
    """
    global _reactorThread
    from twisted.internet import reactor

    with _lock:
        if _reactorThread is None and not reactor.running:
            _reactorThread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="distro-reactor",
                daemon=True,
            )
            _reactorThread.start()
    return reactor


@atexit.register
def _closeOpenClients():
    for client in list(_openClients):
        # A reactor that no longer runs would never answer: skip it.
        if getattr(client._reactor, "running", False):
            try:
                client.close()
            except Exception:
                pass


class BlockingClient:
    """
    A session with a distro cluster, for threads that are not the reactor's.

    See L{distro.client.DistroClient} for what each method does. Each call
    waits for its result (at most the client's timeout, then
    L{distro.client.RequestTimeout} is raised).
    """

    def __init__(
        self,
        servers,
        *,
        namespace=DEFAULT_NAMESPACE,
        group=DEFAULT_GROUP,
        agent=DEFAULT_AGENT,
        token=None,
        timeout=DEFAULT_TIMEOUT,
        cache_dir=None,
        tls=None,
    ):
        """
        Connect; the arguments are those of L{distro.client.connect}
        (C{tls}, a L{distro.client.TLSOptions}, dials over TLS).

        With C{cache_dir}, views are kept in that directory and served while
        no node answers, and an unreachable cluster does not raise: the
        constructor returns after C{timeout} seconds with a client that
        answers C{query} and C{subscribe} from the cached views while it
        goes on trying the servers.

        @raise distro.client.NotConnected: if no node could be reached (and
            there is no C{cache_dir}).
        @raise distro.client.DistroError: if a node refused the session.
        @raise ValueError: if C{servers} holds a malformed address or none,
            or a file C{tls} names cannot be used (naming the option).
        @raise OSError: if C{cache_dir} cannot be created.
        @raise ImportError: if C{tls} is given but pyOpenSSL is not
            installed.
        """
        reactor = _runningReactor()
        client = self._callIn(
            reactor,
            connect,
            servers,
            namespace=namespace,
            group=group,
            agent=agent,
            token=token,
            reactor=reactor,
            timeout=timeout,
            cache_dir=cache_dir,
            tls=tls,
        )
        self._setUp(client, reactor)

    @classmethod
    def from_client(cls, client, reactor):
        """
        Wrap a connected L{distro.client.DistroClient} whose C{reactor} runs
        in another thread.
        """
        self = cls.__new__(cls)
        self._setUp(client, reactor)
        return self

    def _setUp(self, client, reactor):
        self._client = client
        self._reactor = reactor
        _openClients.add(self)

    @staticmethod
    def _callIn(reactor, f, /, *args, **kwargs):
        if isInIOThread():
            raise RuntimeError("a BlockingClient cannot be called from the reactor thread")
        return blockingCallFromThread(reactor, partial(f, *args, **kwargs))

    def _call(self, f, /, *args, **kwargs):
        return self._callIn(self._reactor, f, *args, **kwargs)

    @property
    def client(self):
        """
        The L{distro.client.DistroClient} underneath, to be used only in the
        reactor thread.
        """
        return self._client

    @property
    def client_id(self):
        """
        The session's id, assigned by the node.
        """
        return self._client.client_id

    def register(self, service, ip, port, *, cluster=DEFAULT_CLUSTER, weight=1.0,
                 healthy=True, enabled=True, metadata=None):
        """
        Register an instance; see L{distro.client.DistroClient.register}.
        """
        self._call(self._client.register, service, ip, port, cluster=cluster, weight=weight,
                   healthy=healthy, enabled=enabled, metadata=metadata)

    def deregister(self, service, ip, port, *, cluster=DEFAULT_CLUSTER):
        """
        Remove an instance; return whether it was registered.
        """
        return self._call(self._client.deregister, service, ip, port, cluster=cluster)

    def batch_register(self, service, instances):
        """
        Make this session's instances of C{service} exactly C{instances}.
        """
        self._call(self._client.batch_register, service, instances)

    def registrations(self):
        """
        What this session has registered: C{{Service: [Instance]}}.
        """
        return self._call(self._client.registrations)

    def query(self, service, *, clusters=None, healthy_only=False):
        """
        The current view of a service, a L{distro.client.ServiceInfo}.
        """
        return self._call(self._client.query, service, clusters=clusters,
                          healthy_only=healthy_only)

    def subscribe(self, service, listener, *, clusters=None):
        """
        Subscribe C{listener} (called in the reactor thread) to a service;
        return the current view.
        """
        return self._call(self._client.subscribe, service, listener, clusters=clusters)

    def unsubscribe(self, service, listener=None, *, clusters=None):
        """
        Remove C{listener}, or every listener, from a subscription.
        """
        self._call(self._client.unsubscribe, service, listener=listener, clusters=clusters)

    def last_service_info(self, service, *, clusters=None):
        """
        The last view received for a subscription (or, with a cache
        directory, stored there), or L{None}.
        """
        return self._call(self._client.last_service_info, service, clusters=clusters)

    def services(self, *, namespace=None, group=None, page=1, size=100):
        """
        List services: a L{distro.client.ServicePage}.
        """
        return self._call(self._client.services, namespace=namespace, group=group,
                          page=page, size=size)

    def members(self):
        """
        The cluster's members: a tuple of L{distro.client.Member}s.
        """
        return self._call(self._client.members)

    def rebalance(self, *, rate=None):
        """
        Ask the node to move the sessions it holds over its share to the
        other members (an operator's action): C{{"node", "sessions",
        "share", "moving"}}.
        """
        return self._call(self._client.rebalance, rate=rate)

    def ping(self):
        """
        Check that a node answers.
        """
        self._call(self._client.ping)

    def set_override(self, service, ip, port, **options):
        """
        Set an operator's override of any instance
        (L{distro.client.DistroClient.set_override}); return the
        L{distro.client.Override} written.
        """
        return self._call(self._client.set_override, service, ip, port, **options)

    def clear_override(self, service, ip, port, **options):
        """
        Clear the override of an instance; return whether one was in force.
        """
        return self._call(self._client.clear_override, service, ip, port, **options)

    def overrides(self, *, namespace=None):
        """
        The overrides in force: a list of L{distro.client.Override}.
        """
        return self._call(self._client.overrides, namespace=namespace)

    def close(self):
        """
        End the session, sending C{bye}.
        """
        _openClients.discard(self)
        self._call(self._client.close)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
