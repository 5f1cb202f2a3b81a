"""
Tests for L{distro.sortedlist}: against a plain sorted list, through chunk
splits and chunks emptied.
"""

import random

from twisted.trial.unittest import SynchronousTestCase

from distro import sortedlist
from distro.sortedlist import SortedList


class SortedListTests(SynchronousTestCase):
    def test_likeASortedList(self):
        """
        Random adds and discards (a few chunks' worth, chunks split and
        emptied) leave the items a sorted list of them holds; every slice
        and each answer agrees.
        """
        rng = random.Random(7)
        items, model = SortedList(), set()
        for step in range(6 * sortedlist.CHUNK):
            item = rng.randrange(4 * sortedlist.CHUNK)
            if rng.random() < 0.65:
                self.assertEqual(items.add(item), item not in model)
                model.add(item)
            else:
                self.assertEqual(items.discard(item), item in model)
                model.discard(item)
            if step % 97 == 0:
                ordered = sorted(model)
                self.assertEqual((list(items), len(items)), (ordered, len(ordered)))
                start = rng.randrange(len(ordered) + 2)
                size = rng.randrange(1, 3 * sortedlist.CHUNK)
                self.assertEqual(items.slice(start, start + size), ordered[start:start + size])
        for item in sorted(model):
            self.assertTrue(items.discard(item))
        self.assertEqual((list(items), len(items), items.slice(0, 10)), ([], 0, []))
        self.assertFalse(items.discard(1))

    def test_tuples(self):
        """
        Items compare as Python's do: C{(group, name)} pairs in order.
        """
        items = SortedList()
        for pair in [("b", "x"), ("a", "z"), ("a", "y")]:
            items.add(pair)
        self.assertEqual(items.slice(0, 2), [("a", "y"), ("a", "z")])
        self.assertEqual(items.slice(2, 100), [("b", "x")])
