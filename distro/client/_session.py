# -*- test-case-name: tests.test_client_session -*-
"""
L{DistroClient}: a client session that outlives its connections (PROTOCOL.md
section 6).

The client holds a list of servers and one connection at a time. When the
connection is lost, or a request on it goes unanswered, it connects to the
next server in the list, asks to resume its session, and then re-sends what it
has registered and subscribed ("redo"): the cluster ends up with the same
registrations whether or not the resume succeeded. Requests made meanwhile wait
for the new connection, up to their timeout; queries may be answered from the
last view of a subscription.

With a cache directory (L{distro.client._cache.ViewCache}), the last views
also survive a restart: every new view of a subscription or of a query is
written there, and a client starting while no node answers serves them.
"""

from dataclasses import replace

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from distro.model import normalHost
from distro.tls import TLSDialer, hostEndpoint
from distro.wire import NOT_READY

from ._cache import ViewCache
from ._errors import DistroError, NotConnected, RequestTimeout
from ._events import SessionEvent
from ._failover import Failover
from ._model import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    RESET,
    Instance,
    Override,
    Member,
    Service,
    ServiceInfo,
    ServicePage,
    _clusterFilter,
)
from ._protocol import DEFAULT_TIMEOUT

__all__ = ["DEFAULT_AGENT", "DistroClient", "connect"]

DEFAULT_AGENT = "distro-python/0.1.0"

# How long to wait before asking a node that answered NOT_READY again.
NOT_READY_PAUSE = 0.5


class _Subscription:
    """
    The listeners of one subscription and the last view the node sent for it.
    """

    def __init__(self):
        self.listeners = []
        self.last = None


