# -*- test-case-name: tests.test_config -*-
"""
Tests for L{distro.config}: defaults, the TOML file, command-line overrides,
and a L{ConfigError} naming the key for every wrong value.
"""

import os
import re
import socket
import tomllib
from dataclasses import fields

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from distro import config
from distro.config import Config, ConfigError

from ._tempfiles import TempPathMixin

SAMPLE = FilePath(__file__).parent().sibling("etc").child("distro.toml")

# Integer keys where 0 is wrong, and where 0 is allowed (but not negatives).
POSITIVE = {
    "auth_token_ttl_ms",
    "max_overrides",
    "override_expiry_ms",
    "max_watches_per_ip",
    "log_rotate_bytes",
    "log_max_files",
    "listen_backlog",
    "heartbeat_ms",
    "idle_timeout_ms",
    "max_frame",
    "max_unsent_bytes",
    "handshake_timeout_ms",
    "max_instances_per_client",
    "max_subscriptions_per_client",
    "max_metadata_bytes",
    "max_heartbeat_clients",
    "verify_interval_ms",
    "peer_timeout_ms",
    "down_after_ms",
    "peer_max_frame",
    "udp_push_expiry_ms",
}
NON_NEGATIVE = {
    "disconnect_grace_ms",
    "drain_timeout_ms",
    "push_delay_ms",
    "max_connections_per_ip",
    "orphan_grace_ms",
    "load_timeout_ms",
    "udp_push_max_targets",
}


def defaults():
    """
    The default of every key of L{Config}, by name.
    """
    return {f.name: f.metadata["default"] for f in fields(Config)}


class ConfigTestMixin(TempPathMixin):
    """
    Helpers to write configuration files and expect errors.
    """

    def writeConfig(self, content):
        """
        Write C{content} (text or bytes) to a new file; return its path.
        """
        path = self.tempPath()
        if isinstance(content, str):
            content = content.encode("utf-8")
        with open(path, "wb") as f:
            f.write(content)
        return path

    def assertConfigError(self, key, path=None, overrides=None):
        """
        Building from C{path} and C{overrides} fails with a L{ConfigError}
        about C{key}, whose message names C{key}.
        """
        error = self.assertRaises(ConfigError, config.build, path, overrides)
        self.assertEqual(error.key, key)
        self.assertIn(repr(key), str(error))
        return error


class DefaultsTests(SynchronousTestCase):
    """
    The defaults are those of PROTOCOL.md section 7.
    """

    def test_protocolDefaults(self):
        """
        Every default named in PROTOCOL.md 7 that a standalone node uses.
        """
        c = Config()
        self.assertEqual(c.listen, "tcp:9850")
        self.assertEqual(c.heartbeat_ms, 3000)
        self.assertEqual(c.idle_timeout_ms, 10000)
        self.assertEqual(c.disconnect_grace_ms, 2000)
        self.assertEqual(c.push_delay_ms, 0)
        self.assertEqual(c.max_frame, 8 * 1024 * 1024)
        self.assertEqual(c.max_instances_per_client, 10000)
        self.assertEqual(c.max_subscriptions_per_client, 10000)
        self.assertEqual(c.max_connections_per_ip, 0)
        self.assertEqual(c.max_metadata_bytes, 8192)

    def test_otherDefaults(self):
        """
        No authentication, text logs, no port file, derived identity.
        """
        c = Config()
        self.assertEqual(c.auth_tokens, {})
        self.assertEqual(c.log_format, "text")
        self.assertEqual(c.json_log, "-")
        self.assertEqual(c.port_file, "")
        self.assertEqual(c.advertise, "")
        self.assertEqual(c.node_id, "")

    def test_buildWithoutFile(self):
        """
        L{config.build} without a file or overrides gives the defaults, with the
        node id defaulting to the host name.
        """
        c = config.build()
        expected = defaults()
        expected["node_id"] = socket.gethostname()
        for key, value in expected.items():
            self.assertEqual(getattr(c, key), value, key)

    def test_defaultsAreValid(self):
        """
        The defaults pass validation.
        """
        self.assertIsInstance(Config().validate(), Config)

    def test_tokensNotShared(self):
        """
        Each configuration has its own C{auth_tokens} table.
        """
        a, b = Config(), Config()
        a.auth_tokens["t"] = ["*"]
        self.assertEqual(b.auth_tokens, {})

    def test_everyKeyDocumented(self):
        """
        Every key carries a one-line doc and a default in its metadata.
        """
        for f in fields(Config):
            self.assertTrue(f.metadata["doc"].strip(), f.name)
            self.assertNotIn("\n", f.metadata["doc"], f.name)
            self.assertIn("default", f.metadata)
            self.assertIn("check", f.metadata)

    def test_keysTable(self):
        """
        L{config.KEYS} maps every key name to its field.
        """
        self.assertEqual(list(config.KEYS), [f.name for f in fields(Config)])

    def test_integerKeysClassified(self):
        """
        Every integer key is in L{POSITIVE} or L{NON_NEGATIVE}, so the range
        tests below cover a new key too.
        """
        ints = {k for k, v in defaults().items() if type(v) is int}
        self.assertEqual(ints, POSITIVE | NON_NEGATIVE)


