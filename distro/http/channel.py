# -*- test-case-name: tests.test_http -*-
"""
HTTP/1.1 connections with every edge bounded: a request (its line, headers
and body) must arrive whole within C{handshake_timeout_ms} of its first
byte being awaited, a body is at most L{MAX_BODY} bytes, an idle
keep-alive connection is closed after C{idle_timeout_ms}, and
C{max_connections_per_ip} holds as on the other ports.
"""

from urllib.parse import parse_qs

from twisted.logger import Logger
from twisted.web import http, server

# The largest request body the HTTP port reads: its forms are a few fields.
MAX_BODY = 64 * 1024

_TOO_LARGE = (
    b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
)


class BoundedRequest(server.Request):
    """
    A request whose body may not pass L{MAX_BODY}, whatever its framing,
    and whose form body is read into C{args} whatever its method (Nacos'
    clients send forms with C{PUT} and C{DELETE} too; twisted.web reads
    C{POST}'s only).
    """

    _received = 0

    def process(self):
        # The base has read the query string and, for POST, the form body.
        if self.method not in (b"POST", b"GET", b"HEAD"):
            self._readForm()
        super().process()

    def _readForm(self):
        ctype = self.requestHeaders.getRawHeaders(b"Content-Type")
        if not ctype or ctype[0].split(b";")[0].strip().lower() != b"application/x-www-form-urlencoded":
            return
        self.content.seek(0, 0)
        for key, values in parse_qs(self.content.read(), keep_blank_values=True).items():
            self.args.setdefault(key, []).extend(values)
        self.content.seek(0, 0)

    def gotLength(self, length):
        if length is not None and length > MAX_BODY:
            # No "100 Continue" after the refusal (found in review).
            self.requestHeaders.removeHeader(b"expect")
            self.channel.refuseBody()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > MAX_BODY:
            self.channel.refuseBody()
            return
        super().handleContentChunk(data)


class BoundedChannel(http.HTTPChannel):
    """
    An L{http.HTTPChannel} whose requests must arrive whole in time.
    """

    log = Logger()
    _deadline = None
    _refused = False

    def connectionMade(self):
        super().connectionMade()
        self.factory.opened(self)
        self._awaitRequest()

    def _awaitRequest(self):
        self._cancelDeadline()
        self._deadline = self.factory.clock.callLater(self.factory.requestTimeout, self._late)

    def _cancelDeadline(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _late(self):
        self._deadline = None
        if self.transport is not None:
            self.transport.abortConnection()

    def allContentReceived(self):
        self._cancelDeadline()
        super().allContentReceived()

    def requestDone(self, request):
        super().requestDone(request)
        # The next request's time starts once none is being handled (a
        # pipelined one may have been taken up meanwhile, found in review).
        if self.persistent and not self._refused and not self._handlingRequest:
            self._awaitRequest()

    def refuseBody(self):
        """
        The request's body is larger than L{MAX_BODY}: answer 413 and close,
        reading no more of it.
        """
        if self._refused:
            return
        self._refused = True
        self._cancelDeadline()
        message = f"request body: larger than {MAX_BODY} bytes".encode()
        self.transport.write(_TOO_LARGE % (len(message), message))
        self.transport.loseConnection()
        self.dataReceived = lambda data: None

    def connectionLost(self, reason):
        self._cancelDeadline()
        self.factory.closed(self)
        super().connectionLost(reason)
