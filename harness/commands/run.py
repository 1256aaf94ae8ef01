"""``python -m harness run``: train and evaluate every (method, seed), then print the leaderboard."""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import pandas as pd

from harness.commands.options import add_experiment_options, comma_list, experiment_from_args, int_list
from harness.executors import LocalExecutor
from harness.leaderboard import aggregate, format_table, records_frame, write_leaderboards
from harness.results import ResultStore

DEFAULT_METHODS = "pixels,triplet,ms,amsoftmax"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and evaluate methods × seeds on one dataset",
                       description="Train one trial per (method, seed), evaluate on the test classes, "
                                   "write one record per trial and the dataset's leaderboard.")
    p.add_argument("--methods", type=comma_list, help=f"comma-separated method names (default: {DEFAULT_METHODS})")
    p.add_argument("--seeds", type=int_list, help="comma-separated seeds (default: 0)")
    add_experiment_options(p)
    p.add_argument("--resume", action="store_true", help="skip finished trials, continue interrupted ones")
    p.add_argument("--executor", choices=("local",), default="local", help="where trials run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    experiment = experiment_from_args(args, methods=args.methods or comma_list(DEFAULT_METHODS),
                                      seeds=args.seeds or [0])
    trials = experiment.trials()
    if args.fail_at_epoch is not None:
        trials = [replace(t, fail_at_epoch=args.fail_at_epoch) for t in trials]
    store = ResultStore(experiment.results_dir)
    start = time.time()
    LocalExecutor(store, progress=not args.no_progress).run(trials, resume=args.resume)
    written = write_leaderboards(store, datasets=[experiment.dataset])
    ids = {t.trial_id for t in trials}
    frame = records_frame(r for r in store.iter_records(trials[0].experiment) if r["trial_id"] in ids)
    board = aggregate(frame) if not frame.empty else pd.DataFrame()
    print(f"\n{experiment.dataset}: {len(trials)} trials in {time.time() - start:.0f} s "
          f"(test classes; mean ± std over seeds, %)")
    print(format_table(board))
    for path in written.values():
        print(f"leaderboard: {path}")
    return 0
