"""``python -m harness run``: train and evaluate every (method, seed), then print the leaderboard."""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from harness.commands.options import (add_executor_options, add_experiment_options, add_paper_options, check_protocol,
                                      claimed_protocol, comma_list, experiment_from_args, int_list, keep_finished, make_executor, with_fault,
                                      add_rerun_options)
from harness.commands.printing import print_leaderboard
from harness.core.store import TrialStore

DEFAULT_METHODS = "pixels,triplet,ms,proxyanchor,amsoftmax"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and evaluate methods × seeds on one dataset",
                       description="Train one trial per (method, seed), evaluate on the test classes, "
                                   "write one record per trial and the experiment's leaderboard.")
    p.add_argument("--methods", type=comma_list, help=f"comma-separated method names (default: {DEFAULT_METHODS})")
    p.add_argument("--seeds", type=int_list, help="comma-separated seeds (default: 0)")
    add_experiment_options(p)
    add_paper_options(p)
    add_executor_options(p)
    add_rerun_options(p)
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    defaults = not args.config  # with --config, the file's methods and seeds hold unless flags say otherwise
    experiment = experiment_from_args(args, methods=args.methods or (comma_list(DEFAULT_METHODS) if defaults else None),
                                      seeds=args.seeds or ([0] if defaults else None))
    trials = with_fault(experiment.trials(), args)
    store = TrialStore(experiment.results_dir)
    check_protocol(store, trials, experiment.incomparable_rows)
    to_run = keep_finished(trials, store, args)
    store.check_writable(to_run)
    start = time.time()
    records = []
    with claimed_protocol(store, to_run, experiment.incomparable_rows):
        if to_run:
            with make_executor(args, store) as executor:
                records = executor.run(to_run, resume=args.resume)
    print_leaderboard(store, trials, start)
    failed = [r for r in records if not r.ok]
    if failed:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(Counter(r.status for r in failed).items()))
        print(f"{len(failed)} of {len(trials)} trial(s) did not finish ({statuses}); their reasons are in their "
              f"records", file=sys.stderr)
        return 1
    return 0
