# -*- test-case-name: tests.test_cli -*-
"""
The C{distro} command: look at and change a distro cluster from a shell.

    distro [--server HOST:PORT]... [--namespace NS] [--group GROUP] [--json]
           [--timeout SECONDS] [--cache-dir DIR] [--tls] [--tls-ca FILE]
           [--tls-cert FILE --tls-key FILE] [--tls-no-verify] COMMAND ...

    services                       list services and their instance counts
    instances SERVICE              show a service's view
    register SERVICE IP PORT       register an instance until interrupted
    watch SERVICE                  print the view and every change of it
    members                        list the cluster's members
    rebalance                      move sessions from members over their share

An operator's overrides of any instance, on every node and through restarts
(an admin's token; on a node without tokens, from loopback or admin_from):

    drain SERVICE IP PORT          take an instance out of rotation
    undrain SERVICE IP PORT        put it back
    weight SERVICE IP PORT W       show it with weight W ("reset": its own)
    remove SERVICE IP PORT         show it nowhere (what deregister could not)
    clear SERVICE IP PORT          clear its override: shown as its client says
    overrides                      list the overrides in force

Servers come from C{--server} (repeatable, or comma-separated), else from the
C{DISTRO_SERVERS} environment variable, else C{127.0.0.1:9850}. What happens
to the session (lost, resumed, started over, views served from what the
client holds: with C{--cache-dir DIR}, the views kept there) is said on
stderr, one line each. With C{--json}
every output is one JSON document on one line (in C{watch}, one per view).
Any C{--tls*} option dials the nodes over TLS (their client port is C{ssl:}).

Exit codes:

    0  success
    1  a node refused a request; its error code and message go to stderr
    2  usage error
    3  no node could be reached, or a node did not answer in time
"""

import argparse
import getpass
import json
import os
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

from twisted.internet.defer import CancelledError, Deferred, race, succeed
from twisted.internet.task import react

from distro import __version__
from distro.auth import hashPassword
from distro.client import (
    RESET,
    DistroError,
    Instance,
    NotConnected,
    RequestTimeout,
    Service,
    TLSOptions,
    connect,
)
from distro.client._address import formatAddress, parseServers
from distro.client._events import SessionEvent
from distro.client._model import DEFAULT_GROUP, DEFAULT_NAMESPACE
from distro.client._protocol import DEFAULT_TIMEOUT
from distro.client._reasons import NOT_TLS, SILENT_CLOSE, SPEAKS_TLS
from distro.tls import TLSFileError, TLSUnavailable

__all__ = [
    "EXIT_OK",
    "EXIT_SERVER_ERROR",
    "EXIT_USAGE",
    "EXIT_UNREACHABLE",
    "UsageExit",
    "parseArguments",
    "execute",
    "run",
    "main",
    "formatTable",
]

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

AGENT = "distro-cli/0.1.0"
DEFAULT_SERVERS = "127.0.0.1:9850"

_EPILOG = """\
exit codes:
  0  success
  1  a node refused a request (its code and message are printed on stderr)
  2  usage error
  3  no node could be reached, or a node did not answer in time

servers: --server, else $DISTRO_SERVERS, else 127.0.0.1:9850
token: --token, else $DISTRO_TOKEN (for nodes with auth_tokens or auth_users)
TLS: --tls-ca CA.pem checks each node's certificate against that CA and the
host of its address (--tls alone: against the system's CAs)
"""