class SampleTests(SynchronousTestCase):
    """
    C{etc/distro.toml} documents every key with its default.
    """

    def setUp(self):
        """
        Read and parse the sample.
        """
        self.text = SAMPLE.getContent().decode("utf-8")
        self.data = tomllib.loads(self.text)

    def test_namesEveryKey(self):
        """
        The sample sets exactly the keys of L{Config}.
        """
        self.assertEqual(sorted(self.data), sorted(config.KEYS))

    def test_valuesAreDefaults(self):
        """
        Each value in the sample equals the key's default, with its type.
        """
        for key, default in defaults().items():
            self.assertEqual(self.data[key], default, key)
            self.assertIs(type(self.data[key]), type(default), key)

    def test_everyKeyExplained(self):
        """
        Each key is preceded by a comment line explaining it.
        """
        lines = self.text.splitlines()
        for key in config.KEYS:
            pattern = re.compile(rf"^(\[{key}\]|{key}\s*=)")
            [index] = [i for i, line in enumerate(lines) if pattern.match(line)]
            self.assertTrue(lines[index - 1].startswith("# "), key)

    def test_loads(self):
        """
        The sample is a valid configuration file: building from it gives the
        defaults.
        """
        c = config.build(SAMPLE.path)
        self.assertEqual(c, config.build())


class FileTests(ConfigTestMixin, SynchronousTestCase):
    """
    Loading a TOML file.
    """

    def test_fileSetsKeys(self):
        """
        Keys in the file replace the defaults; others keep them.
        """
        path = self.writeConfig(
            'node_id = "n1"\n'
            'listen = "tcp:0:interface=127.0.0.1"\n'
            "heartbeat_ms = 500\n"
            "idle_timeout_ms = 1500\n"
            'log_format = "json"\n'
        )
        c = config.build(path)
        self.assertEqual(c.node_id, "n1")
        self.assertEqual(c.listen, "tcp:0:interface=127.0.0.1")
        self.assertEqual(c.heartbeat_ms, 500)
        self.assertEqual(c.idle_timeout_ms, 1500)
        self.assertEqual(c.log_format, "json")
        self.assertEqual(c.push_delay_ms, 0)

    def test_authTokens(self):
        """
        C{auth_tokens} is a table of token to namespace list.
        """
        path = self.writeConfig('[auth_tokens]\n"abc" = ["public", "pay"]\n"root" = ["*"]\n')
        c = config.build(path)
        self.assertEqual(c.auth_tokens, {"abc": ["public", "pay"], "root": ["*"]})

    def test_emptyFile(self):
        """
        An empty file gives the defaults.
        """
        self.assertEqual(config.build(self.writeConfig("")), config.build())

    def test_loadFile(self):
        """
        L{config.loadFile} returns the keys of the file as a dict.
        """
        path = self.writeConfig("max_frame = 1024\n")
        self.assertEqual(config.loadFile(path), {"max_frame": 1024})


