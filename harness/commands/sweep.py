"""``python -m harness sweep``: one hyperparameter over a grid of values × seeds, and its sensitivity plot."""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from harness.commands.options import (add_executor_options, add_experiment_options, experiment_from_args, int_list,
                                      make_executor)
from harness.commands.run import print_leaderboard, with_fault
from harness.core.hparams import parse_assignment, parse_value
from harness.core.store import ResultStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train one method over a grid of one hyperparameter × seeds; sensitivity plot",
                       description="One ordinary test-split trial per (value, seed), through the same executor "
                                   "as 'run'; writes <results>/sweeps/<experiment>/<method>.<param>.png.")
    p.add_argument("--method", required=True, help="the method to sweep")
    p.add_argument("--param", required=True, metavar="NAME=V1,V2,...",
                   help="the hyperparameter and its values, e.g. alpha=0,0.01,0.1,1,10")
    p.add_argument("--seeds", type=int_list, default=[0], help="comma-separated seeds (default: 0)")
    p.add_argument("--metric", default="recall@1", help="metric of the plot (default recall@1)")
    add_experiment_options(p)
    add_executor_options(p)
    p.add_argument("--resume", action="store_true", help="skip finished trials, continue interrupted ones")
    p.set_defaults(func=sweep)


def parse_grid(text: str) -> tuple[str, list]:
    """``alpha=0,0.01,0.1`` → ``("alpha", [0, 0.01, 0.1])``."""
    name, values = parse_assignment(text)
    grid = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not grid:
        raise ValueError(f"--param {name} has no values")
    return name, grid


def sweep(args: argparse.Namespace) -> int:
    from harness.reporting.plots import sensitivity_plot

    name, values = parse_grid(args.param)  # experiment.trials() rejects an undeclared name
    experiment = experiment_from_args(args, methods=[args.method], seeds=args.seeds)
    fixed = experiment.hparams.get(args.method, {})
    trials = [t for value in values for t in replace(
        experiment, hparams={**experiment.hparams, args.method: {**fixed, name: value}}).trials()]
    trials = with_fault(trials, args)
    store = ResultStore(experiment.results_dir)
    start = time.time()
    with make_executor(args, store) as executor:
        executor.run(trials, resume=args.resume)
    print_leaderboard(store, trials, start)
    ids = {t.trial_id for t in trials}
    out = Path(experiment.results_dir) / "sweeps" / trials[0].experiment / f"{args.method}.{name}.png"
    records = [r for r in store.iter_records(trials[0].experiment) if r["trial_id"] in ids]
    print(f"sensitivity plot: {sensitivity_plot(records, args.method, name, out, metric=args.metric)}")
    return 0
