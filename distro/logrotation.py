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

from distro.logformat import filtered


def _twistdLogOptions(twistdOptions):
    """
    twistd's C{(logfile, nodaemon)} options, or C{None} (no options, as
    when the node runs outside twistd).
    """
    if twistdOptions is None:
        return None
    try:
        return twistdOptions["logfile"], twistdOptions["nodaemon"]
    except KeyError:
        return None


def _toStandardOutput(path, nodaemon):
    return path == "-" or (not path and nodaemon)


def twistdLogPath(twistdOptions):
    """
    The file twistd would log to, from its own options (C{None}: standard
    output, or no options, as when the node runs outside twistd).
    """
    options = _twistdLogOptions(twistdOptions)
    if options is None or _toStandardOutput(*options):
        return None
    return options[0] or "twistd.log"


def twistdLogsToStandardOutput(twistdOptions):
    """
    Whether twistd would log to standard output (running in the
    foreground without C{--logfile}, or with C{--logfile -}, and with
    neither C{--syslog} nor C{--logger}).
    """
    options = _twistdLogOptions(twistdOptions)
    if options is None or twistdOptions.get("syslog") or twistdOptions.get("logger"):
        return False
    return _toStandardOutput(*options)


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
    gives it its C{ILogObserver}: the bounded log file, or standard
    output, with the events of C{level} and above.

    @param logFile: the L{LogFile}, or C{None}.
    @param stream: where to log without C{logFile} (twistd's standard
        output), or C{None} to leave twistd's logging as it is.
    @param level: the C{log_level}.
    """

    def __init__(self, logFile=None, *, stream=None, level="info"):
        super().__init__()
        self.logFile = logFile
        self.stream = stream
        self.level = level

    def setServiceParent(self, parent):
        super().setServiceParent(parent)
        target = self.logFile if self.logFile is not None else self.stream
        if target is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, filtered(textFileLogObserver(target), self.level))
