"""Executors run a list of trials and write one record per trial; a failing trial never stops the others.

:class:`LocalExecutor` runs them one after another in this process (debugging, CI, laptops).
The Ray Tune executor (:mod:`harness.ray_executor`) runs the very same ``run_trial`` on every
GPU or CPU of a machine or cluster.
"""
from __future__ import annotations

import time
import traceback
from datetime import datetime, timezone
from typing import Any, Protocol

from harness.config import TrialConfig
from harness.results import ResultStore
from harness.trial import CHECKPOINT_FILE, failed_record, run_trial


def stamp(record: dict[str, Any]) -> dict[str, Any]:
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def pending_trials(trials: list[TrialConfig], store: ResultStore, resume: bool) -> list[TrialConfig]:
    """With ``resume``, the trials without a finished record; else all of them."""
    if not resume:
        return list(trials)
    return [t for t in trials if not store.is_finished(t.experiment, t.trial_id)]


class Executor(Protocol):
    def run(self, trials: list[TrialConfig], resume: bool = False) -> list[dict[str, Any]]:
        """Run the trials (skipping finished ones when ``resume``) and return the records written."""


class LocalExecutor:
    """Runs trials sequentially in-process; with ``resume`` a trial with a checkpoint continues from it."""

    def __init__(self, store: ResultStore, progress: bool = True):
        self.store = store
        self.progress = progress

    def run(self, trials: list[TrialConfig], resume: bool = False) -> list[dict[str, Any]]:
        records = []
        todo = pending_trials(trials, self.store, resume)
        for i, trial in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {trial.trial_id}", flush=True)
            checkpoint = trial.trial_dir / CHECKPOINT_FILE
            resume_from = str(trial.trial_dir) if resume and checkpoint.exists() else None
            start = time.time()
            try:
                record = run_trial(trial.to_dict(), report=lambda metrics, ckpt: None, resume_from=resume_from,
                                   progress=self.progress)
                checkpoint.unlink(missing_ok=True)
            except Exception as error:  # noqa: BLE001 — any failure becomes the trial's recorded reason
                print(f"trial {trial.trial_id} failed: {type(error).__name__}: {error}", flush=True)
                record = failed_record(trial.to_dict(), error, time.time() - start)
                record["traceback"] = traceback.format_exc()
            self.store.write(stamp(record))
            records.append(record)
        return records
