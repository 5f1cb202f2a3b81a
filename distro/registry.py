# -*- test-case-name: tests.test_registry -*-
"""
Service views over all clients of a node (PROTOCOL.md section 3).

The registry consumes the change stream of the L{distro.clients.ClientManager}.
Each service's L{ServiceView} indexes its publishers per instance id, so a
change costs work in proportion to what changed, never a scan of all clients;
the ServiceInfo of a view is built once per change (and per filter asked for)
and shared by every reply and push until the next change.

Views show the operators' overrides (L{distro.overrides}) over what clients
publish: an override changes its one instance's place in its one view.
"""

import itertools

from zope.interface import implementer

from distro.hostlist import Encoded, HostGroup, HostList
from distro.interfaces import IOverrideObserver, IRegistry
from distro.model import ServiceKey, checksum
from distro.sortedlist import SortedList

_MAX_CACHED_FILTERS = 64


class ServiceInfo(Encoded):
    """
    One immutable snapshot of a view, as sent in replies and pushes.

    It holds the hosts as a few L{distro.hostlist.HostGroup}s, listed as
    host objects only when asked for (L{hosts}). What a port encodes of it
    is kept with it (L{distro.hostlist.Encoded}), as each group keeps its
    own.

    @ivar count: how many hosts it shows.
    """

    __slots__ = ("service", "clusters", "checksum", "revision", "count", "_parts", "_hosts", "_encodings")

    def __init__(self, service, clusters, parts, count, checksum, revision):
        self.service = service
        self.clusters = clusters
        self.checksum = checksum
        self.revision = revision
        self.count = count
        self._parts = parts
        self._hosts = None
        self._encodings = None

    @classmethod
    def ofHosts(cls, service, clusters, hosts, revision):
        """
        The info of C{hosts} (sorted by instance id), in one group.
        """
        hosts = tuple(hosts)
        return cls(service, clusters, [HostGroup(hosts)], len(hosts), checksum(hosts), revision)

    @property
    def hosts(self):
        """
        The shown L{Instance}s, in instance id order.
        """
        if self._hosts is None:
            self._hosts = [h for group in self._parts for h in group.hosts]
        return self._hosts

    def hostGroups(self):
        """
        The shown L{Instance}s in instance id order, as a few
        L{distro.hostlist.HostGroup}s (one per chunk of the view): a group
        is the same object in every info of the view until one of its hosts
        changes, and keeps the encodings made of it.
        """
        return self._parts


def _passes(instance, clusters, healthyOnly):
    """
    Whether a filtered view shows C{instance}.
    """
    return (
        instance.enabled
        and (clusters is None or instance.cluster in clusters)
        and (instance.healthy or not healthyOnly)
    )


class _Contested:
    """
    The publishers of an instance id published by several clients, and the
    one the dedup rule picked.
    """

    __slots__ = ("byClient", "winner")

    def __init__(self, byClient, winner):
        self.byClient = byClient
        self.winner = winner


