# -*- test-case-name: tests.test_client_session -*-
"""
A scripted, in-memory stand-in for a distro cluster's client ports, for
testing the client library and the command line without a real node.

Each L{FakeNode} answers the client-port requests of PROTOCOL.md section 4
from one L{FakeCluster}-wide table of client sessions; connections are
L{twisted.test.iosim} pumps. A test can crash a node, make it silent (a
half-open connection), not ready, forgetful of sessions (so resumes fail), or
refuse chosen ops with chosen error codes. Everything a node receives is kept
in L{FakeNode.received}.
"""

import hashlib
import itertools

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.test import iosim
from zope.interface import implementer

from distro.wire import FrameProtocol


def serviceKey(wire):
    """
    A hashable service key from its wire form.
    """
    return (
        wire.get("namespace", "public"),
        wire.get("group", "DEFAULT_GROUP"),
        wire["name"],
    )


def host(instance):
    """
    A host map: an instance with its defaults filled in and its instance_id.
    """
    result = {
        "cluster": "DEFAULT",
        "weight": 1.0,
        "healthy": True,
        "enabled": True,
        "metadata": {},
    }
    result.update(instance)
    result["instance_id"] = f"{result['ip']}#{result['port']}#{result['cluster']}"
    return result


class FakeSession:
    """
    The cluster's record of one client session.
    """

    def __init__(self, clientId, resumeToken):
        self.clientId = clientId
        self.resumeToken = resumeToken
        self.epoch = 1
        self.instances = {}  # service key -> {instance_id: host}


