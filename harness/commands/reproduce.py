"""``python -m harness reproduce RECORD_OR_EXPERIMENT...``: re-run trials from their records into a scratch
folder and print how far each metric drifted, with what differs in evaluation, hardware and versions.

What cannot be re-run here is refused before any scratch folder exists, one line per record, exit 2;
which records, what cannot be re-run and the re-run itself are :mod:`harness.scheduling.reproduction`'s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness.commands.locations import leaderboard_roots
from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from harness.scheduling.reproduction import (check_scratch, readable_records, record_files, rerun, rerun_problem,
                                             write_drift)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="re-run trials from their records and print each metric's drift",
                       description="Re-runs each finished trial from its record (its resolved config, seed and "
                                   "thread count) into a scratch folder, never over the record, and prints each "
                                   "metric's drift (reproduced - recorded, in points) with the differences in "
                                   "evaluation (first: a metric scored otherwise drifts on the same embeddings), "
                                   "hardware, library versions and harness commit. On the same evaluation, "
                                   "hardware, threads and versions the drift is zero.")
    p.add_argument("targets", nargs="+", metavar="RECORD_OR_EXPERIMENT",
                   help="a record.json, a trial folder, an experiment folder (runs/<experiment>) or an experiment's "
                        "name (looked up under --results-dir, else your results folder and the reference results)")
    p.add_argument("--results-dir", help="where to look up experiment names (default: your results folder, then "
                                         "the reference results)")
    p.add_argument("--out", help="scratch results folder for the re-runs (default: a new temporary folder)")
    p.add_argument("--data-root", help="the dataset's folder on this machine (default: the record's)")
    p.add_argument("--device", help="the device to re-run on: auto, cpu, cuda, cuda:1 ... (default: the record's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    p.set_defaults(func=reproduce)


def report(record: TrialRecord, again: TrialRecord) -> list[dict]:
    """Print one trial's drift and environment differences; return its drift rows."""
    import pandas as pd

    from harness.reporting.drift import environment_differences, metric_drift

    print(f"\n{record.trial_id}: {'reproduced' if again.ok else 'FAILED: ' + str(again.error)}")
    rows = metric_drift(record, again) if again.ok else []
    if rows:
        table = pd.DataFrame(rows)
        shown = pd.DataFrame({"metric": table["metric"], "recorded %": (100 * table["recorded"]).map("{:.4f}".format),
                              "reproduced %": (100 * table["reproduced"]).map("{:.4f}".format),
                              "drift (points)": (100 * table["drift"]).map("{:+.4f}".format)})
        print(shown.to_string(index=False))
    differences = environment_differences(record, again)
    print("differences: " + ("; ".join(differences) if differences else "none (same evaluation, hardware, threads, "
                                                                          "versions and commit)"))
    return rows


def reproduce(args: argparse.Namespace) -> int:
    roots = leaderboard_roots(args.results_dir)
    files = [f for target in args.targets for f in record_files(target, roots)]
    if args.out:
        check_scratch(Path(args.out), files)
    records = readable_records(files)
    finished = [r for r in records if r.ok]
    for record in records:
        if not record.ok:
            print(f"skipped {record.trial_id}: its record is {record.status}, there is nothing to reproduce")
    problems = [p for r in finished if (p := rerun_problem(r, args.data_root, args.device))]
    for problem in problems:
        print(f"error: cannot re-run {problem}", file=sys.stderr)
    if problems:
        return 2
    scratch = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dmlbench-reproduce-"))
    store = TrialStore(scratch)
    store.check_writable()
    print(f"re-running {len(finished)} trial(s) into {scratch}")
    rows = []
    failed = 0
    for record in finished:
        again = rerun(record, store, args.data_root, args.device, progress=not args.no_progress)
        failed += not again.ok
        rows += report(record, again)
    if rows:
        worst = write_drift(scratch, rows)
        print(f"\nlargest |drift| over {len({row['trial_id'] for row in rows})} trial(s), in points: "
              + ", ".join(f"{m} {v:.4f}" for m, v in worst.items()) + f" ({scratch / 'drift.csv'})")
    return 1 if failed else 0