class ServiceView:
    """
    The instances of one service, over all clients that publish in it.

    @ivar publishers: instance id -> C{(client id, Instance)} when one client
        publishes it (nearly always: a tuple, not a dict per instance), or a
        L{_Contested} when several do; the one shown is the one with the
        greatest C{(writeTs, clientId)}.
    @ivar shown: the L{HostList} of the enabled chosen instances (and one per
        filter asked for: at most C{_MAX_CACHED_FILTERS}, each kept up to date
        as changes come).
    """

    __slots__ = ("service", "publishers", "revision", "shown", "overrides", "_filtered", "_infos")

    def __init__(self, service, overrides=None):
        self.service = service
        # Instance id -> the Override in force, or None when none is.
        self.overrides = overrides
        self.publishers = {}
        self.revision = 0
        self.shown = HostList()
        # (clusters, healthyOnly) -> the HostList of what that filter shows,
        # made when first asked for and kept up to date from then on.
        self._filtered = {}
        self._infos = {}

    def publishersOf(self, instanceId):
        """
        C{{client id: Instance}} of the clients publishing C{instanceId}.
        """
        entry = self.publishers.get(instanceId)
        if entry is None:
            return {}
        if type(entry) is tuple:
            return {entry[0]: entry[1]}
        return dict(entry.byClient)

    def chosen(self):
        """
        The instance the dedup rule picked, for each instance id, as shown
        (under its override; none removed by one).
        """
        overrides = self.overrides
        for entry in self.publishers.values():
            instance = entry[1] if type(entry) is tuple else entry.winner
            if overrides:
                override = overrides.get(instance.instanceId)
                if override is not None:
                    instance = override.apply(instance)
                    if instance is None:
                        continue
            yield instance

    def _show(self, instance):
        overrides = self.overrides
        if overrides:
            override = overrides.get(instance.instanceId)
            if override is not None:
                shown = override.apply(instance)
                if shown is None:
                    self._hide(instance.instanceId)
                    return
                instance = shown
        if instance.enabled:
            self.shown.put(instance)
        else:
            self.shown.discard(instance.instanceId)
        for (clusters, healthyOnly), shown in self._filtered.items():
            if _passes(instance, clusters, healthyOnly):
                shown.put(instance)
            else:
                shown.discard(instance.instanceId)

    def _hide(self, instanceId):
        self.shown.discard(instanceId)
        for shown in self._filtered.values():
            shown.discard(instanceId)

    def _shown(self, winner, previous):
        if winner is not previous:
            self._show(winner)
        return not winner.sameContent(previous)

    def put(self, clientId, instance):
        """
        C{clientId} publishes C{instance}; return whether the view changed.
        """
        iid = instance.instanceId
        entry = self.publishers.get(iid)
        if entry is None:
            self.publishers[iid] = (clientId, instance)
            self._show(instance)
            return True
        if type(entry) is tuple:
            if entry[0] == clientId:
                self.publishers[iid] = (clientId, instance)
                return self._shown(instance, entry[1])
            entry = self.publishers[iid] = _Contested({entry[0]: entry[1]}, entry[1])
        entry.byClient[clientId] = instance
        return self._choose(entry)

    def remove(self, clientId, instanceId):
        """
        C{clientId} no longer publishes C{instanceId}; return whether the view
        changed.
        """
        entry = self.publishers.get(instanceId)
        if entry is None:
            return False
        if type(entry) is tuple:
            if entry[0] != clientId:
                return False
            del self.publishers[instanceId]
            self._hide(instanceId)
            return True
        if entry.byClient.pop(clientId, None) is None:
            return False
        if len(entry.byClient) == 1:
            ((other, instance),) = entry.byClient.items()
            self.publishers[instanceId] = (other, instance)
            return self._shown(instance, entry.winner)
        return self._choose(entry)

    def overridden(self, instanceId):
        """
        The override of C{instanceId} changed: show it anew; return whether
        the view holds it.
        """
        entry = self.publishers.get(instanceId)
        if entry is None:
            return False
        self._show(entry[1] if type(entry) is tuple else entry.winner)
        return True

    def _choose(self, entry):
        byClient = entry.byClient
        best = max(byClient, key=lambda cid: (byClient[cid].writeTs, cid))
        previous, entry.winner = entry.winner, byClient[best]
        return self._shown(entry.winner, previous)

    def info(self, clusters=None, healthyOnly=False):
        """
        The L{ServiceInfo} of this view, cached until the view changes.
        """
        key = (clusters, healthyOnly)
        info = self._infos.get(key)
        if info is None:
            if clusters is None and not healthyOnly:
                shown = self.shown
            else:
                shown = self._filtered.get(key)
                if shown is None:
                    if len(self._filtered) >= _MAX_CACHED_FILTERS:
                        self._filtered.clear()
                    shown = self._filtered[key] = HostList()
                    for instance in self.chosen():
                        if _passes(instance, clusters, healthyOnly):
                            shown.put(instance)
            info = ServiceInfo(
                self.service, clusters, shown.parts(), shown.count, shown.checksum(),
                self.revision,
            )
            if len(self._infos) >= _MAX_CACHED_FILTERS:
                self._infos.clear()
            self._infos[key] = info
        return info

    def changed(self, revision):
        """
        Record that the view changed, at C{revision}.
        """
        self.revision = revision
        self._infos.clear()

    def visibleCount(self):
        """
        How many instances a query without filters returns.
        """
        return self.shown.count


class _SortedNames:
    """
    The services of one namespace: each group's names, and the groups, in
    order (L{SortedList}s: a new service costs the same in a namespace of
    twenty or twenty thousand). In C{(group, name)} order they are the
    groups in order, each group's names in order: a page costs a walk of
    the groups and of its chunks plus its own length.

    @ivar count: how many services.
    """

    def __init__(self):
        self.groups = SortedList()
        self.byGroup = {}
        self.count = 0

    def add(self, group, name):
        names = self.byGroup.get(group)
        if names is None:
            names = self.byGroup[group] = SortedList()
            self.groups.add(group)
        self.count += names.add(name)

    def discard(self, group, name):
        names = self.byGroup[group]
        self.count -= names.discard(name)
        if not names:
            del self.byGroup[group]
            self.groups.discard(group)

    def slice(self, start, stop):
        """
        The C{(group, name)}s from index C{start} to C{stop} (not
        included), in that order.
        """
        out = []
        for group in self.groups:
            if stop <= 0 or start >= stop:
                # The page is full (or empty): the groups after it are not read.
                break
            names = self.byGroup[group]
            size = len(names)
            if start < size:
                out.extend((group, name) for name in names.slice(max(start, 0), stop))
            start -= size
            stop -= size
        return out


