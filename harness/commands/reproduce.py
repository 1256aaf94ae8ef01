"""``python -m harness reproduce RECORD_OR_EXPERIMENT...``: re-run trials from their records into a scratch
folder and print how far each metric drifted, with what differs in hardware and versions."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness.commands.locations import leaderboard_roots
from harness.core.record import TrialRecord
from harness.core.store import RECORD_FILE, TrialStore, atomic_write_text
from harness.scheduling.progress import TrialBoard


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="re-run trials from their records and print each metric's drift",
                       description="Re-runs each finished trial from its record (its resolved config, seed and "
                                   "thread count) into a scratch folder, never over the record, and prints each "
                                   "metric's drift (reproduced - recorded, in points) with the differences in "
                                   "hardware, library versions and harness commit. On the same hardware, threads "
                                   "and versions the drift is zero.")
    p.add_argument("targets", nargs="+", metavar="RECORD_OR_EXPERIMENT",
                   help="a record.json, a trial folder, an experiment folder (runs/<experiment>) or an experiment's "
                        "name (looked up under --results-dir, else your results folder and the reference results)")
    p.add_argument("--results-dir", help="where to look up experiment names (default: your results folder, then "
                                         "the reference results)")
    p.add_argument("--out", help="scratch results folder for the re-runs (default: a new temporary folder)")
    p.add_argument("--data-root", help="the dataset's folder on this machine (default: the record's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: off)")
    p.set_defaults(func=reproduce)


def record_files(target: str, results_dir: str | None) -> list[Path]:
    """The record files a target names; ``FileNotFoundError`` naming it if none."""
    path = Path(target)
    if path.is_file():
        return [path]
    if (path / RECORD_FILE).is_file():
        return [path / RECORD_FILE]
    if path.is_dir() and sorted(path.glob(f"*/{RECORD_FILE}")):
        return sorted(path.glob(f"*/{RECORD_FILE}"))
    for root in leaderboard_roots(results_dir):
        found = TrialStore(root).record_files(target) if (TrialStore(root).runs / target).is_dir() else []
        if found:
            return found
    raise FileNotFoundError(f"{target}: not a record, a trial or experiment folder, or an experiment with records")


def rerun(record: TrialRecord, scratch: TrialStore, data_root: str | None, progress: bool) -> TrialRecord:
    """The record of ``record``'s trial run again into the ``scratch`` store with its recorded thread count:
    the same spec, so the same id, placed in the scratch folder."""
    from harness.reporting.drift import recorded_threads  # these import torch and pandas: only when it runs
    from harness.scheduling.executors import LocalExecutor

    trial = record.trial.with_placement(results_dir=str(scratch.root), save_model=False,
                                        data_root=data_root or record.placement.data_root)
    with LocalExecutor(scratch, progress=progress, cpus_per_trial=recorded_threads(record),
                       listeners=[TrialBoard(live=False)]) as executor:
        return executor.run([trial])[0]


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
    print("differences: " + ("; ".join(differences) if differences else "none (same hardware, threads, versions "
                                                                          "and commit)"))
    return rows


def reproduce(args: argparse.Namespace) -> int:
    import pandas as pd

    files = [f for target in args.targets for f in record_files(target, args.results_dir)]
    records = [TrialStore.read_record_file(f) for f in files]
    finished = [r for r in records if r.ok]
    for record in records:
        if not record.ok:
            print(f"skipped {record.trial_id}: its record is {record.status}, there is nothing to reproduce")
    scratch = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dmlbench-reproduce-"))
    store = TrialStore(scratch)
    store.check_writable()
    print(f"re-running {len(finished)} trial(s) into {scratch}")
    rows = []
    failed = 0
    for record in finished:
        again = rerun(record, store, args.data_root, progress=not args.no_progress)
        failed += not again.ok
        rows += report(record, again)
    if rows:
        drift = pd.DataFrame(rows)
        atomic_write_text(scratch / "drift.csv", drift.to_csv(index=False, float_format="%.17g"))
        worst = (100 * drift["drift"].abs()).groupby(drift["metric"], sort=False).max()
        print(f"\nlargest |drift| over {drift['trial_id'].nunique()} trial(s), in points: "
              + ", ".join(f"{m} {v:.4f}" for m, v in worst.items()) + f" ({scratch / 'drift.csv'})")
    return 1 if failed else 0
