# -*- test-case-name: tests.test_client_api -*-
"""
Tests that pin the public surface of L{distro.client}: its exports, one
naming style, keyword-only options, and what importing it imports.
"""

import inspect
import re
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import distro.client
from distro.client import testing
from distro.client.blocking import BlockingClient

EXPORTS = {
    "DistroClient",
    "DistroError",
    "Instance",
    "Member",
    "NotConnected",
    "Override",
    "RESET",
    "RequestTimeout",
    "Service",
    "ServiceInfo",
    "ServicePage",
    "ServiceSummary",
    "TLSOptions",
    "connect",
}

# The parameters that may be given by position, by callable: what the call
# is about. Every other parameter is an option, and keyword-only.
POSITIONAL = {
    "connect": ["servers"],
    "DistroClient": ["servers"],
    "DistroClient.register": ["service", "ip", "port"],
    "DistroClient.deregister": ["service", "ip", "port"],
    "DistroClient.batch_register": ["service", "instances"],
    "DistroClient.query": ["service"],
    "DistroClient.subscribe": ["service", "listener"],
    "DistroClient.unsubscribe": ["service", "listener"],
    "DistroClient.last_service_info": ["service"],
    "DistroClient.add_session_listener": ["listener"],
    "DistroClient.set_override": ["service", "ip", "port"],
    "DistroClient.clear_override": ["service", "ip", "port"],
    "Override": ["service", "instance_id"],
    "Override.from_wire": ["value"],
    "Service": ["name"],
    "Instance": ["ip", "port"],
    "Instance.from_wire": ["value"],
    "Instance.coerce": ["value"],
    "ServiceInfo": ["service", "hosts", "checksum", "revision"],
    "ServiceInfo.from_wire": ["value"],
    "Service.from_wire": ["key"],
    "Member": ["node", "address", "state"],
    "Member.from_wire": ["value"],
    "ServiceSummary": ["service", "instances"],
    "ServicePage": ["count", "services"],
    "ServicePage.from_wire": ["value"],
    "DistroError": ["code", "message"],
    "RequestTimeout": ["op", "timeout"],
    "BlockingClient": ["servers"],
    "BlockingClient.from_client": ["client", "reactor"],
    "BlockingClient.register": ["service", "ip", "port"],
    "BlockingClient.deregister": ["service", "ip", "port"],
    "BlockingClient.set_override": ["service", "ip", "port"],
    "BlockingClient.clear_override": ["service", "ip", "port"],
    "BlockingClient.batch_register": ["service", "instances"],
    "BlockingClient.query": ["service"],
    "BlockingClient.subscribe": ["service", "listener"],
    "BlockingClient.unsubscribe": ["service", "listener"],
    "BlockingClient.last_service_info": ["service"],
    "InMemoryCluster": ["nodes"],
    "InMemoryCluster.endpoint": ["host", "port"],
    "InMemoryCluster.advance": ["seconds"],
    "InMemoryCluster.stop_node": ["index"],
    "InMemoryCluster.start_node": ["index"],
    "InMemoryCluster.drain_node": ["index"],
    "InMemoryCluster.pause_node": ["index"],
    "InMemoryCluster.resume_node": ["index"],
    "InMemoryCluster.requests": ["index"],
    "InMemoryCluster.view": ["index", "service"],
    "InMemoryCluster.client_ids": ["index"],
}

SNAKE = re.compile(r"_?[a-z][a-z0-9]*(_[a-z0-9]+)*")
CLASS = re.compile(r"[A-Z][A-Za-z0-9]*")
# Names a Python class has whatever its author does.
INHERITED = {"args", "with_traceback", "add_note"}


def publicClasses():
    """
    The public classes: those of C{__all__}, the blocking client and the
    test double, by name.
    """
    classes = {
        name: getattr(distro.client, name)
        for name in distro.client.__all__
        if inspect.isclass(getattr(distro.client, name))
    }
    classes["BlockingClient"] = BlockingClient
    classes["InMemoryCluster"] = testing.InMemoryCluster
    return classes


def publicMembers(cls):
    """
    The public attributes and methods C{cls} defines (not those of
    C{object} or of built-in exceptions).
    """
    names = set()
    for klass in cls.__mro__:
        if klass.__module__ == "builtins" or not klass.__module__.startswith("distro"):
            continue
        names.update(name for name in vars(klass) if not name.startswith("_"))
    fields = getattr(cls, "__dataclass_fields__", {})
    names.update(name for name in fields if not name.startswith("_"))
    return sorted(names - INHERITED)


