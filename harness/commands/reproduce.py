"""``python -m harness reproduce RECORD_OR_EXPERIMENT...``: re-run trials from their records into a scratch
folder and print how far each metric drifted, with what differs in hardware and versions.

What cannot be re-run here is refused before any scratch folder exists, one line per record, exit 2
(:func:`rerun_problem`): a method or dataset not registered (a plugin not loaded), a method whose code
is not the record's (its fingerprint differs: the re-run would measure other code), a dataset folder or
device this machine lacks, a thread count that is not one. So is a scratch folder that holds, or lies
in, the results folder of a record it checks (``--out``): a re-run never writes beside what it checks.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from harness.commands.locations import leaderboard_roots
from harness.core.names import check_name
from harness.core.record import RecordError, TrialRecord
from harness.core.registry import UnknownNameError
from harness.core.store import RECORD_FILE, TrialStore, atomic_write_text
from harness.scheduling.progress import TrialBoard


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


def record_files(target: str, results_dir: str | None) -> list[Path]:
    """The record files a target names: a record, a trial folder, an experiment folder, a ``runs/`` folder, a
    results folder, or an experiment's name; ``FileNotFoundError`` naming it if none."""
    path = Path(target)
    if path.is_file():
        return [path]
    for pattern in (RECORD_FILE, f"*/{RECORD_FILE}", f"*/*/{RECORD_FILE}", f"runs/*/*/{RECORD_FILE}"):
        found = sorted(path.glob(pattern)) if path.is_dir() else []
        if found:
            return found
    try:
        check_name("experiment", target)
    except ValueError:
        raise FileNotFoundError(f"{target}: not a record, a trial, experiment, runs or results folder") from None
    for root in leaderboard_roots(results_dir):
        found = TrialStore(root).record_files(target) if (TrialStore(root).runs / target).is_dir() else []
        if found:
            return found
    raise FileNotFoundError(f"{target}: not a record, a trial or experiment folder, or an experiment with records")


def readable_records(files: list[Path]) -> list[TrialRecord]:
    """The records in ``files``; one that cannot be read is skipped with a warning naming its file."""
    records = []
    for path in files:
        try:
            records.append(TrialStore.read_record_file(path))
        except RecordError as error:
            warnings.warn(f"skipping trial record {error}", stacklevel=2)
    return records


def results_folder_of(record_file: Path) -> Path:
    """The results folder holding ``record_file`` (``<root>/runs/<experiment>/<trial>/record.json`` or
    ``<root>/searches/<search>/trials/<trial>/record.json``), else the folder the file lies in."""
    parents = record_file.resolve().parents
    if len(parents) > 3 and parents[2].name == "runs":
        return parents[3]
    if len(parents) > 4 and parents[1].name == "trials" and parents[3].name == "searches":
        return parents[4]
    return parents[0]


def check_scratch(out: Path, files: list[Path]) -> None:
    """Refuse (``ValueError``) a scratch folder that is, holds or lies in the results folder of a record it
    would check: the re-run would write beside (or over) what it is compared with."""
    scratch = out.resolve()
    for path in files:
        holder = results_folder_of(path)
        if scratch.is_relative_to(holder) or holder.is_relative_to(scratch):
            raise ValueError(f"--out {out} {'lies in' if scratch != holder else 'is'} the results folder {holder} "
                             f"that holds {path}: a re-run never writes beside what it checks; give a folder "
                             "outside it (default: a new temporary folder)")


def rerun_problem(record: TrialRecord, data_root: str | None, device: str | None) -> str | None:
    """Why ``record``'s trial cannot be re-run here as it ran (one line naming the record and the remedy), or
    None: its method or dataset is not registered, its method's code is not the record's (their
    fingerprints), its dataset folder or device is missing, or its recorded thread count is not one."""
    from harness.experiment import check_device  # imports torch: only when reproduce runs
    from harness.plugins.data import DATASETS
    from harness.plugins.method import code_fingerprint, get_method_class
    from harness.reporting.drift import recorded_threads

    spec, name = record.spec, f"{record.trial_id} ({record.spec.method} on {record.spec.dataset})"
    try:
        cls = get_method_class(spec.method)
        DATASETS.get(spec.dataset)
    except UnknownNameError as error:
        return (f"{name}: {error.args[0] if error.args else error}; if a plugin registers it, load it: python -m "
                "harness --plugins MODULE reproduce ...")
    if spec.code is not None and code_fingerprint(cls) != spec.code:
        return (f"{name}: {spec.method}'s code here (fingerprint {code_fingerprint(cls)}) is not the code the record "
                f"ran (fingerprint {spec.code}, harness commit {record.environment.get('git_commit', 'unknown')}): "
                "re-running it would measure other code; check out the record's code first")
    root = data_root or record.placement.data_root
    if root is not None and not Path(root).is_dir():
        return f"{name}: its dataset folder {root} is not a folder on this machine; give --data-root"
    try:
        check_device(device or record.placement.device)
    except ValueError as error:
        return f"{name}: {error}" + ("" if device else " (the record's device); give --device, e.g. --device cpu")
    threads = recorded_threads(record)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        return f"{name}: its recorded thread count (environment.hardware.threads) is {threads!r}, not a positive integer"
    return None


def rerun(record: TrialRecord, scratch: TrialStore, data_root: str | None, device: str | None,
          progress: bool) -> TrialRecord:
    """The record of ``record``'s trial run again into the ``scratch`` store with its recorded thread count:
    the same spec, so the same id, placed in the scratch folder (on ``device`` where given)."""
    from harness.reporting.drift import recorded_threads  # these import torch and pandas: only when it runs
    from harness.scheduling.executors import LocalExecutor

    trial = record.trial.with_placement(results_dir=str(scratch.root), save_model=False,
                                        data_root=data_root or record.placement.data_root,
                                        device=device or record.placement.device)
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
    print("differences: " + ("; ".join(differences) if differences else "none (same evaluation, hardware, threads, "
                                                                          "versions and commit)"))
    return rows


def reproduce(args: argparse.Namespace) -> int:
    import pandas as pd

    files = [f for target in args.targets for f in record_files(target, args.results_dir)]
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
        drift = pd.DataFrame(rows)
        atomic_write_text(scratch / "drift.csv", drift.to_csv(index=False, float_format="%.17g"))
        worst = (100 * drift["drift"].abs()).groupby(drift["metric"], sort=False).max()
        print(f"\nlargest |drift| over {drift['trial_id'].nunique()} trial(s), in points: "
              + ", ".join(f"{m} {v:.4f}" for m, v in worst.items()) + f" ({scratch / 'drift.csv'})")
    return 1 if failed else 0
