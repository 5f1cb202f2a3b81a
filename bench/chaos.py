"""
The long chaos runs of distro: many random seeds of the fault schedule that
C{tests/process/test_chaos.py} runs once, briefly, with a fixed seed.

    python bench/chaos.py [--seeds 20] [--nodes 3] [--duration 60] [--clients 40]
                          [--seed N ...] [--keep]

Each run (L{tests._chaos.ChaosRun}) starts C{--nodes} real C{twistd -n
distro-node} processes on 127.0.0.1 whose peer links go through relays of
this process; for C{--duration} seconds, every one to three seconds, a random
fault starts and lasts one to four seconds: a node killed (SIGKILL) and
restarted, a node stopped (SIGSTOP) and continued, a link cut (reset), frozen
(silent) or slowed down (0.05 to 1 s each way); a minority of the nodes at
most is down or stopped at once. Meanwhile C{--clients} library clients
write and fail over, and a subscriber on every node checks each push with
the wrong-removal oracle (L{tests._oracle}). Then everything heals and the
run waits for the views to converge.

For each run it prints operations, faults, resumes, lost sessions, pushes
checked, lost instances, ghosts, wrong removals and the time to converge
after the heal, then the totals. The exit status is 0 when every run had
0 lost, 0 ghosts, 0 wrong removals and converged. Seeds are random unless
given with C{--seed}; each run's seed is printed, and a run repeats its fault
schedule and its clients' choices from its seed (not their timing: these are
real processes). Node logs are kept (C{--keep}) or removed.
"""

import argparse
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from tests._chaos import ChaosRun  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many random seeds")
    parser.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--keep", action="store_true", help="keep the node logs")
    return parser.parse_args(argv)


@defer.inlineCallbacks
def main(reactor, argv):
    options = parse(argv)
    seeds = options.seed or [random.randrange(1, 10**9) for _ in range(options.seeds)]
    reports = []
    for seed in seeds:
        run = ChaosRun(seed, nodes=options.nodes, clients=options.clients, duration=options.duration)
        try:
            report = yield run.run()
        finally:
            yield run.stop()
        reports.append(report)
        print(report.line(), flush=True)
        for candidate in report.wrongRemovals[:10]:
            print("   ", candidate, flush=True)
        if not report.ok():
            for at, text in report.faults:
                print(f"    {at:9.3f} {text}", flush=True)
        if options.keep or not report.ok():
            print(f"    node logs: {run.directory}", flush=True)
        else:
            shutil.rmtree(run.directory, ignore_errors=True)
    converged = [r.convergedAfter for r in reports if r.convergedAfter is not None]
    print(
        f"total: {len(reports)} runs of {options.duration:g} s with {options.nodes} nodes, "
        f"operations {sum(r.operations for r in reports)}, "
        f"faults {sum(r.faultCount for r in reports)}, "
        f"resumes {sum(r.resumes for r in reports)}, "
        f"lost sessions {sum(r.lostSessions for r in reports)}, "
        f"pushes checked {sum(r.pushes for r in reports)}, "
        f"lost {sum(r.lost or 0 for r in reports)}, "
        f"ghosts {sum(r.ghosts or 0 for r in reports)}, "
        f"wrong removals {sum(len(r.wrongRemovals) for r in reports)}, "
        f"converged {len(converged)}/{len(reports)}"
        + (f" (max {max(converged):.2f} s)" if converged else "")
    )
    if not all(r.ok() for r in reports):
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main, (sys.argv[1:],))
