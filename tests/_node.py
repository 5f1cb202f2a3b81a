# -*- test-case-name: tests.test_server -*-
"""
An in-memory node for client-port tests: a L{distro.node.Node} on a
L{task.Clock}, and connections to its client port made of a
L{ClientSession} over a L{StringTransport}, spoken to frame by frame.

Nothing here touches the global reactor.
"""

import itertools

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from twisted.internet import defer

from distro import config, wire
from distro.auth import Authority
from distro.node import Node
from distro.native.session import ClientPortFactory

ADVERTISE = "127.0.0.1:9850"
SECRET = b"harness-cluster-secret"
NODE_ID = "node-a"


def service(name="orders", **fields):
    """
    A service key map for a request.
    """
    result = {"name": name}
    result.update(fields)
    return result


def hostIds(info):
    """
    The instance ids of a ServiceInfo map, in the order it lists them.
    """
    return [h["instance_id"] for h in info["hosts"]]


class SendBufferTransport(StringTransport):
    """
    A L{StringTransport} with a send buffer like a socket's: past
    C{bufferSize} unsent bytes it pauses its producer (as Twisted's
    transports do), and L{drain} (the client reading everything) resumes it.
    """

    def __init__(self, bufferSize, **kwargs):
        super().__init__(**kwargs)
        self.bufferSize = bufferSize
        self.unsent = 0
        self.producerPaused = False

    def write(self, data):
        super().write(data)
        self.unsent += len(data)
        if self.unsent > self.bufferSize and self.producer is not None and not self.producerPaused:
            self.producerPaused = True
            self.producer.pauseProducing()

    def writeSequence(self, data):
        self.write(b"".join(data))

    def drain(self):
        """
        The client read everything written: resume a paused producer.
        """
        self.unsent = 0
        if self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()


class Connection:
    """
    One client connection to a node's client port.

    @ivar transport: the L{StringTransport} the session writes to.
    @ivar session: the server's L{distro.native.session.ClientSession}.
    @ivar pushes: pushes read but not yet taken (see L{takePushes}).
    """

    def __init__(self, factory, host, port, bufferSize=None, clock=None):
        self.clock = clock
        address = IPv4Address("TCP", host, port)
        if bufferSize is None:
            self.transport = StringTransport(peerAddress=address)
        else:
            self.transport = SendBufferTransport(bufferSize, peerAddress=address)
        self.session = factory.buildProtocol(self.transport.getPeer())
        self.session.makeConnection(self.transport)
        self._ids = itertools.count(1)
        self._offset = 0
        self.pushes = []
        self.lost = False

    def nextId(self):
        """
        A request id not used before on this connection.
        """
        return next(self._ids)

    def sendRaw(self, data):
        """
        Deliver bytes to the session as if they came off the socket.
        """
        self.session.dataReceived(data)

    def send(self, message):
        """
        Deliver one map as a frame.
        """
        self.sendRaw(wire.encode(message))

    def frames(self):
        """
        Every frame written since the last call, decoded. Each must be a
        whole, valid frame (a map with string keys): the node must never
        write anything else. The node's reactor turn ends first (pushes are
        written at the end of the turn their change happened in).
        """
        if self.clock is not None:
            self.clock.advance(0)
        data = self.transport.value()
        frames = []
        while len(data) - self._offset >= 4:
            length = int.from_bytes(data[self._offset : self._offset + 4], "big")
            end = self._offset + 4 + length
            if len(data) < end:
                break
            frames.append(wire.decode(data[self._offset + 4 : end]))
            self._offset = end
        if self._offset != len(data):
            raise AssertionError(f"partial frame written: {data[self._offset:]!r}")
        return frames

    def request(self, op, **fields):
        """
        Send one request and return its reply; pushes written meanwhile are
        kept in L{pushes}.
        """
        rid = self.nextId()
        message = {"op": op, "id": rid}
        message.update(fields)
        return self.roundTrip(message)

    def roundTrip(self, message):
        """
        Send C{message} as it is and return the one frame written in reply
        (C{re} equal to its id, or the error with C{re} nil).
        """
        self.send(message)
        replies = []
        for frame in self.frames():
            if frame.get("op") == "push":
                self.pushes.append(frame)
            else:
                replies.append(frame)
        if len(replies) != 1:
            raise AssertionError(f"expected one reply to {message!r}, got {replies!r}")
        (reply,) = replies
        rid = message.get("id")
        if reply["re"] is not None and reply["re"] != rid:
            raise AssertionError(f"reply {reply!r} does not answer {message!r}")
        return reply

    def ok(self, op, **fields):
        """
        Send one request that must succeed; return its reply.
        """
        reply = self.request(op, **fields)
        if reply["op"] != "ok":
            raise AssertionError(f"{op} failed: {reply!r}")
        return reply

    def hello(self, **fields):
        """
        Send a version 1 C{hello} with C{fields}; return the reply.
        """
        fields.setdefault("proto", 1)
        fields.setdefault("agent", "tests/1")
        return self.request("hello", **fields)

    def takePushes(self):
        """
        Read what was written and return the pushes not taken before.
        """
        for frame in self.frames():
            if frame.get("op") != "push":
                raise AssertionError(f"unexpected frame {frame!r}")
            self.pushes.append(frame)
        pushes, self.pushes = self.pushes, []
        return pushes

    @property
    def closing(self):
        """
        Whether the node asked for this connection to be closed.
        """
        return self.transport.disconnecting or self.transport.disconnected

    def lose(self, orderly=False):
        """
        The connection ends (as the reactor reports it).
        """
        if not self.lost:
            self.lost = True
            reason = ConnectionDone() if orderly else ConnectionLost()
            self.session.connectionLost(Failure(reason))
            if self.transport.producer is not None:
                raise AssertionError("the closed session is still the transport's producer")


