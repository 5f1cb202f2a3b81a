# -*- test-case-name: tests.test_tls -*-
"""
TLS on a node's listening ports: telling a TLS endpoint string
(L{isTLSEndpoint}), and L{MutualTLSReactor}, which makes a TLS peer port ask
members for certificates signed by the CA the node dials them with (mutual
TLS). Dialing is L{distro.tls}'s.
"""

from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

__all__ = ["MutualTLSReactor", "isTLSEndpoint"]


def isTLSEndpoint(description):
    """
    Whether the server endpoint string C{description} listens with TLS.
    """
    return description.split(":", 1)[0].strip().lower() == "ssl"


@implementer(IOpenSSLContextFactory)
class _ClientCertificatesRequired:
    """
    A server context factory that asks every client for a certificate and
    refuses the handshake without one signed by C{authorities}.
    """

    def __init__(self, options, authorities):
        self._options = options
        self._authorities = authorities
        self._context = None

    def getContext(self):
        if self._context is None:
            from OpenSSL import SSL

            context = self._options.getContext()
            store = context.get_cert_store()
            for authority in self._authorities:
                store.add_cert(authority.original)
            context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
            self._context = context
        return self._context


class MutualTLSReactor:
    """
    A reactor whose C{listenSSL} ports require client certificates signed
    by a L{distro.tls.TLSDialer}'s CA: C{serverFromString(MutualTLSReactor(reactor,
    dialer), "ssl:...")} listens as the string says, with mutual TLS (the
    C{ssl:} endpoint listens through C{listenSSL}). Everything else is
    C{reactor}'s.
    """

    def __init__(self, reactor, dialer):
        self._reactor = reactor
        self._dialer = dialer

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        options = _ClientCertificatesRequired(contextFactory, self._dialer.authorities)
        return self._reactor.listenSSL(port, factory, options, backlog, interface)

    def __getattr__(self, name):
        return getattr(self._reactor, name)
