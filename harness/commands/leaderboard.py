"""``python -m harness leaderboard``: recompute every experiment's leaderboard (CSV, Markdown, LaTeX, PNG, PDF)
from the trial records."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.options import comma_list
from harness.reporting.leaderboard import FORMATS, write_leaderboards
from harness.reporting.published import PUBLISHED_CSV
from harness.core.store import TrialStore
from harness.plugins.method import method_families


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="recompute leaderboards from the trial records",
                       description="Recompute every experiment's leaderboard (results/runs/<experiment>) from its "
                                   "records alone, byte for byte the same on a second run: long and wide CSV, "
                                   "Markdown, LaTeX, plots and an environment side file, named after the experiment, "
                                   "with published reference rows beside the measured ones.")
    p.add_argument("--results-dir", default="results", help="results root holding runs/ (default: results)")
    p.add_argument("--out-dir", help="where the files go (default: <results-dir>/leaderboards)")
    p.add_argument("--experiment", type=comma_list,
                   help="comma-separated experiments (default: every experiment with test-split records)")
    p.add_argument("--dataset", type=comma_list, help="only the experiments' records on these datasets (comma-separated)")
    p.add_argument("--baseline", metavar="METHOD",
                   help="test every group against this method: Welch and paired t-tests over seeds")
    p.add_argument("--format", type=comma_list, default=list(FORMATS),
                   help=f"comma-separated outputs among {','.join(FORMATS)} (default: all); "
                        "<dataset>.env.json is always written")
    p.add_argument("--published", default=str(PUBLISHED_CSV),
                   help="CSV of published reference rows (default: the packaged copy)")
    p.add_argument("--no-published", action="store_true", help="show no published reference rows")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = TrialStore(args.results_dir)
    written = write_leaderboards(store, out_dir=args.out_dir, datasets=args.dataset, baseline=args.baseline,
                                 formats=args.format, published_csv=None if args.no_published else Path(args.published),
                                 experiments=args.experiment, families=method_families())
    if not written:
        wanted = "".join(f" {kind} {', '.join(names)}" for kind, names in
                         (("in", args.experiment), ("on", args.dataset)) if names)
        print(f"no test-split trial records{wanted} under {store.runs}")
        return 1
    for path in written.values():
        print(f"leaderboard: {path}")
    return 0
