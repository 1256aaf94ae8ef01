"""Ray Tune executor: each trial a Tune trial, on every GPU (or CPU core) of a machine or a cluster.

Trials reach Tune through a :class:`TrialFeeder` (a Tune ``Searcher`` that pulls the next
:class:`~harness.core.config.TrialConfig` from the caller's iterable whenever Tune has room), so a
harness-owned searcher proposes trials the same way for Ray as for the local executor. A Tune trial
runs :func:`harness.engine.trial.execute_trial` on its config, reports every epoch's metrics with the
epoch checkpoint (so a trial whose worker dies restarts from its last epoch, up to ``max_failures``
times, through Tune's own fault tolerance) and last reports its record, which the driver writes at
once. ``on_epoch`` runs on the driver as a Tune stopper: a true answer stops (prunes) the trial.
Ray-version-specific calls go through :mod:`harness.scheduling.ray_compat`.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from harness.core.config import TrialConfig
from harness.core.record import TrialRecord
from harness.core.registry import import_plugins
from harness.core.store import TrialStore
from harness.engine.trial import execute_trial
from harness.plugins.data.images import DECODED_CACHE_BYTES, limit_decoded_cache
from harness.scheduling import ray_compat
from harness.scheduling.executors import OnEpoch, OnRecord, deliver, pending
from harness.scheduling.progress import TrialBoard, TrialListener

#: the key of a trial's last result that carries its record (a JSON string)
RECORD_KEY = "record"
#: Tune experiment folders are named ``harness-<time>-pid<driver pid>``
RUN_PREFIX = "harness-"
#: the share of a node's memory that the decoded-image caches of its concurrent trials hold together
NODE_MEMORY_FOR_CACHES = 0.25


def trials_per_node(node_cpus: float, node_gpus: float, cpus: float, gpus: float, max_concurrent: int | None) -> int:
    """How many trials holding ``cpus`` and ``gpus`` each can run at once on a node of ``node_cpus`` and
    ``node_gpus`` (at most ``max_concurrent``; at least 1)."""
    fits = [n / each for n, each in ((node_cpus, cpus), (node_gpus, gpus)) if each > 0]
    most = math.floor(min(fits) + 1e-9) if fits else 1
    return max(1, min(most, max_concurrent) if max_concurrent else most)


def decoded_cache_share(node_memory: int, trials: int) -> int:
    """Bytes of decoded images each of ``trials`` concurrent trials on a node of ``node_memory`` bytes
    may keep: :data:`NODE_MEMORY_FOR_CACHES` of the node shared evenly, at most the per-process default
    (four packed trials on a 128 GiB node keep 2 GiB each; thirty-two keep 1 GiB each)."""
    return min(DECODED_CACHE_BYTES, int(node_memory * NODE_MEMORY_FOR_CACHES) // trials)


def driver_alive(run_name: str) -> bool:
    """Whether the driver that named a Tune experiment folder still runs (on this machine)."""
    pid = run_name.rpartition("-pid")[2]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trial_of(config: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of a Tune trial's config."""
    return TrialConfig.from_dict(config["trial"])


def record_of(result: dict[str, Any] | None) -> TrialRecord | None:
    """The trial record a Tune result carries (its last one), else None."""
    return TrialRecord.from_dict(json.loads(result[RECORD_KEY])) if result and RECORD_KEY in result else None


