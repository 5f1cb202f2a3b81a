"""
Tests for L{distro.cluster.dialect}: the version two members choose and the
capabilities a link has.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro.cluster.dialect import (
    CAPABILITIES,
    HIGHEST,
    LOWEST,
    NoCommonVersion,
    Offer,
    parseCapabilities,
)
from distro.errors import BadRequest


class OfferTests(SynchronousTestCase):
    def test_thisRelease(self):
        """
        This release offers version 3 alone, with two capabilities: writes
        forwarded between members (5.6) and the operators' overrides (5.7).
        """
        self.assertEqual((LOWEST, HIGHEST, CAPABILITIES), (3, 3, frozenset(["forward", "overrides"])))
        self.assertEqual(Offer().challenge(), {"proto": 3, "caps": ["forward", "overrides"]})

    def test_challengeFromBefore(self):
        """
        An offer of one version and no capability is exactly the challenge a
        member from before ranges sends: C{proto} alone.
        """
        self.assertEqual(Offer(3, 3, ()).challenge(), {"proto": 3})
        self.assertEqual(
            Offer(3, 5, {"b", "a"}).challenge(), {"proto": 3, "proto_max": 5, "caps": ["a", "b"]}
        )

    def test_highestCommon(self):
        """
        The connector chooses the highest version in both ranges.
        """
        cases = [
            ((3, 5), {"proto": 3, "proto_max": 4}, 4),
            ((3, 5), {"proto": 3}, 3),
            ((3, 3), {"proto": 3, "proto_max": 9}, 3),
            ((4, 6), {"proto": 2, "proto_max": 5}, 5),
            ((3, 5), {"proto": 3, "proto_max": None}, 3),  # nil: absent
        ]
        for (lowest, highest), challenge, chosen in cases:
            fields, dialect = Offer(lowest, highest, ()).answer(challenge)
            self.assertEqual((fields, dialect.version), ({"proto": chosen}, chosen), challenge)

    def test_noCommon(self):
        for (lowest, highest), challenge in [
            ((3, 3), {"proto": 4, "proto_max": 5}),
            ((4, 5), {"proto": 3}),
        ]:
            self.assertRaises(NoCommonVersion, Offer(lowest, highest).answer, challenge)

    def test_capabilitiesBothHave(self):
        fields, dialect = Offer(3, 3, {"a", "b"}).answer({"proto": 3, "caps": ["b", "c"]})
        self.assertEqual(fields, {"proto": 3, "caps": ["a", "b"]})
        self.assertEqual(dialect.capabilities, {"b"})
        self.assertEqual(Offer(3, 3, {"a"}).accept({"proto": 3}).capabilities, frozenset())
        self.assertEqual(Offer(3, 3, ()).accept({"proto": 3, "caps": ["a"]}).capabilities,
                         frozenset())

    def test_acceptInRange(self):
        offer = Offer(3, 5)
        self.assertEqual(offer.accept({"proto": 4}).version, 4)
        for version in (2, 6):
            with self.assertRaises(NoCommonVersion) as caught:
                offer.accept({"proto": version})
            self.assertIn("3 to 5", str(caught.exception))

    def test_malformed(self):
        """
        Versions that are not positive integers, a C{proto_max} below
        C{proto}, and capabilities that are not a short list of short
        strings are refused, naming the field.
        """
        for challenge, field in [
            ({}, "proto"),
            ({"proto": "3"}, "proto"),
            ({"proto": True}, "proto"),
            ({"proto": 0}, "proto"),
            ({"proto": 3, "proto_max": 2}, "proto_max"),
            ({"proto": 3, "proto_max": 3.5}, "proto_max"),
            ({"proto": 3, "caps": {"a": 1}}, "caps"),
        ]:
            with self.assertRaises(BadRequest) as caught:
                Offer().answer(challenge)
            self.assertEqual(caught.exception.field, field, challenge)
        with self.assertRaises(BadRequest) as caught:
            Offer().accept({"proto": None})
        self.assertEqual(caught.exception.field, "proto")

    def test_notARange(self):
        self.assertRaises(ValueError, Offer, 4, 3)
        self.assertRaises(ValueError, Offer, 0, 3)

    def test_parseCapabilities(self):
        self.assertEqual(parseCapabilities(None), frozenset())
        self.assertEqual(parseCapabilities(["a", "a"]), {"a"})
        for bad in ("a", [""], ["x" * 65], ["a"] * 65, [None]):
            self.assertRaises(BadRequest, parseCapabilities, bad)
