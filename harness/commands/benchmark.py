"""``python -m harness benchmark``: the fair comparison protocol in one resumable command.

Every method gets the same search budget on validation classes (phase 1), its best configuration is
trained with the final seeds and evaluated once on the test classes (phase 2), and one report
compares them (phase 3). See :mod:`harness.scheduling.benchmark`.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

from typing import TYPE_CHECKING

from harness.commands import locations
from harness.commands.options import (add_executor_options, add_experiment_options, add_metric_option,
                                      add_scheduler_option, comma_list, executor_from_args, experiment_from_args,
                                      pruner_of, validation_objective)
from harness.scheduling.plan import prepare
from harness.core.metrics import base_metric
from harness.core.store import TrialStore

if TYPE_CHECKING:
    from harness.scheduling.benchmark import BenchmarkManifest

MISSION_METHODS = "jrd,triplet,contrastive,ms,softtriple,amsoftmax"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="the fair protocol: equal search budget per method on validation classes, final seeds "
                          "on test once, one report",
        description="Phase 1 searches every method's hyperparameters with the same number of trials on "
                    "validation classes (interleaved in one executor pool); phase 2 trains each best configuration "
                    "with --final-seeds seeds and evaluates it once on the test classes; phase 3 writes the "
                    "report. Everything lives in <results>/benchmarks/<name>/, starting with manifest.yaml. "
                    "--config takes a manifest back; --resume finishes a killed benchmark.")
    p.add_argument("--methods", type=comma_list, help=f"comma-separated methods (default: {MISSION_METHODS})")
    p.add_argument("--trials-per-method", type=int, default=12, help="search trials per method (default: 12)")
    p.add_argument("--final-seeds", type=int, default=5, help="seeds 0..N-1 of each final configuration (default: 5)")
    p.add_argument("--folds", type=int, default=0,
                   help="class-disjoint K-fold cross-validation over the training classes; the objective is the "
                        "mean over folds; 0 for one validation split, --val-fraction (default: 0)")
    add_scheduler_option(p, "; not with --folds")
    p.add_argument("--baseline", help="the method every other is tested against, paired t-test with Holm's "
                                      "correction (default: none)")
    p.add_argument("--protocol", choices=("nested", "joint"), default="nested",
                   help="how a method that extends a baseline (jrd on amsoftmax) is searched: nested: the baseline "
                        "first, then the extension at the baseline's chosen values over its own hyperparameters only; "
                        "joint: its own and its base's together; the same budget either way; an extension's missing "
                        "baseline is added (default: nested)")
    p.add_argument("--remeasure-top", type=int, default=3,
                   help="re-measure this many best candidates of each search before the finals (default: 3)")
    p.add_argument("--remeasure-seeds", type=int, default=3,
                   help="...on this many validation seeds (the search's and the next ones); the best mean is "
                        "chosen; 1: no re-measurement (default: 3)")
    p.add_argument("--sensitivity-points", type=int, default=5,
                   help="values of each extension's main own hyperparameter its sensitivity view trains, on the "
                        "re-measurement seeds (plus 0 where that is its baseline); 0: none (default: 5)")
    p.add_argument("--name", help="the benchmark's folder <results>/benchmarks/<name> (default: <dataset>)")
    p.add_argument("--space", action="append", default=[], metavar="METHOD.NAME[=DIST]",
                   help="search only these hyperparameters of METHOD, e.g. jrd.alpha=loguniform(1e-3,10) "
                        "(repeatable; default: each method's declared space)")
    add_metric_option(p, "the objective of every search, measured on the validation classes")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the TPE samplers and of every search trial (default: 0)")
    p.add_argument("--max-hours", type=float, help="wall-clock cap on the search phase, in hours (default: none)")
    p.add_argument("--resume", action="store_true", help="finish the benchmark in that folder (default: off)")
    add_experiment_options(p)
    add_executor_options(p)
    p.set_defaults(func=benchmark)


def manifest_from_args(args: argparse.Namespace) -> BenchmarkManifest:
    from harness.scheduling.benchmark import (BenchmarkManifest, declared_spaces,  # imports torch and Optuna
                                              with_baselines)

    if args.config:
        return BenchmarkManifest.from_yaml(args.config)
    methods, added = with_baselines(args.methods or comma_list(MISSION_METHODS))
    for line in added:
        print(line, file=sys.stderr)
    experiment = experiment_from_args(args, methods=methods, seeds=[0])
    spaces: dict[str, list[str]] = defaultdict(list)
    for item in args.space:
        method, dot, rest = item.partition(".")
        if not dot or method not in methods:
            raise ValueError(f"--space expects METHOD.NAME[=DIST] with METHOD among {', '.join(methods)}, got {item!r}")
        spaces[method].append(rest)
    if args.scheduler == "asha" and args.folds:
        raise ValueError("--scheduler asha prunes single-split trials; it does not combine with --folds")
    return BenchmarkManifest(
        name=args.name or experiment.dataset, methods=methods, dataset=experiment.dataset,
        spaces=declared_spaces(methods, spaces, args.protocol), trials_per_method=args.trials_per_method,
        final_seeds=args.final_seeds, **experiment.training_setup(), folds=args.folds, pruner=pruner_of(args.scheduler),
        metric=validation_objective(args.metric), seed=args.seed, baseline=args.baseline, max_hours=args.max_hours,
        protocol=args.protocol, remeasure_top=args.remeasure_top, remeasure_seeds=args.remeasure_seeds,
        sensitivity_points=args.sensitivity_points)


def benchmark(args: argparse.Namespace) -> int:
    from harness.plugins.method import get_method_class, method_families
    from harness.scheduling.benchmark import MANIFEST_FILE, Benchmark

    manifest, executor = manifest_from_args(args), executor_from_args(args)
    executor.check()  # before the manifest's own checks, as its flags were parsed before it
    store = TrialStore(locations.results_dir(args.results_dir))
    placement = {k: v for k, v in (("device", args.device), ("num_workers", args.num_workers)) if v is not None}
    run = Benchmark(manifest, store, **placement)
    run.check()
    held = prepare([t for method in manifest.methods for t in run.final_trials(method, {})], store, executor)
    from harness.reporting.benchmark_report import write_report  # pandas, SciPy, matplotlib: once the input is
    from harness.reporting.leaderboard import write_leaderboards  # checked (a typo is answered without them)
    run.write_manifest(args.resume)
    print(f"benchmark {manifest.name}: manifest {run.folder / MANIFEST_FILE}", flush=True)
    start = time.time()
    with executor.open(store, len(manifest.methods) * max(manifest.trials_per_method, manifest.final_seeds)) as opened:
        searched, records = run.run(opened, resume=args.resume)
    held.add(records)
    print(f"benchmark {manifest.name}, phase 3 (report)", flush=True)
    files = write_report(run.folder / "report", name=manifest.name, dataset=manifest.dataset, records=records,
                         metric=base_metric(manifest.metric)[1], baseline=manifest.baseline,
                         chosen=searched.best, histories=searched.histories,
                         search_failures=searched.failures, objective=manifest.metric,
                         wall_time_s=time.time() - start, protocol=manifest.protocol,
                         baselines={m: b for m in manifest.methods if (b := manifest.baseline_of(m))},
                         inherited=searched.inherited, candidates=searched.candidates,
                         sensitivity=searched.sensitivity,
                         sensitivity_axes={m: get_method_class(m).main_hparam() for m in searched.sensitivity})
    write_leaderboards(run.store, experiments=[manifest.name], baseline=manifest.baseline, families=method_families(),
                       records=held.items())
    print((run.folder / "report" / "leaderboard.md").read_text())
    for path in files:
        print(f"report: {path}")
    failed = sum(not r.ok for r in records) + len(manifest.methods) - len(searched.best)
    if failed:
        print(f"{failed} final trial(s) or method(s) failed; see the report", file=sys.stderr)
        return 1
    return 0
