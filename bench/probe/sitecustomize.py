"""
A probe of a node's reactor, for bench/hostile.py: loaded by a Python
process started with this directory on C{PYTHONPATH} and
C{DISTRO_BENCH_TURNS} set to a file, it times the work of each reactor
iteration (the timed calls, then the reads and writes the poll found,
without the wait) and appends each over 5 ms to that file as a line of
C{wall-clock-seconds milliseconds}. What a ping measured from outside
also holds the scheduler's share of two cores; this is the node's own.
"""

import os
import time

_PATH = os.environ.get("DISTRO_BENCH_TURNS")
_SLOW = 0.005


def _install(path):
    from twisted.internet import base, epollreactor, posixbase

    spent = [0.0]
    runUntilCurrent = base.ReactorBase.runUntilCurrent
    doReadOrWrite = posixbase._PollLikeMixin._doReadOrWrite
    doIteration = epollreactor.EPollReactor.doIteration

    def timedRun(self):
        started = time.perf_counter()
        try:
            return runUntilCurrent(self)
        finally:
            spent[0] += time.perf_counter() - started

    def timedIO(self, *args):
        started = time.perf_counter()
        try:
            return doReadOrWrite(self, *args)
        finally:
            spent[0] += time.perf_counter() - started

    def timedIteration(self, timeout):
        try:
            return doIteration(self, timeout)
        finally:
            if spent[0] > _SLOW:
                with open(path, "a") as f:
                    f.write(f"{time.time():.3f} {spent[0] * 1000:.1f}\n")
            spent[0] = 0.0

    base.ReactorBase.runUntilCurrent = timedRun
    posixbase._PollLikeMixin._doReadOrWrite = timedIO
    epollreactor.EPollReactor.doIteration = timedIteration


if _PATH:
    _install(_PATH)
