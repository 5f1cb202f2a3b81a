# -*- test-case-name: tests.test_overridefile -*-
"""
The operator overrides on disk (PROTOCOL.md 5.7): one file under
C{data_dir}, written whole to a temporary file, fsynced and renamed over
the last (so that a crash at any moment leaves one whole version or the
other), and loaded at start, before the node takes any request; members
then bring what it missed, and it brings them what they missed.

The file is C{MAGIC}, then a msgpack map C{{"version": 1, "clock": [ms,
counter], "entries": [entry]}} (each entry as on peer links), then the
8-byte BLAKE2b of that map. A file that is not one (another program's, a
newer version's) or whose bytes do not match their hash stops the node,
saying which file and why: overrides are never dropped silently.

C{data_dir} is locked while a node runs (C{flock} on C{data_dir/lock}): two
nodes started on one directory would overwrite each other's files.
"""

import errno
import fcntl
import hashlib
import os

import msgpack
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from distro.errors import INTERNAL, RequestError
from distro.interfaces import IOverrideObserver
from distro.offreactor import runnerFor

MAGIC = b"distro overrides\n"
VERSION = 1
FILE_NAME = "overrides.msgpack"
LOCK_NAME = "lock"
_HASH_BYTES = 8


class StoredDataError(Exception):
    """
    The data under C{data_dir} cannot be used; the message names the file
    and what to do.
    """


def _hash(body):
    return hashlib.blake2b(body, digest_size=_HASH_BYTES).digest()


def encodeFile(clock, entries):
    """
    The bytes of a file holding C{entries} (maps, L{distro.overrides.Override.toWire})
    and the hybrid clock's C{(ms, counter)}.
    """
    body = msgpack.packb({"version": VERSION, "clock": list(clock), "entries": entries},
                         use_bin_type=True)
    return MAGIC + body + _hash(body)


def decodeFile(path, data):
    """
    C{(clock, entries)} of a file's bytes.

    @raise StoredDataError: naming C{path}: not a file of ours, or corrupt.
    """
    if not data.startswith(MAGIC):
        raise StoredDataError(
            f"{path} is not a distro overrides file (it does not start with {MAGIC!r}); "
            "move it out of data_dir"
        )
    body, digest = data[len(MAGIC):-_HASH_BYTES], data[-_HASH_BYTES:]
    corrupt = (f"{path} is corrupt ({{}}); move it out of data_dir to start without it "
               "(the other members hold the overrides too)")
    if len(data) < len(MAGIC) + _HASH_BYTES or _hash(body) != digest:
        raise StoredDataError(corrupt.format("its checksum does not match"))
    try:
        content = msgpack.unpackb(body, raw=False)
    except Exception as e:
        raise StoredDataError(corrupt.format(f"unreadable: {e}"))
    if type(content) is not dict:
        raise StoredDataError(corrupt.format("not a map"))
    version = content.get("version")
    if version != VERSION:
        raise StoredDataError(
            f"{path} is of version {version!r}, this distro reads version {VERSION}: "
            "a newer release wrote it; run that release, or move the file out of data_dir"
        )
    clock, entries = content.get("clock"), content.get("entries")
    if (type(clock) is not list or len(clock) != 2 or not all(type(n) is int and n >= 0 for n in clock)
            or type(entries) is not list):
        raise StoredDataError(corrupt.format("clock or entries malformed"))
    return (clock[0], clock[1]), entries


