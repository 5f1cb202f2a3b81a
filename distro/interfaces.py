"""
The seams of a distro node, written down as zope interfaces. Implementations
declare them with C{@implementer}; tests check them with C{verifyObject}.
"""

from zope.interface import Attribute, Interface


class IOverrideObserver(Interface):
    """
    Told of every change of the node's operator overrides (L{IOverrides}).
    """

    def overrideChanged(override, written):
        """
        The entry of C{override.key} is now C{override} (a cleared one when
        it was cleared). C{written}: written at this node (an operator's
        write, or an expiry), not merged from a member or disk.
        """

    def overridesForgotten(keys):
        """
        The tombstones of C{keys} were forgotten (past
        C{override_expiry_ms}).
        """


class IOverrides(Interface):
    """
    The node's replicated map of operator overrides (PROTOCOL.md 5.7).
    """

    entries = Attribute("C{(service, instance id)} -> L{distro.overrides.Override}, tombstones included.")
    digest = Attribute("The XOR of every entry's hash (5.7): equal on members holding the same entries.")

    def addObserver(observer):
        """
        Tell the L{IOverrideObserver} C{observer} of every change.
        """

    def live():
        """
        The overrides in force, sorted by key.
        """

    def of(service):
        """
        C{{instance id: Override}} of the overrides in force in C{service},
        or C{None}.
        """

    def merge(override):
        """
        A member's or disk's entry: applied if it outranks the one held.
        Return whether it was.
        """

    def write(service, instanceId, changes, *, who, why):
        """
        An operator's write here; return the new entry.
        """

    def clear(service, instanceId, *, who, why):
        """
        Clear an override; return the tombstone, or C{None} if none was in
        force.
        """

    def expire(published):
        """
        Expire the overrides of instances gone for C{override_expiry_ms},
        forget tombstones that old; return the keys forgotten.
        """

    def ofWire(value, field="override"):
        """
        Parse an entry's map form.
        """


class IClientObserver(Interface):
    """
    A consumer of the change stream: every change to any client's data, native
    or synced, in the order it was applied. The registry consumes it to keep
    service views; the cluster's replicator consumes it to stream owned clients
    to peers.
    """

    def clientChanged(change):
        """
        A client's published instances changed.

        @type change: L{distro.clients.ClientChange}
        """

    def clientRemoved(client):
        """
        A client is gone, with all its instances (still held by C{client}).

        @type client: L{distro.clients.Client}
        """

    def clientMoved(client):
        """
        A client's ownership changed: this node took it over (a session
        resumed it here; C{client.native} is now true) or gave it up to a
        newer owner (C{client.native} is now false). Its instances are
        unchanged.

        @type client: L{distro.clients.Client}
        """


class IClientManager(Interface):
    """
    Owns the L{distro.clients.Client} objects of a node, native and synced, and
    announces every change of their data on the change stream.
    """

    clients = Attribute("A mapping of client id to L{distro.clients.Client}.")

    def addObserver(observer):
        """
        Subscribe an L{IClientObserver} to the change stream.
        """

    def clientConnected():
        """
        A session started: create a native client with a new, cluster-wide
        unique id and a resume token (only its hash is kept). Return
        C{(client, resumeToken)}.
        """

    def resume(clientId, token, epoch=0):
        """
        A new session presents a client's id, resume token and last epoch:
        return the session's new state of that client (empty, restoring,
        at an epoch above both), or C{None} if the id or the token is not
        known. The held client is kept as it is until L{restored}.
        """

    def restored(state):
        """
        The session of C{state} re-sent its registrations: this node owns
        the client from now on, with exactly those instances. Return the
        client the session now speaks for.
        """

    def restoreAbandoned(state):
        """
        The session of C{state} ended before L{restored}: nothing of it is
        kept.
        """

    def heartbeatClient(clientId, epoch):
        """
        Create a native client with no session (a heartbeat client), owned
        here at C{epoch}, and return it.
        """

    def takeOver(clientId):
        """
        Make the synced client C{clientId} native, owned here at an epoch
        above its owner's, its instances unchanged (announced as a move).
        Return it.
        """

    def clientDisconnected(clientId, orderly):
        """
        The connection of a native client ended. If C{orderly} (the client said
        C{bye}) its instances are removed at once; otherwise they are kept for
        C{disconnect_grace_ms} so that the client can resume.
        """

    def register(client, service, instance):
        """
        Add or replace one instance of C{client} in C{service}.
        """

    def deregister(client, service, instanceId):
        """
        Remove one instance; return whether it was there.
        """

    def batchRegister(client, service, instances):
        """
        Make C{client}'s instances in C{service} exactly C{instances}.
        """

    def batchRegisterInSlices(client, service, instances, size):
        """
        What L{batchRegister} does, as a generator of steps of at most
        C{size} instances, one per C{next()}, each a revision of its own.
        """

    def subscribe(client, service, clusters):
        """
        Record a subscription of a native client, within its limit.
        """

    def unsubscribe(client, service, clusters):
        """
        Forget a subscription; return whether it was there.
        """

    def removeClient(clientId):
        """
        Remove a client and all its instances now.
        """

    def removeClients(clientIds, due):
        """
        Remove clients in the node's turns, as its upkeep
        (L{ITurns.background}), one at a time, each only if C{due(client)}
        still holds when its turn comes; a L{Deferred} firing with the ids
        removed. A large native client is emptied in slices first, each a
        revision, C{due} asked before each: one no longer due midway is
        kept with the instances it still holds.
        """

    def syncState(clientId, owner, epoch, revision, resumeTokenHash, services):
        """
        Make a client exactly what its owner replicated (a synced client).
        """

    def syncDelta(client, revision, put, removeIds):
        """
        Apply one replicated change to a synced client.
        """


