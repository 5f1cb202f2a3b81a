# -*- test-case-name: tests.test_tap -*-
"""
The node as a twistd plugin: C{twistd -n distro-node [options]}.

Every configuration key is an option (C{--heartbeat-ms} sets C{heartbeat_ms});
the command line overrides the file given with C{--config}.
"""

import difflib
import functools
import gc
import ipaddress
import os
import re
import signal
import sys

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred, succeed
from twisted.logger import Logger, globalLogPublisher
from twisted.python import usage

from distro import __version__
from distro import config as _config
from distro.admission import Admission
from distro.cluster.service import clusterFromConfig, readMembers
from distro.collector import CollectorWatch
from distro.http.service import HttpService
from distro.listening import CannotListen
from distro.logformat import JsonLines, filtered
from distro.logrotation import LoggingRoot, boundedLogFile, twistdLogPath, twistdLogsToStandardOutput
from distro.nacos import listen as nacosListen
from distro.nacos.service import NacosService
from distro.node import Node
from distro.overridefile import OverrideFile, OverrideSaver, StoredDataError
from distro.native.service import ClientPortService


def _optionName(key):
    return key.replace("_", "-")


# The exit code of a node whose configuration (file or command line) is
# wrong; 1 is any other failure to start.
CONFIGURATION_ERROR = 2


def _underTwistd(options):
    """
    Whether C{options} were parsed by twistd, as its C{distro-node}
    command (twistd gives its commands' options a C{parent}).
    """
    return getattr(options, "parent", None) is not None


def _stop(message):
    """
    Stop twistd with C{message} as the one line on stderr: twistd would
    print its whole usage (an error in the options) or a traceback (one in
    L{makeService}) before it.
    """
    sys.stderr.write(f"twistd distro-node: {message}\n")
    sys.stderr.flush()
    raise SystemExit(CONFIGURATION_ERROR)


def _nearestOption(message, known):
    """
    C{message}, getopt's for an unknown option, with the known option
    it probably meant.
    """
    unknown = re.fullmatch(r"option --(\S+) not recognized", message)
    if unknown is None:
        return message
    near = difflib.get_close_matches(unknown.group(1), known, n=1)
    return f"{message} (did you mean --{near[0]}?)" if near else message


