"""
Tests for L{distro.logrotation}: twistd's log file with a bounded number of
rotated files, given to twistd's application as its log observer.
"""

import os
import sys

from twisted.application.service import Application
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, Logger
from twisted.trial.unittest import SynchronousTestCase

from distro.logrotation import LoggingRoot, boundedLogFile, twistdLogPath

from ._tempfiles import TempPathMixin
from ._process import START_TIMEOUT, TWISTD, NodeProcess, ProcessTestCase, waitFor


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


class TwistdLogTests(ProcessTestCase):
    """
    A real node under twistd with --logfile keeps at most C{log_max_files}
    rotated files.
    """

    @defer.inlineCallbacks
    def test_rotatedAndBounded(self):
        directory = self.tempPath()
        os.makedirs(directory)
        logPath = os.path.join(directory, "node.log")
        portFile = os.path.join(directory, "port")
        process = NodeProcess()
        argv = TWISTD + ["-n", "--pidfile=", "--logfile", logPath, "--rundir", directory, "distro-node",
                         "--nacos-listen", "", "--http-listen", "", "--listen", "tcp:0:interface=127.0.0.1",
                         "--port-file", portFile, "--disconnect-grace-ms", "0",
                         "--log-rotate-bytes", "1000", "--log-max-files", "2"]
        reactor.spawnProcess(process, sys.executable, argv, env=dict(os.environ))
        self.addCleanup(process.stop)
        yield waitFor(lambda: os.path.exists(portFile), START_TIMEOUT, "the port file")
        with open(portFile) as f:
            host, port = f.read().strip().rsplit(":", 1)
        for n in range(30):  # each client that leaves holding an instance is logged
            client = yield self.connect(host, int(port))
            yield client.request("hello", proto=1)
            yield client.request("register", service={"name": "a"}, instance={"ip": "10.0.0.1", "port": n + 1})
            client.transport.loseConnection()
        yield waitFor(lambda: len([f for f in os.listdir(directory) if f.startswith("node.log.")]) >= 2,
                      START_TIMEOUT, "the log to rotate")
        yield deferLater(reactor, 0.5, lambda: None)
        logs = sorted(f for f in os.listdir(directory) if f.startswith("node.log"))
        self.assertEqual(logs, ["node.log", "node.log.1", "node.log.2"])
