"""
docs/http.md, run: every C{curl} command its examples show is run with the
real C{curl} against a real C{twistd distro-node} process, and what it
answers is checked against what the page shows (its fields, headers and
events), so that the page stays true.
"""

import json
import os
import re
import shutil
import subprocess

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import SkipTest

from distro.client import connect
from tests._process import START_TIMEOUT, ProcessTestCase, waitFor

DOC = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "http.md")
# Every command's bound, in seconds: an event stream and a blocking query
# are cut there (curl's exit code 28, or timeout's 124 for a script).
COMMAND_TIMEOUT = 3
# The address the page's examples ask.
DOC_ADDRESS = re.compile(r"(?:localhost|127\.0\.0\.1):8848")


def examples(text):
    """
    The page's shell examples: C{(command, shown)} for each C{$ curl ...}
    line of a C{sh} block, C{shown} the lines printed after it; C{(script,
    None)} for a block of commands without a prompt.
    """
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines = block.rstrip("\n").split("\n")
        if lines[0].startswith("$ "):
            command, shown = None, []
            for line in lines:
                if line.startswith("$ "):
                    if command:
                        found.append((command, shown))
                    command, shown = line[2:], []
                else:
                    shown.append(line)
            found.append((command, shown))
        else:
            found.append((block, None))
    return found


def shownNames(shown):
    """
    What an example's printed answer names: its JSON keys, header names,
    event fields and status line, each of which the real answer must have.
    """
    names = set()
    for line in shown:
        names.update(f'"{key}":' for key in re.findall(r'"(\w+)":', line))
        header = re.match(r"([A-Za-z-]+|HTTP/1\.1 \d+)(:| )", line)
        if header and not line.startswith("{"):
            names.add(header.group(0))
    return names


def documents(output):
    """
    The JSON documents a script printed, one after another (curl adds no
    newline after an answer).
    """
    decoder, found, at = json.JSONDecoder(), [], 0
    while True:
        at = len(output) - len(output[at:].lstrip())
        if at == len(output):
            return found
        document, at = decoder.raw_decode(output, at)
        found.append(document)


class HttpDocsTests(ProcessTestCase):
    """
    docs/http.md's examples, with curl, against a real node.
    """

    def setUp(self):
        if shutil.which("curl") is None:
            if os.environ.get("DISTRO_INTEROP_REQUIRED"):
                self.fail("curl is not installed")
            raise SkipTest("curl is not installed")

    def runExample(self, command, address):
        """
        Run an example, asking C{address}, each C{curl} bounded; its
        C{(exit code, output)} (blocking: in a thread).
        """
        command = DOC_ADDRESS.sub(address, command)
        command = re.sub(r"\bcurl ", f"curl --max-time {COMMAND_TIMEOUT} ", command)
        done = subprocess.run(["timeout", str(COMMAND_TIMEOUT + 1), "bash", "-c", command],
                              capture_output=True, timeout=COMMAND_TIMEOUT + 10)
        return done.returncode, done.stdout.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def test_examples(self):
        """
        Each example answers what the page shows: the same error for a bad
        parameter, the same fields, headers and events otherwise; an event
        stream and the blocking query's loop are cut after their first view.
        """
        with open(DOC, encoding="utf-8") as f:
            found = examples(f.read())
        self.assertGreaterEqual(len(found), 9, "docs/http.md's examples")

        process, host, port = yield self.startNode("--http-listen", "tcp:0:interface=127.0.0.1")
        match = yield waitFor(lambda: re.search(rb"serving HTTP on (127\.0\.0\.1:\d+)", process.output),
                              START_TIMEOUT, "the HTTP port")
        address = match.group(1).decode()
        client = yield connect([f"{host}:{port}"], reactor=reactor, timeout=5)
        self.addCleanup(client.close)
        # The instances the examples name.
        yield client.register("orders", "10.0.0.5", 8080, metadata={"zone": "a"})
        yield client.register("orders", "10.0.0.7", 8080)
        yield client.register("orders", "10.0.0.8", 8080, cluster="east")
        yield client.register("orders", "10.0.0.9", 8080, cluster="east")
        yield client.deregister("orders", "10.0.0.9", 8080, cluster="east")
        # The page's blocking query asks index=3: the view must be past it
        # for the example to answer at once, as the page shows.
        _, body = yield threads.deferToThread(
            self.runExample, "curl -s localhost:8848/v1/services/public/DEFAULT_GROUP/orders/instances", address)
        self.assertGreater(json.loads(body)["revision"], 3, body)

        for command, shown in found:
            code, output = yield threads.deferToThread(self.runExample, command, address)
            what = f"{command}\n->\n{output}"
            if shown is None:
                # A script: each JSON line it prints is a view or an answer.
                if "while true" in command:
                    self.assertEqual(code, 124, what)
                    self.assertIn('"revision":', output, what)
                else:
                    self.assertEqual(code, 0, what)
                answers = documents(output)
                self.assertTrue(answers, what)
                self.assertFalse([a for a in answers if "code" in a and a["code"] >= 400], what)
                continue
            if re.search(r"\s-[a-zA-Z]*N", command):
                self.assertEqual(code, 28, what)
            else:
                self.assertEqual(code, 0, what)
            if not shown:
                self.assertIn('"hosts":', output, what)
                continue
            try:
                self.assertEqual(json.loads(output), json.loads("\n".join(shown)), what)
            except json.JSONDecodeError:
                missing = sorted(name for name in shownNames(shown) if name not in output)
                self.assertEqual(missing, [], what)
        # The override examples ran: one was set and then cleared.
        _, body = yield threads.deferToThread(self.runExample, "curl -s localhost:8848/v1/overrides", address)
        self.assertEqual(json.loads(body), {"overrides": []})