@implementer(IRegistry, IOverrideObserver)
class Registry:
    """
    Service views over all native and synced clients of a node.

    View revisions come from one node-wide counter, so a view's revision keeps
    increasing even when an empty view is dropped and made again.

    @param overrides: the node's L{distro.interfaces.IOverrides}, shown over
        what clients publish (none without).
    @ivar revision: the latest revision given to any view.
    """

    def __init__(self, overrides=None):
        self.overrides = overrides
        if overrides is not None:
            overrides.addObserver(self)
        self.views = {}
        self.revision = 0
        # The instance ids over every view, counted as they come and go.
        self.instanceCount = 0
        self._listed = {}
        self._revisions = itertools.count(1)
        self._listeners = []

    def addViewListener(self, listener):
        self._listeners.append(listener)

    def _view(self, service):
        view = self.views.get(service)
        if view is None:
            view = self.views[service] = ServiceView(service, self._overridesOf(service))
            names = self._listed.get(service.namespace)
            if names is None:
                names = self._listed[service.namespace] = _SortedNames()
            names.add(service.group, service.name)
        return view

    def _overridesOf(self, service):
        return self.overrides.of(service) if self.overrides is not None else None

    def _changed(self, view):
        self.revision = next(self._revisions)
        view.changed(self.revision)
        if not view.publishers:
            self._drop(view.service)
        for listener in self._listeners:
            listener.viewChanged(view.service)

    def _drop(self, service):
        del self.views[service]
        names = self._listed[service.namespace]
        names.discard(service.group, service.name)
        if not names.count:
            del self._listed[service.namespace]

    # IClientObserver

    def clientChanged(self, change):
        clientId = change.client.clientId
        touched = {}
        for service, instance in change.put:
            view = self._view(service)
            before = len(view.publishers)
            if view.put(clientId, instance):
                touched[service] = view
            self.instanceCount += len(view.publishers) - before
        for service, instanceId, _ in change.remove:
            view = self.views.get(service)
            if view is not None:
                before = len(view.publishers)
                if view.remove(clientId, instanceId):
                    touched[service] = view
                self.instanceCount += len(view.publishers) - before
        for view in touched.values():
            self._changed(view)

    def clientRemoved(self, client):
        clientId = client.clientId
        touched = {}
        for service, instances in client.services.items():
            view = self.views.get(service)
            if view is None:
                continue
            before = len(view.publishers)
            for instanceId in instances:
                if view.remove(clientId, instanceId):
                    touched[service] = view
            self.instanceCount += len(view.publishers) - before
        for view in touched.values():
            self._changed(view)

    def clientMoved(self, client):
        # Ownership does not change what a view holds.
        pass

    # IOverrideObserver

    def overrideChanged(self, override, written):
        view = self.views.get(override.service)
        if view is None:
            return  # shown when a client publishes in the service
        view.overrides = self._overridesOf(override.service)
        if view.overridden(override.instanceId):
            self._changed(view)

    def overridesForgotten(self, keys):
        pass  # tombstones: nothing shown changes

    def published(self, service, instanceId):
        """
        Whether a client publishes C{instanceId} in C{service} (whatever
        an override shows of it).
        """
        view = self.views.get(service)
        return view is not None and instanceId in view.publishers

    # Reads

    def serviceInfo(self, service, clusters=None, healthyOnly=False):
        view = self.views.get(service)
        if view is None:
            # No view kept: an empty one, at the node's latest revision, which
            # is never below the revision this service had when it emptied.
            view = ServiceView(service)
            view.revision = self.revision
        return view.info(clusters, healthyOnly)

    def services(self, namespace, group, page, size):
        names = self._listed.get(namespace)
        if names is None:
            return 0, []
        start = (page - 1) * size
        if group is None:
            entries = names.slice(start, start + size)
            count = names.count
        else:
            inGroup = names.byGroup.get(group)
            entries = [(group, n) for n in inGroup.slice(start, start + size)] if inGroup is not None else []
            count = len(inGroup) if inGroup is not None else 0
        result = []
        for g, n in entries:
            view = self.views[ServiceKey(namespace, g, n)]
            result.append((g, n, view.visibleCount()))
        return count, result