class OverrideTests(ConfigTestMixin, SynchronousTestCase):
    """
    Command-line values (overrides) beat the file.
    """

    def test_overrideBeatsFile(self):
        """
        A key in both the file and the overrides takes the override.
        """
        path = self.writeConfig('node_id = "file"\nheartbeat_ms = 500\n')
        c = config.build(path, {"node_id": "cli"})
        self.assertEqual(c.node_id, "cli")
        self.assertEqual(c.heartbeat_ms, 500)

    def test_overrideWithoutFile(self):
        """
        Overrides apply over the defaults.
        """
        c = config.build(None, {"max_connections_per_ip": 3})
        self.assertEqual(c.max_connections_per_ip, 3)

    def test_overrideValidated(self):
        """
        An override is validated like a file value.
        """
        path = self.writeConfig("heartbeat_ms = 500\n")
        self.assertConfigError("heartbeat_ms", path, {"heartbeat_ms": 0})

    def test_crossCheckAfterOverride(self):
        """
        The check relating two keys uses the merged values: a file's
        C{idle_timeout_ms} against a command-line C{heartbeat_ms}.
        """
        path = self.writeConfig("idle_timeout_ms = 1000\n")
        self.assertEqual(config.build(path, {"heartbeat_ms": 999}).idle_timeout_ms, 1000)
        self.assertConfigError("idle_timeout_ms", path, {"heartbeat_ms": 1000})

    def test_unknownOverride(self):
        """
        An override for an unknown key is a L{ConfigError} naming it.
        """
        self.assertConfigError("no_such_key", None, {"no_such_key": 1})

    def test_parseInteger(self):
        """
        L{config.parseValue} types a command-line string by the key's default.
        """
        self.assertEqual(config.parseValue("heartbeat_ms", "500"), 500)
        self.assertEqual(config.parseValue("heartbeat_ms", "-1"), -1)
        self.assertEqual(config.parseValue("listen", "tcp:1"), "tcp:1")

    def test_parseBadInteger(self):
        """
        A non-integer string for an integer key names the key.
        """
        for text in ["abc", "1.5", ""]:
            error = self.assertRaises(ConfigError, config.parseValue, "max_frame", text)
            self.assertEqual(error.key, "max_frame")
            self.assertIn("'max_frame'", str(error))

    def test_parseTable(self):
        """
        C{auth_tokens} cannot come from the command line.
        """
        error = self.assertRaises(ConfigError, config.parseValue, "auth_tokens", "x")
        self.assertEqual(error.key, "auth_tokens")


