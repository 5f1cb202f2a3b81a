# -*- test-case-name: tests.test_config -*-
"""
Temporary files for tests that run under both trial and pytest.

Trial's C{mktemp} makes paths relative to the working directory, which under
pytest is the checkout; these live in the system's temporary directory and are
removed after the test.
"""

import os
import shutil
import tempfile


class TempPathMixin:
    """
    A L{twisted.trial.unittest.SynchronousTestCase} mixin giving fresh
    temporary paths.
    """

    def tempPath(self):
        """
        A new absolute path, not yet created, in a directory removed when the
        test ends.
        """
        directory = getattr(self, "_tempDirectory", None)
        if directory is None:
            directory = self._tempDirectory = tempfile.mkdtemp(prefix="distro-test-")
            self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
            self._tempCount = 0
        self._tempCount += 1
        return os.path.join(directory, str(self._tempCount))
