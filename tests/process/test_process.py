# -*- test-case-name: tests.process.test_process -*-
"""
Integration tests: a real C{twistd -n distro-node} process, spoken to over
TCP on 127.0.0.1 with a minimal msgpack client written from PROTOCOL.md
(the helpers of L{tests._process}).
"""

import json
import os
import signal

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessTerminated

from tests._ports import freePorts
from tests._process import REPLY_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, ProcessTestCase, waitFor

SERVICE = {"namespace": "public", "group": "DEFAULT_GROUP", "name": "orders"}


class NodeProcessTests(ProcessTestCase):
    """
    A node process serves clients over the protocol.
    """

    @defer.inlineCallbacks
    def test_registerQuerySubscribe(self):
        """
        One client registers and queries; a second, subscribed client is
        pushed each change; C{bye} removes the first client's instance.
        """
        process, host, port = yield self.startNode("--node-id", "proc-1")
        self.assertEqual(host, "127.0.0.1")

        publisher = yield self.connect(host, port)
        welcome = yield self.hello(publisher)
        self.assertEqual(welcome["proto"], 1)
        self.assertEqual(welcome["re"], 1)
        self.assertEqual(welcome["node"], "proc-1")
        self.assertIsInstance(welcome["client_id"], str)
        self.assertIsInstance(welcome["resume_token"], str)
        self.assertIs(welcome["resumed"], False)
        self.assertIs(welcome["ready"], True)
        self.assertEqual((welcome["heartbeat_ms"], welcome["idle_timeout_ms"]), (3000, 10000))
        self.assertEqual(welcome["members"], [f"127.0.0.1:{port}"])

        subscriber = yield self.connect(host, port)
        other = yield self.hello(subscriber)
        self.assertNotEqual(other["client_id"], welcome["client_id"])
        reply = yield subscriber.request("subscribe", service=SERVICE)
        self.assertEqual(reply["op"], "ok", reply)
        self.assertEqual(reply["service_info"]["hosts"], [])

        instance = {"ip": "10.0.0.1", "port": 8080, "metadata": {"version": "1"}}
        reply = yield publisher.request("register", service=SERVICE, instance=instance)
        self.assertEqual(reply, {"op": "ok", "re": 2})

        push = yield subscriber.nextPush()
        self.assertEqual(push["seq"], 1)
        [host1] = push["service_info"]["hosts"]
        self.assertEqual(host1["instance_id"], "10.0.0.1#8080#DEFAULT")
        self.assertEqual(host1["metadata"], {"version": "1"})
        self.assertEqual(push["service_info"]["service"], SERVICE)

        reply = yield publisher.request("query", service={"name": "orders"})
        self.assertEqual(reply["op"], "ok", reply)
        info = reply["service_info"]
        self.assertEqual([h["instance_id"] for h in info["hosts"]], ["10.0.0.1#8080#DEFAULT"])
        self.assertEqual(info["checksum"], push["service_info"]["checksum"])

        reply = yield publisher.request("bye")
        self.assertEqual(reply["op"], "ok", reply)
        yield publisher.lost.addTimeout(REPLY_TIMEOUT, reactor)

        push = yield subscriber.nextPush()
        self.assertEqual(push["seq"], 2)
        self.assertEqual(push["service_info"]["hosts"], [])
        reply = yield subscriber.request("query", service=SERVICE)
        self.assertEqual(reply["service_info"]["hosts"], [])
        self.assertEqual(subscriber.unmatched, [])
        self.assertFalse(process.ended)

    @defer.inlineCallbacks
    def test_helloRequired(self):
        """
        A request before C{hello} is refused and the connection closed, and the
        node goes on serving others.
        """
        process, host, port = yield self.startNode()
        rude = yield self.connect(host, port)
        reply = yield rude.request("query", service=SERVICE)
        self.assertEqual(reply["code"], "HELLO_REQUIRED")
        yield rude.lost.addTimeout(REPLY_TIMEOUT, reactor)
        polite = yield self.connect(host, port)
        yield self.hello(polite)
        reply = yield polite.request("ping")
        self.assertEqual(reply, {"op": "ok", "re": 2})

    @defer.inlineCallbacks
    def test_sigterm(self):
        """
        SIGTERM shuts the node down cleanly: the reactor stops, and twistd
        then ends itself with the same signal, as it does since Twisted 21.
        """
        process, host, port = yield self.startNode()
        client = yield self.connect(host, port)
        yield self.hello(client)
        process.signal("TERM")
        reason = yield process.whenEnded(STOP_TIMEOUT)
        self.assertIsInstance(reason, ProcessTerminated)
        self.assertEqual(reason.signal, signal.SIGTERM)
        self.assertIn(b"Server Shut Down.", process.output)
        yield client.lost.addTimeout(REPLY_TIMEOUT, reactor)

    @defer.inlineCallbacks
    def test_jsonLogToStdout(self):
        """
        With C{--log-format json}, standard output carries JSON lines of the
        node's events, and a bounded amount of them (no feedback loop through
        twistd's redirected C{sys.stdout}).
        """
        process, host, port = yield self.startNode("--log-format", "json")
        client = yield self.connect(host, port)
        yield self.hello(client)
        yield process.stop()
        output = process.output.decode("utf-8", "replace")
        self.assertLess(len(output), 100_000)
        events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        namespaces = {e.get("namespace") for e in events}
        self.assertIn("distro.native.service.ClientPortService", namespaces)
        self.assertNotIn("stdout", namespaces)


