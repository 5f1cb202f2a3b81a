"""
The HTTP port of a real C{twistd distro-node} process, over a socket (its
requests are tested byte by byte in L{tests.test_http}).
"""

import re

from twisted.internet import defer, threads

from tests._process import START_TIMEOUT, ProcessTestCase, waitFor


class HttpPortTests(ProcessTestCase):
    """
    A real node's HTTP port, over a socket.
    """

    @defer.inlineCallbacks
    def test_healthAndLogin(self):
        """
        C{/health} answers over a real socket; an open node listening
        beyond loopback says so once at start.
        """
        import urllib.error
        import urllib.request

        process, _, _ = yield self.startNode("--http-listen", "tcp:0:interface=127.0.0.1",
                                             "--listen", "tcp:0")
        pattern = re.compile(rb"serving HTTP on (127\.0\.0\.1:\d+)")
        match = yield waitFor(lambda: pattern.search(process.output), START_TIMEOUT, "the HTTP port")
        url = f"http://{match.group(1).decode()}"

        def get(path, data=None):
            try:
                with urllib.request.urlopen(url + path, data=data, timeout=10) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        for path, data, status, expected in (
            ("/health", None, 200, b'"status":"UP"'),
            ("/ready", None, 200, b'"status":"UP"'),
            ("/nacos/v1/ns/operator/metrics", None, 200, b'{"status":"UP"}'),
            ("/nacos/v3/admin/core/state/liveness", None, 200, b'"data":"ok"'),
            ("/nacos/v3/admin/core/state/readiness", None, 200, b'"data":"ok"'),
            ("/nacos/v1/auth/users/login", b"username=nacos&password=nacos", 200, b'"accessToken":"AUTH_DISABLED"'),
            ("/nacos/v1/auth/login?username=nacos&password=nacos", b"", 200, b'"tokenTtl":18000'),
            ("/nacos/v3/auth/user/login", b"username=nacos&password=nacos", 200, b'"globalAdmin":true'),
            ("/nacos/v1/ns/instance", b"serviceName=a&ip=10.0.0.1&port=1&ephemeral=false", 400, b"ephemeral"),
            ("/nacos/v1/auth/users/login", b"username=nacos", 400, b"password: is required"),
            ("/nope", None, 404, b"no such path"),
        ):
            answer = yield threads.deferToThread(get, path, data)
            self.assertEqual(answer[0], status, (path, answer))
            self.assertIn(expected, answer[1], path)
        self.assertEqual(process.output.count(b"listen beyond loopback"), 1)
        self.assertIn(b"listen beyond loopback", process.output)
