"""The flags shared by the subcommands that train (``run``, ``search``, ``sweep``, ``benchmark``), and their
parsing into data (an :class:`~harness.experiment.ExperimentConfig`, an
:class:`~harness.scheduling.plan.ExecutorChoice`); what is done with them is the plan's
(:mod:`harness.scheduling.plan`).

Building the parser imports nothing heavy (``python -m harness --help`` stays fast): what needs torch
(:mod:`harness.experiment`, the executors) is imported by the functions that use it, when a command runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from typing import TYPE_CHECKING, Any

from harness.commands.locations import results_dir
from harness.core.hparams import parse_assignment, parse_value
from harness.core.metrics import DEFAULT_OBJECTIVE, base_metric, split_metric
from harness.core.spec import TrialSpec
from harness.scheduling.executor_registry import EXECUTORS
from harness.scheduling.plan import ExecutorChoice

if TYPE_CHECKING:
    from harness.experiment import ExperimentConfig

#: the environment variable Ray's own tools read for the cluster to join; read here, as ``--address``'s default
RAY_ADDRESS_ENV = "RAY_ADDRESS"


def comma_list(text: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``; an empty item (``"a,,b"``, ``"a,"``) or an empty list is refused (it would
    silently mean something else than what was typed)."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"expected at least one comma-separated item, got {text!r}")
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated items without an empty one, got {text!r}")
    return items


def int_list(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; an empty list or item is refused (``"0,,1"``: a typo, not two seeds)."""
    if not any(t.strip() for t in text.split(",")):
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    try:
        return [int(t) for t in comma_list(text)]
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers without an empty item, "
                                         f"got {text!r}") from None


