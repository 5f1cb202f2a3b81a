"""
A garbage collector a test drives: collections of a given length, on a
clock the test owns; and tests run with this process' collector off.
"""

import gc


class CollectorOff:
    """
    A test case mixin: the collector is off during each test (what is
    freed, is freed by reference counting alone).
    """

    def setUp(self):
        super().setUp()
        if gc.isenabled():
            gc.disable()
            self.addCleanup(gc.enable)


class FakeCollector:
    """
    Calls what is in C{callbacks} as C{gc} does around a collection.
    """

    def __init__(self):
        self.callbacks = []
        self.freezes = 0
        self.threshold = (700, 10, 10)

    def freeze(self):
        self.freezes += 1

    def get_threshold(self):
        return self.threshold

    def set_threshold(self, *threshold):
        self.threshold = threshold

    def collect(self, generation, seconds, clock):
        for callback in list(self.callbacks):
            callback("start", {"generation": generation})
        clock.now += seconds
        for callback in list(self.callbacks):
            callback("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


class Clock:
    """
    A C{time.perf_counter} that moves when a collection says.
    """

    now = 100.0

    def __call__(self):
        return self.now
