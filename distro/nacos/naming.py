# -*- test-case-name: tests.test_nacos_naming -*-
"""
The JSON of Nacos naming requests and responses (docs/nacos.md), translated
to and from distro's model: the service key of a request, the instance of a
register, the filter of a query, and the C{ServiceInfo}, host and envelope
of a response. Nothing here touches a connection.

Nacos names services by namespace, group and name like distro (an empty
namespace is C{public}, an empty group C{DEFAULT_GROUP}); its instance ids
are C{ip#port#cluster#group@@name}, and the hosts it returns name their
service grouped, C{group@@name}, while a C{ServiceInfo} names it ungrouped
beside its C{groupName}. Every response carries C{resultCode}, C{errorCode}
and C{success}, and never a JSON C{null} (a strict client refuses one).
"""

import json
import re

import orjson

from distro import model
from distro.errors import RequestError

# Nacos' codes (errorCode; resultCode is SUCCESS or FAIL).
SUCCESS = 200
FAIL = 500
INVALID_SERVER_STATUS = 300  # the server is starting
UN_REGISTER = 301  # the connection did not set up (ConnectionSetupRequest)
NO_HANDLER = 302  # a request type the server does not serve
INVALID_PARAM = 400
NO_RIGHT = 403  # no credential, or one that does not grant the namespace

# What a persistent instance is told, on every port (after the field's path).
PERSISTENT_REFUSED = (
    "ephemeral: distro holds ephemeral instances only (persistent instances are not "
    "supported; register with ephemeral=true)"
)
SERVER_ERROR = 500
BAD_GATEWAY = 502  # the body could not be parsed
OVER_THRESHOLD = 503

DEFAULT_NAMESPACE = "public"
# What Nacos servers answer for how long a client may cache a ServiceInfo.
CACHE_MILLIS = 10000

# Fields of distro's model named as Nacos requests name them.
_FIELDS = {
    "service.namespace": "namespace",
    "service.group": "groupName",
    "service.name": "serviceName",
    ".cluster": ".clusterName",
}


class NacosError(Exception):
    """
    A request refused, with Nacos' C{errorCode} and a message naming the
    field at fault.
    """

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message


def _nacosField(text):
    for ours, theirs in _FIELDS.items():
        text = text.replace(ours, theirs)
    return text


def _refused(error):
    """
    The L{NacosError} of a L{RequestError} from distro's model.
    """
    return NacosError(INVALID_PARAM, _nacosField(error.message))


# The items (commas) a request body may hold: a batch of
# max_instances_per_client (10,000) instances with their metadata has about
# 150,000.
MAX_JSON_ITEMS = 262144

# The elements of a body's arrays L{parseBodyInSlices} parses, and the
# instances L{parseInstancesInSlices} reads, per slice: a few ms of work.
SLICE_ITEMS = 256


def maxBody(maxMetadataBytes):
    """
    The largest body of a request other than a batch: an instance whose
    metadata is the largest allowed, every byte escaped (C{\\uXXXX}), with
    room for the rest. A larger one is refused unread: a single message
    never holds the reactor for its parse (8 MB of tiny items: 120 ms).
    """
    return 65536 + 6 * maxMetadataBytes


def _bounded(body, maxBytes=None):
    if maxBytes is not None and len(body) > maxBytes:
        raise NacosError(INVALID_PARAM, f"body: more than {maxBytes} bytes")
    if body.count(b",") > MAX_JSON_ITEMS:
        # Counted in C before any is parsed: millions of tiny items would
        # hold the reactor for the parse (3M numbers in 8 MB: 122 ms).
        raise NacosError(INVALID_PARAM, f"body: more than {MAX_JSON_ITEMS} items")


def _bodyText(body):
    if type(body) is str:
        return body
    _bounded(body)
    try:
        # UTF-8 only (json.loads of bytes would take UTF-16 and UTF-32 too).
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise NacosError(BAD_GATEWAY, "body: not valid UTF-8 JSON")


def parseBody(body, maxBytes=None):
    """
    The JSON object of a request's body.

    @param maxBytes: the longest body read (L{maxBody}); C{None}: any.
    @raise NacosError: C{BAD_GATEWAY} (what Nacos answers to a body it cannot
        parse) if it is not a UTF-8 JSON object; C{INVALID_PARAM} if it is
        longer than C{maxBytes} or has more than L{MAX_JSON_ITEMS} items.
    """
    if type(body) is not str:
        _bounded(body, maxBytes)
        try:
            # orjson reads UTF-8 bytes only, as strict JSON.
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            # What Python's json takes besides (NaN, a lone surrogate's
            # escape), or the error: read as before.
            value = _lenient(_bodyText(body))
    else:
        value = _lenient(body)
    if type(value) is not dict:
        raise NacosError(BAD_GATEWAY, "body: must be a JSON object")
    return value