class DistroClient:
    """
    A session with a distro cluster, built by L{connect}.

    Every method returning a L{Deferred} fails with L{DistroError} when the
    node refuses the request, with L{RequestTimeout} when no node answers in
    time, and with L{NotConnected} once the client is closed.

    A C{service} argument is a service name, taken in the client's default
    namespace and group, or a L{Service}.

    Writes (register, deregister, batch_register, subscribe, unsubscribe) take
    effect in the client at once and are re-sent after every reconnection.
    A write the node refuses is undone in the client; a write that timed out
    is kept, and applies when a node answers again (undo it with the opposite
    call).

    While no node answers, C{query} and C{subscribe} are answered from the
    last view the client holds, if any: that of a subscription, or, with a
    cache directory, the last one stored there, by this process or an
    earlier one.

    @ivar namespace: the default namespace.
    @ivar group: the default group.
    @ivar timeout: the request timeout, in seconds.
    """

    log = Logger()

    def __init__(
        self,
        servers,
        *,
        clock,
        endpoint_factory,
        namespace=DEFAULT_NAMESPACE,
        group=DEFAULT_GROUP,
        agent=DEFAULT_AGENT,
        token=None,
        timeout=DEFAULT_TIMEOUT,
        retry_policy=None,
        start_at=None,
        cache_dir=None,
    ):
        """
        Build a client that has not connected yet: L{start} connects. Most
        programs call L{connect} instead, which builds one with the
        reactor's TCP (or TLS) endpoints and starts it; tests use
        L{distro.client.testing.InMemoryCluster.client}.

        @param servers: C{"host:port"} addresses (IPv6 as C{"[::1]:9850"}): a
            list, or one string with commas.
        @param clock: an L{IReactorTime} provider.
        @param endpoint_factory: C{(host, port) -> IStreamClientEndpoint}.
        @param namespace: the default namespace of the client's services.
        @param group: the default group of the client's services.
        @param agent: C{"name/version"} of the program, sent in C{hello}.
        @param token: an authentication token, if the cluster wants one.
        @param timeout: seconds to wait for a connection, and for each
            request.
        @param retry_policy: C{failures -> seconds}, the delay before the next
            connection attempt after failed ones; a bounded, jittered
            backoff by default.
        @param start_at: the index in C{servers} to connect to first; a
            random one when L{None}.
        @param cache_dir: a directory (created if missing) where the views of
            subscriptions and queries are kept across restarts; they are
            read here, at once. With one, L{start} does not give up when no
            node answers.
        @raise ValueError: if C{servers} holds a malformed address, or none.
        @raise OSError: if C{cache_dir} cannot be created.
        """
        self._clock = clock
        self._cache = None
        if cache_dir is not None:
            self._cache = ViewCache(cache_dir)
            self._cache.load()
        self.namespace = namespace
        self.group = group
        self.timeout = timeout
        self._failover = Failover(
            servers,
            clock,
            endpoint_factory,
            agent,
            onConnected=self._redo,
            onPush=self._pushReceived,
            token=token,
            timeout=timeout,
            retryPolicy=retry_policy,
            start=start_at,
        )
        self._registrations = {}
        self._unsynced = set()
        self._subscriptions = {}
        # Whether listeners heard "offline" since a node last took the session.
        self._offline = False
        self._failover.addListener(self._sessionChanged)

    @property
    def servers(self):
        """
        The server list, as C{"host:port"} strings; it grows with the members
        the nodes announce.
        """
        return self._failover.servers

    @property
    def client_id(self):
        """
        The session's id, assigned by the node.
        """
        return self._failover.clientId

    @property
    def node(self):
        """
        The id of the node this session is (or was last) connected to.
        """
        return self._failover.node

    @property
    def connected(self):
        """
        Whether a node has accepted this session on a live connection.
        """
        return self._failover.current() is not None

    def add_session_listener(self, listener):
        """
        Call C{listener(event)} at each change of the session, with one of
        these strings: C{"connected"} once a node first accepted it,
        C{"suspended"} when a connection is lost, then C{"resumed"} (the new
        node took it over with its identity) or C{"lost"} (the cluster had
        let it go: the registrations are sent again under a new identity);
        C{"offline"} when, no node answering, the client first serves a view
        it holds (a subscription's last, or its cache directory's) until a
        node takes the session again.
        """
        self._failover.addListener(listener)

    def _sessionChanged(self, event):
        if event in (SessionEvent.CONNECTED, SessionEvent.RESUMED, SessionEvent.LOST):
            self._offline = False

    def _servedOffline(self, view):
        """
        C{view}, if any, held by the client, answers while no node does:
        say so, once.
        """
        if view is not None and not self._offline:
            self._offline = True
            self._failover.tell(SessionEvent.OFFLINE)
        return view

    def start(self):
        """
        Start connecting.

        @return: a L{Deferred} firing with this client once a node accepted
            it, or failing (and closing the client) when no node did within
            the timeout, or as soon as every server was tried and none could
            be reached (L{NotConnected}, whose C{reasons} say why for each),
            or a node refused it (L{DistroError}, for example
            C{UNAUTHORIZED}).

            With a cache directory, no node answering is
            not a failure: the L{Deferred} then fires with this client, which
            goes on trying the servers and meanwhile answers C{query} and
            C{subscribe} from the cached views (other requests wait for a
            node, up to their timeout).
        """
        d = self._failover.start(keepTrying=self._cache is not None)
        if self._cache is not None:
            d.addErrback(self._startOffline)
        return d.addCallback(lambda _: self)

    def _startOffline(self, failure):
        failure.trap(NotConnected)
        if self._failover.closed:
            return failure
        self.log.warn(
            "{error}; serving the {count} cached views until a node answers",
            error=failure.value,
            count=len(self._cache.views()),
        )
        self._servedOffline(self._cache)
        return None

    def close(self):
        """
        End the session: stop reconnecting, fail waiting requests, and send
        C{bye}, so that the node removes this session's instances at once.

        @return: a L{Deferred} firing with L{None} once the node acknowledged
            C{bye} (or did not within the timeout).
        """
        return self._failover.close()

    def _pushReceived(self, message):
        """
        A push arrived: hand its view to the subscription's listeners.
        """
        try:
            info = ServiceInfo.from_wire(message["service_info"])
        except (KeyError, TypeError, ValueError) as e:
            self.log.warn("ignoring a malformed push: {error}", error=e)
            return
        key = (info.service, _clusterFilter(info.clusters))
        subscription = self._subscriptions.get(key)
        if subscription is None:
            return
        subscription.last = info
        self._keep(key, info)
        self._notify(subscription, info)

    # Redo

    def _redo(self, connection):
        for service in list(self._registrations):
            self._resendRegistrations(connection, service)
        for key in list(self._subscriptions):
            self._resubscribe(connection, key)

    def _resendRegistrations(self, connection, service):
        instances = list(self._registrations[service].values())
        d = connection.request(
            "batch_register",
            service=service.as_wire(),
            instances=[instance.as_wire() for instance in instances],
        )

        def synced(reply):
            self._unsynced.discard(service)

        def failed(failure):
            if failure.check(DistroError):
                self.log.error(
                    "node refused the registrations of {service}: {error}",
                    service=service,
                    error=failure.value,
                )
                self._unsynced.add(service)

        d.addCallbacks(synced, failed)

    def _resubscribe(self, connection, key):
        service, clusters = key
        d = connection.request("subscribe", **self._viewFields(service, clusters))

        def subscribed(reply):
            if key in self._subscriptions:
                self._viewArrived(key, ServiceInfo.from_wire(reply["service_info"]))

        def failed(failure):
            if not failure.check(DistroError):
                return  # the connection is gone: the next redo covers it
            if failure.value.code == NOT_READY:
                self._clock.callLater(NOT_READY_PAUSE, retry)
            else:
                self.log.error(
                    "node refused the subscription to {service}: {error}",
                    service=service,
                    error=failure.value,
                )

        def retry():
            if key in self._subscriptions and self._failover.current() is connection:
                self._resubscribe(connection, key)

        d.addCallbacks(subscribed, failed)

    def _viewArrived(self, key, info, listener=None):
        """
        A view came in a reply: keep it, and tell the listeners (other than
        C{listener}, who asked for it) if the view changed.
        """
        self._keep(key, info)
        subscription = self._subscriptions.get(key)
        if subscription is None:
            return info
        previous, subscription.last = subscription.last, info
        if previous is not None and previous.checksum != info.checksum:
            self._notify(subscription, info, skip=listener)
        return info

    def _keep(self, key, info):
        """
        Put a new view of C{key} in the cache directory, if there is one (it
        writes only views whose checksum changed).
        """
        if self._cache is not None:
            self._cache.store(key[0], key[1], info)
        return info

    def _notify(self, subscription, info, skip=None):
        for listener in list(subscription.listeners):
            if listener is skip:
                continue
            try:
                listener(info)
            except Exception:
                self.log.failure("listener {listener!r} failed", listener=listener)

    # Requests

    def _call(self, op, fields, parse=None, orElse=None):
        """
        Send a request on the current connection, waiting for one if needed,
        and sending it again on the next if the connection is lost.

        @param parse: turns the reply into the result.
        @param orElse: returns a result (not a reply) to use while no node can
            answer, or L{None} to wait for one.
        @return: a L{Deferred} that fails with L{RequestTimeout} after
            C{self.timeout} seconds.
        """
        deadline = self._clock.seconds() + self.timeout
        d = Deferred.fromCoroutine(self._send(op, fields, deadline, parse, orElse))

        def timedOut(result, timeout):
            if isinstance(result, Failure) and result.check(CancelledError):
                raise RequestTimeout(op, timeout)
            return result

        d.addTimeout(self.timeout, self._clock, timedOut)
        return d

    async def _send(self, op, fields, deadline, parse, orElse):
        while True:
            if self._failover.current() is None and orElse is not None:
                fallback = self._servedOffline(orElse())
                if fallback is not None:
                    return fallback
            connection = await self._failover.whenConnected()
            try:
                reply = await connection.request(op, **fields)
                return reply if parse is None else parse(reply)
            except NotConnected:
                if self._failover.closed:
                    raise
            except DistroError as e:
                if e.code != NOT_READY:
                    raise
                fallback = self._servedOffline(orElse()) if orElse is not None else None
                if fallback is not None:
                    return fallback
                if self._clock.seconds() + NOT_READY_PAUSE >= deadline:
                    raise
                await deferLater(self._clock, NOT_READY_PAUSE)

    def _service(self, service):
        if isinstance(service, Service):
            return service
        return Service(service, group=self.group, namespace=self.namespace)

    def _viewFields(self, service, clusters):
        fields = {"service": service.as_wire()}
        if clusters is not None:
            fields["clusters"] = list(clusters)
        return fields

    def _restore(self, failure, service, identity, mine, previous):
        """
        The node refused a write of one instance: put back what was there.
        """
        if failure.check(DistroError):
            instances = self._registrations.get(service)
            if instances is None and previous is not None:
                instances = self._registrations[service] = {}
            if instances is not None and instances.get(identity) is mine:
                if previous is None:
                    instances.pop(identity, None)
                else:
                    instances[identity] = previous
            self._resync(service)
        return failure

    def _resync(self, service):
        # A redo the node refused may now be acceptable without the undone write.
        connection = self._failover.current()
        if service in self._unsynced and connection is not None:
            self._resendRegistrations(connection, service)

    def register(
        self,
        service,
        ip,
        port,
        *,
        cluster=DEFAULT_CLUSTER,
        weight=1.0,
        healthy=True,
        enabled=True,
        metadata=None,
    ):
        """
        Register an instance, or replace this session's instance with the same
        C{(ip, port, cluster)}.

        @raise ValueError: at once, if the instance is malformed.
        @return: a L{Deferred} firing with L{None}.
        """
        service = self._service(service)
        instance = Instance(
            ip,
            port,
            cluster=cluster,
            weight=weight,
            healthy=healthy,
            enabled=enabled,
            metadata=metadata or {},
        )
        instances = self._registrations.setdefault(service, {})
        previous = instances.get(instance.identity)
        instances[instance.identity] = instance
        d = self._call("register", {"service": service.as_wire(), "instance": instance.as_wire()})
        d.addCallbacks(
            lambda reply: None,
            self._restore,
            errbackArgs=(service, instance.identity, instance, previous),
        )
        return d

    def deregister(self, service, ip, port, *, cluster=DEFAULT_CLUSTER):
        """
        Remove an instance of this session.

        @return: a L{Deferred} firing with whether the instance was registered
            (by this session, or on the node) before.
        """
        service = self._service(service)
        address = normalHost(ip)
        if address is None:
            raise ValueError(f"ip must be an IP address or a DNS host name: {ip!r}")
        identity = (address, port, cluster)
        previous = self._registrations.get(service, {}).pop(identity, None)
        instance = {"ip": address, "port": port, "cluster": cluster}
        d = self._call("deregister", {"service": service.as_wire(), "instance": instance})

        def removed(reply):
            return bool(reply.get("removed")) or previous is not None

        d.addCallbacks(removed, self._restore, errbackArgs=(service, identity, None, previous))
        return d

    def batch_register(self, service, instances):
        """
        Make this session's instances of C{service} exactly C{instances} (a
        list of L{Instance} or of dicts with their fields; empty removes all).

        @raise ValueError: at once, if an instance is malformed.
        @return: a L{Deferred} firing with L{None}.
        """
        service = self._service(service)
        mine = {}
        for instance in map(Instance.coerce, instances):
            mine[instance.identity] = instance
        previous = self._registrations.get(service)
        self._registrations[service] = mine
        wire = [instance.as_wire() for instance in mine.values()]

        def refused(failure):
            if failure.check(DistroError) and self._registrations.get(service) is mine:
                if previous is None:
                    del self._registrations[service]
                else:
                    self._registrations[service] = previous
                self._resync(service)
            return failure

        d = self._call("batch_register", {"service": service.as_wire(), "instances": wire})
        d.addCallbacks(lambda reply: None, refused)
        return d

    def registrations(self):
        """
        What this session has registered: C{{Service: [Instance]}}.
        """
        return {
            service: list(instances.values())
            for service, instances in self._registrations.items()
            if instances
            if instances
        }

    def _lastView(self, key):
        """
        The last view of C{key}: its subscription's, else the cached one.
        """
        subscription = self._subscriptions.get(key)
        if subscription is not None and subscription.last is not None:
            return subscription.last
        if self._cache is not None:
            return self._cache.get(*key)
        return None

    def _cachedView(self, service, clusters, healthyOnly):
        view = self._lastView((service, clusters))
        if view is None and clusters is not None:
            view = self._lastView((service, None))
        if view is None:
            return None
        if clusters is not None and view.clusters is None:
            hosts = tuple(host for host in view.hosts if host.cluster in clusters)
            view = replace(view, hosts=hosts, clusters=clusters)
        return view.healthy_only() if healthyOnly else view

    def query(self, service, *, clusters=None, healthy_only=False):
        """
        Ask for the current view of a service.

        While no node answers (disconnected, or C{NOT_READY}), the last view
        of a subscription covering the service is the answer, if there is
        one; with a cache directory, so is the last view of this query (or
        of the service without a cluster filter) stored there. The answers
        of a query without C{healthy_only} are stored in it.

        @param clusters: a list of cluster names to keep, or L{None} for all.
        @param healthy_only: leave out unhealthy hosts.
        @return: a L{Deferred} firing with a L{ServiceInfo}.
        """
        service = self._service(service)
        clusters = _clusterFilter(clusters)
        fields = self._viewFields(service, clusters)
        if healthy_only:
            fields["healthy_only"] = True

        def parse(reply):
            info = ServiceInfo.from_wire(reply["service_info"])
            if not healthy_only:
                # A healthy-only view is not the whole view: it is not kept.
                self._keep((service, clusters), info)
            return info

        return self._call(
            "query",
            fields,
            parse=parse,
            orElse=lambda: self._cachedView(service, clusters, healthy_only),
        )

    def subscribe(self, service, listener, *, clusters=None):
        """
        Subscribe to a service: C{listener} is called with every view the node
        pushes, as a L{ServiceInfo}, and with a changed view found after a
        reconnection.

        While no node answers, the subscription's last view is the answer,
        if there is one; a new subscription starts with the view of the cache
        directory, if any. The node is told once it answers, and a view that
        differs from that answer then reaches C{listener}.

        @return: a L{Deferred} firing with the current view.
        """
        service = self._service(service)
        clusters = _clusterFilter(clusters)
        key = (service, clusters)
        subscription = self._subscriptions.get(key)
        if subscription is None:
            subscription = self._subscriptions[key] = _Subscription()
            if self._cache is not None:
                subscription.last = self._cache.get(service, clusters)
        if listener not in subscription.listeners:
            subscription.listeners.append(listener)

        def refused(failure):
            if failure.check(DistroError) and listener in subscription.listeners:
                subscription.listeners.remove(listener)
                if not subscription.listeners and self._subscriptions.get(key) is subscription:
                    del self._subscriptions[key]
            return failure

        d = self._call(
            "subscribe",
            self._viewFields(service, clusters),
            parse=lambda reply: ServiceInfo.from_wire(reply["service_info"]),
            orElse=lambda: subscription.last,
        )
        d.addCallbacks(lambda info: self._viewArrived(key, info, listener), refused)
        return d

    def unsubscribe(self, service, listener=None, *, clusters=None):
        """
        Remove C{listener} (or every listener) from a subscription; the node is
        told once no listener is left.

        @return: a L{Deferred} firing with L{None}.
        """
        service = self._service(service)
        clusters = _clusterFilter(clusters)
        key = (service, clusters)
        subscription = self._subscriptions.get(key)
        if subscription is None:
            return succeed(None)
        if listener is not None:
            if listener in subscription.listeners:
                subscription.listeners.remove(listener)
            if subscription.listeners:
                return succeed(None)
        del self._subscriptions[key]
        if self._failover.current() is None:
            # The next connection is not told of this subscription at all.
            return succeed(None)
        d = self._call("unsubscribe", self._viewFields(service, clusters))
        return d.addCallback(lambda reply: None)

    def last_service_info(self, service, *, clusters=None):
        """
        The last view received for a subscription, or L{None}.

        With a cache directory, the last view stored there stands in for it
        (that of an earlier subscription or query, possibly by an earlier
        process).
        """
        return self._lastView((self._service(service), _clusterFilter(clusters)))

    def services(self, *, namespace=None, group=None, page=1, size=100):
        """
        List services.

        @param namespace: the client's namespace when L{None}.
        @param group: left to the node when L{None}.
        @return: a L{Deferred} firing with a L{ServicePage}.
        """
        fields = {"namespace": namespace or self.namespace, "page": page, "size": size}
        if group is not None:
            fields["group"] = group
        return self._call(
            "services",
            fields,
            parse=lambda reply: ServicePage.from_wire(reply, namespace=fields["namespace"]),
        )

    def members(self):
        """
        The cluster's members.

        @return: a L{Deferred} firing with a tuple of L{Member}s.
        """
        return self._call(
            "members", {},
            parse=lambda reply: tuple(Member.from_wire(m) for m in reply["members"]),
        )

    def rebalance(self, *, rate=None):
        """
        Ask the node this client is connected to to move the client sessions
        it holds over its share of the cluster's to the members below
        theirs, C{rate} a second (the node's default when L{None}). An
        operator's action: it needs a token with an admin grant, or, on a
        node without credentials, a client on loopback.

        @return: a L{Deferred} firing with C{{"node", "sessions", "share",
            "moving"}}.
        """
        fields = {} if rate is None else {"rate": rate}
        return self._call(
            "rebalance", fields,
            parse=lambda reply: {key: reply[key] for key in ("node", "sessions", "share", "moving")},
        )

    def ping(self):
        """
        Check that a node answers.

        @return: a L{Deferred} firing with L{None}.
        """
        return self._call("ping", {}, parse=lambda reply: None)

    # Operators' overrides (PROTOCOL.md 5.7): of any instance, cluster-wide.

    def _overridden(self, service, ip, port, cluster):
        service = self._service(service)
        address = normalHost(ip)
        if address is None:
            raise ValueError(f"ip must be an IP address or a DNS host name: {ip!r}")
        return {"service": service.as_wire(), "instance": {"ip": address, "port": port, "cluster": cluster}}

    def set_override(self, service, ip, port, *, cluster=DEFAULT_CLUSTER, enabled=None, weight=None,
                     metadata=None, removed=None, why=None):
        """
        Set an operator's override of any instance, on every node and
        through restarts: views show it C{enabled} or not, with C{weight},
        with C{metadata} patched (a value of L{None} hides that key), or
        nowhere (C{removed}), whatever its client publishes. A field left
        L{None} stays as the override had it; L{RESET} removes it. Needs an
        operator (an admin token; without tokens, a client on loopback or in
        the node's C{admin_from}).

        @return: a L{Deferred} firing with the L{Override} written.
        """
        fields = self._overridden(service, ip, port, cluster)
        for name, value in (("enabled", enabled), ("weight", weight), ("metadata", metadata),
                            ("removed", removed)):
            if value is RESET:
                fields[name] = None
            elif value is not None:
                fields[name] = value
        if why is not None:
            fields["why"] = why
        return self._call("override", fields, parse=lambda reply: Override.from_wire(reply["override"]))

    def clear_override(self, service, ip, port, *, cluster=DEFAULT_CLUSTER, why=None):
        """
        Clear the override of an instance: views show what its client
        publishes again.

        @return: a L{Deferred} firing with whether one was in force.
        """
        fields = self._overridden(service, ip, port, cluster)
        if why is not None:
            fields["why"] = why
        return self._call("override_clear", fields, parse=lambda reply: bool(reply["cleared"]))

    def overrides(self, *, namespace=None):
        """
        The overrides in force, of C{namespace}, or of every namespace
        (L{None}; needs a grant of every namespace).

        @return: a L{Deferred} firing with a list of L{Override}.
        """
        fields = {} if namespace is None else {"namespace": namespace}
        return self._call("overrides", fields,
                          parse=lambda reply: [Override.from_wire(o) for o in reply["overrides"]])


