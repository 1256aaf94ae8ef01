"""Ray Tune executor: each trial a Tune trial, on every GPU (or CPU core) of a machine or a cluster.

A Tune trial runs :func:`harness.scheduling.executors.execute_trial` on its config (``{"trial": TrialConfig
dict}``), reports every epoch's metrics with a checkpoint (so a trial whose worker dies restarts from
its last epoch, up to ``max_failures`` times) and last reports its record, which the driver writes
at once. Ray-version-specific calls go through :mod:`harness.scheduling.ray_compat`.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from harness.scheduling import ray_compat
from harness.core.config import TrialConfig
from harness.scheduling.executors import execute_trial, pending_trials, resume_checkpoint, write_record
from harness.core.registry import import_plugins
from harness.core.store import ResultStore
from harness.engine.trial import CHECKPOINT_FILE, failed_record

#: the key of a trial's last result that carries its record (a JSON string)
RECORD_KEY = "record"


def trial_of(config: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of a Tune trial's config."""
    return TrialConfig.from_dict(config["trial"])


def record_of(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The trial record a Tune result carries (its last one), else None."""
    return json.loads(result[RECORD_KEY]) if result and RECORD_KEY in result else None


def final_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A record's metrics named by split, as reported last: ``val_recall@1`` (search) or ``test_recall@1``."""
    split = record["config"]["eval_split"]
    return {f"{split}_{k}": v for k, v in record["metrics"].items()}


@dataclass(frozen=True)
class WorkerSetup:
    """What a trial needs from the driver besides its config: where to run, what to import, its resources."""

    cwd: str
    sys_path: tuple[str, ...]
    plugins: tuple[str, ...]
    cpus: float
    gpus: float
    resume: bool

    def apply(self) -> None:
        if os.path.isdir(self.cwd):  # the driver's folder: relative --data-root and --results-dir resolve as there
            os.chdir(self.cwd)
        sys.path.extend(p for p in self.sys_path if p not in sys.path)
        import_plugins(self.plugins)

    def place(self, trial: TrialConfig) -> TrialConfig:
        """The trial as it runs here: on the CPU when it holds no GPU; a GPU trial that sets no
        data-loading workers gets one per CPU it holds beside the main one."""
        if not self.gpus and trial.device == "auto":
            trial = replace(trial, device="cpu")
        if self.gpus and trial.num_workers == 0:
            trial = replace(trial, num_workers=max(0, int(self.cpus) - 1))
        return trial


def _report_epoch(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
    ray_compat.report(metrics, checkpoint_dir, files=(CHECKPOINT_FILE,))


def tune_trial(config: dict[str, Any], setup: WorkerSetup) -> None:
    """One Tune trial: the trial config's record, after per-epoch reports; resumes from Tune's checkpoint
    after a worker death, or (with ``resume``) from the epoch checkpoint an interrupted run left."""
    setup.apply()
    trial = setup.place(trial_of(config))
    with ray_compat.restored_checkpoint() as restored:
        resume_from = restored or resume_checkpoint(trial, setup.resume)
        record = execute_trial(trial.to_dict(), report=_report_epoch, resume_from=resume_from, progress=False,
                               threads=max(1, int(setup.cpus)))
    ray_compat.report({**final_metrics(record), RECORD_KEY: json.dumps(record, default=str)})


class RecordWriter(ray_compat.Callback):
    """Driver side: writes each trial's record the moment it arrives; prints one line per epoch."""

    def __init__(self, store: ResultStore, progress: bool = True):
        self.store = store
        self.progress = progress
        self.records: list[dict[str, Any]] = []

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        record = record_of(result)
        if record is not None:
            self.records.append(write_record(self.store, record))
        elif self.progress and "epoch" in result:
            cfg = trial_of(trial.config)
            scores = " ".join(f"{k} {result[k]:.4f}" for k in ("loss", "val_recall@1") if k in result)
            print(f"{cfg.trial_id} epoch {result['epoch']}/{cfg.recipe['epochs']} {scores}", flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"{trial_of(trial.config).trial_id}: its worker died ({ray_compat.trial_error(trial)}); "
              "restarting it from its last checkpoint", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The trial's worker died more often than ``max_failures`` allows: a failed record with Ray's reason."""
        record = failed_record(trial.config["trial"], f"Ray: {ray_compat.trial_error(trial)}")
        self.records.append(write_record(self.store, record))


class RayExecutor:
    """Runs trials as Ray Tune trials; use as a context manager (connects to Ray, shuts down what it started).

    ``gpus_per_trial`` may be a fraction (0.25 packs four trials on a GPU); default one GPU per trial
    where the cluster has GPUs, else CPU only. ``cpus_per_trial`` (default: the cluster's CPUs shared
    evenly between its GPUs, or 1 without GPUs) also sets torch's threads and, for GPU trials that
    set none, the data-loading workers (the CPUs left beside the main one). ``storage`` is where Tune
    keeps its experiment state and per-trial checkpoints (a shared folder or URI on a cluster of
    several nodes; default ``<results>/ray``); its experiment folder is removed after each run.
    """

    def __init__(self, store: ResultStore, *, gpus_per_trial: float | None = None, cpus_per_trial: float | None = None,
                 max_concurrent: int | None = None, address: str | None = None, storage: str | None = None,
                 max_failures: int = 2, plugins: tuple[str, ...] = (), progress: bool = True):
        self.store = store
        self.gpus_per_trial = gpus_per_trial
        self.cpus_per_trial = cpus_per_trial
        self.max_concurrent = max_concurrent
        self.address = address
        self.storage = storage
        self.max_failures = max_failures
        self.plugins = tuple(plugins)
        self.progress = progress
        self._started = False

    def __enter__(self) -> "RayExecutor":
        self._started = ray_compat.init(self.address)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            ray_compat.shutdown()
            self._started = False

    def resources(self) -> tuple[float, float]:
        """(CPUs, GPUs) each trial holds, checked against the cluster."""
        cpus, gpus, _ = ray_compat.cluster_resources()
        gpu = self.gpus_per_trial if self.gpus_per_trial is not None else (1.0 if gpus else 0.0)
        cpu = self.cpus_per_trial or (max(1.0, math.floor(cpus * gpu / gpus)) if gpu and gpus else 1.0)
        if not ray_compat.is_address_given(self.address) and (gpu > gpus or cpu > cpus):
            raise ValueError(f"a trial needs {cpu:g} CPU(s) and {gpu:g} GPU(s); this machine has {cpus:g} and {gpus:g} "
                             f"(see --cpus-per-trial / --gpus-per-trial)")
        return cpu, gpu

    def _storage(self) -> str:
        storage = ray_compat.storage_path(self.storage, self.store.root / "ray")
        _, _, nodes = ray_compat.cluster_resources()
        if nodes > 1 and not self.storage:
            raise ValueError(f"the cluster has {nodes} nodes: pass --storage, a folder every node shares "
                             "or an object-store URI (s3://..., gs://...)")
        return storage

    def tune(self, name: str, *, trials: list[TrialConfig] | None = None, searcher: Any = None,
             num_samples: int = 1, scheduler: Any = None, metric: str | None = None, resume: bool = False,
             store: ResultStore | None = None) -> list[dict[str, Any]]:
        """Run ``trials`` (a grid, one Tune trial each) or ``num_samples`` trials proposed by ``searcher``
        (a Tune Searcher whose configs are ``{"trial": TrialConfig dict}``); return the records written
        (to ``store``, default the executor's)."""
        cpu, gpu = self.resources()
        storage = self._storage()
        writer = RecordWriter(store or self.store, self.progress)
        setup = WorkerSetup(cwd=os.getcwd(), sys_path=tuple(p for p in sys.path if p), plugins=self.plugins,
                            cpus=cpu, gpus=gpu, resume=resume)
        param_space = {"trial": ray_compat.grid([t.to_dict() for t in trials])} if trials is not None else None
        run_name = f"{name}-{datetime.now():%Y%m%d-%H%M%S-%f}"
        try:
            ray_compat.fit(tune_trial, {"cpu": cpu, "gpu": gpu}, name=run_name, storage=storage,
                           trainable_kwargs={"setup": setup}, param_space=param_space, search_alg=searcher,
                           scheduler=scheduler, num_samples=num_samples, metric=metric,
                           mode="max" if metric else None, max_concurrent=self.max_concurrent,
                           max_failures=self.max_failures, callbacks=[writer],
                           trial_dirname=lambda config: trial_of(config).trial_id)
        finally:
            ray_compat.delete_experiment(storage, run_name)
        return writer.records

    def run(self, trials: list[TrialConfig], resume: bool = False) -> list[dict[str, Any]]:
        """Run the trials (with ``resume``: only those without a finished record); return the records written."""
        todo = pending_trials(trials, self.store, resume)
        if not todo:
            return []
        print(f"running {len(todo)} trial(s) on Ray", flush=True)
        return self.tune(todo[0].experiment, trials=todo, resume=resume)