class ISyncBarrier(Interface):
    """
    Lets a node remove a client on its own judgement (an expired session,
    a client its owner stopped naming, the clients of a member presumed
    dead) only once it has read everything the other members sent before
    it asked: if one of them took the client over, its record is in by
    then (PROTOCOL.md 5.4).
    """

    def whenSynced():
        """
        A L{twisted.internet.defer.Deferred} firing once every member that
        is not presumed dead has answered a sync sent after this call, with
        the set of ids of the clients they are resuming right now (not to
        be removed). It never fails; it may wait as long as a member is
        unreachable.
        """


class IViewListener(Interface):
    """
    Told when a service view visibly changed.
    """

    def viewChanged(service):
        """
        The view of C{service} (a L{distro.model.ServiceKey}) changed.
        """


class IRegistry(IClientObserver):
    """
    Service views over all clients of a node, with a publisher index (which
    clients publish what) and cached ServiceInfo per view.
    """

    def addViewListener(listener):
        """
        Add an L{IViewListener}.
        """

    def serviceInfo(service, clusters=None, healthyOnly=False):
        """
        The L{distro.registry.ServiceInfo} of a service, optionally filtered.
        """

    def services(namespace, group, page, size):
        """
        One page of the services of a namespace (optionally one group):
        C{(count, [(group, name, instanceCount)])}.
        """


class IReplicaSink(Interface):
    """
    Where the inbound peer links of a node deliver what other members send:
    the apply side of PROTOCOL.md 5.2.
    """

    def linkUp(link):
        """
        An authenticated inbound link from member C{link.nodeId} is up.
        """

    def received(link, message):
        """
        Apply one replication message from C{link}; return a reply message to
        send back on that link, or C{None}.
        """

    def linkDown(link):
        """
        An inbound link ended.
        """


class IMembership(Interface):
    """
    The members of the cluster and their liveness (PROTOCOL.md 5.3).
    """

    def heard(nodeId):
        """
        Something arrived from member C{nodeId}: it is alive.
        """

    def state(nodeId):
        """
        C{"UP"}, C{"SUSPICIOUS"} or C{"DOWN"}.
        """

    def describe():
        """
        The members as the C{members} op shows them.
        """


class IFrontEnd(Interface):
    """
    A way in to the node for the clients of one protocol (distro's own
    client port, the Nacos gRPC port, HTTP): each of its connections is a
    native client of the node, served by the same client manager, registry,
    pusher and replication. It tells the node when it opens and closes
    (L{INode.portOpened}); the node's health lists it.
    """

    name = Attribute("A short name of the protocol, for logs.")
    address = Attribute("The C{host:port} it is bound to once listening, else C{None}.")

    def connectionCount():
        """
        How many of its connections are clients of the node now.
        """


