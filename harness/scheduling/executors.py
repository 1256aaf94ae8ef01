"""The executor boundary: ``Trial`` in, ``TrialRecord`` out; a failing trial never stops the others.

An executor pulls trials (:class:`~harness.core.trial.Trial`: spec and placement) from an iterable as it
has room for them (so a searcher can propose the next trial from what finished), runs each with
:func:`harness.engine.runner.execute_trial`, writes its record through the
:class:`~harness.core.store.TrialStore` its command built and handed it, the moment it ends, and hands it
to ``on_record``. ``on_epoch(trial, metrics)`` sees every epoch's metrics; a true answer prunes the trial.
With ``resume`` a trial that already has a finished record is not run again (its record is handed to
``on_record`` as it is) and an interrupted one continues from its epoch checkpoint.

:class:`LocalExecutor` runs trials one after another in this process (debugging, CI, laptops);
:class:`~harness.scheduling.ray_executor.RayExecutor` runs the same function on every GPU or CPU of a
machine or cluster. Both are registered in :mod:`harness.scheduling.executor_registry`.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import torch

from harness.core.environment import git_commit
from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from harness.core.trial import Trial
from harness.engine.runner import Attempt, execute_trial
from harness.scheduling.progress import TrialBoard, TrialListener, announce

#: a trial's epoch metrics; returning True prunes the trial
OnEpoch = Callable[[Trial, dict[str, Any]], "bool | None"]
OnRecord = Callable[[TrialRecord], None]


def default_cpus_per_trial(cpus: float, gpus: float, gpus_per_trial: float) -> float:
    """A trial's CPUs (and torch threads) when none are asked for, the same for every executor so that one
    command gives the same numbers with either: the CPUs shared evenly between the GPUs for GPU trials,
    else 1 (one trial per core)."""
    return max(1.0, math.floor(cpus * gpus_per_trial / gpus)) if gpus_per_trial and gpus else 1.0


def deliver(record: TrialRecord, store: TrialStore, on_record: OnRecord | None,
            listeners: Sequence[TrialListener] = ()) -> TrialRecord:
    """Write a finished trial's record into ``store``, tell the listeners and hand it on. A record that cannot be
    written (read-only folder, full disk) is reported on stderr; the other trials go on. The record's
    harness commit is the driver's, decided once when the command started (a worker's checkout may have
    changed since)."""
    if record.environment:
        record.environment["git_commit"] = git_commit()
    try:
        store.write_record(record)
    except OSError as error:
        print(f"{record.trial_id}: FAILED to write its record to {store.record_path(record.trial)}: "
              f"{error.strerror or error}", file=sys.stderr, flush=True)
        if record.ok:
            record = TrialRecord.failed(record.trial, f"its record could not be written: {error.strerror or error}",
                                        wall_time_s=record.wall_time_s, environment=record.environment,
                                        harness_version=record.harness_version)
    for listener in listeners:
        listener.finished(record)
    if on_record is not None:
        on_record(record)
    return record


def pending(trials: Iterable[Trial], store: TrialStore, resume: bool, on_record: OnRecord | None,
            done: list[TrialRecord], listeners: Sequence[TrialListener] = ()) -> Iterator[Trial]:
    """The trials to run, announced to the listeners first: with ``resume``, a trial with a finished
    record in ``store`` is skipped, its record shown to the listeners and handed to ``on_record`` (and appended to
    ``done``) instead."""
    announce(listeners, trials)
    for trial in trials:
        record = store.read_record(trial) if resume else None
        if record is not None and record.ok:
            done.append(record)
            for listener in listeners:
                listener.finished(record)
            if on_record is not None:
                on_record(record)
            continue
        yield trial


def trial_resources(cpus: float, gpus: float, cpus_per_trial: float | None, gpus_per_trial: float | None,
                    check: bool = True) -> tuple[float, float]:
    """(CPUs, GPUs) each trial holds where ``cpus`` and ``gpus`` are available: by default one GPU per trial
    where there are GPUs (else none), and the CPUs shared evenly between the GPUs (else one). With ``check``,
    a trial that needs more than there is raises ``ValueError`` naming the flags."""
    gpu = gpus_per_trial if gpus_per_trial is not None else (1.0 if gpus else 0.0)
    cpu = cpus_per_trial or default_cpus_per_trial(cpus, gpus, gpu)
    if check and (gpu > gpus or cpu > cpus):
        raise ValueError(f"a trial needs {cpu:g} CPU(s) and {gpu:g} GPU(s); this machine has {cpus:g} and {gpus:g} "
                         f"(see --cpus-per-trial / --gpus-per-trial)")
    return cpu, gpu


def trials_per_node(node_cpus: float, node_gpus: float, cpus: float, gpus: float, max_concurrent: int | None) -> int:
    """How many trials holding ``cpus`` and ``gpus`` each can run at once on a node of ``node_cpus`` and
    ``node_gpus`` (at most ``max_concurrent``; at least 1)."""
    fits = [n / each for n, each in ((node_cpus, cpus), (node_gpus, gpus)) if each > 0]
    most = math.floor(min(fits) + 1e-9) if fits else 1
    return max(1, min(most, max_concurrent) if max_concurrent else most)


class Executor(Protocol):
    """Runs trials; used as a context manager (``with ExecutorChoice(...).open(store, n) as executor``)."""

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc: Any) -> None: ...

    def run(self, trials: Iterable[Trial], *, resume: bool = False, on_epoch: OnEpoch | None = None,
            on_record: OnRecord | None = None) -> list[TrialRecord]:
        """Run the trials (pulled lazily) and return their records, in the order they finished."""


class LocalExecutor:
    """Runs trials one after another in this process, writing through ``store``. ``progress`` shows a
    progress bar per epoch (off when a listener draws a live table). ``cpus_per_trial`` sets torch's
    threads (default: as the Ray executor, :func:`default_cpus_per_trial`)."""

    def __init__(self, store: TrialStore, progress: bool = True, cpus_per_trial: int | None = None,
                 listeners: Sequence[TrialListener] | None = None):
        self.store = store
        self.listeners = list(listeners) if listeners is not None else [TrialBoard()]
        self.progress = progress and not any(getattr(x, "live_mode", False) for x in self.listeners)
        gpus = torch.cuda.device_count()
        self.cpus_per_trial = cpus_per_trial or int(trial_resources(os.cpu_count() or 1, gpus, None, None, check=False)[0])

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        for listener in self.listeners:
            listener.close()

    def run(self, trials: Iterable[Trial], *, resume: bool = False, on_epoch: OnEpoch | None = None,
            on_record: OnRecord | None = None) -> list[TrialRecord]:
        records: list[TrialRecord] = []
        for trial in pending(trials, self.store, resume, on_record, records, self.listeners):
            for listener in self.listeners:
                listener.started(trial)

            def epoch_hook(metrics: dict[str, Any], checkpoint: Any, trial: Trial = trial) -> bool:
                for listener in self.listeners:
                    listener.epoch(trial, metrics)
                return bool(on_epoch(trial, metrics)) if on_epoch else False

            record = execute_trial(trial.spec, trial.placement, self.store, Attempt(
                on_epoch=epoch_hook, resume=resume, progress=self.progress, threads=self.cpus_per_trial))
            records.append(deliver(record, self.store, on_record, self.listeners))
        return records
