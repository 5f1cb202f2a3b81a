# -*- test-case-name: tests.test_client_cache -*-
"""
L{ViewCache}: the last known view of each service, kept on disk so that a
client restarted while no node answers can still serve them (PROTOCOL.md
section 6: "Keep the last ServiceInfo of each subscription; serve it while no
server answers").

The cache is a directory holding one file per C{(service, clusters)} key. A
file's name is derived from a hash of its key (so any service name is safe
as a file name), and the key is stored inside the file, next to the view::

    view-<sha256 of the key>.json
    {"format": "distro-view-cache", "version": 1,
     "key": {"service": {...}, "clusters": [...] | null},
     "saved_at": <seconds since the epoch>,
     "service_info": <the wire ServiceInfo>}

Files are replaced atomically (written to a temporary file in the same
directory, then renamed over the old one), so a reader, or a process that
crashed mid-write, never sees half a file. A file is written only when the
view's checksum differs from the one on disk: pushes and queries that bring
nothing new cost no I/O. Writes are synchronous; a view file is small, and
there is one write per view change.

Reading tolerates anything: a corrupt, truncated, foreign or newer-format
file is reported in the log and skipped.
"""

import hashlib
import json
import os
import re
import tempfile
import time
from contextlib import suppress

from twisted.logger import Logger
from zope.interface import Interface, implementer

from ._model import Service, ServiceInfo, _clusterFilter

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "IViewCache", "ViewCache"]

CACHE_FORMAT = "distro-view-cache"
CACHE_VERSION = 1

_VIEW_FILE = re.compile(r"view-([0-9a-f]{64})\.json")
_TEMP_PREFIX = ".view-"
_TEMP_SUFFIX = ".tmp"


class IViewCache(Interface):
    """
    Where a L{distro.client.DistroClient} keeps the views it was sent, to
    serve them while no node answers, across restarts.

    A key is C{(service, clusters)}: a L{distro.client.Service} and a
    cluster filter, a sorted tuple of cluster names or L{None} for all.
    """

    def load():
        """
        Read the stored views, replacing those held in memory.

        Unreadable entries are reported in the log and skipped; this never
        fails because of an entry's content.

        @return: the number of views read.
        """

    def get(service, clusters):
        """
        The last view stored for a key, a L{distro.client.ServiceInfo}, or
        L{None}.
        """

    def store(service, clusters, info):
        """
        Remember C{info} as the view of a key, and persist it unless the
        stored copy has the same checksum. Storage failures are logged, not
        raised.

        @return: whether it was written.
        """

    def views():
        """
        Every view held: a C{dict} of key to L{distro.client.ServiceInfo}.
        """


def _keyWire(service, clusters):
    return {"service": service.as_wire(), "clusters": list(clusters) if clusters else None}


def fileName(service, clusters):
    """
    The name of the file holding a key's view: a hash of the key, safe on any
    file system whatever the service is called.
    """
    canonical = json.dumps(
        [service.namespace, service.group, service.name, list(clusters) if clusters else None],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"view-{digest}.json"


class _BadEntry(ValueError):
    """
    A cache file that cannot be used; the message says why.
    """


@implementer(IViewCache)
class ViewCache:
    """
    An L{IViewCache} in a directory, one JSON file per key.

    Views are also held in memory: L{get} never touches the disk.

    @ivar directory: the cache directory.
    @ivar fsync: whether each write is flushed to the disk (the file, then
        the directory) before it counts as done. Without it a power failure
        may lose recent writes, never corrupt what was there (a damaged file
        would be skipped at load anyway).
    """

    log = Logger()

    def __init__(self, directory, fsync=False):
        """
        @param directory: the directory's path; it is created if missing.
        @param fsync: see L{fsync}.
        @raise OSError: if the directory cannot be created.
        """
        self.directory = os.fspath(directory)
        self.fsync = fsync
        os.makedirs(self.directory, exist_ok=True)
        self._views = {}
        self._written = {}  # key -> checksum on disk

    def __repr__(self):
        return f"<ViewCache {self.directory!r}: {len(self._views)} views>"

    def load(self):
        """
        Read every view file of the directory; see L{IViewCache.load}.
        """
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as e:
            self.log.warn(
                "cannot read the view cache {directory}: {error}",
                directory=self.directory,
                error=e,
            )
            return 0
        views, written = {}, {}
        for name in names:
            path = os.path.join(self.directory, name)
            if name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX):
                # Another writer's file, or one left by a crash: not ours to judge.
                continue
            if not _VIEW_FILE.fullmatch(name):
                self.log.info(
                    "ignoring {path}: not a view cache file", path=path
                )
                continue
            try:
                key, info = self._read(path, name)
            except (OSError, _BadEntry) as e:
                self.log.warn("ignoring view cache file {path}: {error}", path=path, error=e)
                continue
            views[key] = info
            written[key] = info.checksum
        self._views, self._written = views, written
        self.log.debug(
            "loaded {count} views from {directory}", count=len(views), directory=self.directory
        )
        return len(views)

    def _read(self, path, name):
        with open(path, "rb") as f:
            data = f.read()
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _BadEntry(f"not JSON ({e})") from None
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            raise _BadEntry("not a view cache entry")
        if document.get("version") != CACHE_VERSION:
            raise _BadEntry(f"unknown version {document.get('version')!r}")
        try:
            key = document["key"]
            service = Service.from_wire(key["service"])
            clusters = _clusterFilter(key["clusters"])
            info = ServiceInfo.from_wire(document["service_info"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise _BadEntry(f"malformed entry ({type(e).__name__}: {e})") from None
        if fileName(service, clusters) != name:
            raise _BadEntry(f"holds the view of {service} {clusters}, not of its file name")
        if info.service != service:
            raise _BadEntry(f"holds a view of {info.service} under the key of {service}")
        return (service, clusters), info

    def get(self, service, clusters):
        """
        The view held for a key; see L{IViewCache.get}.
        """
        return self._views.get((service, _clusterFilter(clusters)))

    def views(self):
        """
        Every view held; see L{IViewCache.views}.
        """
        return dict(self._views)

    def store(self, service, clusters, info):
        """
        Hold C{info} and write it if its checksum is new; see
        L{IViewCache.store}.
        """
        key = (service, _clusterFilter(clusters))
        self._views[key] = info
        if self._written.get(key) == info.checksum:
            return False
        document = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "key": _keyWire(*key),
            "saved_at": time.time(),
            "service_info": info.as_wire(),
        }
        data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            self._replace(fileName(*key), data)
        except OSError as e:
            # The view stays in memory; the next change tries the disk again.
            self._written.pop(key, None)
            self.log.error(
                "cannot write the view of {service} to {directory}: {error}",
                service=service,
                directory=self.directory,
                error=e,
            )
            return False
        self._written[key] = info.checksum
        return True

    def _replace(self, name, data):
        """
        Write C{data} as the file C{name}, atomically: in a temporary file of
        the same directory, then renamed over the old file.
        """
        fd, temporary = tempfile.mkstemp(
            prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=self.directory
        )
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(temporary, os.path.join(self.directory, name))
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary)
            raise
        if self.fsync and hasattr(os, "O_DIRECTORY"):
            # Makes the rename durable; some file systems cannot, which is no
            # reason to call the write failed.
            with suppress(OSError):
                directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
