# -*- test-case-name: tests.test_tls -*-
"""
Tests for L{distro.tls}, L{distro.tlslisten} and TLS wherever it is used: the peer-link keys of
the configuration, TLS handshakes over real sockets on 127.0.0.1 (verified,
refused, mutual), the client library and the CLI's options, and the clear
error given without pyOpenSSL. Node processes over TLS are tested in
L{tests.process.test_tls}.

Certificates come from a throwaway CA made for each test (L{tests._tls}).
"""

import os
import sys

from cryptography import x509
from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from distro import cli, config, tap, tls, tlslisten
from distro.client import TLSOptions, connect
from distro.config import ConfigError

from ._tls import FAILURE_TIMEOUT, CertificatesMixin, sslEndpoint


def hideModule(testCase, name):
    """
    Make C{import name} fail for the rest of the test, as if the package
    were not installed.
    """
    missing = object()
    saved = sys.modules.get(name, missing)
    sys.modules[name] = None

    def restore():
        if saved is missing:
            del sys.modules[name]
        else:
            sys.modules[name] = saved

    testCase.addCleanup(restore)


class RequireTLSTests(SynchronousTestCase):
    """
    L{tls.requireTLS} says what to install when TLS cannot be used.
    """

    def test_available(self):
        """
        With the C{tls} extra installed, it passes.
        """
        self.assertIsNone(tls.requireTLS())

    def test_noOpenSSL(self):
        """
        Without pyOpenSSL it names pyOpenSSL and the extra to install.
        """
        hideModule(self, "OpenSSL")
        error = self.assertRaises(tls.TLSUnavailable, tls.requireTLS)
        self.assertEqual(error.missing, "pyOpenSSL")
        self.assertEqual(
            str(error),
            "TLS needs pyOpenSSL, which is not installed: pip install 'distro-registry[tls]'",
        )

    def test_noServiceIdentity(self):
        """
        Without service_identity (host name checks) it names that.
        """
        hideModule(self, "service_identity")
        error = self.assertRaises(tls.TLSUnavailable, tls.requireTLS)
        self.assertEqual(error.missing, "service_identity")

    def test_isTLSEndpoint(self):
        """
        Only C{ssl:} endpoint strings listen with TLS.
        """
        self.assertTrue(tlslisten.isTLSEndpoint("ssl:9849:privateKey=k.pem"))
        self.assertTrue(tlslisten.isTLSEndpoint("SSL:9849"))
        self.assertFalse(tlslisten.isTLSEndpoint("tcp:9849"))
        self.assertFalse(tlslisten.isTLSEndpoint("unix:/tmp/ssl"))


