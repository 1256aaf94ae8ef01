"""``python -m harness list``: registered methods, datasets, recipes, backbones, executors, optimizers and
optional metrics, one line each."""
from __future__ import annotations

import argparse

from harness.core.metrics import METRICS, optional_metric_names
from harness.scheduling.executor_registry import EXECUTORS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list methods, datasets, recipes, backbones, executors, optimizers and metrics")
    p.add_argument("--all-backbones", action="store_true",
                   help="list every timm model name (default: off: a few examples)")
    p.set_defaults(func=list_registry)


def list_registry(args: argparse.Namespace) -> int:
    import harness.engine  # noqa: F401  (registers the optional metrics; it and the plugins import torch)
    from harness.plugins.backbone_names import EXAMPLE_BACKBONES, backbone_names
    from harness.plugins.data import DATASETS
    from harness.plugins.method import METHODS, find_recipe, recipe_names
    from harness.plugins.optimizers import OPTIMIZERS

    print("methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        params = ", ".join(f"{k}={p.default}" for k, p in cls.hparams.items())
        print(f"  {name:14s} {cls.describe()} ({cls.family})" + (f"  [{params}]" if params else ""))
        if cls.baseline:
            print(f"  {'':14s} extends {cls.baseline}: its own {', '.join(cls.own_hparams)}; "
                  f"{cls.baseline}'s {', '.join(cls.base_hparams()) or 'none'}")
    print("datasets:")
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        print(f"  {name:14s} {spec.description}  (Recall@{','.join(map(str, spec.recall_ks))})")
    print("recipes:")
    for name in recipe_names():
        r = find_recipe(name)
        print(f"  {name:14s} {r.epochs} epochs, batch {r.batch_size}, {r.image_size}px, {r.optimizer}, "
              f"sampler={r.sampler}  [{r.hash}]")
    names = backbone_names()
    shown = names if args.all_backbones else [n for n in EXAMPLE_BACKBONES if n in names]
    print(f"backbones ({len(names)} timm models; --all-backbones lists every one):")
    for name in shown:
        print(f"  {name}")
    print(f"executors (--executor): {', '.join(EXECUTORS.names())}")
    print(f"optimizers (recipe field optimizer): {', '.join(OPTIMIZERS.names())}")
    print("optional metrics (--extra-metrics): "
          + ", ".join(f"{name} ({METRICS.get(name).label})" for name in optional_metric_names()))
    return 0
