"""Options shared by the subcommands that train (``run``, ``search``, ``sweep``), parsed into config data."""
from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from typing import Any

from harness.experiment import ExperimentConfig, check_device
from harness.core.store import TrialStore
from harness.scheduling.executors import Executor, LocalExecutor
from harness.scheduling.progress import MLflowLogger, TensorBoardLogger, TrialBoard, TrialListener
from harness.core.hparams import parse_assignment, parse_value


def comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def int_list(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; an empty list is refused (it would silently mean the default)."""
    try:
        values = [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def add_experiment_options(parser: argparse.ArgumentParser) -> None:
    """Dataset, model, recipe and output options (everything but the methods and seeds)."""
    parser.add_argument("--config", help="YAML file with ExperimentConfig fields; flags override it")
    parser.add_argument("--dataset", help="registered dataset name (default: omniglot28, packaged)")
    parser.add_argument("--data-root", help="folder holding the dataset in its original layout")
    parser.add_argument("--backbone", help="timm model name (default: the dataset's default backbone)")
    parser.add_argument("--embedding-dim", type=int, help="embedding size (default 512)")
    parser.add_argument("--pretrained", help="local weights file for the backbone (never downloaded)")
    parser.add_argument("--recipe", help="training recipe name, or 'paper' for each method's own "
                                         "(default: the dataset's default recipe)")
    parser.add_argument("--recipe-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a recipe field, e.g. --recipe-set batch_size=32 (repeatable)")
    parser.add_argument("--epochs", type=int, help="shortcut for --recipe-set epochs=N")
    parser.add_argument("--hparam", action="append", default=[], metavar="METHOD.NAME=VALUE",
                        help="override a method hyperparameter, e.g. --hparam jrd.alpha=0.1 (repeatable)")
    parser.add_argument("--val-fraction", type=float, help="share of training classes held out for validation")
    parser.add_argument("--experiment", help="name of the results folder results/runs/<experiment> "
                                             "(default: the dataset name)")
    parser.add_argument("--results-dir", help="results root (default: results)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--num-workers", type=int, help="data-loading worker processes per trial")
    parser.add_argument("--no-save-model", action="store_true", help="do not save each trial's weights")
    parser.add_argument("--utilization", action="store_true",
                        help="also compute u(Q), the mean squared distance from each test query to its nearest "
                             "training embedding (Venkataramanan et al., ICLR 2022); embeds the training split once more")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--fail-at-epoch", type=int, help=argparse.SUPPRESS)  # test-only fault injection


def positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """Where trials run: Ray Tune (default) or in this process, and what each trial holds."""
    parser.add_argument("--executor", choices=("ray", "local"), default="ray",
                        help="ray: Ray Tune trials on every GPU/CPU of this machine or cluster (default); "
                             "local: one after another in this process")
    parser.add_argument("--tensorboard", action="store_true",
                        help="log every trial's per-epoch metrics to <results>/tensorboard "
                             "(tensorboard --logdir results/tensorboard; needs the 'tracking' extra)")
    parser.add_argument("--mlflow", nargs="?", const="", metavar="URI",
                        help="also log every trial to MLflow: a run per trial with its parameters and metrics, in URI "
                             "(default: sqlite:///<results>/mlflow.db, a local file; needs the 'mlflow' extra)")
    parser.add_argument("--dashboard", action="store_true",
                        help="start Ray's dashboard (on 127.0.0.1) with a locally started Ray (default: off; needs "
                             "the 'dashboard' extra)")
    parser.add_argument("--gpus-per-trial", type=positive_float,
                        help="GPUs per trial, fractions allowed (0.25 packs four trials on a GPU); "
                             "default 1 where there are GPUs, else 0 (trials on CPU cores)")
    parser.add_argument("--cpus-per-trial", type=positive_float,
                        help="CPUs per trial; also torch's threads and, for GPU trials, the data-loading "
                             "workers (default: CPUs shared evenly between GPUs, or 1 without GPUs)")
    parser.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: no cap)")
    parser.add_argument("--address", help="join this Ray cluster ('auto', or host:port; default RAY_ADDRESS, "
                                          "else start Ray on this machine)")
    parser.add_argument("--storage", help="Ray Tune's storage for trial checkpoints: a folder (shared by every "
                                          "node of a multi-node cluster) or URI such as s3://bucket/path "
                                          "(default <results-dir>/ray)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="restart a trial whose worker died this many times, from its last epoch (default 2)")


def make_executor(args: argparse.Namespace, results_dir: str) -> Executor:
    """The executor the flags ask for (a context manager: Ray starts on entry and stops on exit), with a
    live table of its trials (plain lines when stdout is not a terminal) and optional TensorBoard logs."""
    board = TrialBoard(live=False if args.no_progress else None)
    listeners: list[TrialListener] = [board]
    if args.tensorboard:
        listeners.append(TensorBoardLogger(TrialStore(results_dir).tensorboard_dir))
    if args.mlflow is not None:
        listeners.append(MLflowLogger(args.mlflow or mlflow_store(results_dir)))
    if args.dashboard:
        check_dashboard()
    if args.executor == "local":
        cpus = args.cpus_per_trial
        return LocalExecutor(progress=not args.no_progress, cpus_per_trial=max(1, int(cpus)) if cpus else None,
                             listeners=listeners)
    from harness.scheduling.ray_executor import RayExecutor  # imports Ray: only when used

    return RayExecutor(results_dir, gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                       max_concurrent=args.max_concurrent, address=args.address, storage=args.storage,
                       max_failures=args.max_failures, plugins=tuple(m for m in args.plugins.split(",") if m),
                       listeners=listeners, dashboard=args.dashboard)


def mlflow_store(results_dir: str) -> str:
    """The default MLflow tracking URI: a SQLite file in the results folder."""
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def check_dashboard() -> None:
    """Raise ``ValueError`` with the install command unless Ray's dashboard can start (``ray[default]``)."""
    if importlib.util.find_spec("aiohttp") is None:
        raise ValueError("--dashboard needs Ray's dashboard, which this install lacks: "
                         "pip install -e \".[dashboard]\" (brings ray[default] and optuna-dashboard)")


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
    recipe_overrides = dict(parse_assignment(item) for item in args.recipe_set)
    recipe_overrides = {k: parse_value(v) for k, v in recipe_overrides.items()}
    if args.epochs is not None:
        recipe_overrides["epochs"] = args.epochs
    flags = {
        "methods": methods, "seeds": seeds, "dataset": args.dataset, "data_root": args.data_root,
        "backbone": args.backbone, "embedding_dim": args.embedding_dim, "pretrained": args.pretrained,
        "recipe": args.recipe, "val_fraction": args.val_fraction, "experiment": args.experiment,
        "results_dir": args.results_dir, "device": args.device, "num_workers": args.num_workers,
        **extra,
    }
    if recipe_overrides:
        flags["recipe_overrides"] = recipe_overrides
    hparams = parse_hparams(args.hparam)
    if hparams:
        flags["hparams"] = hparams
    if args.no_save_model:
        flags["save_model"] = False
    if args.utilization:
        flags["utilization"] = True
    if args.config:
        experiment = ExperimentConfig.from_yaml(args.config, **flags)
    else:
        experiment = ExperimentConfig(**{k: v for k, v in flags.items() if v is not None})
    if not (getattr(args, "address", None) or os.environ.get("RAY_ADDRESS")):  # trials run on this machine
        check_device(experiment.device)
    return experiment