class DialerTests(CertificatesMixin, SynchronousTestCase):
    """
    L{tls.TLSDialer} reads the files of L{tls.TLSOptions} at once and names
    the option of any it cannot use.
    """

    def setUp(self):
        self.makeCertificates()

    def fileError(self, option, names=None, **fields):
        error = self.assertRaises(
            tls.TLSFileError, tls.TLSDialer, TLSOptions(**fields), names
        )
        self.assertEqual(error.option, option)
        self.assertTrue(str(error).startswith(f"{option}: "), str(error))
        return error

    def test_good(self):
        """
        A CA, and a client certificate with its key, make a dialer.
        """
        cert, key = self.authority.client()
        self.assertTrue(tls.TLSDialer(TLSOptions(ca=self.authority.ca, cert=cert, key=key)).verify)

    def test_caUnreadable(self):
        """
        A CA file that cannot be read is named with the reason.
        """
        error = self.fileError("ca", ca=self.tempPath())
        self.assertIn("cannot read", error.problem)
        self.assertIn("No such file", error.problem)

    def test_caNotPEM(self):
        """
        A CA file without a PEM certificate is refused.
        """
        error = self.fileError("ca", ca=self.writeFile(b"not a certificate\n"))
        self.assertIn("holds no PEM certificate", error.problem)

    def test_caBundle(self):
        """
        A CA file may hold several certificates: each is trusted.
        """
        with open(self.authority.ca, "rb") as a, open(self.stranger.ca, "rb") as b:
            bundle = self.writeFile(a.read() + b.read())
        self.assertEqual(len(tls.loadAuthorities(bundle)), 2)

    def test_certWithoutKey(self):
        """
        C{cert} without C{key} names C{key}, and the other way round.
        """
        cert, key = self.authority.client()
        self.assertIn("go together", self.fileError("key", cert=cert).problem)
        self.fileError("cert", key=key)

    def test_certNotPEM(self):
        """
        A certificate file that is not PEM is named.
        """
        cert, key = self.authority.client()
        self.fileError("cert", cert=key, key=key)

    def test_keyNotPEM(self):
        """
        A key file that is not a PEM key is named.
        """
        cert, key = self.authority.client()
        error = self.fileError("key", cert=cert, key=cert)
        self.assertIn("holds no PEM private key", error.problem)

    def test_keyUnreadable(self):
        """
        A key file that cannot be read is named.
        """
        cert, key = self.authority.client()
        self.assertIn("cannot read", self.fileError("key", cert=cert, key=self.tempPath()).problem)

    def test_keyOfAnotherCertificate(self):
        """
        A key that is not the certificate's is refused.
        """
        cert, key = self.authority.client()
        error = self.fileError("key", cert=cert, key=self.serverKey)
        self.assertIn("is not the private key of the certificate", error.problem)

    def test_names(self):
        """
        Errors name the options as the caller calls them.
        """
        self.fileError("peer_tls_ca", {"ca": "peer_tls_ca"}, ca=self.tempPath())

    def test_notOptions(self):
        """
        Anything but a L{TLSOptions} is refused.
        """
        self.assertRaises(ValueError, tls.TLSDialer, {"ca": self.authority.ca})

    def test_noOpenSSL(self):
        """
        Without pyOpenSSL, the dialer cannot be made: the error says what
        to install.
        """
        hideModule(self, "OpenSSL")
        error = self.assertRaises(tls.TLSUnavailable, tls.TLSDialer, TLSOptions())
        self.assertIn(tls.INSTALL_HINT, str(error))