def _plainThroughout(value):
    """
    Whether C{value} (decoded JSON) holds no object's or bytes' repr.
    """
    if isinstance(value, dict):
        return all(_plainThroughout(v) for v in value.values())
    if isinstance(value, list):
        return all(_plainThroughout(v) for v in value)
    if isinstance(value, str):
        return " object at 0x" not in value and not value.startswith(("b'", 'b"'))
    return True


class LogTests(ProcessTestCase):
    """
    What a node logs at info, in text and in JSON.
    """

    @defer.inlineCallbacks
    def test_linkDownOnceJsonPlain(self):
        """
        A node whose other member does not answer says so once, not at each
        reconnect attempt (no Twisted "Scheduling retry" lines); a client's
        session is not logged at info; each JSON line is an object whose
        fields hold no object's or bytes' repr.
        """
        mine, other = freePorts(2)
        members = self.tempPath()
        with open(members, "w") as f:
            f.write(f"127.0.0.1:{mine}\n127.0.0.1:{other}\n")
        process, host, port = yield self.startNode(
            "--cluster", members, "--peer-listen", f"tcp:{mine}:interface=127.0.0.1",
            "--log-format", "json", "--peer-timeout-ms", "300", "--down-after-ms", "1500")
        client = yield self.connect(host, port)
        yield self.hello(client)
        # Attempts at about 0.1, 0.3, 0.7 and 1.5 s have failed by then.
        yield waitFor(lambda: b"is DOWN" in process.output, START_TIMEOUT, "the member DOWN")
        yield process.stop()
        lines = process.output.decode("utf-8", "replace").splitlines()
        text = [line for line in lines if not line.startswith("{")]
        down = [line for line in text if f"link to member 127.0.0.1:{other} down: " in line]
        self.assertEqual(len(down), 1, "\n".join(text))
        self.assertFalse([line for line in lines if "Scheduling retry" in line])
        self.assertFalse([line for line in text if "client " in line and "#info]" in line])
        events = [json.loads(line) for line in lines if line.startswith("{")]
        self.assertIn(f"link to member 127.0.0.1:{other} down: ", "\n".join(e["message"] for e in events))
        for event in events:
            self.assertTrue(_plainThroughout(event), event)
            self.assertEqual(sorted({"time", "level", "namespace", "message"} - event.keys()), [])


