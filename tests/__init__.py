"""
The tests of distro. Under CI (C{CI} set), property tests draw the same
examples on every run (hypothesis' C{ci} profile, derandomized).
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