@dataclass(frozen=True)
class WorkerSetup:
    """What a trial needs from the driver besides its config: where to run, what to import, its resources."""

    cwd: str
    sys_path: tuple[str, ...]
    plugins: tuple[str, ...]
    cpus: float
    gpus: float
    max_concurrent: int | None
    resume: bool

    def apply(self) -> None:
        """Prepare this worker process: the driver's folder and import path, the plugins, and this
        trial's share of its node's memory for decoded images."""
        if os.path.isdir(self.cwd):  # the driver's folder: relative --data-root and --results-dir resolve as there
            os.chdir(self.cwd)
        sys.path.extend(p for p in self.sys_path if p not in sys.path)
        import_plugins(self.plugins)
        node_cpus, node_gpus, node_memory = ray_compat.node_capacity()
        limit_decoded_cache(decoded_cache_share(
            node_memory, trials_per_node(node_cpus, node_gpus, self.cpus, self.gpus, self.max_concurrent)))

    def place(self, trial: TrialConfig) -> TrialConfig:
        """The trial as it runs here: on the CPU when it holds no GPU; a GPU trial that sets no
        data-loading workers gets one per CPU it holds beside the main one."""
        if not self.gpus and trial.device == "auto":
            trial = replace(trial, device="cpu")
        if self.gpus and trial.num_workers == 0:
            trial = replace(trial, num_workers=max(0, int(self.cpus) - 1))
        return trial


def tune_trial(config: dict[str, Any], setup: WorkerSetup) -> None:
    """One Tune trial: per-epoch reports with the checkpoint, then the record. Continues from the
    checkpoint Tune restored after a worker death or, with ``resume``, from the one in the trial folder."""
    setup.apply()
    trial = setup.place(trial_of(config))
    with ray_compat.restored_checkpoint() as restored:
        record = execute_trial(trial, on_epoch=lambda metrics, checkpoint: ray_compat.report(metrics, checkpoint),
                               restored=restored, resume=setup.resume, progress=False,
                               threads=max(1, int(setup.cpus)))
    ray_compat.report({f"{trial.eval_split}_{k}": v for k, v in record.metrics.items()}
                      | {RECORD_KEY: json.dumps(record.to_dict(), default=str)})


class DriverOnly:
    """A Tune plugin that lives in the driver: Tune pickles its experiment state (for ``Tuner.restore``,
    which the harness does not use: resume reads the results folder), so it pickles as empty."""

    def __getstate__(self) -> dict[str, Any]:
        return {}


class TrialFeeder(DriverOnly, ray_compat.Searcher):
    """Feeds Tune the trials of an iterable, one each time Tune has room for another."""

    def __init__(self, trials: Iterator[TrialConfig]):
        super().__init__()
        self.trials = trials

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        trial = next(self.trials, None)
        return self.FINISHED if trial is None else {"trial": trial.to_dict()}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Records are the :class:`RecordCollector`'s to handle."""


class Pruner(DriverOnly, ray_compat.Stopper):
    """Asks ``on_epoch`` after every epoch result whether to stop the trial."""

    def __init__(self, on_epoch: OnEpoch | None):
        self.on_epoch = on_epoch
        self.pruned: set[str] = set()

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.on_epoch is None or RECORD_KEY in result or "epoch" not in result:
            return False
        if self.on_epoch(trial_of(result["config"]), ray_compat.trial_metrics(result)):
            self.pruned.add(trial_id)
            return True
        return False

    def stop_all(self) -> bool:
        return False


