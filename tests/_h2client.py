"""
A gRPC client of the h2 library, in memory: it speaks to a server protocol
over a L{StringTransport}, byte by byte, for tests of L{distro.h2grpc} and
the Nacos port without sockets. It can misbehave as grpcio cannot: grant no
window, send partial messages, compress, ignore pings.
"""

import struct

import h2.config
import h2.connection
import h2.events
import h2.settings
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from distro import h2grpc

_PREFIX = struct.Struct(">BI")


def framed(message, compressed=False):
    """
    One gRPC message: its flag, length and bytes.
    """
    return _PREFIX.pack(1 if compressed else 0, len(message)) + message


class Response:
    """
    What came back on one stream.
    """

    def __init__(self):
        self.headers = {}
        self.trailers = {}
        self.data = bytearray()
        self.ended = False
        self.reset = None

    def messages(self):
        out, data = [], bytes(self.data)
        while len(data) >= 5:
            _, length = _PREFIX.unpack_from(data)
            if len(data) < 5 + length:
                break
            out.append(data[5:5 + length])
            data = data[5 + length:]
        return out

    @property
    def status(self):
        value = self.trailers.get(b"grpc-status", self.headers.get(b"grpc-status"))
        return None if value is None else int(value)

    @property
    def message(self):
        value = self.trailers.get(b"grpc-message", self.headers.get(b"grpc-message", b""))
        return value.decode()


class EndedAssertions:
    """
    For test cases with a C{clock} driving a server's L{GrpcConnection}s.
    """

    def assertEnded(self, client):
        """
        The server said C{GOAWAY} to C{client}; the TCP connection closes
        once the client closes it, or C{GOAWAY_GRACE} later.
        """
        client.pump()
        self.assertIsNotNone(client.goAway)
        self.assertFalse(client.closed)
        self.clock.advance(h2grpc.GOAWAY_GRACE)
        self.assertTrue(client.closed)


class H2Client:
    """
    One client connection to C{factory}'s protocol.

    @param window: the receive window the client grants (C{None}: h2's
        default, kept open as data arrives; 0: never opened).
    """

    def __init__(self, factory, ip="10.0.0.7", port=40000, window=None, autoAck=True):
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", ip, port))
        self.server = factory.buildProtocol(IPv4Address("TCP", ip, port))
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.autoAck = autoAck and window != 0
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            })
        self.h2.initiate_connection()
        self.responses = {}
        self.settings = {}
        self.pings = 0
        self.goAway = None
        if self.server is not None:
            self.server.makeConnection(self.transport)
            self.pump()

    @property
    def closed(self):
        return self.transport.disconnecting or self.transport.disconnected

    def pump(self):
        """
        Move bytes both ways until neither side has more.
        """
        clock = getattr(self.server, "clock", None)
        for _ in range(100):
            if clock is not None and hasattr(clock, "advance"):
                clock.advance(0)  # the server's end of turn
            out = self.h2.data_to_send()
            if out and not self.closed:
                self.server.dataReceived(out)
            back = self.transport.value()
            self.transport.clear()
            if back:
                for event in self.h2.receive_data(back):
                    self._event(event)
            if not out and not back and not (clock is not None and getattr(clock, "getDelayedCalls", None)
                                                 and any(c.getTime() <= clock.seconds()
                                                         for c in clock.getDelayedCalls())):
                return

    def _event(self, event):
        response = self.responses.get(getattr(event, "stream_id", None))
        if isinstance(event, h2.events.ResponseReceived):
            response.headers.update(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers.update(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            response.data += event.data
            if self.autoAck and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            response.ended = True
        elif isinstance(event, h2.events.StreamReset):
            if response is not None:
                response.reset = event.error_code
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings.update({k: v.new_value for k, v in event.changed_settings.items()})
        elif isinstance(event, h2.events.PingReceived):
            self.pings += 1
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goAway = event.error_code

    def open(self, path, headers=()):
        """
        Open a call on C{path}; return its stream id.
        """
        streamId = self.h2.get_next_available_stream_id()
        self.responses[streamId] = Response()
        self.h2.send_headers(streamId, [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", b"node"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            *headers,
        ])
        return streamId

    def send(self, streamId, data, end=False):
        """
        Send C{data} on a stream, in frames of the largest size allowed
        (within the server's window: tests send less than it).
        """
        size = self.h2.max_outbound_frame_size
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        for n, chunk in enumerate(chunks):
            if self.h2.streams.get(streamId) is None or self.h2.streams[streamId].closed:
                break
            self.h2.send_data(streamId, chunk, end_stream=end and n == len(chunks) - 1)
            self.pump()
        self.pump()

    def unary(self, path, message, headers=()):
        """
        One unary call, pumped: its L{Response}.
        """
        streamId = self.open(path, headers)
        self.send(streamId, framed(message), end=True)
        return self.responses[streamId]

    def openWindow(self, size=1 << 20):
        """
        Grant the server C{size} more bytes on the connection and every
        stream.
        """
        self.h2.increment_flow_control_window(size)
        for streamId in self.responses:
            if self.h2.streams.get(streamId) is not None and not self.h2.streams[streamId].closed:
                self.h2.increment_flow_control_window(size, stream_id=streamId)
        self.pump()
