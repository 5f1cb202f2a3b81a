# -*- test-case-name: tests.test_shared -*-
"""
Values shared by everything that carries an equal one: what was checked or
decoded once (a service key, a metadata map, a request's metadata) is
looked up by its key and not checked or decoded again, and one object
serves all that carry it.
"""


class Shared:
    """
    Values by key; at most C{limit} remembered (past it, it starts over:
    what was shared so far stays shared by those that hold it).
    """

    __slots__ = ("_values", "_limit")

    def __init__(self, limit):
        self._values = {}
        self._limit = limit

    def get(self, key):
        return self._values.get(key)

    def same(self, value):
        """
        The object shared for C{value}, its own key: C{value} itself the
        first time (an immutable one: a name, a key).
        """
        known = self._values.get(value)
        return self.share(value, value) if known is None else known

    def share(self, key, value):
        """
        Remember C{value} for C{key}; return it.
        """
        if len(self._values) >= self._limit:
            self._values.clear()
        self._values[key] = value
        return value