class Options(usage.Options):
    """
    Command line of C{twistd distro-node}.
    """

    synopsis = "[--config FILE] [--listen ENDPOINT] [--node-id ID] [--KEY VALUE ...]"
    optParameters = [["config", "c", None, "A TOML configuration file (see etc/distro.toml)."]] + [
        [
            _optionName(key),
            None,
            None,
            f"{f.metadata['doc']} [default: {f.metadata['default']!r}]",
        ]
        for key, f in _config.KEYS.items()
        if key not in _config.FILE_ONLY
    ]
    longdesc = "Run a distro service registry node. With no options: a standalone node on tcp:9850."

    def opt_version(self):
        """
        Print distro's version and exit.
        """
        print(f"distro {__version__}")
        sys.exit(0)

    def parseOptions(self, options=None):
        """
        Parse the command line (L{usage.Options.parseOptions}); under
        twistd, a wrong one stops the process with one line on stderr.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            message = _nearestOption(str(e), [name.rstrip("=") for name in self.longOpt])
            if _underTwistd(self):
                _stop(message)
            raise usage.UsageError(message) from e

    def postOptions(self):
        overrides = {}
        for key in _config.KEYS:
            value = self.get(_optionName(key))
            if value is not None:
                try:
                    overrides[key] = _config.parseValue(key, value)
                except _config.ConfigError as e:
                    raise usage.UsageError(str(e))
        try:
            self.config = _config.build(self["config"], overrides)
            self.members = readMembers(self.config)
        except _config.ConfigError as e:
            raise usage.UsageError(str(e))
        if self.members is not None and not self.config.node_id:
            # Host names are shared by the nodes of one machine; lines are not.
            self.config.node_id = self.members[0]


log = Logger()


def _bindsBeyondLoopback(description):
    """
    Whether a Twisted server endpoint string listens on more than a
    loopback interface.
    """
    parts = re.split(r"(?<!\\):", description)
    kind = parts[0].lower()
    if kind in ("unix", "systemd"):
        return False
    for part in parts[1:]:
        if part.startswith("interface="):
            host = part[len("interface="):].replace("\\:", ":").strip("[]")
            try:
                return not ipaddress.ip_address(host).is_loopback
            except ValueError:
                return host != "localhost"
    return True


def exposedPorts(config):
    """
    The keys of the client ports that listen beyond loopback.
    """
    exposed = []
    if _bindsBeyondLoopback(config.listen):
        exposed.append("listen")
    nacos = nacosListen.endpoint(config.nacos_listen)
    if nacos is not None and _bindsBeyondLoopback(nacos):
        exposed.append("nacos_listen")
    if config.http_listen and _bindsBeyondLoopback(config.http_listen):
        exposed.append("http_listen")
    return exposed


class NotStarted(Exception):
    """
    The node did not start; why was told on the terminal and logged.
    """


class NodeRoot(LoggingRoot):
    """
    The root of a node's tree. Under twistd, a port that cannot listen (or
    a file that cannot be written) stops the start with one line naming
    its key and address (its path), written to
    the terminal twistd was started from (a daemon's too: its standard
    error is kept until the node has started) and logged, instead of a
    traceback.

    @param twistdOptions: twistd's options (C{None} outside twistd: the
        error is raised as it is).
    """

    def __init__(self, logFile, twistdOptions, level):
        stream = sys.stdout if twistdLogsToStandardOutput(twistdOptions) else None
        super().__init__(logFile, stream=stream, level=level)
        self._twistd = twistdOptions
        self._terminal = os.dup(2) if twistdOptions is not None else None

    def startService(self):
        try:
            super().startService()
        except (CannotListen, _config.ConfigError) as e:
            if self._twistd is None:
                raise
            code = CONFIGURATION_ERROR if isinstance(e, _config.ConfigError) else 1
            self._cannotStart(e, code)
        finally:
            if self._terminal is not None:
                os.close(self._terminal)
                self._terminal = None

    def _cannotStart(self, error, code):
        log.critical("{error}", error=str(error), key=error.key)
        os.write(self._terminal, f"twistd distro-node: {error}\n".encode("utf-8", "replace"))
        if not self._twistd["nodaemon"]:
            # twistd tells the terminal too (at most 100 bytes of it), exits
            # with 1 and removes its pid file.
            raise NotStarted(f"{error.key}: see above") from None
        pidfile = self._twistd["pidfile"]
        if pidfile and os.path.exists(pidfile):
            os.remove(pidfile)
        # Not a traceback: the line above says it all.
        raise SystemExit(code)


class NodeService(Service):
    """
    The node's life: its timers stop when the node does (after its ports,
    which are started after it).
    """

    def __init__(self, node):
        self.node = node

    def startService(self):
        super().startService()
        self.node.start()

    def stopService(self):
        super().stopService()
        self.node.stop()


def dataDirectory(path, twistdOptions):
    """
    C{data_dir} as an absolute path: a relative one is relative to twistd's
    C{--rundir} (twistd changes to it only after the node is made).
    """
    rundir = "."
    if twistdOptions is not None:
        try:
            rundir = twistdOptions["rundir"] or "."
        except KeyError:
            pass
    return os.path.abspath(os.path.join(rundir, path))


class OverridesService(Service):
    """
    Keeps the node's overrides under C{data_dir} (L{distro.overridefile}):
    locked and loaded when made, so that a wrong file stops the node before
    it starts, saved as they change, unlocked when the node stops.

    @raise usage.UsageError: naming the file, when it cannot be used.
    """

    def __init__(self, node, dataDir, clock):
        self.saver = OverrideSaver(OverrideFile(dataDir), node.overrides, clock)
        try:
            self.saver.file.lock()
            try:
                loaded = self.saver.load()
            except BaseException:
                self.saver.file.unlock()
                raise
        except StoredDataError as e:
            raise usage.UsageError(str(e))
        node.keepOverrides(self.saver)
        log.info("{count} overrides loaded from {path}", count=loaded, path=self.saver.file.path)

    def startService(self):
        super().startService()
        # After twistd forked into a daemon: the lock says who holds it.
        self.saver.file.notePid()

    def stopService(self):
        super().stopService()
        return self.saver.stop()


class DrainingRoot(NodeRoot):
    """
    The root of the node's service tree: stopping it (twistd on SIGTERM)
    first drains the node (L{Node.drain}: its clients move to other
    members, while every service still runs), then stops the services.
    """

    node = None

    def stopService(self):
        d = maybeDeferred(self.node.drain) if self.node is not None else succeed(None)
        d.addErrback(lambda failure: log.failure("draining failed", failure))
        return d.addCallback(lambda _: super(DrainingRoot, self).stopService())


class JsonLogService(Service):
    """
    Copies every log event as a JSON line to a file or standard output while
    running.
    """

    def __init__(self, path, level="info"):
        self.path = path
        self.level = level
        self._observer = None
        self._file = None

    def startService(self):
        super().startService()
        if self.path == "-":
            # Not sys.stdout: twistd makes that a log file, which would feed
            # every JSON line back into the log as a new event, forever.
            out = sys.__stdout__
        else:
            try:
                out = self._file = open(self.path, "a", encoding="utf-8")
            except OSError as e:
                raise _config.ConfigError("json_log", f"cannot write {self.path}: {e.strerror}") from e
        # One JSON object of plain fields per line (L{JsonLines}).
        self._observer = filtered(JsonLines(out), self.level)
        globalLogPublisher.addObserver(self._observer)

    def stopService(self):
        super().stopService()
        globalLogPublisher.removeObserver(self._observer)
        if self._file is not None:
            self._file.close()


class ReloadOnHangup(Service):
    """
    Re-reads C{cluster.conf} when the process gets SIGHUP.
    """

    def __init__(self, cluster, reactor):
        self.cluster = cluster
        self.reactor = reactor
        self._previous = None

    def startService(self):
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._hangup)

    def _hangup(self, signum, frame):
        # A signal handler may run anywhere: hand the work to the reactor.
        self.reactor.callFromThread(self.cluster.reload)

    def stopService(self):
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None


class CollectorService(Service):
    """
    Watches the garbage collector while the node runs (L{distro.collector}).
    """

    def __init__(self, watch):
        self.watch = watch

    def startService(self):
        super().startService()
        self.watch.start()

    def stopService(self):
        super().stopService()
        self.watch.stop()


def _configurationErrorsAlone(make):
    """
    Under twistd, a configuration error found while the service tree is
    made stops the process with one line on stderr (not a traceback).
    """

    @functools.wraps(make)
    def makeService(options, *args, **kwargs):
        try:
            return make(options, *args, **kwargs)
        except usage.UsageError as e:
            if _underTwistd(options):
                _stop(str(e))
            raise

    return makeService


@_configurationErrorsAlone
def makeService(options, reactor=None, bootId=None, environ=None):
    """
    The service tree of a node: a C{MultiService} with the client port, the
    cluster when C{cluster} is configured, and the JSON log when asked for.

    @raise usage.UsageError: for a wrong cluster configuration, naming the key.
    """
    config = options.config
    members = options.members
    nacosEndpoint = nacosListen.endpoint(config.nacos_listen, config.listen_backlog)
    if reactor is None:
        from twisted.internet import reactor
    environ = os.environ if environ is None else environ
    try:
        secret = config.clusterSecret(environ)
    except _config.ConfigError as e:
        raise usage.UsageError(str(e))
    if config.auth_users and not secret:
        raise usage.UsageError(
            "configuration key 'auth_users': login tokens are signed with the cluster secret: "
            "set cluster_secret, $DISTRO_CLUSTER_SECRET or secret_file (the same on every node)"
        )
    logPath = twistdLogPath(getattr(options, "parent", None))
    root = DrainingRoot(
        boundedLogFile(logPath, config.log_rotate_bytes, config.log_max_files) if logPath else None,
        getattr(options, "parent", None),
        config.log_level,
    )
    node = Node(config, reactor, bootId, freezeLoaded=gc.freeze if config.gc_freeze else None,
                secret=secret, admission=Admission.forProcess(config.max_connections_per_ip))
    root.node = node
    if config.data_dir:
        # Before anything can change them: the overrides as last saved.
        dataDir = dataDirectory(config.data_dir, getattr(options, "parent", None))
        OverridesService(node, dataDir, reactor).setServiceParent(root)
    collector = CollectorWatch(freeze=config.gc_freeze)
    CollectorService(collector).setServiceParent(root)
    if config.log_format == "json":
        JsonLogService(config.json_log, config.log_level).setServiceParent(root)
    NodeService(node).setServiceParent(root)
    # The client port first: the cluster tells peers the address it bound.
    ClientPortService(node, reactor).setServiceParent(root)
    if nacosEndpoint is not None:
        NacosService(node, nacosEndpoint, reactor).setServiceParent(root)
    if config.http_listen:
        HttpService(node, reactor, collector=collector).setServiceParent(root)
    exposed = exposedPorts(config)
    if exposed and not node.authority.enabled:
        log.warn(
            "distro node {node} has no auth_tokens or auth_users, and {ports} listen beyond "
            "loopback: anyone who reaches them can read and change the registry",
            node=node.nodeId, ports=", ".join(exposed),
        )
    if members is not None:
        try:
            cluster = clusterFromConfig(node, reactor, members, environ)
        except _config.ConfigError as e:
            raise usage.UsageError(str(e))
        cluster.setServiceParent(root)
        ReloadOnHangup(cluster, reactor).setServiceParent(root)
    return root