class NodeHarness:
    """
    A node with a client port factory, on its own clock (and C{turns}, a
    callable of the clock making its L{distro.interfaces.ITurns}).

    @ivar clock: the node's L{Clock}.
    @ivar node: the L{Node}.
    @ivar factory: its L{ClientPortFactory}.
    """

    def __init__(self, bootId="boot-1", hasher=defer.maybeDeferred, turns=None, **overrides):
        values = {"node_id": NODE_ID, "advertise": ADVERTISE}
        values.update(overrides)
        self.config = config.build(overrides=values)
        self.clock = Clock()
        # Logins verify passwords in place, on the clock's thread (or as
        # C{hasher} says).
        authority = Authority(self.config, self.clock, SECRET, hasher=hasher)
        self.node = Node(self.config, self.clock, bootId, secret=SECRET, authority=authority,
                         turns=turns(self.clock) if turns is not None else None)
        self.factory = ClientPortFactory(self.node)
        self._ports = itertools.count(40000)

    def connect(self, host="10.0.0.1", bufferSize=None):
        """
        A new connection from C{host}, before C{hello}; with C{bufferSize},
        over a L{SendBufferTransport}.
        """
        return Connection(self.factory, host, next(self._ports), bufferSize, self.clock)

    def client(self, host="10.0.0.1", bufferSize=None, **hello):
        """
        A new connection that said C{hello} successfully.
        """
        connection = self.connect(host, bufferSize)
        reply = connection.hello(**hello)
        if reply["op"] != "ok":
            raise AssertionError(f"hello failed: {reply!r}")
        connection.helloReply = reply
        return connection

    def query(self, name="orders", **fields):
        """
        The C{service_info} a fresh client gets for a query, its connection
        then closed with C{bye}.
        """
        connection = self.client(host="10.255.255.254")
        reply = connection.ok("query", service=service(name), **fields)
        connection.ok("bye")
        connection.lose(orderly=True)
        return reply["service_info"]
