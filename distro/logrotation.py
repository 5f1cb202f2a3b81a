# -*- test-case-name: tests.test_logrotation -*-
"""
twistd's log file with a bounded number of rotated files kept: twistd's
own keeps every one it rotates, so a client that makes a node log (bad
messages, whatever) could fill the disk in time.

twistd takes the log observer from its application's C{ILogObserver}
component when one is set: the node's service tree sets one writing the
file twistd was told (C{--logfile}, or C{twistd.log} for a daemon),
rotated every C{log_rotate_bytes}, keeping C{log_max_files} old files.
"""

import os

from twisted.application.service import MultiService
from twisted.logger import ILogObserver, textFileLogObserver
from twisted.python.logfile import LogFile


def twistdLogPath(twistdOptions):
    """
    The file twistd would log to, from its own options (C{None}: standard
    output, or no options, as when the node runs outside twistd).
    """
    if twistdOptions is None:
        return None
    try:
        path = twistdOptions["logfile"]
        nodaemon = twistdOptions["nodaemon"]
    except KeyError:
        return None
    if path == "-" or (not path and nodaemon):
        return None
    return path or "twistd.log"


def boundedLogFile(path, rotateBytes, maxFiles):
    """
    A L{LogFile} at C{path}, rotated past C{rotateBytes}, keeping at most
    C{maxFiles} rotated files.
    """
    return LogFile(os.path.basename(path), os.path.dirname(os.path.abspath(path)),
                   rotateLength=rotateBytes, maxRotatedFiles=maxFiles)


class LoggingRoot(MultiService):
    """
    The root of a node's service tree: once in twistd's application, it
    gives it the bounded log file as its C{ILogObserver}.

    @param logFile: the L{LogFile}, or C{None} to leave twistd's logging as
        it is (standard output).
    """

    def __init__(self, logFile=None):
        super().__init__()
        self.logFile = logFile

    def setServiceParent(self, parent):
        super().setServiceParent(parent)
        if self.logFile is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, textFileLogObserver(self.logFile))
