"""
Interop test support: the official Nacos SDKs, unmodified, driven through a
small driver program per SDK (tests/interop/) that takes JSON commands on
stdin and writes answers and events on stdout, one per line.

Each SDK is installed under C{.interop/} of the checkout, outside the
project's environment (its dependencies are its own), by
C{tests/interop/setup.sh}; C{.ci/run} runs it. Without it the interop tests
are skipped, unless C{DISTRO_INTEROP_REQUIRED} is set (CI sets it): then they
fail.
"""

import json
import os
import shutil

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
COMMAND_TIMEOUT = 30.0


SDKS = {
    # name: (the driver's command under .interop/, the clientVersion its
    # connections announce, up to the version: "Nacos-Java-Client:v2.5.1")
    "python": (["python", "bin", "python"], "Nacos-Python-Client"),
    # nacos-sdk-python 1.0.0's v1 client: Nacos' HTTP open API, with beats.
    "pythonv1": (["pythonv1", "bin", "python"], "Nacos-Python-Client"),
    "go": (["go", "driver"], "Nacos-Go-Client"),
    "java": (["java", "driver.jar"], "Nacos-Java-Client"),
    # nacos-client 3.1.1: the same driver source, built against 3.x.
    "java3": (["java3", "driver.jar"], "Nacos-Java-Client"),
    # nacos-sdk-rust 0.8.0 through its Python binding,
    # nacos-sdk-rust-binding-py 0.8.0 ("Nacos-Rust-Client:0.8.0").
    "rust": (["rust", "bin", "python"], "Nacos-Rust-Client"),
}

# The drivers that run on the Python of their SDK's own environment.
PYTHON_DRIVERS = {"python": "python_driver.py", "pythonv1": "python_v1_driver.py", "rust": "rust_driver.py"}


def driverCommand(sdk, directory="."):
    """
    The command that runs C{sdk}'s driver (writing what it keeps, logs and
    caches, in C{directory}).

    @raise SkipTest: if the SDK is not installed (and interop is not
        required).
    """
    parts, _ = SDKS[sdk]
    path = os.path.join(CHECKOUT, ".interop", *parts)
    if not os.path.exists(path):
        message = f"the Nacos {sdk} SDK is not installed ({path} is missing): run tests/interop/setup.sh"
        if os.environ.get("DISTRO_INTEROP_REQUIRED"):
            raise AssertionError(message)
        raise SkipTest(message)
    if sdk in PYTHON_DRIVERS:
        return [path, os.path.join(HERE, "interop", PYTHON_DRIVERS[sdk])]
    if sdk in ("java", "java3"):
        # The Java client keeps its logs and caches under the home directory.
        return ["java", f"-Duser.home={directory}", "-jar", path]
    return [path]


class SdkDriver(ProcessProtocol):
    """
    One driver process: L{command} sends a command and fires with its answer;
    L{events} collects what the SDK reported on its own (pushes).
    """

    def __init__(self, name):
        self.name = name
        self.events = []
        self.output = bytearray()
        self.errors = bytearray()
        self._buffer = b""
        self._ids = iter(range(1, 1 << 30))
        self._waiting = {}
        self._eventWaiters = []
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if type(message) is not dict:
                # The SDK's own printing on the shared stdout: kept for
                # diagnosis, never in the way of the driver's lines.
                self.errors += b"stdout: " + line + b"\n"
                continue
            if "event" in message:
                self.events.append(message)
                waiters, self._eventWaiters = self._eventWaiters, []
                for predicate, d in waiters:
                    if predicate(message):
                        d.callback(message)
                    else:
                        self._eventWaiters.append((predicate, d))
            else:
                d = self._waiting.pop(message.get("id"), None)
                if d is not None:
                    d.callback(message)

    def errReceived(self, data):
        self.errors += data

    def processEnded(self, reason):
        for d in list(self._waiting.values()):
            d.errback(AssertionError(f"{self.name} ended: {self.errors.decode()[-2000:]}"))
        self._waiting.clear()
        self.ended.callback(None)

    def request(self, op, **fields):
        """
        Send one command; fire with its answer, C{ok} or not.
        """
        rid = next(self._ids)
        d = self._waiting[rid] = defer.Deferred()
        self.transport.write(json.dumps(dict(fields, id=rid, op=op)).encode() + b"\n")
        return d.addTimeout(COMMAND_TIMEOUT, reactor)

    def command(self, op, **fields):
        """
        Send one command; fire with its answer (failing if it is not ok).
        """
        def checked(answer):
            if not answer.get("ok"):
                raise AssertionError(f"{self.name} {op} failed: {answer}")
            return answer

        return self.request(op, **fields).addCallback(checked)

    def event(self, predicate, timeout):
        """
        Fire with the first event (already seen or to come) that satisfies
        C{predicate}; fail after C{timeout} seconds.
        """
        for message in self.events:
            if predicate(message):
                return defer.succeed(message)
        d = defer.Deferred()
        self._eventWaiters.append((predicate, d))
        return d.addTimeout(timeout, reactor)

    def stop(self):
        """
        End the process (SIGKILL if it does not end on its own).
        """
        if self.ended.called:
            return defer.succeed(None)
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass
        return self.ended


def startDriver(testCase, sdk, name, servers, directory, **fields):
    """
    Start C{sdk}'s driver, stopped in cleanup; fire with it once its SDK has
    started against C{servers} (C{host:port} of the HTTP ports).

    @param fields: more of the start command's fields (C{namespace},
        C{username}, C{password}: see tests/interop/python_driver.py).
    """
    argv = driverCommand(sdk, directory)
    driver = SdkDriver(name)
    executable = shutil.which(argv[0]) or argv[0]
    reactor.spawnProcess(driver, executable, argv, env=dict(os.environ), path=directory)
    testCase.addCleanup(driver.stop)
    d = driver.command("start", servers=",".join(servers), dir=directory, **fields)
    return d.addCallback(lambda _: driver)
