"""Executors run a list of trials and write one record per trial; a failing trial never stops the others.

:class:`LocalExecutor` runs them one after another in this process (debugging, CI, laptops).
The Ray Tune executor (:mod:`harness.scheduling.ray_executor`) runs the very same :func:`execute_trial` on every
GPU or CPU of a machine or cluster. Both skip finished trials on ``resume`` (:func:`pending_trials`),
continue an interrupted trial from its epoch checkpoint (:func:`resume_checkpoint`) and write each
record the moment its trial ends (:func:`write_record`).
"""
from __future__ import annotations

import time
import traceback
from datetime import datetime, timezone
from typing import Any, Protocol

import torch

from harness.core.config import TrialConfig
from harness.core.store import ResultStore
from harness.engine.trial import CHECKPOINT_FILE, Report, failed_record, run_trial


def stamp(record: dict[str, Any]) -> dict[str, Any]:
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def write_record(store: ResultStore, record: dict[str, Any]) -> dict[str, Any]:
    """Stamp and write one trial's record (atomically) as soon as the trial ends; print one line about it."""
    store.write(stamp(record))
    if record["status"] == "ok":
        summary = f"recall@1 {100 * record['metrics'].get('recall@1', float('nan')):.2f}"
    else:
        summary = f"FAILED: {record['error']}"
    print(f"{record['trial_id']}: {summary} ({record['wall_time_s']:.0f} s)", flush=True)
    return record


def pending_trials(trials: list[TrialConfig], store: ResultStore, resume: bool) -> list[TrialConfig]:
    """With ``resume``, the trials without a finished record; else all of them."""
    if not resume:
        return list(trials)
    return [t for t in trials if not store.is_finished(t.experiment, t.trial_id)]


def resume_checkpoint(trial: TrialConfig, resume: bool) -> str | None:
    """With ``resume``, the folder of the epoch checkpoint an interrupted trial left behind, if any."""
    return str(trial.trial_dir) if resume and (trial.trial_dir / CHECKPOINT_FILE).exists() else None


def execute_trial(config: dict[str, Any], report: Report | None = None, resume_from: str | None = None,
                  progress: bool = True, threads: int | None = None) -> dict[str, Any]:
    """:func:`run_trial` that never raises: an error becomes a failed record with its reason and traceback.

    ``threads`` sets torch's intra-op threads (a trial's CPU share). A finished trial's epoch
    checkpoint is deleted; a failed one keeps it.
    """
    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    try:
        record = run_trial(config, report=report or (lambda metrics, checkpoint: None), resume_from=resume_from,
                           progress=progress)
    except Exception as error:  # noqa: BLE001 — any failure becomes the trial's recorded reason
        record = failed_record(config, error, time.time() - start)
        record["traceback"] = traceback.format_exc()
        return record
    (TrialConfig.from_dict(config).trial_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return record


class Executor(Protocol):
    """Runs trials; used as a context manager (``with make_executor(...) as executor``)."""

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc: Any) -> None: ...

    def run(self, trials: list[TrialConfig], resume: bool = False) -> list[dict[str, Any]]:
        """Run the trials (skipping finished ones when ``resume``) and return the records written."""


class LocalExecutor:
    """Runs trials sequentially in-process; with ``resume`` a trial with a checkpoint continues from it."""

    def __init__(self, store: ResultStore, progress: bool = True, cpus_per_trial: int | None = None):
        self.store = store
        self.progress = progress
        self.cpus_per_trial = cpus_per_trial

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def run(self, trials: list[TrialConfig], resume: bool = False) -> list[dict[str, Any]]:
        records = []
        todo = pending_trials(trials, self.store, resume)
        for i, trial in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {trial.trial_id}", flush=True)
            record = execute_trial(trial.to_dict(), resume_from=resume_checkpoint(trial, resume),
                                   progress=self.progress, threads=self.cpus_per_trial)
            records.append(write_record(self.store, record))
        return records
