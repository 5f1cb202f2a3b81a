"""
Tests for L{distro.logrotation}: twistd's log file with a bounded number of
rotated files, given to twistd's application as its log observer (under a
real twistd: L{tests.process.test_logrotation}).
"""

import io
import os

from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger
from twisted.trial.unittest import SynchronousTestCase

from distro.logrotation import LoggingRoot, boundedLogFile, twistdLogPath, twistdLogsToStandardOutput

from ._tempfiles import TempPathMixin


class LogPathTests(SynchronousTestCase):
    def test_asTwistd(self):
        """
        The file twistd would log to: its --logfile, twistd.log for a
        daemon, none for standard output or outside twistd.
        """
        self.assertEqual(twistdLogPath({"logfile": "n.log", "nodaemon": True}), "n.log")
        self.assertEqual(twistdLogPath({"logfile": None, "nodaemon": False}), "twistd.log")
        self.assertIsNone(twistdLogPath({"logfile": None, "nodaemon": True}))
        self.assertIsNone(twistdLogPath({"logfile": "-", "nodaemon": True}))
        self.assertIsNone(twistdLogPath(None))


class BoundedTests(TempPathMixin, SynchronousTestCase):
    def test_boundedFiles(self):
        """
        However much is logged, at most C{maxFiles} rotated files are kept
        (found from outside: a flood of bad messages wrote 27 files, and
        twistd keeps them all).
        """
        directory = self.tempPath()
        os.makedirs(directory)
        logFile = boundedLogFile(os.path.join(directory, "node.log"), 1000, 3)
        root = LoggingRoot(logFile)
        application = Application("test")
        root.setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        log = Logger(observer=observer)
        for n in range(500):
            log.info("line {n} of a flood", n=n)
        logFile.close()
        self.assertEqual(sorted(os.listdir(directory)), ["node.log", "node.log.1", "node.log.2", "node.log.3"])

    def test_standardOutputUntouched(self):
        application = Application("test")
        LoggingRoot(None).setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver, None))


class LevelTests(SynchronousTestCase):
    """
    The root's observer logs the events of its C{log_level} and above.
    """

    def test_standardOutputFiltered(self):
        """
        Given twistd's standard output, the root's observer writes there
        the events of its level and above only.
        """
        out = io.StringIO()
        application = Application("test")
        LoggingRoot(None, stream=out, level="info").setServiceParent(application)
        log = Logger(observer=application.getComponent(ILogObserver))
        log.debug("a client connected")
        log.info("a member is DOWN")
        self.assertNotIn("a client connected", out.getvalue())
        self.assertIn("a member is DOWN", out.getvalue())

    def test_standardOutputOrNot(self):
        """
        twistd logs to standard output in the foreground without a log
        file, or with C{--logfile -}; not to syslog or its own logger.
        """
        self.assertTrue(twistdLogsToStandardOutput({"logfile": None, "nodaemon": True}))
        self.assertTrue(twistdLogsToStandardOutput({"logfile": "-", "nodaemon": True}))
        self.assertFalse(twistdLogsToStandardOutput({"logfile": "n.log", "nodaemon": True}))
        self.assertFalse(twistdLogsToStandardOutput({"logfile": None, "nodaemon": False}))
        self.assertFalse(twistdLogsToStandardOutput({"logfile": None, "nodaemon": True, "syslog": True}))
        self.assertFalse(twistdLogsToStandardOutput(
            {"logfile": None, "nodaemon": True, "logger": "x.y"}))
        self.assertFalse(twistdLogsToStandardOutput(None))
