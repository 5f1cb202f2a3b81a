# -*- test-case-name: tests.test_tls -*-
"""
Dialing TLS: the options a client gives (L{TLSOptions}), the files they
name read and checked (L{TLSDialer}), and client endpoints wrapped in TLS
that verify the server's certificate against a CA and the host dialed.

The client library dials its servers with these, and the node dials its
members with them when the cluster's peer port is TLS (C{peer_listen} is an
C{ssl:} endpoint). What only a listening node needs (telling a TLS endpoint
string, requiring client certificates) is in L{distro.tlslisten}.

TLS needs pyOpenSSL and service_identity (the C{tls} extra). This module
imports them only when TLS is used: without them, L{requireTLS} raises
L{TLSUnavailable}, which says what to install.
"""

import importlib
from dataclasses import dataclass

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)

__all__ = [
    "INSTALL_HINT",
    "TLSDialer",
    "TLSFileError",
    "TLSOptions",
    "TLSUnavailable",
    "hostEndpoint",
    "requireTLS",
]

INSTALL_HINT = "pip install 'distro-registry[tls]'"

# What TLS needs, by import name and distribution name.
_MODULES = (("OpenSSL", "pyOpenSSL"), ("service_identity", "service_identity"))


class TLSUnavailable(ImportError):
    """
    TLS was asked for, but the packages it needs are not installed.
    """

    def __init__(self, missing):
        super().__init__(f"TLS needs {missing}, which is not installed: {INSTALL_HINT}")
        self.missing = missing


class TLSFileError(ValueError):
    """
    A file named by a TLS option cannot be used.

    @ivar option: the name of the option (or configuration key) naming it.
    @ivar problem: what is wrong, naming the file.
    """

    def __init__(self, option, problem):
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


def requireTLS():
    """
    Check that TLS can be used.

    @raise TLSUnavailable: naming the first missing package.
    """
    for module, distribution in _MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            raise TLSUnavailable(distribution) from None


def hostEndpoint(reactor, host, port, timeout, dialer=None):
    """
    A client endpoint to C{host} and C{port}, giving up connecting after
    C{timeout} seconds; in TLS if a L{TLSDialer} is given.

    An IP address is dialed as it is: L{HostnameEndpoint}, for a name's
    addresses, reports a refused connection only some 0.3 s later.
    """
    if isIPAddress(host):
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    elif isIPv6Address(host):
        endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    else:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    return endpoint if dialer is None else dialer.wrap(endpoint, host)


@dataclass(frozen=True, kw_only=True)
class TLSOptions:
    """
    How a client dials TLS.

    @ivar ca: a PEM file of the CA certificates that may sign the server's
        certificate; L{None}: the system's trusted CAs.
    @ivar cert: a PEM certificate to present to the server (mutual TLS),
        with C{key}.
    @ivar key: the PEM private key of C{cert}.
    @ivar verify: check the server's certificate against C{ca} and the host
        dialed. C{False} encrypts without knowing who answers, so anyone on
        the path can read and change the traffic: for tests only.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True


def _read(option, path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSFileError(option, f"cannot read {path}: {e.strerror}") from None


def loadAuthorities(path, option="ca"):
    """
    The certificates of the PEM file at C{path}.

    @return: a list of L{twisted.internet.ssl.Certificate}, at least one.
    @raise TLSFileError: naming C{option}, if the file cannot be read or
        holds no PEM certificate.
    @raise TLSUnavailable: without pyOpenSSL.
    """
    requireTLS()
    from cryptography import x509
    from OpenSSL.crypto import X509
    from twisted.internet.ssl import Certificate

    data = _read(option, path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSFileError(option, f"{path} holds no PEM certificate") from None
    return [Certificate(X509.from_cryptography(c)) for c in certificates]


def loadIdentity(certPath, keyPath, certOption="cert", keyOption="key"):
    """
    The certificate at C{certPath} with its private key at C{keyPath}.

    @return: a L{twisted.internet.ssl.PrivateCertificate}.
    @raise TLSFileError: naming the option of the file that cannot be read,
        is not PEM, or (the key) does not match the certificate.
    @raise TLSUnavailable: without pyOpenSSL.
    """
    requireTLS()
    from OpenSSL import crypto
    from twisted.internet.error import VerifyError
    from twisted.internet.ssl import Certificate, KeyPair, PrivateCertificate

    certData = _read(certOption, certPath)
    keyData = _read(keyOption, keyPath)
    try:
        certificate = Certificate.loadPEM(certData)
    except (crypto.Error, ValueError):
        raise TLSFileError(certOption, f"{certPath} holds no PEM certificate") from None
    try:
        key = KeyPair.load(keyData, crypto.FILETYPE_PEM)
    except (crypto.Error, ValueError):
        raise TLSFileError(keyOption, f"{keyPath} holds no PEM private key") from None
    try:
        return PrivateCertificate.fromCertificateAndKeyPair(certificate, key)
    except VerifyError:
        raise TLSFileError(
            keyOption, f"{keyPath} is not the private key of the certificate in {certPath}"
        ) from None


class TLSDialer:
    """
    Wraps client endpoints in TLS as L{TLSOptions} say, with the files they
    name read once, here.

    @ivar verify: whether the server's certificate is checked.
    @ivar authorities: the CA certificates of C{ca}, or L{None} for the
        system's.
    """

    def __init__(self, options, names=None):
        """
        @param options: a L{TLSOptions}.
        @param names: the option names to use in errors, by field name
            (C{{"ca": "peer_tls_ca", ...}}); the field names by default.
        @raise TLSUnavailable: without pyOpenSSL or service_identity.
        @raise TLSFileError: naming the option of a file that cannot be used,
            or C{cert} or C{key} given without the other.
        @raise ValueError: if C{options} is not a L{TLSOptions}.
        """
        if not isinstance(options, TLSOptions):
            raise ValueError(f"tls must be a TLSOptions, not {options!r}")
        names = {field: (names or {}).get(field, field) for field in ("ca", "cert", "key")}
        if (options.cert is None) != (options.key is None):
            missing = "key" if options.key is None else "cert"
            raise TLSFileError(names[missing], f"{names['cert']} and {names['key']} go together")
        requireTLS()
        self.verify = options.verify
        self.authorities = None
        if options.ca is not None:
            self.authorities = loadAuthorities(options.ca, names["ca"])
        self._identity = None
        if options.cert is not None:
            self._identity = loadIdentity(options.cert, options.key, names["cert"], names["key"])

    def connectionCreator(self, host):
        """
        The TLS client side of a connection to C{host}: verifying that the
        server's certificate is signed by the CA and names C{host} (a DNS
        name, or an IP address in an IP SAN), unless C{verify} is off.
        """
        from twisted.internet.ssl import CertificateOptions, optionsForClientTLS, trustRootFromCertificates

        if not self.verify:
            if self._identity is None:
                return CertificateOptions(verify=False)
            return CertificateOptions(
                privateKey=self._identity.privateKey.original,
                certificate=self._identity.original,
                verify=False,
            )
        trustRoot = None
        if self.authorities is not None:
            trustRoot = trustRootFromCertificates(self.authorities)
        return optionsForClientTLS(host, trustRoot=trustRoot, clientCertificate=self._identity)

    def wrap(self, endpoint, host):
        """
        C{endpoint} (a connection to C{host}) with TLS on it.
        """
        return wrapClientTLS(self.connectionCreator(host), endpoint)
