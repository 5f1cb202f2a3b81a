"""
The short chaos run (L{tests._chaos}): three real nodes behind relays that
cut, freeze and slow their links, killed, restarted, stopped and continued
at random (a fixed seed), forty library clients writing and failing over,
a subscriber on every node. No subscriber may ever see a live client's
instance vanish, and once healed the cluster must hold exactly what the
clients hold.

The long runs, over many random seeds and five nodes too, are
C{bench/chaos.py}.
"""

import os
import shutil

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests._chaos import ChaosRun

SEED = int(os.environ.get("DISTRO_CHAOS_SEED", "20261202"))
DURATION = float(os.environ.get("DISTRO_CHAOS_SECONDS", "25"))


class ChaosTests(TestCase):
    timeout = DURATION + 120

    @defer.inlineCallbacks
    def test_noWrongRemovals(self):
        """
        Under a fault schedule of C{DURATION} seconds: zero wrong removals,
        nothing lost, no ghosts, and convergence after the heal.
        """
        run = ChaosRun(SEED, nodes=3, clients=40, duration=DURATION)
        passed = []
        # Runs last: the node logs stay for a failed run.
        self.addCleanup(lambda: passed and shutil.rmtree(run.directory, ignore_errors=True))
        self.addCleanup(run.stop)
        report = yield run.run()
        detail = "\n".join([report.line()] + [repr(c) for c in report.wrongRemovals[:20]])
        detail += "\n" + "\n".join(f"  {at:8.3f} {what}" for at, what in report.faults)
        detail += f"\nnode logs in {run.directory}"
        self.assertGreater(report.operations, 100, detail)
        self.assertGreater(report.faultCount, 5, detail)
        self.assertEqual(report.wrongRemovals, [], detail)
        self.assertEqual((report.lost, report.ghosts), (0, 0), detail)
        self.assertIsNotNone(report.convergedAfter, detail)
        passed.append(True)