class PeerConfigTests(CertificatesMixin, SynchronousTestCase):
    """
    The peer-link TLS keys: a configuration that cannot work is refused at
    start with a L{ConfigError} naming the key.
    """

    def setUp(self):
        self.makeCertificates()
        self.peerListen = sslEndpoint(0, self.serverCert, self.serverKey)

    def assertConfigError(self, key, **overrides):
        error = self.assertRaises(ConfigError, config.build, None, overrides)
        self.assertEqual(error.key, key)
        self.assertIn(repr(key), str(error))
        return error

    def test_plainByDefault(self):
        """
        By default the peer port is plain TCP and members are dialed so.
        """
        self.assertIsNone(config.build().peerDialer())

    def test_tlsPeerPort(self):
        """
        A TLS peer port with a CA dials members over TLS, verifying them.
        """
        c = config.build(None, {"peer_listen": self.peerListen, "peer_tls_ca": self.authority.ca})
        self.assertTrue(c.peerDialer().verify)

    def test_tlsPeerPortWithoutCA(self):
        """
        A TLS peer port without C{peer_tls_ca} cannot dial its members.
        """
        error = self.assertConfigError("peer_tls_ca", peer_listen=self.peerListen)
        self.assertIn("dialed over TLS", str(error))

    def test_keysWithoutTLSPeerPort(self):
        """
        TLS keys on a plain peer port would dial TLS to plain ports.
        """
        cert, key = self.authority.member()
        for key_, value in [("peer_tls_ca", self.authority.ca), ("peer_tls_cert", cert),
                            ("peer_tls_key", key)]:
            error = self.assertConfigError(key_, **{key_: value})
            self.assertIn("peer_listen is not a TLS (ssl:) endpoint", str(error))

    def test_certWithoutKey(self):
        """
        C{peer_tls_cert} and C{peer_tls_key} go together.
        """
        cert, key = self.authority.member()
        base = {"peer_listen": self.peerListen, "peer_tls_ca": self.authority.ca}
        self.assertConfigError("peer_tls_key", peer_tls_cert=cert, **base)
        self.assertConfigError("peer_tls_cert", peer_tls_key=key, **base)

    def test_badFiles(self):
        """
        Files that cannot be read, are not PEM, or do not match are named.
        """
        cert, key = self.authority.member()
        base = {"peer_listen": self.peerListen}
        self.assertConfigError("peer_tls_ca", peer_tls_ca=self.tempPath(), **base)
        self.assertConfigError("peer_tls_ca", peer_tls_ca=self.writeFile(b"x"), **base)
        base["peer_tls_ca"] = self.authority.ca
        error = self.assertConfigError(
            "peer_tls_key", peer_tls_cert=cert, peer_tls_key=self.serverKey, **base
        )
        self.assertIn("is not the private key", str(error))

    def test_relativeToConfigFile(self):
        """
        The TLS files a configuration file names are relative to it.
        """
        directory = os.path.dirname(self.authority.ca)
        cert, key = self.authority.member()
        path = os.path.join(directory, "node.toml")
        with open(path, "w") as f:
            f.write(
                f'peer_listen = "{self.peerListen}"\n'
                f'peer_tls_ca = "{os.path.basename(self.authority.ca)}"\n'
                f'peer_tls_cert = "{os.path.basename(cert)}"\n'
                f'peer_tls_key = "{os.path.basename(key)}"\n'
            )
        c = config.build(path)
        self.assertEqual((c.peer_tls_ca, c.peer_tls_cert), (self.authority.ca, cert))

    def test_sslWithoutOpenSSL(self):
        """
        Without pyOpenSSL, an C{ssl:} port is refused at start naming the
        key, what is missing and how to install it.
        """
        hideModule(self, "OpenSSL")
        for key in ("listen", "peer_listen"):
            error = self.assertConfigError(key, **{key: self.peerListen})
            self.assertIn("TLS needs pyOpenSSL", str(error))
            self.assertIn("pip install 'distro-registry[tls]'", str(error))

    def test_nodeOptions(self):
        """
        Each peer TLS key is an option of C{twistd distro-node}.
        """
        cert, key = self.authority.member()
        o = tap.Options()
        o.parseOptions(
            ["--peer-listen", self.peerListen, "--peer-tls-ca", self.authority.ca,
             "--peer-tls-cert", cert, "--peer-tls-key", key]
        )
        self.assertEqual(
            (o.config.peer_tls_ca, o.config.peer_tls_cert, o.config.peer_tls_key),
            (self.authority.ca, cert, key),
        )

    def test_nodeCommandLine(self):
        """
        C{twistd distro-node} refuses it as a usage error naming the key.
        """
        o = tap.Options()
        error = self.assertRaises(
            usage.UsageError, o.parseOptions, ["--peer-listen", self.peerListen]
        )
        self.assertIn("'peer_tls_ca'", str(error))


class _Echo(Protocol):
    """
    Sends back what it receives; L{ended} fires when its connection is gone.
    """

    def __init__(self):
        self.ended = defer.Deferred()

    def dataReceived(self, data):
        self.transport.write(data)

    def connectionLost(self, reason):
        self.ended.callback(None)


class _Probe(Protocol):
    """
    Sends a line once connected; L{answered} fires with what comes back, or
    fails with the reason the connection ended first; L{ended} fires when
    the connection is gone.
    """

    def __init__(self):
        self.answered = defer.Deferred()
        self.ended = defer.Deferred()

    def connectionMade(self):
        self.transport.write(b"ping\n")

    def dataReceived(self, data):
        if not self.answered.called:
            self.answered.callback(data)
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.answered.called:
            self.answered.errback(reason)
        self.ended.callback(None)


