"""``python -m harness sweep``: one hyperparameter over a grid of values × seeds, and its sensitivity plot."""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from harness.commands.options import (add_executor_options, add_experiment_options, add_metric_option,
                                      add_paper_options, add_rerun_options, executor_from_args, experiment_from_args,
                                      int_list)
from harness.core.hparams import LogUniform, parse_assignment, parse_value
from harness.core.store import TrialStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train one method over a grid of one hyperparameter × seeds; sensitivity plot",
                       description="One trial per (value, seed) on the validation classes (carved from the "
                                   "training classes: choosing a value from the plot never touches test), through "
                                   "the same executor as 'run'; writes <results>/sweeps/<experiment>/"
                                   "<method>.<param>.png. Sweep trials never enter a leaderboard.")
    p.add_argument("--method", required=True, help="the method to sweep (required)")
    p.add_argument("--param", required=True, metavar="NAME=V1,V2,...",
                   help="the hyperparameter and its values, e.g. alpha=0,0.01,0.1,1,10 (required)")
    p.add_argument("--seeds", type=int_list, default=[0], help="comma-separated seeds (default: 0)")
    add_metric_option(p, "the metric of the plot, on the validation classes (or --on-test)")
    p.add_argument("--on-test", action="store_true",
                   help="evaluate on the test classes instead (a sensitivity analysis to report, never a way to "
                        "choose a value: such records are marked role=sweep and kept out of leaderboards) "
                        "(default: off)")
    add_experiment_options(p)
    add_paper_options(p)
    add_executor_options(p)
    add_rerun_options(p)
    p.set_defaults(func=sweep)


def parse_grid(text: str) -> tuple[str, list]:
    """``alpha=0,0.01,0.1`` → ``("alpha", [0, 0.01, 0.1])``."""
    name, values = parse_assignment(text)
    grid = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not grid:
        raise ValueError(f"--param {name} has no values")
    return name, grid


def sweep(args: argparse.Namespace) -> int:
    from harness.experiment import check_validation_split
    from harness.plugins.method import get_method_class
    from harness.scheduling.plan import plan_trials

    name, values = parse_grid(args.param)  # experiment.trials() rejects an undeclared name
    experiment = experiment_from_args(args, methods=[args.method], seeds=args.seeds)
    if args.metric not in experiment.metric_names():
        raise ValueError(f"--metric {args.metric!r} is not recorded; valid: {', '.join(experiment.metric_names())}")
    split = "test" if args.on_test else "val"
    experiment = replace(experiment, eval_split=split, role="sweep")
    if split == "val":
        check_validation_split(experiment)
    trials = [t for value in values for t in experiment.with_hparams(args.method, {name: value}).trials()]
    executor = executor_from_args(args)
    start = time.time()
    plan = plan_trials(executor.place(trials), TrialStore(experiment.results_dir), executor, resume=args.resume,
                       overwrite=args.overwrite, incomparable_rows=experiment.incomparable_rows)
    records = plan.run()
    store = plan.held.store
    print(f"sweep of {args.method}.{name}: {len(trials)} trials on the {split} classes in {time.time() - start:.0f} s")
    from harness.reporting.plots import sensitivity_plot  # matplotlib, pandas, SciPy: once there is a plot to draw
    out = store.sweep_dir(trials[0].placement.experiment) / f"{args.method}.{name}{'.test' if args.on_test else ''}.png"
    declared = get_method_class(args.method).hparams[name].space  # its axis: log where its search is log-uniform
    plotted = sensitivity_plot([(store.record_path(r.trial), r) for r in records], args.method, name, out,
                               metric=args.metric, eval_split=split, log=isinstance(declared, LogUniform))
    print(f"sensitivity plot: {plotted}")
    return 0 if len(records) == len(trials) and all(r.ok for r in records) else 1
