"""
TLS between real C{twistd distro-node} processes and their clients: a node
whose client port is TLS serves the client library, the blocking client and
the CLI; a cluster of three whose peer ports are TLS, with mutual TLS,
replicates; a member trusting another CA does not link. (The rest of TLS is
tested in L{tests.test_tls}.)

Certificates come from a throwaway CA made for each test (L{tests._tls}).
"""

import os

from twisted.internet import defer, reactor, threads
from twisted.internet.utils import getProcessOutputAndValue

from distro import cli
from distro.client import NotConnected, TLSOptions, connect
from distro.client._reasons import SILENT_CLOSE, SPEAKS_TLS
from distro.client.blocking import BlockingClient

from tests._process import (
    CLIENT_TIMEOUT,
    DISTRO,
    ORDERS,
    START_TIMEOUT,
    ClusterTestCase,
    ProcessTestCase,
    instanceId,
    waitFor,
)
from tests._tls import FAILURE_TIMEOUT, CertificatesMixin, sslEndpoint


class ClientOverTLSTests(CertificatesMixin, ProcessTestCase):
    """
    A node process whose client port is TLS serves the client library, the
    blocking client and the CLI over TLS; clients that cannot verify it, or
    do not speak TLS, fail within their timeout.
    """

    @defer.inlineCallbacks
    def startTLSNode(self):
        self.makeCertificates()
        process, host, port = yield self.startNode(
            "--listen", sslEndpoint(0, self.serverCert, self.serverKey)
        )
        self.address = f"{host}:{port}"
        return process

    @defer.inlineCallbacks
    def connectClient(self, **kwargs):
        client = yield connect(
            [self.address], reactor=reactor, timeout=CLIENT_TIMEOUT, agent="test_tls/1", **kwargs
        )
        self.addCleanup(client.close)
        return client

    def runCLI(self, *argv, timeout=2, address=None):
        """
        Run the C{distro} command in a process; fire with C{(out, err,
        code)}, bounded.
        """
        d = getProcessOutputAndValue(
            DISTRO,
            ["--server", address or self.address, "--timeout", str(timeout), *argv],
            env=dict(os.environ),
        )
        return d.addTimeout(START_TIMEOUT, reactor)

    @defer.inlineCallbacks
    def failingCLI(self, *argv, address=None):
        """
        Run the C{distro} command with a timeout of 10 s, expecting it to
        exit 3 well before; fire with its standard error.
        """
        started = reactor.seconds()
        out, err, code = yield self.runCLI(*argv, timeout=10, address=address)
        self.assertEqual(code, cli.EXIT_UNREACHABLE, err)
        # The interpreter's start is most of it (0.3 s on an idle machine).
        self.assertLess(reactor.seconds() - started, 5.0)
        return err.decode()

    @defer.inlineCallbacks
    def test_libraryBlockingAndCLI(self):
        """
        Over TLS verified by the CA: the library registers and queries, the
        blocking client sees it, and so does the CLI.
        """
        yield self.startTLSNode()
        client = yield self.connectClient(tls=TLSOptions(ca=self.authority.ca))
        yield client.register(ORDERS, "10.0.0.1", 8080)
        info = yield client.query(ORDERS)
        self.assertEqual([h.instance_id for h in info.hosts], [instanceId("10.0.0.1", 8080)])

        def blocking():
            with BlockingClient(
                [self.address], timeout=CLIENT_TIMEOUT, tls=TLSOptions(ca=self.authority.ca)
            ) as other:
                return other.query(ORDERS)

        info = yield threads.deferToThread(blocking)
        self.assertEqual([h.instance_id for h in info.hosts], [instanceId("10.0.0.1", 8080)])

        out, err, code = yield self.runCLI("--tls-ca", self.authority.ca, "instances", "orders")
        self.assertEqual(code, cli.EXIT_OK, err)
        self.assertIn(b"10.0.0.1  8080  DEFAULT", out)

    @defer.inlineCallbacks
    def test_wrongCA(self):
        """
        A client trusting another CA fails within its timeout, saying that
        the certificate did not verify; so does the CLI (exit code 3).
        """
        yield self.startTLSNode()
        started = reactor.seconds()
        error = yield self.assertFailure(
            self.connectClient(tls=TLSOptions(ca=self.stranger.ca)), NotConnected
        )
        self.assertLess(reactor.seconds() - started, CLIENT_TIMEOUT + 2)
        self.assertIn("certificate verify failed", str(error))

        out, err, code = yield self.runCLI("--tls-ca", self.stranger.ca, "members")
        self.assertEqual(code, cli.EXIT_UNREACHABLE, err)
        self.assertIn(b"certificate verify failed", err)

    @defer.inlineCallbacks
    def test_plainClient(self):
        """
        A client dialing plain TCP to the TLS port fails at once, saying the
        node closed the connection without answering (or, an OpenSSL that
        sends an alert, that the port speaks TLS); the CLI exits 3 at once
        (not after its 10 s timeout), in one line, saying to give a CA.
        """
        process = yield self.startTLSNode()
        started = reactor.seconds()
        error = yield self.assertFailure(self.connectClient(), NotConnected)
        self.assertLess(reactor.seconds() - started, 1.0)
        [reason] = error.reasons.values()
        self.assertIn(reason, (SILENT_CLOSE, SPEAKS_TLS))
        self.assertEqual(list(error.reasons), [self.address])
        self.assertFalse(process.ended)

        err = yield self.failingCLI("members")
        self.assertEqual(
            err,
            f"distro: cannot connect: no node could be reached: {self.address}: {reason} "
            "(if the port is TLS, give --tls-ca FILE or --tls)\n",
        )

    @defer.inlineCallbacks
    def test_tlsClientOfPlainPort(self):
        """
        The CLI dialing TLS to a plain port exits 3 at once, saying the port
        does not speak TLS and to leave out the TLS options.
        """
        self.makeCertificates()
        process, host, port = yield self.startNode()
        err = yield self.failingCLI("--tls-ca", self.authority.ca, "members",
                                    address=f"{host}:{port}")
        self.assertEqual(
            err,
            f"distro: cannot connect: no node could be reached: {host}:{port}: TLS handshake "
            "failed: the port does not speak TLS (if the port is plain TCP, leave out the "
            "--tls options)\n",
        )
        self.assertFalse(process.ended)