def add_experiment_options(parser: argparse.ArgumentParser) -> None:
    """Dataset, model, recipe and output options (everything but the methods and seeds)."""
    parser.add_argument("--config",
                        help="YAML file with ExperimentConfig fields; flags override it (default: none)")
    parser.add_argument("--dataset", help="registered dataset name (default: omniglot28, packaged)")
    parser.add_argument("--data-root", help="folder holding the dataset in its original layout (default: none; "
                                            "the packaged datasets need none)")
    parser.add_argument("--backbone", help="timm model name (default: the dataset's default backbone)")
    parser.add_argument("--embedding-dim", type=int, help=f"embedding size (default: {TrialSpec.embedding_dim})")
    parser.add_argument("--pretrained", help="local weights file for the backbone, never downloaded "
                                             "(default: none: random initialisation)")
    parser.add_argument("--recipe", help="training recipe name, or 'paper' for each method's own "
                                         "(default: the dataset's default recipe)")
    parser.add_argument("--recipe-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a recipe field, e.g. --recipe-set batch_size=32 "
                             "(repeatable; default: none)")
    parser.add_argument("--epochs", type=int, help="shortcut for --recipe-set epochs=N (default: the recipe's)")
    parser.add_argument("--hparam", action="append", default=[], metavar="METHOD.NAME=VALUE",
                        help="override a method hyperparameter, e.g. --hparam jrd.alpha=0.1 "
                             "(repeatable; default: the method's declared defaults)")
    parser.add_argument("--val-fraction", type=float,
                        help=f"share of training classes held out for validation (default: {TrialSpec.val_fraction:g})")
    parser.add_argument("--experiment", help="name of the results folder results/runs/<experiment> "
                                             "(default: the dataset name)")
    parser.add_argument("--results-dir", help="results root (default: $DMLBENCH_RESULTS, else "
                                              "~/.local/share/dmlbench/results: outside the source tree)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--num-workers", type=int,
                        help="data-loading worker processes per trial (default: 0: loading in the trial's process)")
    parser.add_argument("--no-save-model", action="store_true",
                        help="do not save each trial's weights (default: off: weights are saved)")
    parser.add_argument("--extra-metrics", type=comma_list, metavar="NAME[,NAME]",
                        help="also compute these optional registered metrics, e.g. utilization: u(Q), the mean "
                             "squared distance from each test query to its nearest training embedding "
                             "(Venkataramanan et al., ICLR 2022; embeds the training split once more) "
                             "(default: none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    parser.add_argument("--fail-at-epoch", type=int, help=argparse.SUPPRESS)  # test-only fault injection


def add_paper_options(parser: argparse.ArgumentParser) -> None:
    """``--from-scratch`` and ``--incomparable-rows``: what a ``--recipe paper`` run of ``run``, ``search`` or
    ``sweep`` may do that the fair protocol refuses (a benchmark is one protocol and takes neither)."""
    parser.add_argument("--from-scratch", action="store_true",
                        help="with --recipe paper, train methods whose paper fine-tunes pretrained weights from random "
                             "initialisation instead; their rows' recipe is then <name>-from-scratch (default: off: "
                             "refused without --pretrained)")
    parser.add_argument("--incomparable-rows", action="store_true",
                        help="with --recipe paper, train methods whose paper recipes differ anyway (and join an "
                             "experiment whose other methods trained differently): every board, table and plot of "
                             "the experiment then says its rows are NOT comparable, naming the fields (default: off: "
                             "refused)")


def positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """Where trials run: Ray Tune (default) or in this process, and what each trial holds."""
    parser.add_argument("--executor", choices=EXECUTORS.names(),
                        help="ray: Ray Tune trials on every GPU/CPU of this machine or cluster; local: one after "
                             "another in this process; others as registered by --plugins (default: ray, or this "
                             "process, saying so, where Ray would run one trial at a time)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="log every trial's per-epoch metrics to <results>/tensorboard "
                             "(tensorboard --logdir results/tensorboard; needs the 'tracking' extra) "
                             "(default: off)")
    parser.add_argument("--mlflow", nargs="?", const="", metavar="URI",
                        help="also log every trial to MLflow: a run per trial with its parameters and metrics, in URI, "
                             "sqlite:///<results>/mlflow.db (a local file) when none is given; needs the 'mlflow' "
                             "extra (default: off)")
    parser.add_argument("--dashboard", action=DashboardFlag,
                        help="start Ray's dashboard (on 127.0.0.1) with a locally started Ray (default: off; needs "
                             "the 'dashboard' extra)")
    parser.add_argument("--gpus-per-trial", type=positive_float,
                        help="GPUs per trial, fractions allowed (0.25 packs four trials on a GPU) "
                             "(default: 1 where there are GPUs, else 0: trials on CPU cores)")
    parser.add_argument("--cpus-per-trial", type=positive_float,
                        help="CPUs per trial; also torch's threads and, for GPU trials, the data-loading "
                             "workers (default: CPUs shared evenly between GPUs, or 1 without GPUs)")
    parser.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: no cap)")
    parser.add_argument("--address", default=os.environ.get(RAY_ADDRESS_ENV) or None,
                        help=f"join this Ray cluster ('auto', or host:port) (default: ${RAY_ADDRESS_ENV} if set, "
                             "else start Ray on this machine)")
    parser.add_argument("--storage", help="Ray Tune's experiment state: a folder or URI such as s3://bucket/path "
                                          "(trial files never go there) (default: <results-dir>/ray)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="restart a trial whose worker died this many times, from its last epoch (default: 2)")


#: ``--scheduler`` of ``search`` and ``benchmark`` (Ray Tune's names; fifo runs every trial to its end), and the
#: search pruner (:data:`harness.scheduling.search.PRUNERS`) each stands for
SCHEDULERS = {"fifo": "none", "asha": "asha"}


def add_scheduler_option(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--scheduler``, the same name, values and default in every command that searches."""
    parser.add_argument("--scheduler", choices=tuple(SCHEDULERS), default="fifo",
                        help="fifo: every search trial runs to the end; asha: stop poor search trials early on the "
                             f"per-epoch validation metric (Optuna's successive-halving pruner{note}) (default: fifo)")


#: ``--metric``'s default in every command: the metric's name, without a split (``recall@1``)
DEFAULT_METRIC = base_metric(DEFAULT_OBJECTIVE)[1]


def add_metric_option(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--metric``, the same name and values in every command: a metric's name as ``evaluate`` and the
    leaderboards name it (``recall@1``); the command decides the split it is measured on."""
    parser.add_argument("--metric", default=DEFAULT_METRIC, help=f"{purpose} (default: {DEFAULT_METRIC})")


def validation_objective(metric: str) -> str:
    """A search's objective from ``--metric``: the metric on the validation classes (``recall@1`` →
    ``val_recall@1``; a name given with its split prefix is kept, and checked by the command)."""
    split, _ = base_metric(metric)
    return metric if split else split_metric("val", metric)


def pruner_of(scheduler: str) -> str:
    """The search pruner (``none`` or ``asha``) that a ``--scheduler`` value stands for."""
    return SCHEDULERS[scheduler]


class DashboardFlag(argparse.Action):
    """``--dashboard``: a flag checked as it is parsed, so a missing Ray dashboard is refused (``ValueError``
    with the install command: one line, exit 2) before a command creates its results folder or starts Ray."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if importlib.util.find_spec("aiohttp") is None:
            raise ValueError("--dashboard needs Ray's dashboard, which this install lacks: "
                             "pip install -e \".[dashboard]\" (brings ray[default] and optuna-dashboard)")
        setattr(namespace, self.dest, True)


def executor_from_args(args: argparse.Namespace) -> ExecutorChoice:
    """The executor flags as data (checked by the plan, :meth:`ExecutorChoice.check`)."""
    from_environment = args.address is not None and args.address == os.environ.get(RAY_ADDRESS_ENV)
    return ExecutorChoice(
        name=args.executor, progress=not args.no_progress, tensorboard=args.tensorboard, mlflow=args.mlflow,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial, max_concurrent=args.max_concurrent,
        address=args.address, address_given=f"{RAY_ADDRESS_ENV if from_environment else '--address'}"
                                            f"{'=' if from_environment else ' '}{args.address}",
        storage=args.storage, max_failures=args.max_failures, plugins=tuple(m for m in args.plugins.split(",") if m),
        dashboard=args.dashboard, fail_at_epoch=args.fail_at_epoch)


def parse_hparams(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["jrd.alpha=0.1", "ms.base=0.5"]`` → ``{"jrd": {"alpha": 0.1}, "ms": {"base": 0.5}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = parse_assignment(item)
        method, dot, name = key.partition(".")
        if not dot:
            raise ValueError(f"--hparam expects METHOD.NAME=VALUE, got {item!r}")
        out.setdefault(method, {})[name] = parse_value(value)
    return out


def experiment_from_args(args: argparse.Namespace, methods: list[str], seeds: list[int],
                         **extra: Any) -> ExperimentConfig:
    """The ExperimentConfig of the flags (on top of ``--config`` YAML when given)."""
    from harness.experiment import ExperimentConfig

    recipe_overrides = dict(parse_assignment(item) for item in args.recipe_set)
    recipe_overrides = {k: parse_value(v) for k, v in recipe_overrides.items()}
    if args.epochs is not None:
        recipe_overrides["epochs"] = args.epochs
    flags = {
        "methods": methods, "seeds": seeds, "dataset": args.dataset, "data_root": args.data_root,
        "backbone": args.backbone, "embedding_dim": args.embedding_dim, "pretrained": args.pretrained,
        "recipe": args.recipe, "val_fraction": args.val_fraction, "experiment": args.experiment,
        "device": args.device, "num_workers": args.num_workers,
        # add_paper_options' flags (benchmark, one protocol, takes neither)
        "incomparable_rows": getattr(args, "incomparable_rows", False) or None,
        "from_scratch": getattr(args, "from_scratch", False) or None,
        **extra,
    }
    if recipe_overrides:
        flags["recipe_overrides"] = recipe_overrides
    hparams = parse_hparams(args.hparam)
    if hparams:
        flags["hparams"] = hparams
    if args.no_save_model:
        flags["save_model"] = False
    if args.extra_metrics:
        flags["extra_metrics"] = args.extra_metrics
    if args.config:  # the file's results_dir holds unless --results-dir is given
        experiment = ExperimentConfig.from_yaml(args.config, defaults=config_file_defaults(),
                                                results_dir=args.results_dir, **flags)
    else:
        flags["results_dir"] = results_dir(args.results_dir)
        experiment = ExperimentConfig(**{k: v for k, v in flags.items() if v is not None})
    return experiment


def config_file_defaults() -> dict[str, Any]:
    """What a ``--config`` file's missing keys take besides its fields' own defaults: the results folder
    (``$DMLBENCH_RESULTS``, else the user's), as without a file."""
    return {"results_dir": results_dir(None)}


def add_rerun_options(p: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--overwrite``: what becomes of trials that already have records."""
    p.add_argument("--resume", action="store_true",
                   help="skip finished trials, continue interrupted ones (default: off)")
    p.add_argument("--overwrite", action="store_true",
                   help="run trials that already have a finished record again, replacing it (default: off: keep it)")
