"""Re-running trials from their records (``python -m harness reproduce``): which records a target names,
what cannot be re-run here, and the re-run itself into a scratch folder.

What cannot be re-run here is refused before any scratch folder exists, one line per record
(:func:`rerun_problem`): a method or dataset not registered (a plugin not loaded), a method whose code
is not the record's (its fingerprint differs: the re-run would measure other code), a dataset folder or
device this machine lacks, a thread count that is not one. So is a scratch folder that holds, or lies
in, the results folder of a record it checks (:func:`check_scratch`): a re-run never writes beside what
it checks. The command prints; this module decides and runs.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from harness.core.names import check_name
from harness.core.record import RecordError, TrialRecord
from harness.core.registry import UnknownNameError
from harness.core.store import RECORD_FILE, TrialStore, atomic_write_text
from harness.scheduling.progress import TrialBoard


def record_files(target: str, roots: Iterable[str | Path]) -> list[Path]:
    """The record files a target names: a record, a trial folder, an experiment folder, a ``runs/`` folder, a
    results folder, or an experiment's name (looked up in the results folders ``roots``, in order);
    ``FileNotFoundError`` naming it if none."""
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
    for root in roots:
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


def write_drift(scratch: Path, rows: list[dict]) -> dict[str, float]:
    """Write the drift rows of every re-run trial to ``<scratch>/drift.csv``; return each metric's largest
    absolute drift, in points."""
    import pandas as pd

    drift = pd.DataFrame(rows)
    atomic_write_text(scratch / "drift.csv", drift.to_csv(index=False, float_format="%.17g"))
    return (100 * drift["drift"].abs()).groupby(drift["metric"], sort=False).max().to_dict()
