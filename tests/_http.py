"""
HTTP exchanges with a node's HTTP port in memory, for tests.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport


class Exchange:
    """
    One HTTP connection to the site: raw bytes in, responses out.
    """

    def __init__(self, site, ip="10.0.0.7"):
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", ip, 40000))
        self.channel = site.buildProtocol(IPv4Address("TCP", ip, 40000))
        if self.channel is not None:
            self.channel.makeConnection(self.transport)

    def send(self, data):
        self.channel.dataReceived(data)

    def request(self, method, path, body=b"", headers=(), clock=None):
        """
        Send one request and read its response; with C{clock}, the turns
        that answer it (a large view encoded over turns) run first.
        """
        head = [f"{method} {path} HTTP/1.1", "Host: node"] + list(headers)
        if body or method in ("POST", "PUT"):
            if not any(h.lower().startswith("content-type:") for h in headers):
                head.append("Content-Type: application/x-www-form-urlencoded")
            head.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if clock is not None:
            for _ in range(1000):
                if self.transport.value().endswith(b"0\r\n\r\n") or b"Content-Length" in self.transport.value():
                    break
                clock.advance(0)
        return self.response()

    def response(self):
        """
        C{(status, headers, body)} of the response written so far.
        """
        raw = self.transport.value()
        self.transport.clear()
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = headers.get("Content-Length")
        if length is not None:
            body = rest[:int(length)]
        else:  # chunked
            body, chunks = b"", rest
            while chunks:
                size, _, chunks = chunks.partition(b"\r\n")
                if not int(size, 16):
                    break
                body += chunks[:int(size, 16)]
                chunks = chunks[int(size, 16) + 2:]
        return status, headers, body
