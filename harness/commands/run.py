"""``python -m harness run``: train and evaluate every (method, seed), then print the leaderboard."""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from harness.commands.options import (add_executor_options, add_experiment_options, add_paper_options,
                                      add_rerun_options, comma_list, executor_from_args, experiment_from_args, int_list)
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
    from harness.scheduling.plan import plan_trials

    defaults = not args.config  # with --config, the file's methods and seeds hold unless flags say otherwise
    experiment = experiment_from_args(args, methods=args.methods or (comma_list(DEFAULT_METHODS) if defaults else None),
                                      seeds=args.seeds or ([0] if defaults else None))
    executor = executor_from_args(args)
    start = time.time()
    plan = plan_trials(executor.place(experiment.trials()), TrialStore(experiment.results_dir), executor,
                       resume=args.resume, overwrite=args.overwrite, incomparable_rows=experiment.incomparable_rows)
    plan.run()
    print_leaderboard(plan.held.store, plan.held.items(), plan.trials, start)
    failed = [r for r in plan.ran if not r.ok]
    if failed:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(Counter(r.status for r in failed).items()))
        print(f"{len(failed)} of {len(plan.trials)} trial(s) did not finish ({statuses}); their reasons are in their "
              f"records", file=sys.stderr)
        return 1
    return 0