class ExportTests(SynchronousTestCase):
    """
    What L{distro.client} exports.
    """

    def test_all(self):
        """
        C{__all__} is exactly the public API.
        """
        self.assertEqual(set(distro.client.__all__), EXPORTS)
        self.assertEqual(len(distro.client.__all__), len(EXPORTS))

    def test_exportsExist(self):
        """
        Every name of C{__all__} is an attribute of the package.
        """
        for name in distro.client.__all__:
            self.assertTrue(hasattr(distro.client, name), name)

    def test_testingExports(self):
        """
        L{distro.client.testing} exports its one class; the blocking module
        its one class.
        """
        self.assertEqual(testing.__all__, ["InMemoryCluster"])
        from distro.client import blocking

        self.assertEqual(blocking.__all__, ["BlockingClient"])


class NamingTests(SynchronousTestCase):
    """
    One naming style: classes in CapWords, everything else snake_case.
    """

    def test_exportedNames(self):
        """
        Exported classes are CapWords; functions are snake_case; constants
        UPPER_CASE.
        """
        for name in distro.client.__all__:
            value = getattr(distro.client, name)
            if inspect.isclass(value):
                pattern = CLASS
            elif callable(value):
                pattern = SNAKE
            else:
                pattern = re.compile(r"[A-Z][A-Z0-9_]*")
            self.assertTrue(pattern.fullmatch(name), name)

    def test_members(self):
        """
        Every public method, attribute and field of a public class is
        snake_case.
        """
        bad = []
        for className, cls in publicClasses().items():
            for name in publicMembers(cls):
                if not SNAKE.fullmatch(name):
                    bad.append(f"{className}.{name}")
        self.assertEqual(bad, [])

    def test_parameters(self):
        """
        Every parameter of a public callable is snake_case.
        """
        bad = []
        for qualified, f in self.callables():
            for name in inspect.signature(f).parameters:
                if not SNAKE.fullmatch(name):
                    bad.append(f"{qualified}({name})")
        self.assertEqual(bad, [])

    def test_options(self):
        """
        Every parameter of a public callable but those of L{POSITIONAL} is
        keyword-only, and those are not.
        """
        bad = []
        for qualified, f in self.callables():
            parameters = inspect.signature(f).parameters.values()
            positional = [
                p.name
                for p in parameters
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if positional != POSITIONAL.get(qualified, []):
                bad.append(f"{qualified}: {positional}")
        self.assertEqual(bad, [])

    def callables(self):
        """
        C{(qualified name, callable)} of every public function, constructor
        and method, without C{self}.
        """
        result = [("connect", distro.client.connect)]
        for className, cls in publicClasses().items():
            if issubclass(cls, BaseException):
                result.append((className, _exceptionSignature(cls)))
            else:
                result.append((className, cls))
            for name in publicMembers(cls):
                member = inspect.getattr_static(cls, name, None)
                if isinstance(member, (staticmethod, classmethod)):
                    result.append((f"{className}.{name}", getattr(cls, name)))
                elif inspect.isfunction(member):
                    result.append((f"{className}.{name}", _bound(member)))
        return result


def _bound(function):
    """
    A signature-only stand-in for C{function} as a bound method: its
    parameters without the first.
    """
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1:]

    def stand_in(*args, **kwargs):
        pass

    stand_in.__signature__ = signature.replace(parameters=parameters)
    return stand_in


def _exceptionSignature(cls):
    """
    A stand-in with the signature of C{cls}'s own constructor, or none if
    it has none of its own.
    """
    init = cls.__init__
    if init is BaseException.__init__ or not inspect.isfunction(init):
        init = getattr(cls.__mro__[1], "__init__")
    if not inspect.isfunction(init):
        return lambda: None
    return _bound(init)


class ImportTests(SynchronousTestCase):
    """
    What importing L{distro.client} costs.
    """

    def imported(self, module):
        """
        The modules a clean interpreter holds after importing C{module}.
        """
        code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return set(result.stdout.split())

    def test_noGrpc(self):
        """
        Importing L{distro.client} (or its blocking facade) imports no
        grpc, which only the tests need, and no node module: no port, no
        cluster, no server-side TLS.
        """
        for module in ("distro.client", "distro.client.blocking"):
            modules = self.imported(module)
            self.assertFalse({m for m in modules if m == "grpc" or m.startswith("grpc.")})
            server = {
                m
                for m in modules
                if m.startswith(("distro.native", "distro.nacos", "distro.http",
                                 "distro.cluster", "distro.h2grpc"))
                or m in ("distro.node", "distro.tlslisten", "distro.config", "distro.tap")
            }
            self.assertEqual(server, set(), module)