class TLSMembersMixin(CertificatesMixin):
    """
    Node processes whose peer ports are TLS, with mutual TLS: each presents
    a certificate of L{peerCA}'s CA.
    """

    def nodeArgs(self, member, portFile):
        cert, key = self.authority.member(f"node{member.index}")
        return super().nodeArgs(member, portFile) + [
            "--peer-listen", sslEndpoint(member.peerPort, cert, key),
            "--peer-tls-ca", self.peerCA(member),
            "--peer-tls-cert", cert,
            "--peer-tls-key", key,
        ]

    def peerCA(self, member):
        """
        The CA C{member} verifies the others with.
        """
        return self.authority.ca


class TLSClusterTests(TLSMembersMixin, ClusterTestCase):
    """
    Three node processes whose peer ports are TLS, with mutual TLS:
    replication works as over TCP.
    """

    @defer.inlineCallbacks
    def test_replicates(self):
        """
        An instance registered on node 1 shows on nodes 2 and 3; C{bye}
        removes it everywhere.
        """
        self.makeCertificates()
        n1, n2, n3 = yield self.startCluster()
        client = yield self.client(self.members, start=0)
        yield client.register(ORDERS, "10.0.0.1", 8080)
        yield self.waitHosts(
            self.members, ORDERS, [instanceId("10.0.0.1", 8080)], "the instance everywhere"
        )
        yield client.close()
        yield self.waitHosts(self.members, ORDERS, [], "the instance gone everywhere")


class WrongCAMemberTests(TLSMembersMixin, ClusterTestCase):
    """
    A member that trusts another CA cannot link to the others, and both
    sides log why.
    """

    def peerCA(self, member):
        return self.stranger.ca if member.index == 2 else self.authority.ca

    @defer.inlineCallbacks
    def test_doesNotLink(self):
        """
        Node 2 refuses node 1's certificate, and says so; node 1 logs that
        the link ended before its handshake.
        """
        self.makeCertificates()
        n1, n2 = yield self.startMembers(2)

        def logged(member, text):
            return lambda: text in member.process.output.decode("utf-8", "replace")

        yield waitFor(
            logged(n2, "certificate verify failed"), FAILURE_TIMEOUT, "node 2 to log why"
        )
        yield waitFor(
            logged(n1, "ended before its handshake"), FAILURE_TIMEOUT, "node 1 to log why"
        )
        self.assertFalse(n1.process.ended or n2.process.ended)
