"""
Tests for L{distro.shared}.
"""

from twisted.trial.unittest import SynchronousTestCase

from distro.shared import Shared


class SharedTests(SynchronousTestCase):
    def test_shared(self):
        """
        A value shared for a key is what the key gets; an unknown key gets
        C{None}.
        """
        shared = Shared(4)
        value = ["v"]
        self.assertIs(shared.share("k", value), value)
        self.assertIs(shared.get("k"), value)
        self.assertIsNone(shared.get("other"))

    def test_same(self):
        """
        A value that is its own key: the first one given is what every
        equal one gets.
        """
        shared = Shared(4)
        first, second = "".join(["ns", "1"]), "".join(["n", "s1"])
        self.assertIsNot(first, second)
        self.assertIs(shared.same(first), first)
        self.assertIs(shared.same(second), first)

    def test_bounded(self):
        """
        Past its limit it starts over: at most C{limit} are remembered.
        """
        shared = Shared(2)
        shared.share("a", 1)
        shared.share("b", 2)
        shared.share("c", 3)
        self.assertEqual([shared.get(k) for k in "abc"], [None, None, 3])