class IAuthority(Interface):
    """
    Who may do what, one answer for every port (C{auth_tokens},
    C{auth_users}): each port asks it about the credential its protocol
    carries and refuses with its own code.
    """

    enabled = Attribute("Whether credentials are required (tokens or users are configured).")

    def grant(credential):
        """
        The L{distro.auth.Grant} of C{credential} (a configured token or a
        login token; C{None} when the request carried none).

        @raise distro.errors.RequestError: C{UNAUTHORIZED} when credentials
            are required and C{credential} is missing, unknown or expired.
        """

    def login(username, password):
        """
        Log a user in: a Deferred firing with a L{distro.auth.LoginResult}
        (a token, its lifetime, whether the user is an administrator), or
        failing with C{RequestError} C{UNAUTHORIZED} (a wrong user or
        password) or C{LIMIT_EXCEEDED} (too many logins at once). On a
        node without credentials every login succeeds with an empty token.
        """

    def checkOperator(grant, host, field, *, loopback=True):
        """
        Whether C{grant}, from a client at C{host} (an address, or C{None}
        when unknown), may take an operator's action (overrides): with
        credentials configured, a grant with C{admin}; without, a client in
        C{admin_from}, or on loopback (unless not C{loopback}: a path where
        a program on the node's machine is no operator by being there).

        @raise distro.errors.RequestError: C{FORBIDDEN} naming C{field}.
        """


class ITurns(Interface):
    """
    The reactor's time, shared by the work clients cause: at most a budget
    of each turn, the rest deferred to the next turns in order.
    """

    budget = Attribute("The seconds of client work one reactor turn may hold.")

    def available():
        """
        Whether work may run now: this turn's budget is not spent and no
        deferred work waits before it.
        """

    def spent():
        """
        Whether this turn's budget is spent: work given its turn goes on
        until it is (a connection answers the calls it has ready, one
        write for all), whatever waits behind it.
        """

    def later(work):
        """
        Call C{work} (no arguments) in a coming turn, after the work
        deferred before it. It runs whole; to continue past its slice it
        asks L{available} again.
        """

    def run(steps):
        """
        Run the generator C{steps}, one slice per C{next()}: as many slices
        as each turn's budget allows, in turn with other work. Return a
        L{Deferred} of its return value (or its exception).
        """

    def background(steps):
        """
        Run the generator C{steps} as L{run} does, as the node's own upkeep
        (the removal of clients that left): in each turn after the work
        waiting for it and the end of that work (L{atEnd}), at least one
        slice, more within a short budget of its own (a millisecond); work
        that comes meanwhile waits for that at most, never for a turn.
        """

    def pending():
        """
        How many pieces of work wait for a turn (upkeep not counted).
        """

    def atEnd(work):
        """
        Call C{work} (no arguments) once the work of this turn is done: at
        the end of the turn it was asked in, before the next turn's work
        (what the turn's work changed is then told in the same reactor
        turn, not after the next budget of work).
        """


class IPortRequests(Interface):
    """
    Where one port records each request it answered, once, at its
    dispatch.
    """

    def record(op, code, seconds):
        """
        A request of C{op} was answered with C{code} (the port's own: an
        error code, a Nacos C{errorCode}, an HTTP status; the port's success
        code for a success) after C{seconds}. An C{op} outside the port's
        set counts as C{unknown}.
        """


class IRequestStats(Interface):
    """
    The requests every port of a node served: counts by port, op and code,
    and each op's durations (L{distro.requeststats}).
    """

    def port(name, ops, success):
        """
        The L{IPortRequests} of the port C{name}, whose ops are C{ops} and
        whose code of a success is C{success} (a port asks once; the same
        name gives the same object).
        """

    def served():
        """
        C{[(port, op, {code: count}, durations)]} of every op served so far,
        C{durations} a L{distro.histogram.Histogram} of seconds.
        """


class INodeState(Interface):
    """
    What anything serving a node reads of it.
    """

    nodeId = Attribute("This node's id.")
    config = Attribute("The node's L{distro.config.Config}.")
    clock = Attribute("The node's clock (an L{IReactorTime}).")
    ready = Attribute("Whether reads are served: a clustered node once it loaded what the cluster holds.")
    clientAddress = Attribute("The C{host:port} clients reach this node at, or C{None}.")
    draining = Attribute(
        "Whether the node is stopping: it serves its sessions and peers, takes no new session, "
        "and its readiness probes fail."
    )