def _lenient(text):
    """
    The JSON value of C{text}, as Python's C{json} reads it.
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise NacosError(BAD_GATEWAY, "body: not valid UTF-8 JSON")


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def parseBodyInSlices(body, maxValueChars, sliceItems=SLICE_ITEMS):
    """
    L{parseBody} of a body of thousands of items (a batch), as a generator
    (for L{distro.interfaces.ITurns.run}): the arrays that are values of
    the object are parsed C{sliceItems} elements per C{next()}; its return
    value is the object. Every other value, and every element of those
    arrays, is at most C{maxValueChars} characters (L{maxBody} of the
    metadata allowed: one instance), so that no single value holds the
    reactor for its parse (one object of 262k keys: 120 ms).

    @raise NacosError: C{BAD_GATEWAY} if it is not a UTF-8 JSON object, or
        holds a longer value.
    """
    text = _bodyText(body)
    try:
        return (yield from _objectInSlices(text, _Values(text, maxValueChars), sliceItems))
    except (ValueError, RecursionError):
        raise NacosError(
            BAD_GATEWAY, f"body: not valid UTF-8 JSON, or a value of it longer than {maxValueChars} characters")


class _Values:
    """
    Decodes the JSON value at an index of C{text}, reading at most
    C{limit} characters: from a copy of the few characters a value usually
    takes, else of C{limit}. A value cut by the copy's end is not valid
    JSON, or (a number) reaches that end: it is read again from the longer
    copy.
    """

    FIRST = 2048

    def __init__(self, text, limit):
        self.text = text
        self.limit = limit

    def decode(self, at):
        text = self.text
        for window in (self.FIRST, self.limit):
            if at + window >= len(text):
                return _DECODER.raw_decode(text, at)
            try:
                value, end = _DECODER.raw_decode(text[at:at + window])
            except ValueError:
                if window >= self.limit:
                    raise
                continue
            if end < window:
                return value, at + end
        raise ValueError(f"a value longer than {self.limit} characters")


def _objectInSlices(text, values, sliceItems):
    space, decode = _SPACE.match, values.decode
    at = space(text, 0).end()
    if text[at:at + 1] != "{":
        raise NacosError(BAD_GATEWAY, "body: must be a JSON object")
    value = {}
    at = space(text, at + 1).end()
    if text[at:at + 1] == "}":
        at += 1
    else:
        while True:
            if text[at:at + 1] != '"':
                raise ValueError("a key must be a string")
            key, at = decode(at)
            at = space(text, at).end()
            if text[at:at + 1] != ":":
                raise ValueError("':' expected")
            at = space(text, at + 1).end()
            if text[at:at + 1] == "[":
                value[key], at = yield from _arrayInSlices(text, at, values, sliceItems)
            else:
                value[key], at = decode(at)
            at = space(text, at).end()
            mark, at = text[at:at + 1], at + 1
            if mark == "}":
                break
            if mark != ",":
                raise ValueError("',' or '}' expected")
            at = space(text, at).end()
    if space(text, at).end() != len(text):
        raise ValueError("extra data")
    return value


def _arrayInSlices(text, at, values, sliceItems):
    space, decode = _SPACE.match, values.decode
    items = []
    at = space(text, at + 1).end()
    if text[at:at + 1] == "]":
        return items, at + 1
    while True:
        item, at = decode(at)
        items.append(item)
        if len(items) % sliceItems == 0:
            yield
        at = space(text, at).end()
        mark, at = text[at:at + 1], at + 1
        if mark == "]":
            return items, at
        if mark != ",":
            raise ValueError("',' or ']' expected")
        at = space(text, at).end()


def namespaceOf(request):
    """
    The namespace a naming request names, as every handler reads it:
    C{namespace}, empty or absent meaning C{public}.

    @raise NacosError: C{INVALID_PARAM} for anything but a string.
    """
    namespace = request.get("namespace")
    if namespace is None or namespace == "":
        return DEFAULT_NAMESPACE
    if type(namespace) is not str:
        raise NacosError(INVALID_PARAM, "namespace: must be a string")
    return namespace


def serviceKey(request):
    """
    The L{model.ServiceKey} a naming request names: C{namespace},
    C{groupName} and C{serviceName} (which may also be C{group@@name}).
    """
    namespace = namespaceOf(request)
    group = request.get("groupName") or model.DEFAULT_GROUP
    name = request.get("serviceName")
    if type(name) is str and "@@" in name:
        group, name = name.split("@@", 1)
    try:
        return model.parseService({"namespace": namespace, "group": group, "name": name})
    except RequestError as e:
        raise _refused(e)


def parseInstance(value, field="instance", maxMetadataBytes=8192):
    """
    The L{model.Instance} of a Nacos instance object. Its C{instanceId},
    C{serviceName} and heartbeat settings are ignored: the service is the
    request's, the id is made from the instance. Only ephemeral instances
    are held.

    @raise NacosError: C{INVALID_PARAM} naming the field.
    """
    if type(value) is not dict:
        raise NacosError(INVALID_PARAM, f"{field}: must be an object")
    if value.get("ephemeral", True) is False:
        raise NacosError(INVALID_PARAM, f"{field}.{PERSISTENT_REFUSED}")
    try:
        return model.parseInstance(
            {
                "ip": value.get("ip"),
                "port": value.get("port"),
                "cluster": value.get("clusterName") or model.DEFAULT_CLUSTER,
                "weight": value.get("weight"),
                "healthy": value.get("healthy"),
                "enabled": value.get("enabled"),
                "metadata": value.get("metadata"),
            },
            field,
            maxMetadataBytes,
        )
    except RequestError as e:
        raise _refused(e)


def parseInstancesInSlices(values, maxMetadataBytes=8192, sliceItems=SLICE_ITEMS):
    """
    The instances of a C{BatchInstanceRequest}, as a generator reading
    C{sliceItems} per C{next()}; its return value is the list.
    """
    if type(values) is not list:
        raise NacosError(INVALID_PARAM, "instances: must be a list")
    instances = []
    for i, value in enumerate(values):
        instances.append(parseInstance(value, f"instances[{i}]", maxMetadataBytes))
        if i % sliceItems == sliceItems - 1:
            yield
    return instances


# The longest cluster filter text read: 1024 names of 64 characters, as the
# msgpack port allows, and their commas.
MAX_CLUSTERS_TEXT = 1024 * 65


def parseClusters(value, field="clusters"):
    """
    A cluster filter, Nacos' comma-separated string (empty: all): distro's
    sorted tuple or C{None}, and the text to echo in the ServiceInfos it
    is given (the names as the SDK listed them, joined by commas: what an
    SDK sends, without anything else a client padded it with).
    """
    if value is None or value == "":
        return None, ""
    if type(value) is not str:
        raise NacosError(INVALID_PARAM, f"{field}: must be a comma-separated string")
    if len(value) > MAX_CLUSTERS_TEXT:
        raise NacosError(INVALID_PARAM, f"{field}: longer than {MAX_CLUSTERS_TEXT} characters")
    names = [c.strip() for c in value.split(",") if c.strip()]
    try:
        clusters = model.parseClusters(names, field) if names else None
    except RequestError as e:
        raise _refused(e)
    return clusters, ",".join(names)


def healthyOnly(request):
    """
    The C{healthyOnly} flag of a query; one SDK spells it C{healthOnly}.
    """
    value = request.get("healthyOnly", request.get("healthOnly", False))
    return value is True


def groupedName(service):
    return f"{service.group}@@{service.name}"


def host(instance, grouped):
    """
    The Nacos instance object of a host of the service C{grouped}
    (C{group@@name}).
    """
    return {
        "instanceId": f"{instance.instanceId}#{grouped}",
        "ip": instance.ip,
        "port": instance.port,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "enabled": instance.enabled,
        "ephemeral": True,
        "clusterName": instance.cluster,
        "serviceName": grouped,
        "metadata": instance.metadata,
    }


# What Nacos' HTTP answers show of an instance's heartbeat settings (its
# Instance getters, which Jackson writes): the preserved metadata key and
# Nacos' default, in milliseconds.
HEARTBEAT_SETTINGS = (
    ("instanceHeartBeatInterval", "preserved.heart.beat.interval", 5000),
    ("instanceHeartBeatTimeOut", "preserved.heart.beat.timeout", 15000),
    ("ipDeleteTimeout", "preserved.ip.delete.timeout", 30000),
)
INSTANCE_ID_GENERATOR = "preserved.instance.id.generator"


def _millis(value, default):
    # Nacos reads a setting that is all ASCII digits; anything else is
    # its default (and more digits than a long holds would fail there).
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return default


def httpHost(instance, grouped):
    """
    The Nacos instance object of Nacos' HTTP answers: L{host} with the
    heartbeat settings (C{preserved.*} metadata, else Nacos' defaults) and
    C{instanceIdGenerator}: the metadata's, C{simple} when the metadata is
    empty, absent when it is not and lacks it (Nacos' getter gives null
    then, which it does not write).
    """
    value = host(instance, grouped)
    metadata = instance.metadata
    for name, key, default in HEARTBEAT_SETTINGS:
        value[name] = _millis(metadata.get(key), default)
    generator = metadata.get(INSTANCE_ID_GENERATOR) if metadata else "simple"
    if generator is not None:
        value["instanceIdGenerator"] = generator
    return value


def serviceInfo(info, clusters, lastRefTime, form=host):
    """
    The Nacos C{ServiceInfo} of a L{distro.registry.ServiceInfo}, with its
    C{hosts} as L{RawJSON} (see L{hostsJson}; C{form} makes each).

    @param clusters: the cluster string the client asked for (C{""}: all).
    @param lastRefTime: milliseconds; a client drops a push whose
        C{lastRefTime} is not above the last it took.
    """
    service = info.service
    return {
        "name": service.name,
        "groupName": service.group,
        "clusters": clusters,
        "cacheMillis": CACHE_MILLIS,
        "hosts": RawJSON(hostsJson(info, form)),
        "lastRefTime": lastRefTime,
        "checksum": info.checksum,
        "allIPs": False,
        "reachProtectionThreshold": False,
        "valid": True,
    }


class RawJSON(str):
    """
    Text that is JSON already: L{encodeBody} writes it as it is.
    """


# The key each form of a host keeps its encodings by.
_FORMS = {host: "nacos", httpHost: "nacos-http"}


def _hostsEncoder(info, form):
    grouped = groupedName(info.service)

    def encode(group):
        return _dumps([form(i, grouped) for i in group.hosts])[1:-1]

    return (_FORMS[form], grouped), encode


def hostsJson(info, form=host):
    """
    The JSON array of C{info}'s hosts, Nacos instance objects (C{form}:
    L{host}, or L{httpHost} for the HTTP port): the JSON of each group of
    hosts (a chunk of the view) is made once and kept with the group, so
    that a change re-encodes its chunk, not the view.
    """
    key, encode = _hostsEncoder(info, form)
    parts = [group.encoded(key, encode) for group in info.hostGroups() if group.hosts]
    return "[" + ",".join(parts) + "]"


def hostsEncoded(info, form=host):
    """
    Whether the JSON of every group of C{info}'s hosts is made.
    """
    key, _ = _hostsEncoder(info, form)
    return all(group.isEncoded(key) for group in info.hostGroups() if group.hosts)


def hostsJsonInSlices(info, form=host):
    """
    Make the JSON of C{info}'s groups of hosts not made yet, one group (a
    few hundred hosts, about a ms) per C{next()}: a generator (for
    L{distro.interfaces.ITurns.run}) after which L{hostsJson} only joins.
    A view of ten thousand changed hosts is then never encoded in one turn.
    """
    key, encode = _hostsEncoder(info, form)
    for group in info.hostGroups():
        if group.hosts and not group.isEncoded(key):
            group.encoded(key, encode)
            yield


def response(fields=None, *, requestId=None):
    """
    A successful response's body: C{fields} and the envelope.
    """
    body = {"resultCode": SUCCESS, "errorCode": 0, "success": True}
    if requestId is not None:
        body["requestId"] = requestId
    if fields:
        body.update(fields)
    return body


def errorResponse(code, message):
    """
    The body of an C{ErrorResponse}.
    """
    return {"resultCode": FAIL, "errorCode": code, "success": False, "message": message}


def encodeBody(body):
    """
    A response or request body as the bytes of a payload (compact JSON,
    UTF-8); L{RawJSON} values in its maps go in as they are.
    """
    return _encode(body).encode("utf-8")


# One encoder for every body (json.dumps with options makes one per call).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _encode(value):
    if isinstance(value, RawJSON):
        return value
    if type(value) is dict:
        for v in value.values():
            if type(v) is dict or isinstance(v, RawJSON):
                # Only a map that holds raw JSON, or may, is written piece
                # by piece (a call of json per key and value).
                return "{" + ",".join(f"{_dumps(k)}:{_encode(v)}" for k, v in value.items()) + "}"
    return _dumps(value)
