"""
Tests for L{distro.auth}: one authority for every port, its tokens, users,
logins and login tokens, on a clock.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from distro import auth, config
from distro.interfaces import IAuthority
from distro.errors import FORBIDDEN, LIMIT_EXCEEDED, UNAUTHORIZED, RequestError

SECRET = b"cluster-secret"


def inPlace(function, *args):
    return defer.maybeDeferred(function, *args)


def users(**passwords):
    """
    An C{auth_users} table: each user with its password hashed (cheaply),
    granted C{public}; C{root} is an administrator of everything.
    """
    table = {}
    for name, password in passwords.items():
        table[name] = {"password": auth.hashPassword(password, n=4), "namespaces": ["public"]}
        if name == "root":
            table[name].update(namespaces=["*"], admin=True)
    return table


class AuthorityTestCase(SynchronousTestCase):
    def authority(self, secret=SECRET, hasher=inPlace, **keys):
        self.clock = getattr(self, "clock", None) or Clock()
        return auth.Authority(config.build(overrides=keys), self.clock, secret, hasher=hasher)

    def refused(self, code, function, *args):
        error = self.assertRaises(RequestError, function, *args)
        self.assertEqual(error.code, code)
        return error.message

    def loggedIn(self, authority, user, password):
        results = []
        authority.login(user, password).addBoth(results.append)
        (result,) = results
        if not isinstance(result, auth.LoginResult):
            result.raiseException()
        return result

    def loginRefused(self, authority, user, password):
        results = []
        authority.login(user, password).addBoth(results.append)
        (failure,) = results
        return failure.value


class OpenTests(AuthorityTestCase):
    def test_interface(self):
        verifyObject(IAuthority, self.authority())

    def test_open(self):
        """
        Without tokens or users every credential, none too, grants all,
        and a login succeeds quietly (SDKs configured with a user start).
        """
        authority = self.authority()
        self.assertFalse(authority.enabled)
        for credential in (None, "", "anything"):
            grant = authority.grant(credential)
            self.assertTrue(grant.allows("payments") and grant.admin)
        result = self.loggedIn(authority, "nacos", "nacos")
        self.assertEqual((result.token, result.ttl, result.admin), ("AUTH_DISABLED", 18000, True))


class TokenTests(AuthorityTestCase):
    def setUp(self):
        self.tokens = self.authority(auth_tokens={"s3cret": ["public", ""], "all": ["*"]})

    def test_missingOrUnknown(self):
        self.assertTrue(self.tokens.enabled)
        for credential in (None, "", "s3cre", "s3cret ", 7, "dt1.abc.def"):
            self.assertIn("accessToken", self.refused(UNAUTHORIZED, self.tokens.grant, credential))

    def test_namespaces(self):
        """
        A token grants its namespaces; C{""} and C{public} are one.
        """
        grant = self.tokens.grant("s3cret")
        self.assertTrue(grant.allows("public") and grant.allows(""))
        self.assertFalse(grant.allows("payments") or grant.admin)
        message = self.refused(FORBIDDEN, grant.check, "payments", "service.namespace")
        self.assertIn("service.namespace", message)
        self.assertNotIn("s3cret", repr(grant))
        everything = self.tokens.grant("all")
        self.assertTrue(everything.allows("payments") and everything.admin)

    def test_every(self):
        """
        What spans every namespace is for a grant of every namespace (or an
        admin's), refused to one of some namespaces, naming the field.
        """
        self.tokens.grant("all").checkEvery("metrics")
        message = self.refused(FORBIDDEN, self.tokens.grant("s3cret").checkEvery, "metrics")
        self.assertIn("metrics: need a grant of every namespace", message)
        admin = auth.Grant(frozenset({"public"}), True, "root")
        admin.checkEvery("metrics")


class LoginTests(AuthorityTestCase):
    def setUp(self):
        self.table = users(app="pw-app", root="pw-root")
        self.users = self.authority(auth_users=self.table)

    def test_login(self):
        """
        A user logs in with its password: a token valid for
        C{auth_token_ttl_ms}, granting the user's namespaces, that every
        node configured alike accepts.
        """
        result = self.loggedIn(self.users, "app", "pw-app")
        self.assertEqual((result.ttl, result.admin), (18000, False))
        other = self.authority(auth_users=self.table)
        for authority in (self.users, other):
            grant = authority.grant(result.token)
            self.assertEqual((grant.subject, grant.allows("public"), grant.allows("x")),
                             ("app", True, False))
        self.assertTrue(self.loggedIn(self.users, "root", "pw-root").admin)

    def test_wrongPassword(self):
        for user, password in (("app", "pw-root"), ("app", ""), ("nobody", "pw-app"),
                               (None, "pw-app"), ("app", None), ("app", "\ud800")):
            error = self.loginRefused(self.users, user, password)
            self.assertEqual(error.code, UNAUTHORIZED)
            self.assertNotIn("pw-", error.message)

    def test_expires(self):
        token = self.loggedIn(self.users, "app", "pw-app").token
        self.clock.advance(18000 - 1)
        self.users.grant(token)
        self.clock.advance(1)
        self.assertIn("expired", self.refused(UNAUTHORIZED, self.users.grant, token))

    def test_forged(self):
        """
        A token changed anywhere, signed with another secret, or made with
        an old password is refused.
        """
        token = self.loggedIn(self.users, "app", "pw-app").token
        head, body, mac = token.split(".")
        for forged in (f"{head}.{body}.{mac[:-2]}AA", f"{head}.{body[:-2]}AA.{mac}",
                       f"{head}.{body}", token + ".x", f"{head}..{mac}"):
            self.refused(UNAUTHORIZED, self.users.grant, forged)
        self.refused(UNAUTHORIZED, self.authority(secret=b"other", auth_users=self.table).grant, token)
        changed = dict(self.table, app=users(app="new-pw")["app"])
        self.refused(UNAUTHORIZED, self.authority(auth_users=changed).grant, token)

    def test_craftedTokens(self):
        """
        Whatever a forger puts in a login token's place is refused as
        C{UNAUTHORIZED}, never an internal error (found in review: deep
        JSON and a non-ASCII MAC raised).
        """
        import base64

        def b64(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        good = self.loggedIn(self.users, "app", "pw-app").token
        head, body, mac = good.split(".")
        triple, bigExpiry = b64(b"[1, 2, 3]"), b64(b'["app", 1e99]')
        for forged in (f"dt1.{b64(b'[' * 5000)}.x", f"{head}.{body}.\u00e9", f"{head}.{body}.\ud800",
                       f"{head}.\u00e9.{mac}", f"{head}.{triple}.{mac}",
                       f"{head}.{b64(b'{}')}.{mac}", f"{head}.{body}.{mac}{'A' * 2000}",
                       f"{head}.{bigExpiry}.{mac}"):
            self.refused(UNAUTHORIZED, self.users.grant, forged)

    def test_unknownUserCostsAHash(self):
        """
        An unknown user's login is checked as long as a wrong password:
        its refusal's time does not tell which users exist.
        """
        calls = []

        def counting(function, *args):
            calls.append(function)
            return inPlace(function, *args)

        authority = self.authority(hasher=counting, auth_users=self.table)
        self.assertEqual(self.loginRefused(authority, "nobody", "pw").code, UNAUTHORIZED)
        self.assertEqual(self.loginRefused(authority, "app", "pw").code, UNAUTHORIZED)
        self.assertEqual(len(calls), 2)

    def test_repeatedLoginHashesOnce(self):
        """
        An SDK's periodic login with the password that last succeeded costs
        no second scrypt.
        """
        calls = []

        def counting(function, *args):
            calls.append(function)
            return inPlace(function, *args)

        authority = self.authority(hasher=counting, auth_users=self.table)
        for _ in range(3):
            self.loggedIn(authority, "app", "pw-app")
        self.assertEqual(len(calls), 1)
        self.loginRefused(authority, "app", "wrong")
        self.assertEqual(len(calls), 2)

    def test_loginsBounded(self):
        """
        Past C{MAX_PENDING_LOGINS} hashing at once, a login is refused
        with C{LIMIT_EXCEEDED} rather than queued.
        """
        waiting = []
        authority = self.authority(hasher=lambda f, *a: waiting.append(defer.Deferred()) or waiting[-1],
                                   auth_users=self.table)
        for _ in range(auth.MAX_PENDING_LOGINS):
            authority.login("app", "pw-app")
        self.assertEqual(self.loginRefused(authority, "app", "pw-app").code, LIMIT_EXCEEDED)
        waiting[0].callback(True)
        self.loggedIn(authority, "app", "pw-app")  # verified now: no hashing
        authority.login("root", "pw-root")  # the place freed
        self.assertEqual(self.loginRefused(authority, "root", "pw-root").code, LIMIT_EXCEEDED)

    def test_needsSecret(self):
        self.assertRaises(ValueError, self.authority, secret=b"", auth_users=self.table)


class PasswordHashTests(SynchronousTestCase):
    def test_roundTrip(self):
        hashed = auth.hashPassword("pässword", n=4)
        self.assertTrue(hashed.startswith("scrypt:4:8:1:"))
        parsed = auth.parsePasswordHash(hashed)
        self.assertTrue(auth.verifyPassword("pässword", parsed))
        self.assertFalse(auth.verifyPassword("password", parsed))

    def test_refused(self):
        for bad in (None, "", "pw", "bcrypt:1:2:3:4:5", "scrypt:3:8:1:AAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA",
                    "scrypt:4:8:1:AA:AAAAAAAAAAAAAAAAAAAAAA", "scrypt:x:8:1:AAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA",
                    "scrypt:1048576:64:16:AAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA"):
            self.assertRaises(auth.PasswordHashError, auth.parsePasswordHash, bad)