class RecordCollector(DriverOnly, ray_compat.Callback):
    """Driver side: delivers each trial's record the moment it arrives; tells the listeners of every
    trial's start and epochs."""

    def __init__(self, pruner: Pruner, on_record: OnRecord | None, listeners: Sequence[TrialListener]):
        self.pruner = pruner
        self.on_record = on_record
        self.listeners = listeners
        self.records: list[TrialRecord] = []

    def _deliver(self, record: TrialRecord) -> None:
        self.records.append(deliver(record, self.on_record, self.listeners))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for listener in self.listeners:
            listener.started(trial_of(trial.config))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        record = record_of(result)
        if record is not None:
            self._deliver(record)
        elif "epoch" in result:
            metrics = ray_compat.trial_metrics(result)
            for listener in self.listeners:
                listener.epoch(trial_of(trial.config), metrics)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.pruner.pruned:
            config = trial_of(trial.config)
            TrialStore(config.results_dir).delete_checkpoint(config)
            self._deliver(TrialRecord(trial_id=config.trial_id, status="pruned", config=config,
                                      error=f"pruned after epoch {trial.last_result.get('epoch')}"))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"{trial_of(trial.config).trial_id}: its worker died ({ray_compat.trial_error(trial)}); "
              "restarting it from its last checkpoint", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The trial's worker died more often than ``max_failures`` allows: a failed record with Ray's reason."""
        self._deliver(TrialRecord.failed(trial_of(trial.config), f"Ray: {ray_compat.trial_error(trial)}"))


class RayExecutor:
    """Runs trials as Ray Tune trials; use as a context manager (connects to Ray, shuts down what it started).

    ``gpus_per_trial`` may be a fraction (0.25 packs four trials on a GPU); default one GPU per trial
    where the cluster has GPUs, else CPU only. ``cpus_per_trial`` (default: the cluster's CPUs shared
    evenly between its GPUs, or 1 without GPUs) also sets torch's threads and, for GPU trials that
    set none, the data-loading workers (the CPUs left beside the main one). The trials that can run at
    once on a node share a quarter of its memory for decoded images (:func:`decoded_cache_share`).
    ``storage`` is where Tune keeps its experiment state and per-trial checkpoints (a shared folder or
    URI on a cluster of several nodes; default ``<results>/ray``): it is Tune's scratch space, removed
    after each run, since the trial records and checkpoints in the results folder are what resume reads.
    """

    def __init__(self, results_dir: str = "results", *, gpus_per_trial: float | None = None,
                 cpus_per_trial: float | None = None, max_concurrent: int | None = None, address: str | None = None,
                 storage: str | None = None, max_failures: int = 2, plugins: tuple[str, ...] = (),
                 listeners: Sequence[TrialListener] | None = None, dashboard: bool = False):
        self.store = TrialStore(results_dir)
        self.gpus_per_trial = gpus_per_trial
        self.cpus_per_trial = cpus_per_trial
        self.max_concurrent = max_concurrent
        self.address = address
        self.storage = storage
        self.max_failures = max_failures
        self.plugins = tuple(plugins)
        self.listeners = list(listeners) if listeners is not None else [TrialBoard()]
        self.dashboard = dashboard
        self._started = False

    def __enter__(self) -> "RayExecutor":
        self._started = ray_compat.init(self.address, dashboard=self.dashboard)
        return self

    def __exit__(self, *exc: Any) -> None:
        for listener in self.listeners:
            listener.close()
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
        storage = ray_compat.storage_path(self.storage, self.store.tune_dir)
        _, _, nodes = ray_compat.cluster_resources()
        if nodes > 1 and not self.storage:
            raise ValueError(f"the cluster has {nodes} nodes: pass --storage, a folder every node shares "
                             "or an object-store URI (s3://..., gs://...)")
        return storage

    def run(self, trials: Iterable[TrialConfig], *, resume: bool = False, on_epoch: OnEpoch | None = None,
            on_record: OnRecord | None = None) -> list[TrialRecord]:
        cpu, gpu = self.resources()
        storage = self._storage()
        done: list[TrialRecord] = []
        feeder = TrialFeeder(pending(trials, resume, on_record, done, self.listeners))
        pruner = Pruner(on_epoch)
        collector = RecordCollector(pruner, on_record, self.listeners)
        setup = WorkerSetup(cwd=os.getcwd(), sys_path=tuple(p for p in sys.path if p), plugins=self.plugins,
                            cpus=cpu, gpus=gpu, max_concurrent=self.max_concurrent, resume=resume)
        ray_compat.delete_stale_experiments(storage, RUN_PREFIX, driver_alive)
        run_name = f"{RUN_PREFIX}{datetime.now():%Y%m%d-%H%M%S-%f}-pid{os.getpid()}"
        try:
            ray_compat.fit(tune_trial, {"cpu": cpu, "gpu": gpu}, name=run_name, storage=storage,
                           trainable_kwargs={"setup": setup}, search_alg=feeder, stopper=pruner, num_samples=-1,
                           max_concurrent=self.max_concurrent, max_failures=self.max_failures, callbacks=[collector],
                           trial_dirname=lambda config: trial_of(config).trial_id)
        finally:
            ray_compat.delete_experiment(storage, run_name)
        return done + collector.records