class OverrideFile:
    """
    The overrides file of a node, in directory C{dataDir}.
    """

    def __init__(self, dataDir):
        self.dataDir = dataDir
        self.path = os.path.join(dataDir, FILE_NAME)
        self._lock = None

    def lock(self):
        """
        Make C{data_dir} if need be and lock it for this process.

        @raise StoredDataError: it cannot be made, or another node holds it.
        """
        try:
            os.makedirs(self.dataDir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.dataDir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoredDataError(f"data_dir {self.dataDir}: {e.strerror}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoredDataError(
                    f"data_dir {self.dataDir} is in use by another node (pid {holder or 'unknown'}): "
                    "give each node its own data_dir"
                )
            raise StoredDataError(f"data_dir {self.dataDir}: cannot lock it: {e.strerror}")
        self._lock = fd
        self.notePid()

    def notePid(self):
        """
        Write this process's id in the lock file (again after twistd forked
        into a daemon: the one written when locking was its parent's).
        """
        if self._lock is not None:
            os.ftruncate(self._lock, 0)
            os.pwrite(self._lock, f"{os.getpid()}\n".encode("ascii"), 0)

    def unlock(self):
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def load(self):
        """
        C{(clock, entries)} as last saved; C{((0, 0), [])} when there is no
        file yet.

        @raise StoredDataError: naming the file.
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return (0, 0), []
        except OSError as e:
            raise StoredDataError(f"{self.path}: {e.strerror}")
        return decodeFile(self.path, data)

    def save(self, clock, entries):
        """
        Write C{entries} and C{clock} durably (L{write}).
        """
        self.write(encodeFile(clock, entries))

    def write(self, data):
        """
        Write C{data} (L{encodeFile}'s) durably: a temporary file, fsynced,
        renamed over the last, and the directory fsynced.

        @raise OSError: the disk refused (the caller logs it and retries).
        """
        temporary = self.path + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        directory = os.open(self.dataDir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@implementer(IOverrideObserver)
class OverrideSaver:
    """
    Keeps a node's overrides in its L{OverrideFile}: loaded once at start,
    then saved after the changes of each reactor turn, however many (a
    thousand expiries are one save). The file is written and fsynced in a
    thread; one save at a time, a change during a save making another
    follow it. L{durable} tells a write's port when it is on disk.

    @param file: the locked L{OverrideFile}.
    @param overrides: the node's L{distro.interfaces.IOverrides}.
    @param clock: the node's clock (a reactor: saves run in its threads).
    @param run: C{(function, *args) -> Deferred}, where a file is written
        (by default L{distro.offreactor.runnerFor}: its fsync never holds
        the reactor).
    """

    log = Logger()

    # After a failed save (a full disk), the next try.
    RETRY_AFTER = 5.0

    def __init__(self, file, overrides, clock, *, run=None):
        self.file = file
        self.overrides = overrides
        self.clock = clock
        self._run = runnerFor(clock) if run is None else run
        # The save due at the end of this turn (or after a failure).
        self._pending = None
        # The save under way, and whether another must follow it.
        self._saving = None
        self._again = False
        # Deferreds of writes that wait for the next save to end.
        self._waiting = []
        # Whether the map changed since the last save began.
        self._dirty = False

    def load(self):
        """
        Load the file into the map, then follow the map's changes.

        @return: how many entries were loaded.
        @raise StoredDataError: naming the file.
        """
        (ms, counter), entries = self.file.load()
        parsed = []
        for i, value in enumerate(entries):
            try:
                parsed.append(self.overrides.ofWire(value, f"entries[{i}]"))
            except RequestError as e:
                raise StoredDataError(
                    f"{self.file.path} is corrupt ({e.message}); move it out of data_dir to start "
                    "without it (the other members hold the overrides too)"
                )
        self.overrides.hlc.witness((ms, counter, ""), own=True)
        for override in parsed:
            self.overrides.merge(override)
        self.overrides.addObserver(self)
        return len(parsed)

    def _encoded(self):
        """
        The file's bytes for what the map holds now.
        """
        return encodeFile(self.overrides.hlc.last(), [o.toWire() for o in self.overrides.entries.values()])

    def durable(self):
        """
        A L{Deferred} firing once what the map holds now is on disk, or
        failing with C{RequestError} C{INTERNAL} if that save failed.
        """
        d = defer.Deferred()
        self._waiting.append(d)
        self._due(0)
        return d

    def overrideChanged(self, override, written):
        self._due(0)

    def overridesForgotten(self, keys):
        self._due(0)

    def _due(self, delay):
        self._dirty = True
        if self._saving is not None:
            self._again = True
        elif self._pending is None:
            self._pending = self.clock.callLater(delay, self.save)

    def save(self):
        """
        Save the whole map now (unless a save is under way: then once it
        ended).

        @return: the L{Deferred} of the save.
        """
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
        if self._saving is not None:
            self._again = True
            return self._saving
        # What is saved is read now, in the reactor's thread.
        self._dirty = False
        data = self._encoded()
        waiting, self._waiting = self._waiting, []
        saving = self._saving = self._run(self.file.write, data)
        # (In place, it has ended by the time this returns.)
        saving.addBoth(self._saved, waiting)
        return saving

    def _saved(self, result, waiting):
        self._saving = None
        if isinstance(result, Failure):
            error = result.value
            why = getattr(error, "strerror", None) or str(error)
            self.log.error("overrides not saved to {path}: {error}; trying again in {delay:.0f} s",
                           path=self.file.path, error=why, delay=self.RETRY_AFTER)
            refusal = RequestError(
                INTERNAL, f"data_dir: not saved ({why}); the override holds on every member while "
                "one runs, and is saved once the disk takes it"[:300])
            for d in waiting:
                d.errback(refusal)
            self._again = False
            self._due(self.RETRY_AFTER)
            return None
        for d in waiting:
            d.callback(None)
        if self._again:
            self._again = False
            self._due(0)
        return None

    def stop(self):
        """
        The node stops: save what changed since the last save (after the
        save under way), then unlock C{data_dir}.

        @return: a L{Deferred} firing when done.
        """
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
        under = self._saving if self._saving is not None else defer.succeed(None)

        def last(_):
            self._again = False
            if self._dirty:
                try:
                    self.file.write(self._encoded())
                    self._dirty = False
                except OSError as e:
                    self.log.error("overrides not saved to {path} at stop: {error}", path=self.file.path,
                                   error=e.strerror or str(e))
            self.file.unlock()

        return under.addBoth(lambda _: None).addCallback(last)