class BadConfigTests(ProcessTestCase):
    """
    A wrong configuration stops twistd at once, naming the key.
    """

    @defer.inlineCallbacks
    def test_negativeOption(self):
        """
        C{--heartbeat-ms -1} exits non-zero naming C{heartbeat_ms}.
        """
        code, output = yield self.failedStart("--heartbeat-ms", "-1")
        self.assertNotEqual(code, 0)
        self.assertIsNotNone(code)
        self.assertIn("'heartbeat_ms'", output)

    @defer.inlineCallbacks
    def test_unknownKeyInFile(self):
        """
        A configuration file with an unknown key exits non-zero naming it.
        """
        path = self.tempPath()
        with open(path, "w") as f:
            f.write("heartbeat_ms = 1000\nbogus_key = 1\n")
        code, output = yield self.failedStart("--config", path)
        self.assertNotEqual(code, 0)
        self.assertIsNotNone(code)
        self.assertIn("'bogus_key'", output)

    def assertOneLine(self, errors, *expected):
        """
        C{errors} (a process's stderr) is one line, twistd's command and
        the error, holding each of C{expected}.
        """
        self.assertEqual(len(errors.splitlines()), 1, errors)
        self.assertTrue(errors.startswith("twistd distro-node: "), errors)
        self.assertTrue(errors.endswith("\n"), errors)
        for text in expected:
            self.assertIn(text, errors)

    @defer.inlineCallbacks
    def test_badValueAlone(self):
        """
        A wrong value on the command line is one line on stderr, without
        twistd's usage, and the exit code is 2.
        """
        code, errors = yield self.failedStartErrors("--heartbeat-ms", "-1")
        self.assertEqual(code, 2)
        self.assertOneLine(errors, "configuration key 'heartbeat_ms': must be greater than 0")

    @defer.inlineCallbacks
    def test_dataDirUnusable(self):
        """
        A corrupt overrides file in C{data_dir}, or a C{data_dir} another
        node holds, is one line naming it, exit code 2.
        """
        dataDir = self.tempPath()
        os.makedirs(dataDir)
        path = os.path.join(dataDir, "overrides.msgpack")
        with open(path, "wb") as f:
            f.write(b"distro overrides\n" + b"\x00" * 20)
        code, errors = yield self.failedStartErrors("--data-dir", dataDir)
        self.assertEqual(code, 2)
        self.assertOneLine(errors, path, "is corrupt", "move it out of data_dir")
        os.remove(path)
        yield self.startNode("--data-dir", dataDir)  # holds it until the test ends
        code, errors = yield self.failedStartErrors("--data-dir", dataDir)
        self.assertEqual(code, 2)
        self.assertOneLine(errors, f"data_dir {dataDir} is in use by another node (pid ")

    @defer.inlineCallbacks
    def test_unknownKeyInFileNearMiss(self):
        """
        A misspelt key in the file is one line naming it and the key meant.
        """
        path = self.tempPath()
        with open(path, "w") as f:
            f.write("heartbeat_msx = 1000\n")
        code, errors = yield self.failedStartErrors("--config", path)
        self.assertEqual(code, 2)
        self.assertOneLine(errors, "'heartbeat_msx'", "did you mean 'heartbeat_ms'?")

    @defer.inlineCallbacks
    def test_unknownOptionNearMiss(self):
        """
        A misspelt option is one line naming it and the option meant.
        """
        code, errors = yield self.failedStartErrors("--heartbeat-msx", "1000")
        self.assertEqual(code, 2)
        self.assertOneLine(errors, "--heartbeat-msx", "did you mean --heartbeat-ms?")

    @defer.inlineCallbacks
    def test_secretFileAlone(self):
        """
        A wrong key found while the node is put together (an unreadable
        secret file) is one line too, not a traceback.
        """
        code, errors = yield self.failedStartErrors("--secret-file", self.tempPath())
        self.assertEqual(code, 2)
        self.assertOneLine(errors, "configuration key 'secret_file'")

    @defer.inlineCallbacks
    def test_unwritableFilesAlone(self):
        """
        A port file or a JSON log that cannot be written at start is one
        line naming its key, exit code 2, no traceback.
        """
        missing = os.path.join(self.tempPath(), "missing")
        for args, key in (
            (("--port-file", os.path.join(missing, "port")), "port_file"),
            (("--log-format", "json", "--json-log", os.path.join(missing, "log")), "json_log"),
        ):
            process = yield self.exited("--listen", "tcp:0:interface=127.0.0.1", *args)
            self.assertEqual(process.exitCode, 2, process.output)
            self.assertOneLine(process.errors.decode(), f"configuration key '{key}': cannot write",
                               "No such file or directory")
            self.assertNotIn(b"Traceback", process.output)

    @defer.inlineCallbacks
    def test_portInUse(self):
        """
        A client port that cannot be bound makes twistd exit non-zero,
        naming the key.
        """
        process, host, port = yield self.startNode()
        code, output = yield self.failedStart("--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertNotEqual(code, 0)
        self.assertIn(f"listen: cannot listen on tcp:{port}", output)

    @defer.inlineCallbacks
    def test_portInUseAlone(self):
        """
        Whichever port is taken (here the client port, then the peer
        port), the node says so in one line on stderr naming its key and
        the address, with no traceback anywhere, and exits with 1.
        """
        _, _, busy = yield self.startNode()
        where = f"tcp:{busy}:interface=127.0.0.1"
        process = yield self.exited("--listen", where)
        self.assertAloneInUse(process, "listen", where, busy)

        members = self.tempPath()
        with open(members, "w") as f:
            f.write(f"127.0.0.1:{busy}\n127.0.0.1:1\n")
        process = yield self.exited(
            "--listen", "tcp:0:interface=127.0.0.1", "--cluster", members, "--peer-listen", where)
        self.assertAloneInUse(process, "peer_listen", where, busy)

    def assertAloneInUse(self, process, key, where, busy):
        """
        C{process} exited with 1, saying on stderr in one line that C{key}
        cannot listen on C{where}, port C{busy} being in use; no traceback.
        """
        self.assertEqual(process.exitCode, 1)
        self.assertEqual(
            process.errors.decode(),
            f"twistd distro-node: {key}: cannot listen on {where} "
            f"(127.0.0.1:{busy}: Address already in use)\n")
        self.assertNotIn(b"Traceback", process.output)

    @defer.inlineCallbacks
    def test_portInUseDaemon(self):
        """
        Daemonized, the node tells the terminal it was started from, in one
        whole line naming the key and the address, before twistd's own
        words; it exits with 1 and leaves no pid file.
        """
        _, _, busy = yield self.startNode()
        where = f"tcp:{busy}:interface=127.0.0.1"
        pidfile, logfile = self.tempPath(), self.tempPath()
        process = yield self.exited(
            "--listen", where, twistd=("--pidfile", pidfile, "--logfile", logfile))
        self.assertEqual(process.exitCode, 1)
        first = process.errors.decode().splitlines()[0]
        self.assertEqual(
            first,
            f"twistd distro-node: listen: cannot listen on {where} "
            f"(127.0.0.1:{busy}: Address already in use)")
        self.assertFalse(os.path.exists(pidfile))
        with open(logfile) as f:
            self.assertIn(f"listen: cannot listen on {where}", f.read())
