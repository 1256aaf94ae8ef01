"""``python -m harness evaluate RUN_DIR...``: a trial's metrics recomputed from its cached embeddings, no
training; with ``--rescore``, its record re-scored under today's evaluation (:mod:`harness.engine.rescore`)."""
from __future__ import annotations

import argparse
import json
import sys

from harness.commands.options import comma_list
from harness.core.metrics import format_metric, metric_sort_key
from harness.core.store import EMBEDDINGS_FILE, TrialFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="recompute a trial's metrics from its cached embeddings, or re-score records",
                       description="Reads <RUN_DIR>/embeddings.npz (written by every trial that saves its model) "
                                   "and prints the metrics in percent, as the leaderboards show them (--json: the "
                                   "fractions a record holds); nothing is retrained or rewritten. With --rescore, "
                                   "every trial of the given trial or experiment folders whose record was scored "
                                   "by another evaluation (per metric family: retrieval, clustering) gets its "
                                   "metrics recomputed from its embeddings under today's evaluation, written into "
                                   "its record; a trial without embeddings is named (re-run it instead).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a trial folder: results/runs/<experiment>/<trial_id> (with --rescore also "
                        "results/runs/<experiment>)")
    p.add_argument("--metrics", type=comma_list,
                   help="comma-separated metrics to print (default: all), e.g. recall@1,map@r")
    p.add_argument("--recall-ks", type=lambda text: [int(k) for k in comma_list(text)],
                   help="the K of Recall@K (default: the dataset's)")
    p.add_argument("--no-nmi", action="store_true", help="skip NMI, the k-means step (default: off)")
    p.add_argument("--json", action="store_true",
                   help="print JSON with the values as a record holds them: fractions, full precision (default: off)")
    p.add_argument("--rescore", action="store_true",
                   help="rewrite each record scored by another evaluation with its metrics under today's, from "
                        "its embeddings (default: off)")
    p.set_defaults(func=evaluate)


def rescore(folders: list[TrialFolder]) -> int:
    """Re-score every record of ``folders`` not scored by today's evaluation and print what each became; 1 if
    one could not be (it kept no embeddings)."""
    from harness.engine.rescore import rescore_folder

    unscored = 0
    for folder in folders:
        outcome = rescore_folder(folder)
        record = outcome.record
        if outcome.state == "no embeddings":
            unscored += 1
            print(f"{record.trial_id}: its {' and '.join(outcome.stale)} evaluation is not today's and it kept no "
                  f"{EMBEDDINGS_FILE}: re-run it (python -m harness reproduce {folder.path})", file=sys.stderr)
        elif outcome.state == "rescored":
            changes = ", ".join(f"{name} {format_metric(name, record.metrics[name])} → {format_metric(name, value)}"
                                for name, value in sorted(outcome.again.metrics.items(),
                                                          key=lambda kv: metric_sort_key(kv[0]))
                                if name in record.metrics and value != record.metrics[name])
            print(f"{record.trial_id}: re-scored ({' and '.join(outcome.stale)}): {changes or 'no metric changed'}")
        else:
            print(f"{record.trial_id}: " + (f"{record.status}, nothing to re-score" if outcome.state == "not finished"
                                             else "already scored by today's evaluation"))
    return 1 if unscored else 0


def evaluate(args: argparse.Namespace) -> int:
    folders = TrialFolder.found_in(args.run_dirs)
    if args.rescore:
        return rescore(folders)
    if len(folders) != 1:
        raise ValueError(f"give one trial folder to print its metrics ({len(folders)} given); "
                         "--rescore takes several")
    from harness.engine.evaluate import evaluate_saved  # torch and the engine: only when it runs
    from harness.plugins.data import DATASETS

    trial = folders[0]
    arrays = trial.embeddings()
    ks = args.recall_ks or list(DATASETS.get(trial.record.spec.dataset).recall_ks)
    metrics = evaluate_saved(arrays, recall_ks=ks, include_nmi=not args.no_nmi)
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