class ErrorTests(ConfigTestMixin, SynchronousTestCase):
    """
    Every wrong value raises a L{ConfigError} whose message names the key.
    """

    def test_errorNamesKey(self):
        """
        L{ConfigError} keeps the key and puts it in its message.
        """
        error = ConfigError("heartbeat_ms", "bad")
        self.assertEqual(error.key, "heartbeat_ms")
        self.assertEqual(str(error), "configuration key 'heartbeat_ms': bad")

    def test_unknownKey(self):
        """
        A key the file should not have is named.
        """
        error = self.assertConfigError("heartbeat", self.writeConfig("heartbeat = 5\n"))
        self.assertIn("unknown", str(error))

    def test_advertiseNotAnAddress(self):
        """
        An C{advertise} that is not C{host:port} is refused, naming the key.
        """
        for wrong in ("nonsense", "host:99999", "host:0", "host:", ":9850", "::1:9850"):
            error = self.assertConfigError("advertise", overrides={"advertise": wrong})
            self.assertIn(repr(wrong), str(error))

    def test_advertiseAddress(self):
        """
        A C{host:port} C{advertise} (an IPv6 host in brackets), or none.
        """
        for right in ("reg.example:9850", "10.0.0.1:1", "[::1]:65535", ""):
            self.assertEqual(config.build(overrides={"advertise": right}).advertise, right)

    def test_unknownKeyNearMiss(self):
        """
        A misspelt key is named with the known key it is nearest to.
        """
        error = self.assertConfigError("heartbeat_msx", self.writeConfig("heartbeat_msx = 5\n"))
        self.assertIn("(did you mean 'heartbeat_ms'?)", str(error))

    def test_unknownKeyFarFromAny(self):
        """
        A key like no known one gets no guess.
        """
        error = self.assertConfigError("zzzz", self.writeConfig("zzzz = 5\n"))
        self.assertNotIn("did you mean", str(error))

    def test_unknownOverrideNearMiss(self):
        """
        An override of a misspelt key names the key meant.
        """
        error = self.assertRaises(ConfigError, config.build, None, {"listne": "tcp:1"})
        self.assertIn("(did you mean 'listen'?)", str(error))

    def test_unknownTable(self):
        """
        An unknown table is an unknown key.
        """
        self.assertConfigError("cluster", self.writeConfig('[cluster]\nsecret = "x"\n'))

    def test_stringForInteger(self):
        """
        A string where an integer is expected.
        """
        self.assertConfigError("heartbeat_ms", self.writeConfig('heartbeat_ms = "500"\n'))

    def test_floatForInteger(self):
        """
        A float where an integer is expected, even a whole one.
        """
        self.assertConfigError("push_delay_ms", self.writeConfig("push_delay_ms = 20.0\n"))

    def test_boolForInteger(self):
        """
        A boolean is not an integer here.
        """
        self.assertConfigError("max_frame", self.writeConfig("max_frame = true\n"))

    def test_integerForString(self):
        """
        An integer where a string is expected.
        """
        self.assertConfigError("listen", self.writeConfig("listen = 9850\n"))
        self.assertConfigError("node_id", self.writeConfig("node_id = 1\n"))

    def test_everyIntegerKeyTyped(self):
        """
        Every integer key rejects a string.
        """
        for key in POSITIVE | NON_NEGATIVE:
            self.assertConfigError(key, None, {key: "1"})

    def test_everyStringKeyTyped(self):
        """
        Every string key rejects an integer.
        """
        for key, default in defaults().items():
            if type(default) is str:
                self.assertConfigError(key, None, {key: 1})

    def test_everyBooleanKeyTyped(self):
        """
        Every true/false key rejects a string or an integer, in a file or
        overridden; on the command line it takes true/false, yes/no or 1/0.
        """
        keys = [key for key, default in defaults().items() if type(default) is bool]
        self.assertEqual(sorted(keys), ["gc_freeze", "rebalance_after_restart", "udp_push_to_any_ip"])
        for key in keys:
            self.assertConfigError(key, None, {key: "yes"})
            self.assertConfigError(key, None, {key: 1})
            path = self.writeConfig(f'{key} = "false"\n')
            self.assertConfigError(key, path, {})
            for text, value in (("true", True), ("No", False), ("1", True), ("0", False)):
                self.assertIs(config.parseValue(key, text), value)
            error = self.assertRaises(ConfigError, config.parseValue, key, "maybe")
            self.assertEqual(error.key, key)
        self.assertIs(config.build(None, {"gc_freeze": False}).gc_freeze, False)

    def test_negative(self):
        """
        Every integer key rejects -1.
        """
        for key in POSITIVE | NON_NEGATIVE:
            self.assertConfigError(key, None, {key: -1})

    def test_negativeInFile(self):
        """
        A negative value in the file is named too.
        """
        self.assertConfigError(
            "disconnect_grace_ms", self.writeConfig("disconnect_grace_ms = -5\n")
        )

    def test_zeroWherePositive(self):
        """
        Keys that must be positive reject 0.
        """
        for key in POSITIVE:
            self.assertConfigError(key, None, {key: 0})

    def test_zeroAllowed(self):
        """
        Keys that only must not be negative accept 0.
        """
        for key in NON_NEGATIVE:
            self.assertEqual(getattr(config.build(None, {key: 0}), key), 0)

    def test_idleNotAboveHeartbeat(self):
        """
        C{idle_timeout_ms} must be greater than C{heartbeat_ms}: equal or less
        is named as C{idle_timeout_ms}.
        """
        self.assertConfigError("idle_timeout_ms", None, {"idle_timeout_ms": 3000})
        self.assertConfigError("idle_timeout_ms", None, {"idle_timeout_ms": 2000})
        self.assertConfigError("idle_timeout_ms", None, {"heartbeat_ms": 20000})
        c = config.build(None, {"idle_timeout_ms": 3001})
        self.assertEqual(c.idle_timeout_ms, 3001)

    def test_framesHoldAnInstance(self):
        """
        A configuration whose frame limits cannot carry one instance of
        C{max_metadata_bytes} (a request, or a piece of a replicated
        client), or a peer limit below a digest's 16 KiB, is refused naming
        the frame key.
        """
        self.assertConfigError("max_frame", None, {"max_frame": 8192})
        self.assertConfigError("peer_max_frame", None, {"peer_max_frame": 12287})
        self.assertConfigError(
            "peer_max_frame", None, {"max_metadata_bytes": 1 << 26, "max_frame": 1 << 27}
        )
        self.assertConfigError(
            "peer_max_frame", None, {"peer_max_frame": 16383, "max_metadata_bytes": 1024}
        )
        c = config.build(None, {"max_frame": 5120, "peer_max_frame": 16384,
                                "max_metadata_bytes": 1024})
        self.assertEqual((c.max_frame, c.peer_max_frame), (5120, 16384))

    def test_badEndpoint(self):
        """
        C{listen} must be a Twisted server endpoint string.
        """
        for bad in ["", "bogus:1", "tcp:notaport", "tcp:1:backlog=x", "9850"]:
            self.assertConfigError("listen", None, {"listen": bad})

    def test_goodEndpoints(self):
        """
        Usual endpoint strings are accepted.
        """
        for good in ["tcp:9850", "tcp:0:interface=127.0.0.1", "tcp6:9850:interface=\\:\\:1"]:
            self.assertEqual(config.build(None, {"listen": good}).listen, good)

    def test_badLogFormat(self):
        """
        C{log_format} is C{text} or C{json} only.
        """
        for bad in ["xml", "JSON", ""]:
            self.assertConfigError("log_format", None, {"log_format": bad})
        self.assertConfigError("log_format", self.writeConfig('log_format = "yaml"\n'))

    def test_tokensNotTable(self):
        """
        C{auth_tokens} must be a table.
        """
        self.assertConfigError("auth_tokens", self.writeConfig('auth_tokens = ["abc"]\n'))
        self.assertConfigError("auth_tokens", self.writeConfig('auth_tokens = "abc"\n'))

    def test_tokenNamespacesNotList(self):
        """
        Each token maps to a list of namespaces.
        """
        self.assertConfigError(
            "auth_tokens", self.writeConfig('[auth_tokens]\nabc = "public"\n')
        )

    def test_tokenNamespaceNotString(self):
        """
        Each namespace is a string ("" is public, as in Nacos).
        """
        self.assertConfigError("auth_tokens", self.writeConfig("[auth_tokens]\nabc = [1]\n"))
        self.assertConfigError("auth_tokens", self.writeConfig('[auth_tokens]\nabc = "public"\n'))
        config.build(self.writeConfig('[auth_tokens]\nabc = [""]\n'))

    def test_users(self):
        """
        Each user of C{auth_users} is a table with a usable scrypt hash,
        namespaces and an admin flag: anything else is refused, naming the
        key and the user, never echoing a password.
        """
        from distro.auth import hashPassword

        good = hashPassword("pw", n=2)
        ok = config.build(self.writeConfig(
            f'[auth_users.app]\npassword = "{good}"\nnamespaces = ["public"]\nadmin = true\n'))
        self.assertEqual(ok.auth_users["app"]["namespaces"], ["public"])
        for body in (
            'app = "pw"',
            '[auth_users.app]\npassword = "plain-text-password"',
            f'[auth_users.app]\npassword = "{good}"\nnamespaces = "public"',
            f'[auth_users.app]\npassword = "{good}"\nadmin = "yes"',
            f'[auth_users.app]\npassword = "{good}"\nrole = "x"',
            f'[auth_users."a:b"]\npassword = "{good}"',
            '[auth_users.app]\npassword = "scrypt:3:8:1:AAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA"',
        ):
            path = self.writeConfig("[auth_users]\n" + body + "\n" if "[" not in body else body + "\n")
            error = self.assertRaises(config.ConfigError, config.build, path)
            self.assertEqual(error.key, "auth_users")
            self.assertNotIn("plain-text-password", str(error))

    def test_loginTokenForm(self):
        """
        A configured token may not look like a login token: it could never
        be accepted.
        """
        self.assertConfigError("auth_tokens", self.writeConfig('[auth_tokens]\n"dt1.abc" = ["*"]\n'))

    def test_emptyToken(self):
        """
        A token must not be empty.
        """
        self.assertConfigError(
            "auth_tokens", self.writeConfig('[auth_tokens]\n"" = ["public"]\n')
        )

    def test_tokenNotInMessage(self):
        """
        The message about a malformed token does not repeat the whole secret.
        """
        error = self.assertConfigError(
            "auth_tokens", self.writeConfig('[auth_tokens]\nsupersecret = "public"\n')
        )
        self.assertNotIn("supersecret", str(error))

    def test_missingFile(self):
        """
        A file that does not exist is named as the C{config} key, with its path.
        """
        path = self.tempPath()
        error = self.assertConfigError("config", path)
        self.assertIn(path, str(error))

    def test_directory(self):
        """
        A directory is not a readable file.
        """
        path = self.tempPath()
        os.mkdir(path)
        self.assertConfigError("config", path)

    def test_invalidToml(self):
        """
        A file that is not TOML is named as the C{config} key.
        """
        error = self.assertConfigError("config", self.writeConfig("heartbeat_ms = \n"))
        self.assertIn("not valid TOML", str(error))
        self.assertConfigError("config", self.writeConfig("[auth_tokens\n"))

    def test_invalidUtf8(self):
        """
        A file that is not UTF-8 is invalid TOML, not a crash.
        """
        self.assertConfigError("config", self.writeConfig(b'node_id = "\xff"\n'))