class INode(INodeState):
    """
    What a port asks of the node, and all it asks: every port (distro's
    own, Nacos', HTTP) serves its clients through this, and touches none
    of the node's parts.
    """

    authority = Attribute("The L{IAuthority} that judges every credential.")
    admission = Attribute("The L{distro.admission.Admission} of client connections, over every port.")
    turns = Attribute("The L{ITurns} the work of clients shares.")
    requests = Attribute("The L{IRequestStats} each port records its requests in.")

    def drain():
        """
        Ask every client session to move to another member before the node
        stops; return a L{Deferred} firing once they did, or after
        C{drain_timeout_ms}.
        """

    def sessionStarted(session, resume=None):
        """
        A connection said who it is: its client, new or resumed.

        @return: C{(client, resumeToken, resumed, refusal)}: C{refusal}
            says why a C{resume} was not granted (L{RESUME_UNKNOWN_CLIENT}
            or L{RESUME_WRONG_TOKEN}), L{None} when none was asked or it
            was.
        """

    def resumeDone(session):
        """
        A resumed session re-sent its registrations: it takes its client
        over. Return the client it now speaks for.
        """

    def sessionEnded(session, orderly):
        """
        A connection ended (C{orderly}: it said goodbye). Safe to call twice.
        """

    def register(client, service, instance):
        """
        Put C{instance} among C{client}'s instances in C{service}.
        """

    def deregister(client, service, instanceId):
        """
        Remove one instance; return whether it was there.
        """

    def batchRegister(client, service, instances):
        """
        Make C{client}'s instances in C{service} exactly C{instances}.
        """

    def batchRegisterInSlices(client, service, instances):
        """
        What L{batchRegister} does, as a generator of steps (for
        L{ITurns.run}).
        """

    def serviceInfo(service, clusters=None, healthyOnly=False):
        """
        The L{distro.registry.ServiceInfo} of C{service}, filtered.
        """

    def services(namespace, group, page, size):
        """
        One page of a namespace's services: C{(count, [(group, name, instances)])}.
        """

    def pushChannel(send):
        """
        The push side of a new connection, writing each view with C{send}.
        """

    def subscribe(client, channel, service, clusters, info):
        """
        C{client} subscribes through C{channel}, having been given C{info}.
        """

    def unsubscribe(client, channel, service, clusters):
        """
        The reverse of L{subscribe}.
        """

    def watch(channel, service, clusters, info):
        """
        A watch without a client (an HTTP request held open, a Nacos v1
        client's UDP push target): C{channel} (from L{pushChannel}) is
        pushed C{service}'s view (C{clusters} filtering) when it changes
        from C{info}, the view just given, as a subscription is; it counts
        as one, is this node's alone (never replicated), and ends when
        C{channel} is closed. Watching again takes C{info} as given.
        """

    def portOpened(frontEnd):
        """
        A port (an L{IFrontEnd}) listens.
        """

    def portClosed(frontEnd):
        """
        A port stopped listening.
        """

    def ports():
        """
        The L{IFrontEnd}s listening, in the order they opened.
        """

    def clientPortBound(address):
        """
        distro's client port is bound, reachable at C{address}.
        """

    def members(reachedAt=None):
        """
        The members of the cluster, as C{[{"node", "address", "state", "self"}]}.

        @param reachedAt: the host the asking connection reached, where this
            node is shown when its client port listens on every interface
            and C{advertise} is not set.
        """

    def rebalance(grant, host, rate, asking=None):
        """
        An operator, from a client at C{host} (its session C{asking}, which
        is not moved), asks this node to move the client sessions it holds
        over its share to the members below theirs, C{rate} a second
        (PROTOCOL.md 4.6); return C{{"node", "sessions", "share",
        "moving"}}.

        @raise distro.errors.RequestError: C{FORBIDDEN} unless an operator
            (L{IAuthority.checkOperator}); C{NOT_READY} while draining.
        """

    def writeOverride(grant, host, service, instanceId, changes, why):
        """
        An operator's write of an instance's override (PROTOCOL.md 5.7),
        from a client at C{host}: C{changes} from
        L{distro.overrides.parseChanges}, C{why} the reason (a string or
        C{None}). Return the L{distro.overrides.Override} written.

        @raise distro.errors.RequestError: C{FORBIDDEN} unless an operator
            (L{IAuthority.checkOperator}); C{BAD_REQUEST} naming the field;
            C{LIMIT_EXCEEDED} past C{max_overrides}.
        """

    def clearOverride(grant, host, service, instanceId, why):
        """
        An operator clears an instance's override: return the tombstone,
        or C{None} when none was in force.
        """

    def listOverrides(grant, namespace=None):
        """
        The overrides in force, of C{namespace} (one C{grant} allows) or of
        all (a grant of every namespace).
        """

    def counts():
        """
        What the node holds, counted as it changes: C{{"native_clients",
        "synced_clients", "services", "instances", "subscriptions"}}.
        """

    def peerLinks():
        """
        The links with the other members (L{ICluster.links}); none when
        standalone.
        """

    def replication():
        """
        What replication did (L{ICluster.replication}); empty when
        standalone.
        """

    def pushFailed():
        """
        A port could not deliver a push (the subscriber could not take the
        view, or did not acknowledge it).
        """

    def pushStats():
        """
        The node's L{distro.push.PushStats}: pushes sent, coalesced and
        failed, and their latency.
        """

    def heartbeatWrite(write):
        """
        A write of a heartbeat client (a L{distro.heartbeats.Write}, its
        credential already checked): applied here if this node is its
        responsible member, or if that member cannot be reached now (this
        node holds the client meanwhile), else forwarded to it.

        @return: a L{Deferred} of what it returns (for a beat, C{(code,
            intervalMs)}), failing with L{distro.errors.RequestError}
            (C{UNAVAILABLE} when the responsible member cannot be reached).
        """


