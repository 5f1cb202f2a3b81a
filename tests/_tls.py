"""
Throwaway certificates for TLS tests, made with C{cryptography}: a CA, and
certificates it signs for servers (for 127.0.0.1 and localhost) and
clients, written as PEM files to a temporary directory; and
L{CertificatesMixin}, which gives a test case its CAs and server
certificate.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests._tempfiles import TempPathMixin

# How long a TLS failure may take to show, at most.
FAILURE_TIMEOUT = 10.0

LOOPBACK_NAMES = (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"))


def _name(common):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


class Authority:
    """
    A CA whose files live in C{directory}: C{ca} is its certificate's path.
    """

    def __init__(self, directory, name="distro test CA"):
        self.directory = directory
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._certificate = self._sign(
            _name(name),
            self._key.public_key(),
            [(x509.BasicConstraints(ca=True, path_length=None), True)],
        )
        self.ca = _write(self._path("ca.pem"), self._pem(self._certificate))

    def _path(self, name):
        return os.path.join(self.directory, f"{self.name.replace(' ', '-')}-{name}")

    @staticmethod
    def _pem(certificate):
        return certificate.public_bytes(serialization.Encoding.PEM)

    def _sign(self, subject, publicKey, extensions):
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(_name(self.name))
            .public_key(publicKey)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self._key, hashes.SHA256())

    def issue(self, name, altNames, usages):
        """
        A new key and a certificate for it signed by this CA, naming
        C{altNames}, for the extended key C{usages}.

        @return: C{(certPath, keyPath)}.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        extensions = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage(list(usages)), False),
        ]
        if altNames:
            extensions.append((x509.SubjectAlternativeName(list(altNames)), False))
        certificate = self._sign(_name(name), key.public_key(), extensions)
        keyPEM = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        certPath = _write(self._path(f"{name}-cert.pem"), self._pem(certificate))
        return certPath, _write(self._path(f"{name}-key.pem"), keyPEM)

    def server(self, name="server", altNames=LOOPBACK_NAMES):
        """
        A server certificate and key, for 127.0.0.1 and localhost unless
        C{altNames} says otherwise: C{(certPath, keyPath)}.
        """
        return self.issue(name, altNames, [ExtendedKeyUsageOID.SERVER_AUTH])

    def client(self, name="client"):
        """
        A client certificate and key: C{(certPath, keyPath)}.
        """
        return self.issue(name, (), [ExtendedKeyUsageOID.CLIENT_AUTH])

    def member(self, name="member"):
        """
        A certificate and key a node shows on both ends of its peer links,
        as server and as client: C{(certPath, keyPath)}.
        """
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        return self.issue(name, LOOPBACK_NAMES, usages)


def sslEndpoint(port, certPath, keyPath):
    """
    The server endpoint string of a TLS port on 127.0.0.1.
    """
    return f"ssl:{port}:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"


class CertificatesMixin(TempPathMixin):
    """
    A CA (C{authority}), another one nobody trusts (C{stranger}), and a
    server certificate of each.
    """

    def makeCertificates(self):
        directory = self.tempPath()
        os.makedirs(directory)
        self.authority = Authority(directory)
        self.stranger = Authority(directory, "stranger CA")
        self.serverCert, self.serverKey = self.authority.server()

    def writeFile(self, content):
        path = self.tempPath()
        with open(path, "wb") as f:
            f.write(content)
        return path
