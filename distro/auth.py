# -*- test-case-name: tests.test_auth -*-
"""
Who may do what, for every port alike: one L{Authority} checks a credential
(a configured token, or a login token) and says what it grants.

A node with neither C{auth_tokens} nor C{auth_users} is open: every
credential, none included, grants everything. Otherwise a request without a
credential that grants its namespace is refused, with each port's own code.

Login tokens are made by L{Authority.login} for a user of C{auth_users}
whose password verifies against its scrypt hash. A token names its user and
its expiry and is signed with a key derived from the cluster secret and the
user's password hash: any node of the cluster, configured alike, verifies
it without asking the one that made it, and a changed password ends the
tokens made with the old one.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from distro.errors import FORBIDDEN, LIMIT_EXCEEDED, UNAUTHORIZED, RequestError
from distro.interfaces import IAuthority
from distro.offreactor import runnerFor
from distro.model import DEFAULT_NAMESPACE

# The scrypt parameters of new hashes (hash_password): ~50 ms on one core.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAXMEM = 256 * 1024 * 1024

# Logins hashing at once, and waiting for that, at most: past it a login is
# refused (LIMIT_EXCEEDED) rather than queued without bound.
MAX_PENDING_LOGINS = 64

# Verified tokens remembered (a connection presents the same token with
# every request until its SDK refreshes it).
_VERIFIED_CACHE = 4096

_TOKEN_PREFIX = "dt1."
# The longest login token checked (the node's are about 100 characters).
MAX_LOGIN_TOKEN = 1024

# The token a node without credentials gives at login, as Nacos does.
OPEN_TOKEN = "AUTH_DISABLED"


class PasswordHashError(ValueError):
    """
    A password hash this node cannot use.
    """


def hashPassword(password, *, salt=None, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P):
    """
    The C{auth_users} form of C{password}'s hash:
    C{scrypt:N:r:p:SALT:HASH} (salt and hash in unpadded base64url).
    """
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                            maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt:{n}:{r}:{p}:{_b64(salt)}:{_b64(digest)}"


def parsePasswordHash(text):
    """
    C{(n, r, p, salt, digest)} of a hash made by L{hashPassword}.

    @raise PasswordHashError: naming what is wrong.
    """
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 6 or parts[0] != "scrypt":
        raise PasswordHashError("must be scrypt:N:r:p:SALT:HASH (distro hash-password makes one)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise PasswordHashError("N, r and p must be integers, SALT and HASH base64url")
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or 128 * r * n * p > _SCRYPT_MAXMEM:
        raise PasswordHashError("N must be a power of 2, r 1..64, p 1..16, within 256 MiB")
    if len(salt) < 8 or len(digest) < 16:
        raise PasswordHashError("the salt or the hash is too short")
    return n, r, p, salt, digest


def verifyPassword(password, hashed):
    """
    Whether C{password} matches C{hashed} (the L{parsePasswordHash} tuple).
    CPU-bound (tens of milliseconds): not for the reactor thread.
    """
    n, r, p, salt, digest = hashed
    candidate = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                               maxmem=_SCRYPT_MAXMEM, dklen=len(digest))
    return hmac.compare_digest(candidate, digest)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("not base64url")


def normalNamespace(namespace):
    """
    The one spelling of a namespace: C{""} is C{public}, as in Nacos.
    """
    return namespace or DEFAULT_NAMESPACE


class Grant:
    """
    What a credential allows.

    @ivar namespaces: the namespaces it reads and writes, or C{None} for all.
    @ivar admin: whether it may take operator actions.
    @ivar subject: who it speaks for (a user name, a token's first letters),
        for logs; never a secret.
    @ivar expires: when it stops granting (node clock seconds), or C{None}.
    """

    __slots__ = ("namespaces", "admin", "subject", "expires")

    def __init__(self, namespaces, admin, subject, expires=None):
        self.namespaces = namespaces
        self.admin = admin
        self.subject = subject
        self.expires = expires

    def allows(self, namespace):
        return self.namespaces is None or normalNamespace(namespace) in self.namespaces

    def check(self, namespace, field="namespace", now=None):
        """
        @param now: the time, for a grant that expires (a session that
            authenticated with a login token keeps it past its start).
        @raise RequestError: C{FORBIDDEN}, naming C{field}, if C{namespace}
            is not granted; C{UNAUTHORIZED} once the grant expired.
        """
        if self.expires is not None and now is not None and now >= self.expires:
            raise RequestError(UNAUTHORIZED, "token: expired (log in again)")
        if not self.allows(namespace):
            raise RequestError(FORBIDDEN, f"{field}: not granted {namespace!r}"[:300])

    def checkEvery(self, field):
        """
        What spans every namespace (metrics, counts of all) is for a grant
        of every namespace, or an admin's.

        @raise RequestError: C{FORBIDDEN}, naming C{field}, otherwise.
        """
        if not (self.admin or self.namespaces is None):
            raise RequestError(FORBIDDEN, f"{field}: need a grant of every namespace ('*') or admin")

    def __repr__(self):
        return f"<Grant {self.subject!r} namespaces={self.namespaces!r} admin={self.admin}>"


# What an open node grants.
EVERYTHING = Grant(None, True, "anonymous")


def _grantOf(namespaces, admin, subject, expires=None):
    if "*" in namespaces:
        return Grant(None, admin, subject, expires)
    return Grant(frozenset(normalNamespace(n) for n in namespaces), admin, subject, expires)


def parseNetworks(text):
    """
    The networks of C{admin_from}: comma-separated addresses or CIDRs.

    @raise ValueError: naming the one that is neither.
    """
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an address or a network (CIDR)")
    return tuple(networks)


def _isLoopback(address):
    return address.is_loopback or (
        address.version == 6 and address.ipv4_mapped is not None and address.ipv4_mapped.is_loopback
    )


class LoginResult:
    """
    A successful login: C{token}, its lifetime C{ttl} in seconds, and
    whether its user is an administrator (Nacos' C{globalAdmin}).
    """

    __slots__ = ("token", "ttl", "admin", "user")

    def __init__(self, token, ttl, admin, user):
        self.token = token
        self.ttl = ttl
        self.admin = admin
        self.user = user


@implementer(IAuthority)
class Authority:
    """
    The node's one authority (L{IAuthority}).

    @param config: the node's L{distro.config.Config} (C{auth_tokens},
        C{auth_users}, C{auth_token_ttl_ms}).
    @param clock: the node's clock.
    @param secret: the cluster secret, which signs login tokens (required
        when C{auth_users} is set).
    @param hasher: runs C{(function, *args)} and returns a Deferred; by
        default off the reactor thread (L{distro.offreactor.runnerFor}).
    """

    log = Logger()

    def __init__(self, config, clock, secret=b"", *, hasher=None):
        self.clock = clock
        self.ttl = config.auth_token_ttl_ms / 1000.0
        self._tokens = [
            (token.encode("utf-8"), _grantOf(namespaces, "*" in namespaces, token[:4] + "..."))
            for token, namespaces in config.auth_tokens.items()
        ]
        self._users = {}
        for name, entry in config.auth_users.items():
            hashed = parsePasswordHash(entry["password"])
            self._users[name] = (
                hashed,
                _grantOf(entry.get("namespaces", []), bool(entry.get("admin", False)), name),
                hmac.new(secret, b"distro login token\0" + name.encode("utf-8") + b"\0"
                         + entry["password"].encode("ascii"), hashlib.sha256).digest(),
            )
        if self._users and not secret:
            raise ValueError("auth_users needs the cluster secret to sign login tokens")
        self.enabled = bool(self._tokens or self._users)
        self._adminFrom = parseNetworks(getattr(config, "admin_from", ""))
        self._hasher = runnerFor(clock) if hasher is None else hasher
        self._pending = 0
        self._verified = {}
        # user -> a keyed digest of the password that last logged in: an
        # SDK's periodic login costs no scrypt.
        self._recent = {}
        self._recentKey = secrets.token_bytes(32)
        # What a password of an unknown user is checked against: nothing
        # matches it.
        self._unknown = (SCRYPT_N, SCRYPT_R, SCRYPT_P, secrets.token_bytes(16), secrets.token_bytes(32))

    # IAuthority

    def checkOperator(self, grant, host, field, *, loopback=True):
        if self.enabled:
            if not grant.admin:
                raise RequestError(FORBIDDEN, f"{field}: needs a credential with an admin grant")
            return
        try:
            address = ipaddress.ip_address((host or "").split("%")[0])
        except ValueError:
            address = None
        if address is not None and (
            (loopback and _isLoopback(address)) or any(address in network for network in self._adminFrom)
        ):
            return
        raise RequestError(
            FORBIDDEN,
            f"{field}: without auth_tokens or auth_users, operators' actions are taken from "
            + ("loopback only, or from the networks of admin_from" if loopback else "the networks of admin_from"),
        )

    def grant(self, credential):
        if not self.enabled:
            return EVERYTHING
        if type(credential) is not str or not credential:
            raise RequestError(UNAUTHORIZED, "accessToken: missing (log in, or give a token)")
        now = self.clock.seconds()
        known = self._verified.get(credential)
        if known is not None and (known.expires is None or now < known.expires):
            return known
        found = self._check(credential, now)
        if len(self._verified) >= _VERIFIED_CACHE:
            self._verified.clear()
        self._verified[credential] = found
        return found

    def _check(self, credential, now):
        if credential.startswith(_TOKEN_PREFIX):
            return self._checkLoginToken(credential, now)
        given = credential.encode("utf-8", "surrogatepass")
        for token, grant in self._tokens:
            if hmac.compare_digest(token, given):
                return grant
        raise RequestError(UNAUTHORIZED, "accessToken: not accepted")

    def _checkLoginToken(self, credential, now):
        refused = RequestError(UNAUTHORIZED, "accessToken: not accepted")
        if len(credential) > MAX_LOGIN_TOKEN:
            raise refused
        try:
            body, mac = credential[len(_TOKEN_PREFIX):].split(".")
            user, expires = json.loads(_unb64(body))
            if type(user) is not str or type(expires) is not int:
                raise ValueError("fields")
            mac = mac.encode("ascii")
        except (ValueError, TypeError, RecursionError):  # anything a forger sends
            raise refused
        entry = self._users.get(user)
        if entry is None or not hmac.compare_digest(self._mac(entry, body).encode("ascii"), mac):
            raise refused
        if now >= expires:
            raise RequestError(UNAUTHORIZED, "accessToken: expired (log in again)")
        grant = entry[1]
        return Grant(grant.namespaces, grant.admin, grant.subject, float(expires))

    @staticmethod
    def _mac(entry, body):
        return _b64(hmac.new(entry[2], body.encode("ascii"), hashlib.sha256).digest())

    def login(self, username, password):
        if not self.enabled:
            # An open node: SDKs configured with a user start quietly (the
            # token is Nacos' own when its auth is off).
            return defer.succeed(LoginResult(OPEN_TOKEN, int(self.ttl), True, username or ""))
        if type(username) is not str or type(password) is not str:
            return defer.fail(RequestError(UNAUTHORIZED, "username or password: not accepted"))
        entry = self._users.get(username)
        seen = hmac.new(self._recentKey, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        if entry is not None and hmac.compare_digest(self._recent.get(username, b""), seen):
            return defer.succeed(self._issue(username, entry))
        if self._pending >= MAX_PENDING_LOGINS:
            return defer.fail(RequestError(LIMIT_EXCEEDED, "logins: too many at once, try again"))
        self._pending += 1

        def verified(ok):
            self._pending -= 1
            if not ok or entry is None:
                self.log.info("login of {user!r} refused", user=username[:64])
                raise RequestError(UNAUTHORIZED, "username or password: not accepted")
            self._recent[username] = seen
            return self._issue(username, entry)

        def failed(failure):
            self._pending -= 1
            return failure

        try:
            # An unknown user costs the same hashing as a wrong password:
            # the time of a refusal does not tell which users exist.
            d = self._hasher(verifyPassword, password, self._unknown if entry is None else entry[0])
        except Exception:
            self._pending -= 1
            raise
        return d.addCallbacks(verified, failed)

    def _issue(self, username, entry):
        expires = int(self.clock.seconds() + self.ttl)
        body = _b64(json.dumps([username, expires], separators=(",", ":")).encode("utf-8"))
        token = f"{_TOKEN_PREFIX}{body}.{self._mac(entry, body)}"
        return LoginResult(token, int(self.ttl), entry[1].admin, username)
