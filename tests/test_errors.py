"""
Tests for L{distro.errors}: the domain's errors, and the rule that the
core below the ports knows no port.
"""

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

from distro import errors, wire
from distro.errors import BAD_REQUEST, LIMIT_EXCEEDED, BadRequest, LimitExceeded, RequestError

# The core: what every port uses, and nothing of a port.
CORE = ["model", "clients", "registry", "hostlist", "push", "auth", "node", "turns", "admission",
        "interfaces", "errors", "ratelog", "collector", "address"]
PORTS = ("distro.wire", "distro.native", "distro.nacos", "distro.http", "distro.h2grpc", "distro.tap",
         "distro.cli", "distro.client")


class ErrorTests(SynchronousTestCase):
    def test_badRequestNamesTheField(self):
        error = BadRequest("instance.port", "must be an integer")
        self.assertEqual((error.code, error.field), (BAD_REQUEST, "instance.port"))
        self.assertEqual(str(error), "BAD_REQUEST: instance.port: must be an integer")
        self.assertIsInstance(error, RequestError)

    def test_limitExceededNamesTheLimit(self):
        error = LimitExceeded("max_instances_per_client", "more than 10")
        self.assertEqual((error.code, error.limit, error.message),
                         (LIMIT_EXCEEDED, "max_instances_per_client", "max_instances_per_client: more than 10"))

    def test_wireCodesIncludeTheDomain(self):
        """
        distro's protocol sends the domain's codes as they are, beside its
        framing's own.
        """
        self.assertTrue(errors.DOMAIN_CODES < wire.ERROR_CODES)
        self.assertIs(wire.RequestError, RequestError)

    def test_coreKnowsNoPort(self):
        """
        No module of the core imports a port, or distro's wire format.
        """
        root = os.path.dirname(errors.__file__)
        for name in CORE:
            with open(os.path.join(root, name + ".py")) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    imported = [a.name for a in node.names]
                else:
                    continue
                for module in imported:
                    port = any(module == p or module.startswith(p + ".") for p in PORTS)
                    self.assertFalse(port, f"distro/{name}.py imports {module}")
