"""``python -m harness evaluate RUN_DIR``: a trial's metrics recomputed from its cached embeddings, no training."""
from __future__ import annotations

import argparse
import json

from harness.commands.options import comma_list
from harness.core.metrics import format_metric, metric_sort_key
from harness.core.store import TrialFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="recompute a trial's metrics from its cached embeddings",
                       description="Reads <RUN_DIR>/embeddings.npz (written by every trial that saves its model) "
                                   "and prints the metrics in percent, as the leaderboards show them (--json: the "
                                   "fractions a record holds); nothing is retrained or rewritten.")
    p.add_argument("run_dir", help="a trial folder: results/runs/<experiment>/<trial_id>")
    p.add_argument("--metrics", type=comma_list,
                   help="comma-separated metrics to print (default: all), e.g. recall@1,map@r")
    p.add_argument("--recall-ks", type=lambda text: [int(k) for k in comma_list(text)],
                   help="the K of Recall@K (default: the dataset's)")
    p.add_argument("--no-nmi", action="store_true", help="skip NMI, the k-means step (default: off)")
    p.add_argument("--json", action="store_true",
                   help="print JSON with the values as a record holds them: fractions, full precision (default: off)")
    p.set_defaults(func=evaluate)


def evaluate(args: argparse.Namespace) -> int:
    import torch  # torch and the engine: only when it runs (``--help`` stays fast)

    from harness.engine.evaluate import evaluate_embeddings
    from harness.plugins.data import DATASETS

    trial = TrialFolder(args.run_dir)
    arrays = trial.embeddings()
    ks = args.recall_ks or list(DATASETS.get(trial.record.spec.dataset).recall_ks)

    def tensor(name: str) -> torch.Tensor | None:
        return torch.from_numpy(arrays[name]) if name in arrays else None

    metrics = evaluate_embeddings(tensor("query"), tensor("query_labels"), tensor("gallery"), tensor("gallery_labels"),
                                  recall_ks=ks, include_nmi=not args.no_nmi)
    if args.metrics:
        unknown = sorted(set(args.metrics) - set(metrics))
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; valid: {', '.join(sorted(metrics))}")
        metrics = {k: metrics[k] for k in args.metrics}
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        width = max(map(len, metrics))
        for name in sorted(metrics, key=metric_sort_key):
            print(f"{name:<{width}}  {format_metric(name, metrics[name], unit=True)}")
    return 0
