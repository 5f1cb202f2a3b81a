# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{distro.cli}: the command line, the output formats, and the
commands run against real nodes in memory
(L{distro.client.testing.InMemoryCluster}).
"""

import json
import re
from io import StringIO

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from distro import cli
from distro.client import Instance, Member, Service, ServiceInfo, ServicePage, ServiceSummary

from ._memorycluster import ClusterTestMixin
from ._tempfiles import TempPathMixin


_SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def camelCaseKeys(document):
    """
    The keys of a JSON document (metadata's aside: they are the user's)
    that are not snake_case.
    """
    if isinstance(document, list):
        return [key for item in document for key in camelCaseKeys(item)]
    if not isinstance(document, dict):
        return []
    bad = [key for key in document if not _SNAKE.fullmatch(key)]
    for key, value in document.items():
        if key != "metadata":
            bad += camelCaseKeys(value)
    return bad


def parse(*argv, environ=None):
    """
    Parse C{argv} with an empty environment, failing on output.
    """
    return cli.parseArguments(list(argv), environ or {}, StringIO(), StringIO())


class ParseTests(SynchronousTestCase):
    """
    Reading the command line.
    """

    def usageError(self, *argv):
        """
        Parse C{argv}, expecting a usage error; return what went to stderr.
        """
        stderr = StringIO()
        error = self.assertRaises(
            cli.UsageExit, cli.parseArguments, list(argv), {}, StringIO(), stderr
        )
        self.assertEqual(error.code, cli.EXIT_USAGE)
        return stderr.getvalue()

    def test_defaults(self):
        """
        Without options, the server is 127.0.0.1:9850, the namespace public,
        the group DEFAULT_GROUP, output text, timeout 10 s.
        """
        options = parse("instances", "orders")
        self.assertEqual(options.servers, ["127.0.0.1:9850"])
        self.assertEqual(options.service, Service("orders"))
        self.assertEqual((options.json, options.timeout), (False, 10.0))
        self.assertEqual((options.cluster, options.healthy_only), (None, False))

    def test_servers(self):
        """
        C{--server} is repeatable and takes comma-separated lists, IPv6 in
        brackets; it wins over C{DISTRO_SERVERS}, which wins over the default.
        """
        environ = {"DISTRO_SERVERS": "env:1,env:2"}
        options = parse("--server", "a:1,b:2", "--server", "[::1]:3", "members",
                        environ=environ)
        self.assertEqual(options.servers, ["a:1", "b:2", "[::1]:3"])
        self.assertEqual(parse("members", environ=environ).servers, ["env:1", "env:2"])

    def test_namespaceAndGroup(self):
        """
        C{--namespace} and C{--group} make the service key.
        """
        options = parse("--namespace", "dev", "--group", "web", "watch", "orders",
                        "--count", "3", "--cluster", "A", "--cluster", "B")
        self.assertEqual(options.service, Service("orders", group="web", namespace="dev"))
        self.assertEqual((options.count, options.cluster), (3, ["A", "B"]))

    def test_register(self):
        """
        C{register}'s options make its instance.
        """
        options = parse("register", "orders", "10.0.0.5", "8080", "--cluster", "C1",
                        "--weight", "2.5", "--metadata", "zone=a", "--metadata", "v=1=2",
                        "--unhealthy", "--disabled")
        self.assertEqual(
            options.instance,
            Instance("10.0.0.5", 8080, cluster="C1", weight=2.5, healthy=False,
                     enabled=False, metadata={"zone": "a", "v": "1=2"}),
        )

    def test_services(self):
        """
        C{services} takes a page and a size; its group is left to the node.
        """
        options = parse("services", "--page", "2", "--size", "10")
        self.assertEqual((options.page, options.size, options.group), (2, 10, None))

    def test_usageErrors(self):
        """
        Malformed command lines are usage errors, explained on stderr.
        """
        self.assertIn("PORT", self.usageError("register", "s", "h", "0"))
        self.assertIn("KEY=VALUE", self.usageError("register", "s", "h", "1", "--metadata", "x"))
        self.assertIn("cluster", self.usageError("register", "s", "h", "1", "--cluster", "a b"))
        self.assertIn("weight", self.usageError("register", "s", "h", "1", "--weight", "-1"))
        self.assertIn("@@", self.usageError("instances", "a@@b"))
        self.assertIn("[host]:port", self.usageError("--server", "a:b:c:", "members"))
        self.assertIn("port number", self.usageError("--server", "a:", "members"))
        self.assertIn("positive", self.usageError("--timeout", "0", "members"))
        self.assertIn("COMMAND", self.usageError())
        self.assertIn("invalid choice", self.usageError("frobnicate"))
        self.assertIn("positive", self.usageError("services", "--page", "0"))

    def test_help(self):
        """
        C{--help} prints the help, exit codes included, and exits with 0.
        """
        stdout = StringIO()
        error = self.assertRaises(
            cli.UsageExit, cli.parseArguments, ["--help"], {}, stdout, StringIO()
        )
        self.assertEqual(error.code, cli.EXIT_OK)
        self.assertIn("3  no node could be reached", stdout.getvalue())
        self.assertIn("DISTRO_SERVERS", stdout.getvalue())


    def test_globalOptionsAnywhere(self):
        """
        The global options are taken after the command as before it
        (C{distro services --json}); given after it, they win.
        """
        def parsed(*argv):
            return cli.parseArguments(list(argv), {}, StringIO(), StringIO())

        for argv in (["services", "--json"], ["--json", "services"]):
            self.assertTrue(parsed(*argv).json, argv)
        self.assertFalse(parsed("services").json)
        options = parsed("--namespace", "a", "instances", "orders", "--namespace", "b", "--timeout", "2",
                         "--server", "127.0.0.1:1", "--token", "t", "--tls-no-verify")
        self.assertEqual((options.namespace, options.timeout, options.servers, options.token),
                         ("b", 2.0, ["127.0.0.1:1"], "t"))
        options = parsed("--namespace", "a", "--server", "h:1", "members")
        self.assertEqual((options.namespace, options.servers), ("a", ["h:1"]))
        self.assertIn("--timeout", self.usageError("services", "--timeout", "0"))

    def test_version(self):
        """
        C{--version} prints distro's version (the package's, one source)
        and exits with 0.
        """
        import distro

        stdout = StringIO()
        error = self.assertRaises(
            cli.UsageExit, cli.parseArguments, ["--version"], {}, stdout, StringIO()
        )
        self.assertEqual(error.code, cli.EXIT_OK)
        self.assertEqual(stdout.getvalue(), f"distro {distro.__version__}\n")
        self.assertRegex(distro.__version__, r"^[0-9]+\.[0-9]+\.[0-9]+")


class FormatTests(SynchronousTestCase):
    """
    The text output.
    """

    info = ServiceInfo(
        service=Service("orders"),
        hosts=(
            Instance("10.0.0.1", 80, metadata={"zone": "a", "b": "c"}),
            Instance("10.0.0.22", 8080, cluster="C2", weight=2.5, healthy=False),
        ),
        checksum="ab12",
        revision=7,
    )

    def test_table(self):
        """
        Columns are as wide as their widest cell, two spaces apart; the given
        columns align right; no line ends in spaces.
        """
        table = cli.formatTable(["A", "NUMBER", "C"], [["xyz", 1, ""], ["q", 200, "end"]], (1,))
        self.assertEqual(table, "A    NUMBER  C\nxyz       1\nq       200  end")

    def test_serviceInfo(self):
        """
        A view prints as a title line and a host table.
        """
        self.assertEqual(
            cli.formatServiceInfo(self.info),
            "public/DEFAULT_GROUP/orders  revision 7  checksum ab12  2 hosts\n"
            "IP         PORT  CLUSTER  WEIGHT  HEALTHY  ENABLED  METADATA\n"
            "10.0.0.1     80  DEFAULT       1  yes      yes      b=c,zone=a\n"
            "10.0.0.22  8080  C2          2.5  no       yes",
        )

    def test_serviceInfoClusters(self):
        """
        A cluster filter shows in the title.
        """
        info = ServiceInfo(Service("s"), (), "x", 1, clusters=("A", "B"))
        self.assertEqual(
            cli.formatServiceInfo(info).splitlines()[0],
            "public/DEFAULT_GROUP/s  revision 1  checksum x  clusters A,B  0 hosts",
        )

    def test_services(self):
        """
        Services print as a table and a count.
        """
        result = ServicePage(1, (ServiceSummary(Service("orders", group="G"), 3),))
        self.assertEqual(
            cli.formatServices(result),
            "GROUP  NAME    INSTANCES\nG      orders          3\n1 service",
        )

    def test_rebalanceTable(self):
        """
        What each member said to C{rebalance}, as a table.
        """
        self.assertEqual(
            cli.formatRebalance([{"node": "n1", "sessions": 12, "share": 5, "moving": 7}]),
            "NODE  SESSIONS  SHARE  MOVING\nn1          12      5       7",
        )

    def test_members(self):
        """
        Members print as a table; the answering node is starred.
        """
        members = (Member("n1", "a:1", "UP", is_self=True), Member("node-2", "b:1", "DOWN"))
        self.assertEqual(
            cli.formatMembers(members),
            "NODE    ADDRESS  STATE  SELF\nn1      a:1      UP     *\nnode-2  b:1      DOWN",
        )


class CommandTests(ClusterTestMixin, TempPathMixin, SynchronousTestCase):
    """
    Commands run against two real nodes in memory, with a stand-in reactor
    for the shutdown.
    """

    nodes = 2

    def setUp(self):
        self.stdout = StringIO()
        self.stderr = StringIO()
        self.reactor = MemoryReactorClock()
        self.useCluster()
        self.other = self.cluster.client()

    def useCluster(self, **config):
        super().useCluster(**config)
        self.connects = []

    def connect(self, servers, **kwargs):
        """
        A stand-in for L{distro.client.connect}: a client of the cluster,
        first trying its first server.
        """
        self.connects.append(kwargs)
        kwargs.pop("reactor")
        kwargs.pop("tls")
        return self.cluster.connect(
            servers=servers, endpoint_factory=self.network.endpoint,
            retry_policy=lambda failures: 1.0, **kwargs)

    def runCommand(self, *argv, environ=None):
        """
        Start the command line C{argv}; return the L{Deferred} of its exit
        code after moving all bytes.
        """
        argv = ["--server", ",".join(self.cluster.servers)] + list(argv)
        d = Deferred.fromCoroutine(
            cli.run(self.reactor, argv, self.stdout, self.stderr, environ or {}, self.connect)
        )
        self.cluster.flush()
        return d

    def shutDown(self):
        """
        Begin the reactor's shutdown, as SIGINT would; return whether it
        was let go on.
        """
        triggers = self.reactor.triggers["before"]["shutdown"]
        results = [f(*args, **kwargs) for f, args, kwargs in triggers]
        self.cluster.flush()
        return all(d.called for d in results)

    def jsonLines(self):
        """
        The JSON documents printed so far.
        """
        return [json.loads(line) for line in self.stdout.getvalue().splitlines()]

    def register(self, *instances):
        """
        Register C{(service, ip, port)} tuples through the other client.
        """
        for service, ip, port in instances:
            self.other.register(service, ip, port)
        self.cluster.flush()

    def test_services(self):
        """
        C{services} prints the listing; C{--json} prints the reply's data.
        """
        self.register(("orders", "a", 1), ("orders", "b", 1), ("users", "c", 1))
        self.assertEqual(self.successResultOf(self.runCommand("services")), cli.EXIT_OK)
        self.assertIn("DEFAULT_GROUP  orders          2", self.stdout.getvalue())
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.successResultOf(self.runCommand("--json", "services"))
        [document] = self.jsonLines()
        self.assertEqual(document["count"], 2)

    def test_instances(self):
        """
        C{instances} queries with the cluster filter and prints the view.
        """
        self.other.register("orders", "a", 1, cluster="C1")
        self.other.register("orders", "b", 1, cluster="C2", healthy=False)
        self.other.register("orders", "c", 1, cluster="C3")
        self.register()
        code = self.successResultOf(
            self.runCommand("--json", "instances", "orders", "--cluster", "C1", "--cluster", "C2",
                            "--healthy-only")
        )
        self.assertEqual(code, cli.EXIT_OK)
        [document] = self.jsonLines()
        self.assertEqual([h["instance_id"] for h in document["hosts"]], ["a#1#C1"])
        self.assertEqual(document["clusters"], ["C1", "C2"])

    def test_register(self):
        """
        C{register} holds the registration until the shutdown begins, then
        says C{bye} (the instance goes) and exits with 0.
        """
        d = self.runCommand("register", "orders", "10.0.0.9", "80", "--metadata", "zone=a")
        self.assertNoResult(d)
        self.assertIn("registered 10.0.0.9#80#DEFAULT", self.stdout.getvalue())
        for index in (0, 1):
            [host] = self.cluster.view(index, "orders").hosts
            self.assertEqual(host.metadata, {"zone": "a"})
        self.assertTrue(self.shutDown())
        self.assertEqual(self.successResultOf(d), cli.EXIT_OK)
        self.assertEqual(self.ops(0)[-1], "bye")
        for index in (0, 1):
            self.assertEqual(self.cluster.view(index, "orders").hosts, ())

    def operators(self):
        """
        A cluster whose nodes take operators' actions from the in-memory
        clients' address, with C{orders 10.1.0.1:1} registered.
        """
        self.useCluster(admin_from="10.0.0.0/8")
        self.other = self.cluster.client()
        self.register(("orders", "10.1.0.1", 1))

    def shown(self, index=1):
        return [(h.ip, h.weight) for h in self.cluster.view(index, "orders").hosts]

    def test_deregisterGone(self):
        """
        C{deregister}, which could never remove another session's instance,
        is a usage error pointing to C{remove}, and does nothing.
        """
        self.operators()
        code = self.successResultOf(self.runCommand("deregister", "orders", "10.1.0.1", "1"))
        self.assertEqual(code, cli.EXIT_USAGE)
        self.assertIn("deregister is gone", self.stderr.getvalue())
        self.assertIn("distro remove orders 10.1.0.1 1", self.stderr.getvalue())
        self.assertEqual(self.shown(0), [("10.1.0.1", 1.0)])

    def test_remove(self):
        self.operators()
        code = self.successResultOf(self.runCommand("--json", "remove", "orders", "10.1.0.1", "1"))
        self.assertEqual(code, cli.EXIT_OK, self.stderr.getvalue())
        (document,) = self.jsonLines()
        self.assertEqual((document["instance_id"], document["removed"]), ("10.1.0.1#1#DEFAULT", True))
        self.cluster.flush()
        self.assertEqual(self.shown(0) + self.shown(1), [])
        self.assertEqual(self.ops(0)[-2:], ["override", "bye"])

    def test_drainUndrain(self):
        self.operators()
        code = self.successResultOf(self.runCommand("drain", "orders", "10.1.0.1", "1", "--why", "disk"))
        self.assertEqual(code, cli.EXIT_OK, self.stderr.getvalue())
        self.assertEqual(self.stdout.getvalue(),
                         "drained 10.1.0.1#1#DEFAULT in public/DEFAULT_GROUP/orders on every node, "
                         "by anonymous@10.0.0.1: disk; undo: distro undrain\n")
        self.cluster.flush()
        self.assertEqual(self.shown(), [])
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.successResultOf(self.runCommand("undrain", "orders", "10.1.0.1", "1"))
        self.assertEqual(self.stdout.getvalue(), "undrained 10.1.0.1#1#DEFAULT in public/DEFAULT_GROUP/orders: "
                         "in rotation again, as its client publishes it (no override left)\n")
        self.cluster.flush()
        self.assertEqual(self.shown(), [("10.1.0.1", 1.0)])

    def test_weightAndList(self):
        self.operators()
        self.successResultOf(self.runCommand("weight", "orders", "10.1.0.1", "1", "0.5"))
        self.successResultOf(self.runCommand("drain", "orders", "10.1.0.1", "1"))
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.successResultOf(self.runCommand("weight", "orders", "10.1.0.1", "1", "reset"))
        self.assertIn("its override still sets enabled=False", self.stdout.getvalue())
        self.successResultOf(self.runCommand("undrain", "orders", "10.1.0.1", "1"))
        self.successResultOf(self.runCommand("weight", "orders", "10.1.0.1", "1", "2"))
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.successResultOf(self.runCommand("overrides"))
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(lines[0].split(), ["SERVICE", "INSTANCE", "SETS", "WHO", "WHY", "SINCE", "(UTC)"])
        self.assertEqual(lines[1].split()[:4], ["public/DEFAULT_GROUP/orders", "10.1.0.1#1#DEFAULT", "weight=2.0",
                                                "anonymous@10.0.0.1"])
        self.cluster.flush()
        self.assertEqual(self.shown(), [("10.1.0.1", 2.0)])
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.successResultOf(self.runCommand("--json", "clear", "orders", "10.1.0.1", "1"))
        self.successResultOf(self.runCommand("--json", "overrides"))
        self.assertEqual(self.jsonLines(), [{"cleared": True}, {"overrides": []}])

    def test_badWeight(self):
        for weight in ("heavy", "-1", "10001"):
            with self.assertRaises(cli.UsageExit):
                cli.parseArguments(["weight", "orders", "10.1.0.1", "1", weight], {}, StringIO(), StringIO())

    def test_operatorsOnly(self):
        """
        A node without credentials takes overrides from loopback and
        admin_from only: refused, saying so, exit 1.
        """
        self.register(("orders", "10.1.0.1", 1))
        code = self.successResultOf(self.runCommand("drain", "orders", "10.1.0.1", "1"))
        self.assertEqual(code, cli.EXIT_SERVER_ERROR)
        self.assertIn("FORBIDDEN: override: without auth_tokens or auth_users", self.stderr.getvalue())
        self.assertEqual(len(self.stderr.getvalue().splitlines()), 1)

    def test_watchCount(self):
        """
        C{watch --count N} prints the view, then each pushed view, one JSON
        line each, and exits after N pushes: a push that came meanwhile is
        not printed.
        """
        other = self.cluster.client(start_at=1)
        d = self.runCommand("--json", "watch", "orders", "--count", "2")
        self.register(("orders", "a", 1))
        self.assertNoResult(d)
        # Two pushes in a row: one of a local change, one of a replicated one.
        other.register("orders", "b", 1)
        self.register(("orders", "c", 1))
        self.assertEqual(self.successResultOf(d), cli.EXIT_OK)
        views = [[h["ip"] for h in document["hosts"]] for document in self.jsonLines()]
        self.assertEqual(views, [[], ["a"], ["a", "c"]])
        self.assertEqual(self.ops(0)[-1], "bye")
        self.assertEqual([h.ip for h in self.cluster.view(0, "orders").hosts], ["a", "b", "c"])

    def test_watchInterrupted(self):
        """
        An interrupted C{watch} says C{bye} and exits with 0.
        """
        d = self.runCommand("watch", "orders")
        self.register(("orders", "a", 1))
        self.assertTrue(self.shutDown())
        self.assertEqual(self.successResultOf(d), cli.EXIT_OK)
        self.assertEqual(self.stdout.getvalue().count("public/DEFAULT_GROUP/orders"), 2)
        self.assertEqual(self.ops(0)[-1], "bye")

    def test_members(self):
        """
        C{members} prints the members.
        """
        self.successResultOf(self.runCommand("members"))
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(lines[0].split(), ["NODE", "ADDRESS", "STATE", "SELF"])
        self.assertEqual(lines[1].split(), ["n0", self.cluster.servers[0], "UP", "*"])
        self.assertEqual(lines[2].split(), ["n1", self.cluster.servers[1], "UP"])

    def test_jsonShapes(self):
        """
        With C{--json} every command prints JSON objects, one per line (a
        list is a field of one: C{members} too), in the names of the
        protocol and of the HTTP JSON API: snake_case, an instance always
        with its C{instance_id}.
        """
        self.register(("orders", "10.0.0.1", 80))

        def documents(*argv):
            self.stdout.seek(0)
            self.stdout.truncate()
            self.runCommand("--json", *argv)
            lines = self.jsonLines()
            for document in lines:
                self.assertIsInstance(document, dict, argv)
                self.assertEqual(camelCaseKeys(document), [], argv)
            return lines

        [members] = documents("members")
        self.assertEqual(members, {"members": [
            {"node": "n0", "address": self.cluster.servers[0], "state": "UP", "self": True},
            {"node": "n1", "address": self.cluster.servers[1], "state": "UP", "self": False},
        ]})
        [services] = documents("services")
        self.assertEqual(services, {"count": 1, "services": [
            {"group": "DEFAULT_GROUP", "name": "orders", "instances": 1}]})
        [view] = documents("instances", "orders")
        self.assertEqual([h["instance_id"] for h in view["hosts"]], ["10.0.0.1#80#DEFAULT"])
        self.assertEqual(sorted(view), ["checksum", "clusters", "hosts", "revision", "service"])
        [watched] = documents("watch", "orders", "--count", "0")
        self.assertEqual(watched, view)
        documents("register", "orders", "10.0.0.2", "81", "--metadata", "someKey=v")
        [registered] = self.jsonLines()
        self.assertEqual(registered, {"registered": {
            "service": {"namespace": "public", "group": "DEFAULT_GROUP", "name": "orders"},
            "instance": {"ip": "10.0.0.2", "port": 81, "cluster": "DEFAULT", "weight": 1.0,
                         "healthy": True, "enabled": True, "metadata": {"someKey": "v"},
                         "instance_id": "10.0.0.2#81#DEFAULT"}}})
        self.assertTrue(self.shutDown())
        self.assertEqual(documents("overrides"), [{"overrides": []}])

    def test_cacheDirUnusable(self):
        """
        A C{--cache-dir} that cannot be made is a usage error naming it.
        """
        path = self.tempPath()
        open(path, "w").close()
        self.assertEqual(self.successResultOf(self.runCommand("--cache-dir", path, "members")),
                         cli.EXIT_USAGE)
        self.assertIn("--cache-dir: ", self.stderr.getvalue())

    def test_sessionLines(self):
        """
        C{register} says on stderr, one line each, that the session was
        lost, resumed at another node, and, when the cluster had let it go,
        registered again.
        """
        d = self.runCommand("register", "orders", "10.0.0.9", "80")
        self.assertEqual(self.stderr.getvalue(), "")
        self.cluster.stop_node(0)
        self.advance(1)
        self.assertEqual(self.stderr.getvalue().splitlines(), [
            "distro: lost node n0; trying the servers again",
            "distro: resumed the session on node n1",
        ])
        self.cluster.stop_node(1)
        self.cluster.start_node(0)
        self.advance(*[1] * 5)
        self.assertEqual(self.stderr.getvalue().splitlines()[2:], [
            "distro: lost node n1; trying the servers again",
            "distro: the cluster had let the session go: registered again on node n0",
        ])
        self.assertEqual([h.ip for h in self.cluster.view(0, "orders").hosts], ["10.0.0.9"])
        self.assertTrue(self.shutDown())
        self.assertEqual(self.successResultOf(d), cli.EXIT_OK)

    def test_watchFromCache(self):
        """
        With C{--cache-dir}, C{watch} started while no node answers prints
        the view cached there, says on stderr that it is served from the
        cache, and prints the node's view once one answers.
        """
        directory = self.tempPath()
        self.register(("orders", "10.0.0.1", 80))
        self.successResultOf(self.runCommand("--cache-dir", directory, "instances", "orders"))
        self.assertEqual(self.stderr.getvalue(), "")
        self.stdout.seek(0)
        self.stdout.truncate()
        self.cluster.stop_node(0)
        self.cluster.stop_node(1)
        d = self.runCommand("--json", "--cache-dir", directory, "watch", "orders", "--count", "1")
        [cached] = self.jsonLines()
        self.assertEqual([h["ip"] for h in cached["hosts"]], ["10.0.0.1"])
        self.assertEqual(self.stderr.getvalue().splitlines(), [
            f"distro: no node answers; serving the views cached in {directory}",
        ])
        self.cluster.start_node(1)
        self.cluster.client(start_at=1).register("orders", "10.0.0.2", 80)
        self.advance(*[1] * 5)
        self.assertEqual(self.successResultOf(d), cli.EXIT_OK)
        self.assertIn("10.0.0.2", [h["ip"] for h in self.jsonLines()[-1]["hosts"]])

    def test_rebalance(self):
        """
        C{rebalance} asks every member up, one session each, and prints
        what each said; C{--rate} is sent along.
        """
        self.useCluster(admin_from="10.0.0.0/8")  # the clients in memory are at 10.0.0.1
        for i in range(4):
            self.cluster.client(start_at=1).register("orders", f"10.1.0.{i}", 80)
        self.cluster.flush()
        code = self.successResultOf(self.runCommand("rebalance", "--rate", "50", "--json"))
        self.assertEqual(code, cli.EXIT_OK, self.stderr.getvalue())
        [document] = self.jsonLines()
        self.assertEqual([(r["node"], r["moving"]) for r in document["nodes"]], [("n0", 0), ("n1", 2)])
        rates = [m["rate"] for m in self.cluster.requests() if m["op"] == "rebalance"]
        self.assertEqual(rates, [50.0, 50.0])

    def test_rebalanceForbidden(self):
        """
        C{rebalance} from a client that is not an operator exits 1, with
        the node's C{FORBIDDEN} on stderr.
        """
        code = self.successResultOf(self.runCommand("rebalance"))
        self.assertEqual(code, cli.EXIT_SERVER_ERROR)
        self.assertIn("FORBIDDEN: rebalance", self.stderr.getvalue())

    def test_serverError(self):
        """
        A refused request (here, a namespace the token does not grant) exits
        with 1, its code and message on stderr.
        """
        self.useCluster(auth_tokens={"t": ["public"]})
        code = self.successResultOf(self.runCommand("--token", "t", "--namespace", "dev", "services"))
        self.assertEqual(code, cli.EXIT_SERVER_ERROR)
        [line] = self.stderr.getvalue().splitlines()
        self.assertTrue(line.startswith("distro: FORBIDDEN: "), line)
        self.assertEqual(self.ops(0), ["hello", "services", "bye"])

    def test_token(self):
        """
        C{--token}, else C{$DISTRO_TOKEN}, is the token of the session's
        hello; none by default.
        """
        for argv, environ in ((["--token", "t1"], {"DISTRO_TOKEN": "t2"}), ([], {"DISTRO_TOKEN": "t2"}),
                              ([], {})):
            d = self.runCommand(*argv, "members", environ=environ)
            self.assertEqual(self.successResultOf(d), cli.EXIT_OK)
        self.assertEqual([kwargs["token"] for kwargs in self.connects], ["t1", "t2", None])
        hellos = [m for m in self.cluster.requests(0) if m["op"] == "hello"][1:]
        self.assertEqual([m.get("token") for m in hellos], ["t1", "t2", None])

    def test_hashPassword(self):
        """
        C{hash-password} prints the C{auth_users} hash of the first line of
        standard input, asking no node; an empty password is refused.
        """
        from distro.auth import parsePasswordHash, verifyPassword

        printed = []
        for line, code in (("s3cret pw\n", cli.EXIT_OK), ("\n", cli.EXIT_USAGE)):
            stdout = StringIO()
            d = Deferred.fromCoroutine(cli.run(self.reactor, ["hash-password"], stdout, self.stderr, {},
                                               None, StringIO(line)))
            self.assertEqual(self.successResultOf(d), code)
            printed.append(stdout.getvalue())
        self.assertTrue(verifyPassword("s3cret pw", parsePasswordHash(printed[0].strip())))
        self.assertEqual(printed[1], "")
        self.assertIn("empty", self.stderr.getvalue())

    def test_refusedHello(self):
        """
        A refused session (here, without the token the nodes want) exits
        with 1.
        """
        self.useCluster(auth_tokens={"t": ["*"]})
        self.assertEqual(self.successResultOf(self.runCommand("members")), cli.EXIT_SERVER_ERROR)
        self.assertIn("UNAUTHORIZED", self.stderr.getvalue())

    def test_unreachable(self):
        """
        When every node refuses the connection, the command exits with 3 at
        once, in one line naming each address and why.
        """
        self.cluster.stop_node(0)
        self.cluster.stop_node(1)
        d = self.runCommand("--timeout", "3", "members")
        self.assertEqual(self.successResultOf(d), cli.EXIT_UNREACHABLE)
        [line] = self.stderr.getvalue().splitlines()
        self.assertTrue(line.startswith("distro: cannot connect: "), line)
        for server in self.cluster.servers:
            self.assertIn(f"{server}: connection refused", line)

    def test_timeout(self):
        """
        A node that does not answer (it is paused) exits with 3 after the
        timeout, naming it.
        """
        self.cluster.pause_node(0)
        self.cluster.stop_node(1)
        d = self.runCommand("--timeout", "2", "members")
        self.advance(1.9)
        self.assertNoResult(d)
        self.advance(0.1)
        self.assertEqual(self.successResultOf(d), cli.EXIT_UNREACHABLE)
        self.assertIn(f"{self.cluster.servers[0]}: timed out", self.stderr.getvalue())

    def test_interruptedConnect(self):
        """
        An interruption while connecting ends the command at once.
        """
        self.cluster.pause_node(0)
        self.cluster.pause_node(1)
        d = self.runCommand("members")
        self.assertTrue(self.shutDown())
        self.assertEqual(self.successResultOf(d), cli.EXIT_UNREACHABLE)
        self.assertIn("interrupted", self.stderr.getvalue())

    def test_usage(self):
        """
        L{cli.run} returns 2 for a usage error, without connecting.
        """
        self.assertEqual(self.successResultOf(self.runCommand("register")), cli.EXIT_USAGE)
        self.assertEqual((self.connects, self.network.attempts), ([], []))
        self.assertEqual(self.ops(0), ["hello"])  # the other client's
