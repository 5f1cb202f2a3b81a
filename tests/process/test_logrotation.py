"""
A real C{twistd distro-node} process with C{--logfile} keeps a bounded
number of rotated log files (L{distro.logrotation}; its parts are tested in
L{tests.test_logrotation}).
"""

import os
import sys

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from tests._process import START_TIMEOUT, TWISTD, NodeProcess, ProcessTestCase, waitFor


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