class ClusterSampleTests(SynchronousTestCase):
    """
    C{etc/node1.toml} .. C{etc/node3.toml}: three nodes on one machine.
    """

    def test_distinctPorts(self):
        """
        No two ports of the three nodes are the same, defaults included (a
        port left to its default is the same port for all three).
        """
        ports = []
        for n in (1, 2, 3):
            path = SAMPLE.sibling(f"node{n}.toml").path
            built = config.build(path, {"cluster": ""})
            for key in [k for k in config.KEYS if k == "listen" or k.endswith("_listen")]:
                value = getattr(built, key)
                if value:
                    ports.append((value.split(":")[1], f"node{n}.toml {key}"))
        numbers = [port for port, _ in ports]
        self.assertEqual(len(numbers), len(set(numbers)), ports)


class OwnershipTests(SynchronousTestCase):
    """
    Each part of the node declares its own keys; the configuration is all
    of them together.
    """

    def test_eachKeyDeclaredOnce(self):
        from distro.cluster.keys import ClusterKeys
        from distro.config import CoreKeys
        from distro.http.keys import HttpKeys
        from distro.nacos.keys import NacosKeys
        from distro.native.keys import NativeKeys

        parts = [CoreKeys, ClusterKeys, NativeKeys, NacosKeys, HttpKeys]
        declared = [f.name for part in parts for f in fields(part)]
        self.assertEqual(len(declared), len(set(declared)))
        self.assertEqual(set(declared), set(config.KEYS))
        self.assertEqual({f.name for f in fields(NacosKeys)}, {"nacos_listen"})
        self.assertEqual({f.name for f in fields(HttpKeys)},
                         {"http_listen", "max_watches_per_ip", "udp_push_max_targets", "udp_push_to_any_ip",
                          "udp_push_expiry_ms"})
        self.assertIn("listen", {f.name for f in fields(NativeKeys)})
        self.assertIn("peer_listen", {f.name for f in fields(ClusterKeys)})

    def test_configImportsOnlyKeysOfPorts(self):
        """
        The configuration takes from each port its keys, nothing else.
        """
        with open(config.__file__) as f:
            imported = re.findall(r"^from (distro\.[a-z.]+) import", f.read(), re.M)
        for module in imported:
            if module.split(".")[1] in ("native", "nacos", "http", "cluster"):
                self.assertTrue(module.endswith(".keys"), module)
