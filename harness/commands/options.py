"""Options shared by the subcommands that train (``run``, ``search``, ``sweep``), parsed into config data."""
from __future__ import annotations

import argparse
from typing import Any

from harness.config import ExperimentConfig
from harness.hparams import parse_assignment, parse_value


def comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_experiment_options(parser: argparse.ArgumentParser) -> None:
    """Dataset, model, recipe and output options (everything but the methods and seeds)."""
    parser.add_argument("--config", help="YAML file with ExperimentConfig fields; flags override it")
    parser.add_argument("--dataset", help="registered dataset name (default: digits)")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--fail-at-epoch", type=int, help=argparse.SUPPRESS)  # test-only fault injection


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
    if args.config:
        return ExperimentConfig.from_yaml(args.config, **flags)
    return ExperimentConfig(**{k: v for k, v in flags.items() if v is not None})