class HandshakeTests(CertificatesMixin, TestCase):
    """
    Real TLS handshakes on 127.0.0.1: the dialer verifies the server's CA
    and host; a mutual-TLS port verifies the client's certificate.
    """

    timeout = 30

    def setUp(self):
        self.makeCertificates()

    @defer.inlineCallbacks
    def listen(self, endpoint, listening=reactor):
        """
        Listen on C{endpoint} with an echo server; in cleanup, stop and wait
        until every connection it accepted is gone.
        """
        accepted = []

        def echo():
            accepted.append(_Echo())
            return accepted[-1]

        port = yield serverFromString(listening, endpoint).listen(Factory.forProtocol(echo))

        def stop():
            for protocol in accepted:
                if protocol.transport is not None and not protocol.ended.called:
                    protocol.transport.abortConnection()
            ended = [p.ended for p in accepted]
            return defer.gatherResults(ended + [port.stopListening()]).addTimeout(
                FAILURE_TIMEOUT, reactor
            )

        self.addCleanup(stop)
        return port.getHost().port

    @defer.inlineCallbacks
    def roundTrip(self, port, host="127.0.0.1", **options):
        """
        Dial C{port} with a dialer of C{options}; fire with the echo, or fail
        with why the connection ended (bounded).
        """
        dialer = tls.TLSDialer(TLSOptions(**options))
        probe = _Probe()
        yield connectProtocol(tls.hostEndpoint(reactor, host, port, 5, dialer), probe)
        try:
            answer = yield probe.answered.addTimeout(FAILURE_TIMEOUT, reactor)
        finally:
            yield probe.ended.addTimeout(FAILURE_TIMEOUT, reactor)
        return answer

    @defer.inlineCallbacks
    def assertRefused(self, port, why, **options):
        try:
            yield self.roundTrip(port, **options)
        except Exception as e:
            self.assertIn(why, str(e))
        else:
            self.fail("the handshake succeeded")

    @defer.inlineCallbacks
    def test_verified(self):
        """
        A server whose certificate the CA signed for 127.0.0.1 (IP SAN) and
        localhost (DNS SAN) is reached by either.
        """
        port = yield self.listen(sslEndpoint(0, self.serverCert, self.serverKey))
        answer = yield self.roundTrip(port, ca=self.authority.ca)
        self.assertEqual(answer, b"ping\n")
        answer = yield self.roundTrip(port, host="localhost", ca=self.authority.ca)
        self.assertEqual(answer, b"ping\n")

    @defer.inlineCallbacks
    def test_wrongCA(self):
        """
        A server certificate of another CA is refused.
        """
        port = yield self.listen(sslEndpoint(0, self.serverCert, self.serverKey))
        yield self.assertRefused(port, "certificate verify failed", ca=self.stranger.ca)

    @defer.inlineCallbacks
    def test_wrongHost(self):
        """
        A certificate of the right CA for another host is refused.
        """
        cert, key = self.authority.server("elsewhere", [x509.DNSName("elsewhere.example")])
        port = yield self.listen(sslEndpoint(0, cert, key))
        yield self.assertRefused(port, "127.0.0.1", ca=self.authority.ca)

    @defer.inlineCallbacks
    def test_noVerify(self):
        """
        With C{verify=False} any certificate is taken (unsafe).
        """
        port = yield self.listen(sslEndpoint(0, self.serverCert, self.serverKey))
        answer = yield self.roundTrip(port, ca=self.stranger.ca, verify=False)
        self.assertEqual(answer, b"ping\n")
        cert, key = self.authority.client()
        answer = yield self.roundTrip(port, cert=cert, key=key, verify=False)
        self.assertEqual(answer, b"ping\n")

    @defer.inlineCallbacks
    def test_mutual(self):
        """
        A port listening through L{tlslisten.MutualTLSReactor} takes clients that
        present a certificate of the CA, and refuses the others.
        """
        cert, key = self.authority.member("self")
        dialer = tls.TLSDialer(TLSOptions(ca=self.authority.ca, cert=cert, key=key))
        port = yield self.listen(
            sslEndpoint(0, self.serverCert, self.serverKey),
            tlslisten.MutualTLSReactor(reactor, dialer),
        )
        cert, key = self.authority.client()
        answer = yield self.roundTrip(port, ca=self.authority.ca, cert=cert, key=key)
        self.assertEqual(answer, b"ping\n")
        yield self.assertRefused(port, "certificate required", ca=self.authority.ca)
        cert, key = self.stranger.client()
        yield self.assertRefused(port, "unknown ca", ca=self.authority.ca, cert=cert, key=key)


