"""
Tests for L{distro.admission}: one count of client connections for every
port, per IP and in all.
"""

import resource

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from distro.admission import RESERVED_DESCRIPTORS, Admission, raiseDescriptorLimit
from distro.http.service import HttpService

from ._h2client import H2Client
from ._node import NodeHarness


class AdmissionTests(SynchronousTestCase):
    def test_perIpAndTotal(self):
        admission = Admission(maxPerIp=2, maxTotal=3)
        self.assertTrue(admission.admit("a") and admission.admit("a"))
        self.assertIn("max_connections_per_ip", admission.refusal("a"))
        self.assertFalse(admission.admit("a"))
        self.assertTrue(admission.admit("b"))
        self.assertIn("file descriptors", admission.refusal("c"))
        admission.release("a")
        self.assertTrue(admission.admit("c"))
        self.assertEqual(admission.count, 3)

    def test_forProcess(self):
        """
        A node's admission leaves descriptors in reserve below its (raised)
        limit.
        """
        admission = Admission.forProcess(0)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertEqual(admission.maxTotal, max(1, soft - RESERVED_DESCRIPTORS))
        self.assertEqual(raiseDescriptorLimit(), soft)


class EveryPortTests(SynchronousTestCase):
    """
    The ports share the node's count: connections from one IP on any of
    them add up, and a full node refuses on every port.
    """

    def test_oneCount(self):
        from distro.nacos.service import NacosService

        harness = NodeHarness(max_connections_per_ip=3)
        nacos = NacosService(harness.node, "tcp:0", None)
        http = HttpService(harness.node, None)
        harness.connect()  # distro's own port, from 10.0.0.1
        H2Client(nacos.factory, ip="10.0.0.1")

        self.assertIsNotNone(http.site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)))
        self.assertEqual(harness.node.admission.count, 3)
        self.assertIsNone(H2Client(nacos.factory, ip="10.0.0.1").server)
        self.assertIsNone(http.site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 2)))
        refused = harness.connect()
        self.assertIn(b"max_connections_per_ip", refused.transport.value())
