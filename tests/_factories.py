"""
The tests' one way to make an instance, in each of its forms: the map a
request carries (L{instance}), the model L{distro.model.Instance} a node
makes of it (L{modelInstance}), and the record replication carries
(L{record}, PROTOCOL.md 5.2).

Every form defaults to the same instance, C{10.1.0.1:8080} in cluster
C{DEFAULT}; a module whose tests use another one binds its own defaults
with L{functools.partial}, by keyword.
"""

from distro.model import parseInstance


def instance(ip="10.1.0.1", port=8080, **fields):
    """
    An instance map for a request: C{ip} and C{port}, with C{fields} (any
    other key of the map, e.g. C{cluster}, C{weight}, C{metadata}) added.
    """
    return {"ip": ip, "port": port, **fields}


def modelInstance(ip="10.1.0.1", port=8080, writeTs=0, **fields):
    """
    The L{distro.model.Instance} a node makes of C{instance(ip, port,
    **fields)} (its defaults applied), written at C{writeTs}.
    """
    return parseInstance(instance(ip, port, **fields), writeTs=writeTs)


def record(ip="10.1.0.1", port=8080, writeTs=1, *, cluster="DEFAULT", weight=1.0,
           healthy=True, enabled=True, metadata=None):
    """
    An instance record (PROTOCOL.md 5.2): the array C{[ip, port, cluster,
    weight, healthy, enabled, metadata, write_ts]}.
    """
    return [ip, port, cluster, weight, healthy, enabled, {} if metadata is None else metadata, writeTs]
