"""``python -m harness leaderboard``: recompute every experiment's leaderboard (CSV, Markdown, LaTeX, PNG, PDF)
from the trial records."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.locations import leaderboard_roots
from harness.commands.options import comma_list
from harness.reporting.board_inputs import INPUTS_FILE, BoardInputs, code_digest, experiment_inputs, experiments_with_records
from harness.reporting.board_options import FORMATS, STORED, given_options, load_options
from harness.core.store import TrialStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="recompute leaderboards from the trial records",
                       description="Recompute every experiment's leaderboard (runs/<experiment>) from its "
                                   "records alone, byte for byte the same on a second run: long and wide CSV, "
                                   "Markdown, LaTeX, plots and an environment side file, named after the experiment, "
                                   "with published reference rows beside the measured ones. Options given here "
                                   "are stored with the experiment (runs/<experiment>/leaderboard.json) and "
                                   "used again when not given.")
    p.add_argument("--results-dir", help="results root holding runs/ (default: your results folder, "
                                         "$DMLBENCH_RESULTS or ~/.local/share/dmlbench/results, and the committed "
                                         "reference results of a source checkout, each where it exists)")
    p.add_argument("--out-dir", help="where the files go (default: <results-dir>/leaderboards)")
    p.add_argument("--experiment", type=comma_list,
                   help="comma-separated experiments (default: every experiment with test-split records)")
    p.add_argument("--dataset", type=comma_list,
                   help="only the experiments' records on these datasets, comma-separated (default: every dataset)")
    p.add_argument("--baseline", metavar="METHOD",
                   help="test every group against this method: Welch and paired t-tests over seeds "
                        "(default: the experiment's stored baseline, else none)")
    p.add_argument("--no-baseline", action="store_true",
                   help="no significance tests; forgets a stored baseline (default: off)")
    p.add_argument("--format", type=comma_list,
                   help=f"comma-separated outputs among {','.join(FORMATS)} (default: the experiment's stored "
                        "formats, else all); <name>.env.json is always written")
    p.add_argument("--column-metrics", type=comma_list, metavar="M1,M2",
                   help="the metrics of the one-column LaTeX table <name>.column.tex, the first ranking its rows "
                        "(default: the experiment's stored choice, else recall@1,map@r)")
    p.add_argument("--published", help="CSV of published reference rows (default: the stored choice, else the "
                                       "packaged copy)")
    p.add_argument("--no-published", action="store_true", help="show no published reference rows (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    roots = leaderboard_roots(args.results_dir)
    if args.out_dir and len(roots) > 1:
        raise ValueError("--out-dir needs --results-dir (without it, every results folder is regenerated in place)")
    baseline = None if args.no_baseline else args.baseline or STORED
    published = None if args.no_published else Path(args.published) if args.published else STORED
    given = given_options(baseline, args.format or STORED, published, args.column_metrics or STORED)
    code = code_digest()
    written, kept = {}, 0
    for root in roots:
        store = TrialStore(root)
        out_dir = Path(args.out_dir) if args.out_dir else store.leaderboard_dir
        drawn = BoardInputs(store, out_dir)
        inputs = {e: experiment_inputs(store, e, load_options(store, e).given(**given), args.dataset, code)
                  for e in (args.experiment or experiments_with_records(store))}
        unchanged = {e: drawn.unchanged(e, digest) for e, digest in inputs.items()}
        for files in filter(None, unchanged.values()):
            written.update({f"{root}/{name}": path for name, path in files.items()})
        kept += sum(files is not None for files in unchanged.values())
        changed = [e for e, files in unchanged.items() if files is None]
        if not changed:
            continue
        import harness.engine  # noqa: F401  (registers the optional metrics: the tables use their labels and units)
        from harness.plugins.method import method_families  # these import torch and pandas: only when it draws
        from harness.reporting.leaderboard import write_experiment_boards

        boards = write_experiment_boards(
            store, out_dir=out_dir, datasets=args.dataset, baseline=baseline, formats=args.format or STORED,
            published_csv=published, experiments=changed, families=method_families(),
            column_metrics=args.column_metrics or STORED)
        for experiment in changed:
            files = boards.get(experiment, {})
            drawn.drawn(experiment, inputs[experiment], files.values())
            written.update({f"{root}/{name}": path for name, path in files.items()})
        drawn.save()
    if not written:
        wanted = "".join(f" {kind} {', '.join(names)}" for kind, names in
                         (("in", args.experiment), ("on", args.dataset)) if names)
        where = " or ".join(str(TrialStore(root).runs) for root in roots) or "any results folder"
        print(f"no test-split trial records{wanted} under {where}")
        return 1
    for path in dict(sorted(written.items())).values():
        print(f"leaderboard: {path}")
    if kept:
        print(f"{kept} experiment(s) not redrawn: their records, options and the code that draws them are "
              f"unchanged since {INPUTS_FILE} was written", file=sys.stderr)
    return 0