class ICluster(Interface):
    """
    What the node asks of its cluster side, when it joins (L{IClusterHost}).
    """

    barrier = Attribute("The L{ISyncBarrier} that guards the node's removals (sync rounds).")

    def clientObservers():
        """
        The L{IClientObserver}s that follow the node's clients (what is
        replicated, what is received).
        """

    def loading():
        """
        Whether, when it joins, the node must load what members hold before
        it serves reads (a cluster of more than one); asked once, by
        L{IClusterHost.joinCluster}.
        """

    def describeMembers():
        """
        The members, as C{[{"node", "address", "state", "self"}]}.
        """

    def links():
        """
        The links with every other member, counted as they carry frames
        (nothing is walked): C{[{"member"} (its node id), "outbound",
        "inbound" (whether each link is up), "sent_bytes", "sent_frames",
        "received_bytes", "received_frames" (over both links),
        "backlog" (its clients waiting to be sent), "behind_seconds"
        (for how long it has lacked something this node wrote: 0 while
        it has everything)}]}.
        """

    def replication():
        """
        What replication did, counted as it happened: C{{"snapshots_sent",
        "snapshots_received", "digest_mismatches", "digest_repairs",
        "digest_repaired_clients"}} (L{distro.cluster.stats}).
        """

    def responsibleFor(clientId):
        """
        The member (its address) responsible for the heartbeat client
        C{clientId} (PROTOCOL.md 5.6), or C{None} when it is this node.
        """

    def reachable(member):
        """
        Whether this node's link to C{member} (an address) is up and
        carries forwarded writes.
        """

    def forward(member, write):
        """
        Send the heartbeat client's C{write} to C{member} (an address
        L{responsibleFor} gave) to apply.

        @return: a L{Deferred} of its result, failing with
            L{distro.errors.RequestError} as the member refused it, or
            C{UNAVAILABLE} when it cannot be reached or does not answer.
        """


class IClusterHost(INodeState):
    """
    What the cluster side asks of its node, and all it asks (its
    C{ready} it reads only: L{loaded} makes it so).
    """

    bootId = Attribute("This start's boot id (told in C{snapshot_begin}).")
    manager = Attribute("The L{IClientManager} of the node's clients, native and synced.")
    overrides = Attribute("The L{IOverrides} of the operators, which the cluster replicates (5.7).")

    def restoring():
        """
        The ids of the clients whose sessions are resuming here right now.
        """

    def joinCluster(cluster):
        """
        The L{ICluster} joins the node: its barrier guards removals, its
        observers follow the clients, it describes the members; while it is
        L{ICluster.loading}, the node serves no reads until L{loaded}.
        """

    def loaded():
        """
        The cluster loaded what members hold: the node serves reads.
        """

    def applyForwarded(write):
        """
        Apply a heartbeat client's C{write} that a member forwarded (it
        judged this node responsible): here, never forwarded again.

        @return: what L{INode.heartbeatWrite} gives.
        @raise distro.errors.RequestError: the write refused.
        """

    def clientsOrphaned(nodeId, clientIds):
        """
        Member C{nodeId} restarted, and its new life does not hold
        C{clientIds} (the clients of its previous life): the heartbeat
        clients among them are taken over here, and taken back by the
        member responsible for them (PROTOCOL.md 5.6).
        """

    def membersChanged():
        """
        A member came up, went down or left, or one was added: this node
        takes over the heartbeat clients it is now responsible for.
        """