class UsageExit(Exception):
    """
    Parsing the command line ended the command: a usage error (code 2), or
    C{--help} (code 0). The message is already printed.
    """

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _port(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return int(text)


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return value


def _count(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return int(text)


def _positiveCount(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return int(text)


def _keyValue(text):
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"metadata must be KEY=VALUE: {text!r}")
    return key, value


def _addGlobalOptions(parser, suppress=False):
    """
    The options of every command: on the main parser with their defaults,
    and (C{suppress}) on each command's, without (given there, they win).
    """
    def default(value):
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--server", action="append", metavar="HOST:PORT",
        help="a node's client address; repeatable or comma-separated "
        "(IPv6 as [::1]:9850)",
    )
    parser.add_argument("--token", metavar="TOKEN",
                        help="the token the nodes require (default: $DISTRO_TOKEN); "
                        "$DISTRO_TOKEN keeps it out of the process list")
    parser.add_argument("--namespace", default=default(DEFAULT_NAMESPACE),
                        help=f"namespace (default: {DEFAULT_NAMESPACE})")
    parser.add_argument("--group", help=f"group (default: {DEFAULT_GROUP}; "
                        "for services: the node's default)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON, one document per line")
    parser.add_argument("--timeout", type=_positive, default=default(DEFAULT_TIMEOUT),
                        metavar="SECONDS", help="connect and request timeout "
                        f"(default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="keep the views read in DIR, and show them while no node "
                        "answers (instances, watch)")
    tls = parser.add_argument_group("TLS (for nodes whose client port is ssl:)")
    tls.add_argument("--tls", action="store_true", dest="use_tls",
                     help="dial the nodes over TLS, trusting the system's CAs")
    tls.add_argument("--tls-ca", metavar="FILE",
                     help="PEM CA certificates the nodes' certificates must be signed by "
                     "(implies --tls)")
    tls.add_argument("--tls-cert", metavar="FILE",
                     help="PEM certificate to present to the nodes, with --tls-key")
    tls.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument("--tls-no-verify", action="store_true",
                     help="UNSAFE: do not check the nodes' certificates (anyone on "
                     "the path can read and change the traffic); for tests only")


def _buildParser():
    parser = argparse.ArgumentParser(
        prog="distro",
        description="Look at and change a distro service registry.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"distro {__version__}")
    _addGlobalOptions(parser)
    # The global options are taken after the command too (distro services
    # --json), given there they win.
    globalOptions = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _addGlobalOptions(globalOptions, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    services = commands.add_parser("services", help="list services", parents=[globalOptions])
    services.add_argument("--page", type=_positiveCount, default=1,
                          help="1-based (default: %(default)s)")
    services.add_argument("--size", type=_positiveCount, default=100,
                          help="services per page, at most 1000 (default: %(default)s)")

    instances = commands.add_parser("instances", help="show a service's instances", parents=[globalOptions])
    instances.add_argument("service", metavar="SERVICE")
    instances.add_argument("--cluster", action="append", help="keep this cluster; repeatable")
    instances.add_argument("--healthy-only", action="store_true", help="leave out unhealthy")

    register = commands.add_parser(
        "register", help="register an instance until SIGINT or SIGTERM, then say bye",
        parents=[globalOptions])
    register.add_argument("service", metavar="SERVICE")
    register.add_argument("ip", metavar="IP")
    register.add_argument("port", metavar="PORT", type=_port)
    register.add_argument("--cluster", default="DEFAULT")
    register.add_argument("--weight", type=float, default=1.0)
    register.add_argument("--metadata", action="append", type=_keyValue, default=[],
                          metavar="KEY=VALUE", help="repeatable")
    register.add_argument("--unhealthy", action="store_true")
    register.add_argument("--disabled", action="store_true")

    _addOperatorCommands(commands, globalOptions)

    watch = commands.add_parser("watch", help="print a service's view and each change",
                                parents=[globalOptions])
    watch.add_argument("service", metavar="SERVICE")
    watch.add_argument("--cluster", action="append", help="keep this cluster; repeatable")
    watch.add_argument("--count", type=_count, metavar="N",
                       help="exit after N changes")

    commands.add_parser("members", help="list the cluster's members", parents=[globalOptions])
    rebalance = commands.add_parser(
        "rebalance", help="ask every member up to move the client sessions it holds over its share "
        "to the others, a few a second (an operator's action)", parents=[globalOptions])
    rebalance.add_argument("--rate", type=_positive, default=None,
                           help="sessions each member moves per second (default: the node's, 5)")
    commands.add_parser(
        "hash-password",
        help="read a password (a prompt, or the first line of standard input) and print "
        "its hash for auth_users; no node is asked",
        parents=[globalOptions],
    )
    return parser


# The operators' commands: what each sets of an override (PROTOCOL.md 5.7).
_OPERATOR_COMMANDS = {
    "drain": ("take an instance out of rotation, on every node", {"enabled": False}),
    "undrain": ("put a drained instance back into rotation", {"enabled": RESET}),
    "weight": ("show an instance with another weight, on every node", None),
    "remove": ("show an instance nowhere, whatever its client publishes", {"removed": True}),
    "clear": ("clear an instance's override: shown as its client publishes it", None),
}


def _weightOrReset(text):
    if text == "reset":
        return RESET
    try:
        weight = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'reset': {text!r}")
    if not 0 <= weight <= 10000:
        raise argparse.ArgumentTypeError(f"must be in 0..10000: {text!r}")
    return weight


def _addOperatorCommands(commands, globalOptions):
    for name, (summary, _) in _OPERATOR_COMMANDS.items():
        command = commands.add_parser(name, help=summary, parents=[globalOptions],
                                      aliases=["deregister"] if name == "remove" else [])
        command.add_argument("service", metavar="SERVICE")
        command.add_argument("ip", metavar="IP")
        command.add_argument("port", metavar="PORT", type=_port)
        if name == "weight":
            command.add_argument("weight", metavar="WEIGHT", type=_weightOrReset,
                                 help="0..10000, or 'reset' for the instance's own")
        command.add_argument("--cluster", default="DEFAULT")
        command.add_argument("--why", help="the reason, kept with the override")
    overrides = commands.add_parser("overrides", help="list the operators' overrides in force",
                                    parents=[globalOptions])
    overrides.add_argument("--all-namespaces", action="store_true",
                           help="of every namespace (needs a grant of every namespace)")


def parseArguments(argv, environ=None, stdout=None, stderr=None):
    """
    Parse a command line.

    Besides the fields of each command, the result has C{servers} (a list of
    addresses) and, for commands naming one, C{service} as a L{Service} and
    C{instance} (register) as an L{Instance}.

    @raise UsageExit: after printing help or a usage error.
    """
    environ = os.environ if environ is None else environ
    parser = _buildParser()
    with redirect_stdout(stdout or sys.stdout), redirect_stderr(stderr or sys.stderr):
        try:
            options = parser.parse_args(argv)
            try:
                _complete(options, environ)
            except ValueError as e:
                parser.error(str(e))
        except SystemExit as stop:
            raise UsageExit(stop.code)
    return options


def _complete(options, environ):
    """
    Check and convert what argparse cannot; raise L{ValueError}.
    """
    if options.token is None:
        options.token = environ.get("DISTRO_TOKEN") or None
    servers = options.server or [environ.get("DISTRO_SERVERS") or DEFAULT_SERVERS]
    options.servers = [formatAddress(host, port) for host, port in parseServers(servers)]
    if getattr(options, "service", None) is not None:
        options.service = Service(
            options.service, group=options.group or DEFAULT_GROUP, namespace=options.namespace
        )
    if options.command == "register":
        options.instance = Instance(
            options.ip, options.port, cluster=options.cluster, weight=options.weight,
            healthy=not options.unhealthy, enabled=not options.disabled,
            metadata=dict(options.metadata),
        )
    if options.command == "deregister":
        raise ValueError(
            "deregister is gone: a session of its own could never remove another's instance. To take "
            f"it out of every view: distro remove {options.service.name} {options.ip} {options.port} "
            "(an operator's override, on every node, until distro clear)"
        )
    if options.command in _OPERATOR_COMMANDS:
        Instance(options.ip, options.port, cluster=options.cluster)
    options.tls = None
    if options.tls_cert is not None and options.tls_key is None:
        raise ValueError("--tls-cert needs --tls-key")
    if options.tls_key is not None and options.tls_cert is None:
        raise ValueError("--tls-key needs --tls-cert")
    if options.use_tls or options.tls_ca or options.tls_cert or options.tls_no_verify:
        options.tls = TLSOptions(
            ca=options.tls_ca, cert=options.tls_cert, key=options.tls_key,
            verify=not options.tls_no_verify,
        )


def formatTable(headers, rows, rightAligned=()):
    """
    Lay out rows under headers in aligned columns, two spaces apart.

    @param rightAligned: the indexes of columns to align right (numbers).
    """
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [
        max([len(header)] + [len(row[i]) for row in rows]) for i, header in enumerate(headers)
    ]
    lines = []
    for row in [list(headers)] + rows:
        cells = [
            cell.rjust(width) if i in rightAligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _yesNo(flag):
    return "yes" if flag else "no"


def formatServiceInfo(info):
    """
    A view as a title line and a table of its hosts.
    """
    title = f"{info.service}  revision {info.revision}  checksum {info.checksum}"
    if info.clusters:
        title += f"  clusters {','.join(info.clusters)}"
    count = len(info.hosts)
    title += f"  {count} host{'' if count == 1 else 's'}"
    rows = [
        [host.ip, host.port, host.cluster, f"{host.weight:g}", _yesNo(host.healthy),
         _yesNo(host.enabled), ",".join(f"{k}={v}" for k, v in sorted(host.metadata.items()))]
        for host in info.hosts
    ]
    table = formatTable(
        ["IP", "PORT", "CLUSTER", "WEIGHT", "HEALTHY", "ENABLED", "METADATA"], rows, (1, 3)
    )
    return f"{title}\n{table}"


def formatServices(page):
    """
    A L{ServicePage} as a table and a count.
    """
    rows = [[s.service.group, s.service.name, s.instances] for s in page.services]
    table = formatTable(["GROUP", "NAME", "INSTANCES"], rows, (2,))
    return f"{table}\n{page.count} service{'' if page.count == 1 else 's'}"


def formatRebalance(results):
    """
    What each member said to C{rebalance}, as a table.
    """
    rows = [[r["node"], r["sessions"], r["share"], r["moving"]] for r in results]
    return formatTable(["NODE", "SESSIONS", "SHARE", "MOVING"], rows, (1, 2, 3))


def formatMembers(members):
    """
    The L{Member}s as a table; the node answering is marked in the SELF
    column.
    """
    rows = [[m.node, m.address, m.state, "*" if m.is_self else ""] for m in members]
    return formatTable(["NODE", "ADDRESS", "STATE", "SELF"], rows)


class _Output:
    """
    Where a command's results go: text, or one JSON document per line.

    Every document is an object, in the names of the protocol and of the
    HTTP JSON API (docs/http.md): snake_case, a view as the HTTP API's, an
    instance with its C{instance_id}, a list under its name.
    """

    def __init__(self, stream, asJSON):
        self.stream = stream
        self.asJSON = asJSON

    def emit(self, document, text):
        if self.asJSON:
            self.stream.write(json.dumps(document, sort_keys=True) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class _Shutdown:
    """
    The reactor's shutdown (begun by SIGINT or SIGTERM, whose handlers
    C{reactor.run} installs), seen by a command. Once begun, the shutdown waits
    until L{finished} is called, so that C{bye} is sent first.
    """

    def __init__(self, reactor):
        self.requested = False
        self._waiting = []
        self._finished = Deferred()
        reactor.addSystemEventTrigger("before", "shutdown", self._beforeShutdown)

    def _beforeShutdown(self):
        self.requested = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        return self._finished

    def whenRequested(self):
        """
        A L{Deferred} firing when the shutdown begins.
        """
        if self.requested:
            return succeed(None)
        d = Deferred(self._waiting.remove)
        self._waiting.append(d)
        return d

    def finished(self):
        """
        The command is done: let the shutdown go on.
        """
        if not self._finished.called:
            self._finished.callback(None)


async def _services(client, options, output, shutdown):
    page = await client.services(
        namespace=options.namespace, group=options.group, page=options.page, size=options.size
    )
    output.emit(page.as_wire(), formatServices(page))


async def _instances(client, options, output, shutdown):
    info = await client.query(
        options.service, clusters=options.cluster, healthy_only=options.healthy_only
    )
    output.emit(info.as_wire(), formatServiceInfo(info))


async def _register(client, options, output, shutdown):
    instance = options.instance
    await client.register(
        options.service, instance.ip, instance.port, cluster=instance.cluster,
        weight=instance.weight, healthy=instance.healthy, enabled=instance.enabled,
        metadata=instance.metadata,
    )
    output.emit(
        {"registered": {"service": options.service.as_wire(), "instance": instance.as_host()}},
        f"registered {instance.instance_id} in {options.service}; "
        "interrupt (Ctrl-C) to deregister",
    )
    await shutdown.whenRequested()


def _by(override):
    return f"by {override.who}" + (f": {override.why}" if override.why else "")


async def _override(client, options, output, shutdown):
    """
    drain, undrain, weight, remove: an operator's override, said back.
    """
    changes = _OPERATOR_COMMANDS[options.command][1] or {"weight": options.weight}
    override = await client.set_override(options.service, options.ip, options.port, cluster=options.cluster,
                                         why=options.why, **changes)
    instance = f"{override.instance_id} in {options.service}"
    undo = f"distro clear {options.service.name} {options.ip} {options.port}"
    said = {
        "drain": f"drained {instance} on every node, {_by(override)}; undo: distro undrain",
        "undrain": f"undrained {instance}: in rotation again, as its client publishes it",
        "weight": f"{instance} shown with weight {override.weight} on every node, {_by(override)}"
        if override.weight is not None else f"{instance} shown with the weight its client publishes",
        "remove": f"removed {instance} from every view on every node, {_by(override)}; it stays "
                  f"removed while its client publishes it, until: {undo}",
    }[options.command]
    if override.cleared:
        said += " (no override left)"
    elif options.command in ("undrain", "weight"):
        said += f"; its override still sets {_described(override)}"
    output.emit(override.as_json(), said)


def _described(override):
    return ", ".join(f"{name}={value}" for name, value in override.changes().items())


async def _clear(client, options, output, shutdown):
    cleared = await client.clear_override(options.service, options.ip, options.port, cluster=options.cluster,
                                          why=options.why)
    instanceId = f"{options.ip}#{options.port}#{options.cluster}"
    output.emit(
        {"cleared": cleared},
        f"cleared the override of {instanceId} in {options.service}: shown as its client publishes it"
        if cleared else f"{instanceId} in {options.service} had no override",
    )


async def _overrides(client, options, output, shutdown):
    listed = await client.overrides(namespace=None if options.all_namespaces else options.namespace)
    rows = [[str(o.service), o.instance_id, _described(o), o.who, o.why,
             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(o.at))] for o in listed]
    output.emit(
        {"overrides": [o.as_json() for o in listed]},
        formatTable(["SERVICE", "INSTANCE", "SETS", "WHO", "WHY", "SINCE (UTC)"], rows)
        if rows else "no overrides",
    )


async def _watch(client, options, output, shutdown):
    enough = Deferred()
    pushes = 0

    def changed(info):
        nonlocal pushes
        if enough.called:
            return  # --count is reached: print no more
        pushes += 1
        output.emit(info.as_wire(), "\n" + formatServiceInfo(info))
        if options.count is not None and pushes >= options.count:
            enough.callback(None)

    info = await client.subscribe(options.service, changed, clusters=options.cluster)
    output.emit(info.as_wire(), formatServiceInfo(info))
    if options.count == 0:
        return
    await race([enough, shutdown.whenRequested()])


async def _members(client, options, output, shutdown):
    members = await client.members()
    output.emit({"members": [m.as_wire() for m in members]}, formatMembers(members))


async def _rebalance(client, options, output, shutdown):
    results = []
    for member in await client.members():
        if member.state != "UP" or not member.address:
            continue
        # Each member judges its own share: one session per member.
        at = await options.dial([member.address])
        try:
            results.append(await at.rebalance(rate=options.rate))
        finally:
            await at.close()
    output.emit({"nodes": results}, formatRebalance(results))


_COMMANDS = {
    "services": _services,
    "instances": _instances,
    "register": _register,
    "drain": _override,
    "undrain": _override,
    "weight": _override,
    "remove": _override,
    "clear": _clear,
    "overrides": _overrides,
    "watch": _watch,
    "members": _members,
    "rebalance": _rebalance,
}


def _connectHint(error, options):
    """
    What to change, when the reasons no node could be reached say it: a
    plain dial at a TLS port, or a TLS dial at a plain one.
    """
    reasons = set(getattr(error, "reasons", {}).values())
    if options.tls is None and reasons & {SILENT_CLOSE, SPEAKS_TLS}:
        return " (if the port is TLS, give --tls-ca FILE or --tls)"
    if options.tls is not None and NOT_TLS in reasons:
        return " (if the port is plain TCP, leave out the --tls options)"
    return ""


# What a session that the cluster let go does again, as the command says it.
_AGAIN = {"register": "registered again", "watch": "subscribed again"}


def _sessionReporter(client, options, problem):
    """
    A session listener that says, in one line on stderr each, that the
    session was lost, resumed or started over, or that views are served
    from what the client holds while no node answers.
    """
    def report(event):
        if event == SessionEvent.SUSPENDED:
            problem(f"lost node {client.node}; trying the servers again")
        elif event == SessionEvent.RESUMED:
            problem(f"resumed the session on node {client.node}")
        elif event == SessionEvent.LOST:
            again = _AGAIN.get(options.command, "started a new session")
            problem(f"the cluster had let the session go: {again} on node {client.node}")
        elif event == SessionEvent.OFFLINE:
            if options.cache_dir is not None:
                problem(f"no node answers; serving the views cached in {options.cache_dir}")
            else:
                problem("no node answers; serving the last view received")

    return report


def _hashPassword(stdin, stdout, stderr):
    """
    C{distro hash-password}: the C{auth_users} hash of a password read
    from a prompt (twice) or from the first line of C{stdin}.
    """
    if stdin.isatty():
        password = getpass.getpass("password: ", stream=stderr)
        if getpass.getpass("again: ", stream=stderr) != password:
            stderr.write("distro: the passwords differ\n")
            return EXIT_USAGE
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        stderr.write("distro: the password is empty\n")
        return EXIT_USAGE
    stdout.write(hashPassword(password) + "\n")
    stdout.flush()
    return EXIT_OK


async def execute(reactor, options, stdout, stderr, connect=connect, stdin=None):
    """
    Run a parsed command: connect, do it, say bye.

    @param connect: L{distro.client.connect}, or a stand-in with its
        signature.
    @return: the exit code.
    """
    if options.command == "hash-password":
        return _hashPassword(stdin or sys.stdin, stdout, stderr)
    shutdown = _Shutdown(reactor)
    output = _Output(stdout, options.json)

    def problem(text):
        stderr.write(f"distro: {text}\n")
        stderr.flush()

    def dial(servers, **extra):
        return connect(
            servers, namespace=options.namespace,
            group=options.group or DEFAULT_GROUP, agent=AGENT, reactor=reactor,
            timeout=options.timeout, tls=options.tls, token=options.token, **extra,
        )

    options.dial = dial
    try:
        try:
            connecting = dial(options.servers, cache_dir=options.cache_dir)
        except TLSFileError as e:
            problem(f"--tls-{e.option}: {e.problem}")
            return EXIT_USAGE
        except TLSUnavailable as e:
            problem(str(e))
            return EXIT_USAGE
        except OSError as e:
            problem(f"--cache-dir: {e}")
            return EXIT_USAGE
        # An interruption while connecting gives up at once.
        shutdown.whenRequested().addCallback(lambda _: connecting.cancel())
        try:
            client = await connecting
        except CancelledError:
            problem("interrupted while connecting")
            return EXIT_UNREACHABLE
        except (NotConnected, RequestTimeout) as e:
            problem(f"cannot connect: {e}{_connectHint(e, options)}")
            return EXIT_UNREACHABLE
        except DistroError as e:
            problem(f"{e.code}: {e.message}")
            return EXIT_SERVER_ERROR
        report = _sessionReporter(client, options, problem)
        client.add_session_listener(report)
        if not client.connected:
            # Started from the cache directory: its start said so before
            # anyone could listen.
            report(SessionEvent.OFFLINE)
        try:
            await _COMMANDS[options.command](client, options, output, shutdown)
        except DistroError as e:
            problem(f"{e.code}: {e.message}")
            return EXIT_SERVER_ERROR
        except (NotConnected, RequestTimeout) as e:
            problem(str(e))
            return EXIT_UNREACHABLE
        finally:
            await client.close()
        return EXIT_OK
    finally:
        shutdown.finished()


async def run(reactor, argv, stdout, stderr, environ=None, connect=connect, stdin=None):
    """
    Parse C{argv} and execute it: L{main} without the process around it.

    @return: the exit code.
    """
    try:
        options = parseArguments(argv, environ, stdout, stderr)
    except UsageExit as e:
        return e.code
    return await execute(reactor, options, stdout, stderr, connect, stdin)


async def _reactMain(reactor, options):
    code = await execute(reactor, options, sys.stdout, sys.stderr)
    if code != EXIT_OK:
        raise SystemExit(code)


def main(argv=None):
    """
    The console script: run the command line C{argv} (C{sys.argv[1:]} when
    L{None}) and exit the process with the command's exit code.
    """
    if argv is None:
        argv = sys.argv[1:]
    try:
        options = parseArguments(argv)
    except UsageExit as e:
        sys.exit(e.code)
    react(_reactMain, (options,))


if __name__ == "__main__":
    main()
