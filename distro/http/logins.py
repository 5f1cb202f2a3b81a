# -*- test-case-name: tests.test_http -*-
"""
Nacos' logins (v1 and v3 paths): a user's password checked by the node's
authority, a token given back as Nacos gives it.
"""

from distro.admission import Admission
from distro.http.answers import HttpError, document, later, param

# Logins of one address checked at once, at most (each costs a password
# hash; the node's authority bounds them all together).
MAX_LOGINS_PER_IP = 4


class Logins:
    """
    The login routes of a node.
    """

    def __init__(self, node):
        self.node = node
        # The logins being checked, per address.
        self._logins = Admission(MAX_LOGINS_PER_IP)
        self.routes = {
            b"/nacos/v1/auth/users/login": {b"POST": self._login},
            b"/nacos/v1/auth/login": {b"POST": self._login},
            b"/nacos/v3/auth/user/login": {b"POST": self._login},
        }

    def _login(self, request):
        """
        A login; at most L{MAX_LOGINS_PER_IP} of one address at once (each
        costs a password hash), past it 503.
        """
        username = param(request, "username")
        password = param(request, "password")
        ip = request.getClientAddress().host
        if not self._logins.admit(ip):
            raise HttpError(503, "logins: too many at once from this address, try again")

        def done(result):
            self._logins.release(ip)
            return result

        return later(request, self.node.authority.login(username, password).addBoth(done), _loginDocument)


def _loginDocument(request, result):
    return document(request, 200, {"accessToken": result.token, "tokenTtl": result.ttl,
                                   "globalAdmin": result.admin, "username": result.user})
