"""``python -m harness search``: tune one method's hyperparameters on validation classes, then re-train the best."""
from __future__ import annotations

import argparse
import sys
import time

from harness.commands.options import (add_executor_options, add_experiment_options, add_metric_option,
                                      add_paper_options, add_scheduler_option, executor_from_args, experiment_from_args,
                                      pruner_of, validation_objective)
from harness.commands.printing import print_leaderboard
from harness.scheduling.plan import claimed_protocol, prepare
from harness.core.metrics import format_metric
from harness.core.names import check_name
from harness.core.store import TrialStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search one method's hyperparameters (Optuna TPE on Ray Tune), then re-train the best",
        description="Each proposal trains on the training classes minus the validation classes and is scored "
                    "on those; the Optuna study lives in <results>/searches/<name>/study.db. The best "
                    "configuration is then trained with --final-seeds seeds and evaluated on the test classes.")
    p.add_argument("--method", required=True, help="the method whose hyperparameters to search (required)")
    p.add_argument("--space", action="append", default=[], metavar="NAME[=DIST]",
                   help="search only these hyperparameters (repeatable): NAME=loguniform(a,b), uniform(a,b), "
                        "randint(a,b) or choice(x,y,...), or NAME alone for the method's declared distribution "
                        "(default: every hyperparameter that declares one)")
    p.add_argument("--trials", type=int, default=20, help="planned number of search trials (default: 20)")
    add_metric_option(p, "the metric to maximise, measured on the validation classes")
    add_scheduler_option(p, "; with either executor")
    p.add_argument("--final-seeds", type=int, default=3,
                   help="re-train the best configuration with seeds 0..N-1 on the test protocol, 0 for none "
                        "(default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler and of every search trial (default: 0)")
    p.add_argument("--name", help="the search's folder <results>/searches/<name> (default: <experiment>.<method>, "
                                  "as a benchmark names its searches; the experiment defaults to the dataset)")
    p.add_argument("--resume", action="store_true",
                   help="continue the search in that folder up to --trials, then finish the final trials "
                        "(default: off)")
    add_experiment_options(p)
    add_paper_options(p)
    add_executor_options(p)
    p.set_defaults(func=search)


def search(args: argparse.Namespace) -> int:
    from harness.experiment import check_objective, check_validation_split  # imports torch: only when used
    from harness.scheduling.search import (describe_params, experiment_search, run_searches,  # imports Optuna:
                                           search_space)                                     # only when used

    if args.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {args.trials}")
    if args.final_seeds < 0:
        raise ValueError(f"--final-seeds must be at least 0, got {args.final_seeds}")
    experiment = experiment_from_args(args, methods=[args.method], seeds=[args.seed])
    objective = validation_objective(args.metric)
    check_objective(experiment, objective)
    space = search_space(args.method, args.space)
    fixed = set(experiment.hparams.get(args.method, {})) & set(space)
    if fixed:
        raise ValueError(f"{', '.join(sorted(fixed))} both fixed with --hparam and searched with --space")
    name = check_name("search", args.name or f"{experiment.experiment or experiment.dataset}.{args.method}")
    check_validation_split(experiment)
    store, executor = TrialStore(experiment.results_dir), executor_from_args(args)
    joining = experiment.trials() if args.final_seeds else []  # its final trials join the experiment's protocol
    held = prepare(joining, store, executor, experiment.incomparable_rows)
    plan = experiment_search(experiment, name=name, folder=store.search_dir(name), space=space, metric=objective,
                             planned=args.trials, seed=args.seed, pruner=pruner_of(args.scheduler),
                             final_seeds=args.final_seeds, fail_at_epoch=executor.fail_at_epoch)
    start = time.time()
    with claimed_protocol(held, joining, experiment.incomparable_rows), \
            executor.open(store, max(args.trials, args.final_seeds)) as opened:
        (outcome,) = run_searches(opened, store, [plan], resume=args.resume)
    held.add(outcome.final)
    for path in outcome.files:
        print(f"search output: {path}")
    if outcome.best is None:
        print(f"no search trial completed: see the reasons in {plan.outputs / 'trials.csv'}", file=sys.stderr)
        return 1
    print(f"best of search {name}: {objective} {format_metric(objective, outcome.best.value, unit=True)} "
          f"(trial {outcome.best.number}) with {describe_params(outcome.best.params)} "
          f"({time.time() - start:.0f} s with its final trials)")
    if outcome.final:
        print_leaderboard(store, held.items(), plan.final(outcome.best.params), start)
    return 0
