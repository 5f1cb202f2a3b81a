# -*- test-case-name: tests.test_logformat -*-
"""
Tests for L{distro.logformat}: the level filter and the JSON lines.
"""

import io
import json

from twisted.logger import LogLevel, Logger, PredicateResult
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from distro.logformat import JsonLines, filtered, levelPredicate, plain


class _Endpoint:
    pass


def _event(namespace="distro.x", level=LogLevel.info, **fields):
    """
    An event as a L{Logger} of C{namespace} emits it.
    """
    events = []
    Logger(namespace=namespace, observer=events.append).emit(level, "{what}", what="it", **fields)
    return events[0]


class LevelTests(SynchronousTestCase):
    """
    L{levelPredicate}: C{log_level}.
    """

    def shown(self, level, event):
        return levelPredicate(level)(event) != PredicateResult.no

    def test_infoHidesDebug(self):
        """
        At C{info}, debug events (each client's connecting, resuming,
        leaving) are not shown; info and above are.
        """
        self.assertFalse(self.shown("info", _event(level=LogLevel.debug)))
        self.assertTrue(self.shown("info", _event(level=LogLevel.info)))
        self.assertTrue(self.shown("info", _event(level=LogLevel.warn)))

    def test_debugShowsAll(self):
        """
        At C{debug}, everything is shown, Twisted's reconnect retries too.
        """
        self.assertTrue(self.shown("debug", _event(level=LogLevel.debug)))
        self.assertTrue(self.shown(
            "debug", _event("twisted.application._client_service.ClientService")))

    def test_retriesHiddenAtInfo(self):
        """
        At C{info}, C{ClientService}'s line for each retry of a peer link
        is not shown; its warnings are.
        """
        namespace = "twisted.application._client_service.ClientService"
        self.assertFalse(self.shown("info", _event(namespace)))
        self.assertTrue(self.shown("info", _event(namespace, LogLevel.warn)))

    def test_warn(self):
        """
        At C{warn}, info events are not shown.
        """
        self.assertFalse(self.shown("warn", _event()))
        self.assertTrue(self.shown("warn", _event(level=LogLevel.error)))

    def test_filtered(self):
        """
        L{filtered} gives an observer the events of the level only.
        """
        seen = []
        observer = filtered(seen.append, "info")
        observer(_event(level=LogLevel.debug))
        observer(_event())
        self.assertEqual(len(seen), 1)


class JsonLinesTests(SynchronousTestCase):
    """
    L{JsonLines}: one JSON object of plain fields per event.
    """

    def line(self, event):
        out = io.StringIO()
        JsonLines(out)(event)
        text = out.getvalue()
        self.assertTrue(text.endswith("\n"))
        self.assertEqual(text.count("\n"), 1)
        return json.loads(text)

    def test_fields(self):
        """
        An event's time, level, namespace, formatted message and its own
        fields; none of Twisted's private fields.
        """
        record = self.line(_event("distro.cluster", LogLevel.warn, peer="n2", count=3))
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["namespace"], "distro.cluster")
        self.assertEqual(record["message"], "it")
        self.assertEqual(record["peer"], "n2")
        self.assertEqual(record["count"], 3)
        self.assertIsInstance(record["time"], float)
        self.assertEqual([k for k in record if k.startswith("log_")], [])

    def test_plainValues(self):
        """
        Bytes are text, collections are lists and objects, other objects
        their text: never a bytes or an object's repr.
        """
        record = self.line(_event(data=b"ab\xff", ids={"a"}, pair=(1, b"x"), nested={"k": [None, True]}))
        self.assertEqual(record["data"], "ab\\xff")
        self.assertEqual(record["ids"], ["a"])
        self.assertEqual(record["pair"], [1, "x"])
        self.assertEqual(record["nested"], {"k": [None, True]})

    def test_plain(self):
        """
        L{plain} keeps JSON's own values and turns the rest into text.
        """
        self.assertEqual(plain(1.5), 1.5)
        self.assertEqual(plain(b"\xc3\xa9"), "\u00e9")
        self.assertIsInstance(plain(_Endpoint()), str)

    def test_failure(self):
        """
        A failure logged with the event comes as its traceback's text.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        events = []
        Logger(namespace="distro.x", observer=events.append).failure("failed", failure)
        record = self.line(events[0])
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertEqual(record["level"], "critical")