class FakeCluster:
    """
    Nodes sharing one table of sessions, as if replication were instant.

    @ivar pumps: the pumps of every connection made, to L{flush}.
    """

    heartbeatMs = 3000

    def __init__(self, clock, addresses):
        self.clock = clock
        self.nodes = {address: FakeNode(self, f"node-{i}", address)
                      for i, address in enumerate(addresses)}
        self.sessions = {}
        self.pumps = []
        self.connectAttempts = []
        self._ids = itertools.count(1)
        self._revisions = {}

    def node(self, index):
        """
        The node with the C{index}th address.
        """
        return list(self.nodes.values())[index]

    def endpointFactory(self, host, port):
        """
        An endpoint reaching the node at C{host:port}; pass this to
        L{distro.client.DistroClient}.
        """
        return FakeEndpoint(self, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    def flush(self):
        """
        Move bytes on every connection until nothing moves.
        """
        while any([pump.flush() for pump in self.pumps]):
            pass

    def newSession(self):
        """
        Record a new session and return it.
        """
        n = next(self._ids)
        session = FakeSession(f"client-{n}", f"token-{n}")
        self.sessions[session.clientId] = session
        return session

    def view(self, key, clusters=None, healthyOnly=False):
        """
        The wire ServiceInfo of a service, from every session's instances.
        """
        hosts = {}
        for session in self.sessions.values():
            hosts.update(session.instances.get(key, {}))
        selected = [
            h
            for _, h in sorted(hosts.items())
            if h["enabled"]
            and (not clusters or h["cluster"] in clusters)
            and (h["healthy"] or not healthyOnly)
        ]
        digest = hashlib.sha256(repr(selected).encode()).hexdigest()[:16]
        return {
            "service": {"namespace": key[0], "group": key[1], "name": key[2]},
            "clusters": clusters,
            "hosts": selected,
            "checksum": digest,
            "revision": self._revisions.get(key, 0),
        }

    def changed(self, key):
        """
        A service's view changed: raise its revision and push it to every
        subscriber on every node.
        """
        self._revisions[key] = self._revisions.get(key, 0) + 1
        for node in self.nodes.values():
            for connection in list(node.connections):
                for subscribedKey, clusters in list(connection.subscriptions):
                    if subscribedKey == key:
                        connection.push(self.view(key, clusters))


class FakeNode:
    """
    One node's client port.

    @ivar up: whether it accepts connections.
    @ivar silent: whether it leaves every frame unanswered.
    @ivar ready: whether it answers C{query} and C{subscribe}.
    @ivar resumable: whether a C{resume} may succeed here.
    @ivar loading: whether it answers a C{resume} with C{NOT_READY} (a
        restarted node that does not know the client yet) and closes.
    @ivar refuse: C{{op: (code, message)}} to answer with an error.
    @ivar received: every message received, in order.
    """

    def __init__(self, cluster, name, address):
        self.cluster = cluster
        self.name = name
        self.address = address
        self.up = True
        self.silent = False
        self.ready = True
        self.resumable = True
        self.loading = False
        self.refuse = {}
        self.received = []
        self.connections = []

    def ops(self):
        """
        The ops received, in order.
        """
        return [message["op"] for message in self.received]

    def crash(self):
        """
        Stop accepting connections and drop every open one without C{bye}.
        """
        self.up = False
        for connection in list(self.connections):
            connection.transport.loseConnection()
        self.cluster.flush()


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    Connects to a L{FakeNode} through an in-memory pump.
    """

    def __init__(self, cluster, address):
        self.cluster = cluster
        self.address = address

    def connect(self, protocolFactory):
        """
        Connect a protocol of C{protocolFactory} to the node, or fail if it is down.
        """
        self.cluster.connectAttempts.append(self.address)
        node = self.cluster.nodes.get(self.address)
        if node is None or not node.up:
            return fail(ConnectionRefusedError(self.address))
        client = protocolFactory.buildProtocol(None)
        server = FakeNodeConnection(node)
        pump = iosim.connect(
            server,
            iosim.makeFakeServer(server),
            client,
            iosim.makeFakeClient(client),
            greet=False,
            clock=self.cluster.clock,
        )
        self.cluster.pumps.append(pump)
        return succeed(client)


class FakeNodeConnection(FrameProtocol):
    """
    The node's side of one client connection.
    """

    def __init__(self, node):
        super().__init__()
        self.node = node
        self.session = None
        self.subscriptions = []
        self.seq = itertools.count(1)

    def connectionMade(self):
        """
        Count this connection as one of the node's.
        """
        self.node.connections.append(self)

    def connectionLost(self, reason):
        """
        Forget this connection, and its session if it published nothing
        (as a node removes a client without instances at once).
        """
        if self in self.node.connections:
            self.node.connections.remove(self)
        session = self.session
        sessions = self.node.cluster.sessions
        if session is not None and not any(session.instances.values()):
            if sessions.get(session.clientId) is session:
                del sessions[session.clientId]

    def push(self, info):
        """
        Send a push of the wire ServiceInfo C{info}.
        """
        self.sendMessage({"op": "push", "seq": next(self.seq), "service_info": info})

    def messageReceived(self, message):
        """
        Record a request and answer it, unless told to stay silent.
        """
        self.node.received.append(message)
        if self.node.silent:
            return
        op, re = message["op"], message.get("id")
        if op in self.node.refuse:
            code, text = self.node.refuse[op]
            self.sendError(re, code, text)
            return
        if op in ("query", "subscribe") and not self.node.ready:
            self.sendError(re, "NOT_READY", "loading")
            return
        if op == "hello" and message.get("resume") and self.node.loading:
            self.sendError(re, "NOT_READY", "loading; try another node")
            self.closeConnection()
            return
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            self.sendError(re, "UNKNOWN_OP", op)
            return
        result = handler(message)
        reply = {"op": "ok", "re": re}
        reply.update(result or {})
        self.sendMessage(reply)
        if op == "bye":
            self.closeConnection()

    def op_hello(self, message):
        """
        Resume the session if allowed and known, else start a new one.
        """
        cluster = self.node.cluster
        resume = message.get("resume")
        session = None
        if resume and self.node.resumable:
            session = cluster.sessions.get(resume["client_id"])
            if session is not None and session.resumeToken != resume["resume_token"]:
                session = None
        resumed = session is not None
        if session is None:
            session = cluster.newSession()
        else:
            session.epoch = max(session.epoch, resume.get("epoch", 0)) + 1
        self.session = session
        return {
            "proto": 1,
            "node": self.node.name,
            "client_id": session.clientId,
            "resume_token": session.resumeToken,
            "resumed": resumed,
            "epoch": session.epoch,
            "ready": self.node.ready,
            "heartbeat_ms": cluster.heartbeatMs,
            "idle_timeout_ms": 10000,
            "members": list(cluster.nodes),
        }

    def _write(self, service, change):
        key = serviceKey(service)
        instances = self.session.instances.setdefault(key, {})
        result = change(instances)
        self.node.cluster.changed(key)
        return result

    def op_register(self, message):
        """
        Add or replace an instance of this session.
        """
        h = host(message["instance"])
        self._write(message["service"], lambda instances: instances.update({h["instance_id"]: h}))

    def op_deregister(self, message):
        """
        Remove an instance of this session.
        """
        instanceId = host(message["instance"])["instance_id"]
        removed = self._write(
            message["service"], lambda instances: instances.pop(instanceId, None) is not None
        )
        return {"removed": removed}

    def op_batch_register(self, message):
        """
        Replace this session's instances of a service.
        """
        def replace(instances):
            instances.clear()
            for h in map(host, message["instances"]):
                instances[h["instance_id"]] = h

        self._write(message["service"], replace)

    def op_query(self, message):
        """
        Answer the view of a service.
        """
        key = serviceKey(message["service"])
        info = self.node.cluster.view(
            key, message.get("clusters"), message.get("healthy_only", False)
        )
        return {"service_info": info}

    def op_subscribe(self, message):
        """
        Subscribe this connection and answer the view.
        """
        subscription = (serviceKey(message["service"]), message.get("clusters"))
        if subscription not in self.subscriptions:
            self.subscriptions.append(subscription)
        return {"service_info": self.node.cluster.view(*subscription)}

    def op_unsubscribe(self, message):
        """
        Unsubscribe this connection.
        """
        subscription = (serviceKey(message["service"]), message.get("clusters"))
        if subscription in self.subscriptions:
            self.subscriptions.remove(subscription)

    def op_services(self, message):
        """
        List services with their instance counts.
        """
        namespace = message.get("namespace", "public")
        group = message.get("group")
        counts = {}
        for session in self.node.cluster.sessions.values():
            for key, instances in session.instances.items():
                if key[0] == namespace and group in (None, key[1]):
                    counts[key[1:]] = counts.get(key[1:], 0) + len(instances)
        services = [
            {"group": g, "name": n, "instances": count}
            for (g, n), count in sorted(counts.items())
        ]
        return {"count": len(services), "services": services}

    def op_members(self, message):
        """
        List the cluster's nodes.
        """
        return {
            "members": [
                {"node": node.name, "address": node.address,
                 "state": "UP" if node.up else "DOWN", "self": node is self.node}
                for node in self.node.cluster.nodes.values()
            ]
        }

    def op_redo_done(self, message):
        """
        The redo after a resume is complete.
        """
        return {"epoch": self.session.epoch}

    def op_ping(self, message):
        """
        Answer with nothing.
        """

    def op_bye(self, message):
        """
        End the session and remove its instances.
        """
        session = self.node.cluster.sessions.pop(self.session.clientId)
        for key in session.instances:
            self.node.cluster.changed(key)