class LibraryWithoutOpenSSLTests(SynchronousTestCase):
    """
    Without pyOpenSSL, asking the client library or the CLI for TLS fails at
    once with the error saying what to install.
    """

    def test_connect(self):
        """
        L{connect} raises L{tls.TLSUnavailable} before connecting.
        """
        hideModule(self, "OpenSSL")
        error = self.assertRaises(
            tls.TLSUnavailable, connect, ["127.0.0.1:1"], reactor=object(), tls=TLSOptions()
        )
        self.assertIn(tls.INSTALL_HINT, str(error))

    def test_cli(self):
        """
        The CLI exits with 2 (usage), saying what to install.
        """
        hideModule(self, "OpenSSL")
        code, stderr = runCLI(self, "--tls", "members")
        self.assertEqual(code, cli.EXIT_USAGE)
        self.assertEqual(
            stderr,
            "distro: TLS needs pyOpenSSL, which is not installed: "
            "pip install 'distro-registry[tls]'\n",
        )


def runCLI(testCase, *argv):
    """
    Run the CLI in-process on a reactor it must not use (it fails before
    connecting); return C{(exitCode, stderr)}.
    """
    from io import StringIO

    from twisted.internet.testing import MemoryReactorClock

    stderr = StringIO()
    d = defer.Deferred.fromCoroutine(
        cli.run(MemoryReactorClock(), ["--server", "127.0.0.1:1", *argv], StringIO(), stderr, {})
    )
    return testCase.successResultOf(d), stderr.getvalue()


class CLIOptionsTests(CertificatesMixin, SynchronousTestCase):
    """
    The CLI's TLS options.
    """

    def parse(self, *argv):
        return cli.parseArguments(list(argv) + ["members"], {}, None, None)

    def test_plain(self):
        """
        Without TLS options the CLI dials plain TCP.
        """
        self.assertIsNone(self.parse().tls)

    def test_options(self):
        """
        C{--tls-ca}, C{--tls-cert}, C{--tls-key} and C{--tls-no-verify} make
        the client's L{TLSOptions}; C{--tls} alone trusts the system's CAs.
        """
        self.assertEqual(self.parse("--tls").tls, TLSOptions())
        self.assertEqual(self.parse("--tls-ca", "ca.pem").tls, TLSOptions(ca="ca.pem"))
        self.assertEqual(
            self.parse("--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-no-verify").tls,
            TLSOptions(cert="c.pem", key="k.pem", verify=False),
        )

    def test_certWithoutKey(self):
        """
        C{--tls-cert} without C{--tls-key} (or the other way) is a usage error.
        """
        from io import StringIO

        for argv, message in [(["--tls-cert", "c"], "--tls-cert needs --tls-key"),
                              (["--tls-key", "k"], "--tls-key needs --tls-cert")]:
            stderr = StringIO()
            error = self.assertRaises(
                cli.UsageExit, cli.parseArguments, argv + ["members"], {}, StringIO(), stderr
            )
            self.assertEqual(error.code, cli.EXIT_USAGE)
            self.assertIn(message, stderr.getvalue())

    def test_badFile(self):
        """
        A TLS file that cannot be used exits with 2, naming the option.
        """
        code, stderr = runCLI(self, "--tls-ca", self.tempPath(), "members")
        self.assertEqual(code, cli.EXIT_USAGE)
        self.assertTrue(stderr.startswith("distro: --tls-ca: cannot read"), stderr)