def connect(
    servers,
    *,
    reactor,
    namespace=DEFAULT_NAMESPACE,
    group=DEFAULT_GROUP,
    agent=DEFAULT_AGENT,
    token=None,
    timeout=DEFAULT_TIMEOUT,
    cache_dir=None,
    tls=None,
):
    """
    Open a session with a distro cluster.

    @param servers: C{"host:port"} addresses (IPv6 as C{"[::1]:9850"}): a
        list, or one string with commas. The first one tried is chosen at
        random.
    @param namespace: the default namespace of the client's services.
    @param group: the default group of the client's services.
    @param agent: C{"name/version"} of the program, sent in C{hello}.
    @param token: an authentication token, if the cluster wants one.
    @param reactor: the reactor the client runs on (a program's entry
        point, e.g. L{twisted.internet.task.react}, gives it).
    @param timeout: seconds to wait for a connection, and for each request.
    @param cache_dir: a directory where the client keeps the last view of
        each subscription and query, so that they are served while no node
        answers, even after a restart. With one, the L{Deferred} fires with
        the client (still trying the servers) when no node answers within
        C{timeout}, instead of failing; see L{DistroClient.start}.
    @param tls: a L{distro.client.TLSOptions} to dial the servers over TLS
        (their client port is an C{ssl:} endpoint), verifying each server's
        certificate against its CA and the host of its address; L{None}:
        plain TCP. Every server of the list, and every member the nodes
        announce, is dialed the same way.
    @return: a L{Deferred} firing with a connected L{DistroClient} (with
        C{cache_dir}, possibly one still waiting for a node).
    @raise ValueError: at once, if C{servers} holds a malformed address or
        none; if a file C{tls} names cannot be used (the error names the
        option: C{ca}, C{cert} or C{key}).
    @raise OSError: if C{cache_dir} cannot be created.
    @raise ImportError: at once, if C{tls} is given but pyOpenSSL is not
        installed (the error says what to install).
    """
    dialer = None if tls is None else TLSDialer(tls)

    def endpointFactory(host, port):
        return hostEndpoint(reactor, host, port, timeout, dialer)

    client = DistroClient(
        servers,
        clock=reactor,
        endpoint_factory=endpointFactory,
        namespace=namespace,
        group=group,
        agent=agent,
        token=token,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    return client.start()
