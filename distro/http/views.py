# -*- test-case-name: tests.test_http_api -*-
"""
A view as distro's JSON API writes it (docs/http.md): the fields of
distro's own protocol (PROTOCOL.md 3) in JSON. The JSON of each group of
hosts (a chunk of the view) is made once and kept with the group, so that
every answer and event of a view shares it, and a change re-encodes its
chunk, not the view; the whole view's JSON is kept with its info. A view
changed much is encoded over reactor turns, a chunk at a time
(L{viewJsonInSlices}).
"""

import json

_KEY = "json"


def dumps(value):
    """
    Compact JSON, UTF-8 left as it is (as the port's other answers).
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _hostsJson(group):
    return dumps([host.host() for host in group.hosts])[1:-1]


def _viewJson(info):
    hosts = ",".join(group.encoded(_KEY, _hostsJson) for group in info.hostGroups() if group.hosts)
    clusters = list(info.clusters) if info.clusters is not None else None
    return (
        f'{{"service":{dumps(info.service.toWire())},"clusters":{dumps(clusters)},'
        f'"hosts":[{hosts}],"checksum":{dumps(info.checksum)},"revision":{info.revision}}}'
    ).encode("utf-8")


def viewJson(info):
    """
    The JSON of C{info} (a L{distro.registry.ServiceInfo}), UTF-8:
    C{{"service", "clusters", "hosts", "checksum", "revision"}}. Made once
    and kept with the info, which every answer and event of that view
    shares (a change pushed to a thousand watches is encoded once).
    """
    return info.encoded(_KEY, _viewJson)


def isEncoded(info):
    """
    Whether L{viewJson} of C{info} costs no more than a join: its JSON, or
    that of every group of its hosts, is made.
    """
    return info.isEncoded(_KEY) or all(
        group.isEncoded(_KEY) for group in info.hostGroups() if group.hosts
    )


def viewJsonInSlices(info):
    """
    Make the JSON of C{info}'s groups of hosts not made yet, one group (a
    chunk of the view, a few hundred hosts) per C{next()}: a generator (for
    L{distro.interfaces.ITurns.run}) after which L{viewJson} only joins. A
    view of ten thousand changed hosts is then never encoded in one turn.
    """
    for group in info.hostGroups():
        if group.hosts and not group.isEncoded(_KEY):
            group.encoded(_KEY, _hostsJson)
            yield
