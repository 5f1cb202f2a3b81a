"""
Tests for L{distro.address}: one rule set for every C{host:port}.
"""

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial.unittest import SynchronousTestCase

from distro.address import describeAddress, formatAddress, parseAddress
from distro.cluster import members


class AddressTests(SynchronousTestCase):
    def test_parse(self):
        self.assertEqual(parseAddress("10.0.0.1:1234"), ("10.0.0.1", 1234))
        self.assertEqual(parseAddress(" node.example:80 "), ("node.example", 80))
        self.assertEqual(parseAddress("[::1]:9850"), ("::1", 9850))
        self.assertEqual(parseAddress("[fe80::1]", defaultPort=9850), ("fe80::1", 9850))
        self.assertEqual(parseAddress("node", defaultPort=7), ("node", 7))

    def test_refused(self):
        for text in ["::1:9850", "host:", "host:x", "host:70000", "host:0", "[::1", ":80", "[::1]x",
                     "[]:80", "", "node"]:
            self.assertRaises(ValueError, parseAddress, text)

    def test_formatIsTheInverse(self):
        for host, port in [("10.0.0.1", 1), ("::1", 9850), ("node.example", 65535)]:
            self.assertEqual(parseAddress(formatAddress(host, port)), (host, port))
        self.assertEqual(formatAddress("::1", 1), "[::1]:1")

    def test_clusterFileSameRules(self):
        """
        A C{cluster.conf} line follows the same rules, its place named (an
        unbracketed IPv6 literal was taken before, split at its last
        colon).
        """
        self.assertEqual(members.parseAddress("[::1]:9849", "line 1"), ("::1", 9849))
        error = self.assertRaises(ValueError, members.parseAddress, "fe80::1:9849", "cluster.conf line 3")
        self.assertIn("cluster.conf line 3", str(error))
        self.assertIn("[host]:port", str(error))


class DescribeAddressTests(SynchronousTestCase):
    """
    L{describeAddress}: a transport's address in a log line.
    """

    def test_ip(self):
        """
        An IP address and port as C{host:port}, IPv6 in brackets: not the
        address object's repr.
        """
        self.assertEqual(describeAddress(IPv4Address("TCP", "10.0.0.1", 9849)), "10.0.0.1:9849")
        self.assertEqual(describeAddress(IPv6Address("TCP", "::1", 9849)), "[::1]:9849")

    def test_other(self):
        """
        Another kind of address is its text.
        """
        self.assertEqual(describeAddress("somewhere"), "somewhere")
