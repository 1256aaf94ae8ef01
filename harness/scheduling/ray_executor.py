"""Ray Tune executor: each trial a Tune trial, on every GPU (or CPU core) of a machine or a cluster.

Trials reach Tune through a :class:`TrialFeeder` (a Tune ``Searcher`` that pulls the next
:class:`~harness.core.trial.Trial` from the caller's iterable whenever Tune has room), so a
harness-owned searcher proposes trials the same way for Ray as for the local executor. A Tune trial
runs :func:`harness.engine.runner.execute_trial` on its spec and placement, reports every epoch's metrics
and last its record, which the driver writes at once through the store its command handed the executor.
A worker necessarily builds its own store, for its node's view of the driver's results folder (that
folder itself where the node sees it, else one that relays the files: :mod:`trial_files`). Its files reach the driver's results folder
directly or through Ray (:mod:`harness.scheduling.trial_files`), so a trial whose worker or node
dies is restarted by Tune (up to ``max_failures`` times), on any node, from its last epoch
checkpoint; the record lists the nodes of its attempts. ``on_epoch`` runs on the driver as a Tune
stopper: a true answer stops (prunes) the trial.
Ray-version-specific calls go through :mod:`harness.scheduling.ray_compat`.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from harness.core.metrics import split_metric
from harness.core.placement import Placement
from harness.core.record import TrialRecord
from harness.core.registry import import_plugins
from harness.core.store import TrialStore
from harness.core.trial import Trial
from harness.engine.runner import Attempt, execute_trial
from harness.plugins.data.images import DECODED_CACHE_BYTES
from harness.core.store import atomic_write_text
from harness.core.warning_lines import print_warnings_on_one_line
from harness.scheduling import ray_compat, trial_files
from harness.scheduling import head_watch
from harness.scheduling.executors import OnEpoch, OnRecord, deliver, pending, trial_resources, trials_per_node
from harness.scheduling.progress import TrialBoard, TrialListener

#: the key of a trial's last result that carries its record (a JSON string)
RECORD_KEY = "record"
#: Tune experiment folders are named ``harness-<time>-pid<driver pid>``
RUN_PREFIX = "harness-"
#: the share of a node's memory that the decoded-image caches of its concurrent trials hold together
NODE_MEMORY_FOR_CACHES = 0.25


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


def trial_of(config: dict[str, Any]) -> Trial:
    """The trial of a Tune trial's config."""
    return Trial.from_dict(config["trial"])


def record_of(result: dict[str, Any] | None) -> TrialRecord | None:
    """The trial record a Tune result carries (its last one), else None."""
    return TrialRecord.from_dict(json.loads(result[RECORD_KEY])) if result and RECORD_KEY in result else None


@dataclass(frozen=True)
class WorkerSetup:
    """What a trial needs from the driver besides its spec and placement: the driver's folder (``cwd``, which
    relative paths of a placement are relative to) and import path, the plugins, its resources, and where its
    files go (the driver's results folder, absolute, its token and keeper: :mod:`trial_files`).

    Tune reuses a worker's process for many trials, so nothing here changes that process for the trials
    after it: no ``os.chdir``, no ``sys.path`` entry (:meth:`apply`, :meth:`place`)."""

    cwd: str
    results_dir: str
    sys_path: tuple[str, ...]
    plugins: tuple[str, ...]
    cpus: float
    gpus: float
    max_concurrent: int | None
    resume: bool
    token: str = ""
    keeper: Any = None

    def apply(self) -> None:
        """Import the driver's plugins in this worker: each from this process's import path, else from the
        driver's (``sys_path``, :func:`import_from`), ``sys.path`` itself unchanged; warnings print on one line."""
        print_warnings_on_one_line()
        for module in self.plugins:
            top = module.partition(".")[0]
            if top not in sys.modules and importlib.util.find_spec(top) is None:
                import_from(top, self.sys_path)
        import_plugins(self.plugins)  # what is left (submodules), and the one-line error for a missing one

    def path(self, path: str | None) -> str | None:
        """A placement's path as the driver meant it: a relative one is relative to the driver's folder."""
        return path if path is None or os.path.isabs(path) else os.path.join(self.cwd, path)

    def place(self, trial: Trial) -> Placement:
        """Where the trial runs here (its record keeps it beside the planned placement): its data and weights
        where the driver's relative paths point (:meth:`path`); on the CPU when it holds no GPU; a GPU trial
        that sets no data-loading workers gets one per CPU it holds beside the main one; its decoded images
        keep its share of its node's memory (:func:`decoded_cache_share`), a placement field, not a
        process-wide limit."""
        node_cpus, node_gpus, node_memory = ray_compat.node_capacity()
        placement = replace(trial.placement, image_cache_bytes=decoded_cache_share(
            node_memory, trials_per_node(node_cpus, node_gpus, self.cpus, self.gpus, self.max_concurrent)),
            data_root=self.path(trial.placement.data_root), pretrained=self.path(trial.placement.pretrained))
        if not self.gpus and placement.device == "auto":
            placement = replace(placement, device="cpu")
        if self.gpus and placement.num_workers == 0:
            placement = replace(placement, num_workers=max(0, int(self.cpus) - 1))
        return placement


def import_from(name: str, folders: Sequence[str]) -> None:
    """Import the top-level module ``name`` from ``folders`` (another process's import path) where it lies
    there, without adding them to ``sys.path``: the module (a package finds its submodules through its own
    ``__path__``) joins ``sys.modules``; nothing happens where it is not found."""
    spec = importlib.machinery.PathFinder.find_spec(name, list(folders))
    if spec is None or spec.loader is None:
        return
    sys.modules[name] = module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def tune_trial(config: dict[str, Any], setup: WorkerSetup) -> None:
    """One Tune trial: per-epoch reports, then the record. A restarted attempt (its worker or node
    died) or, with ``resume``, any attempt continues from the trial's epoch checkpoint; a first
    attempt without ``resume`` starts afresh."""
    setup.apply()
    trial = trial_of(config)
    restarted = ray_compat.call(setup.keeper.attempt, trial.trial_id) > 0
    with trial_files.store_for(setup.results_dir, setup.token, setup.keeper) as store:  # this node's view of it
        if not (restarted or setup.resume):
            store.delete_checkpoint(trial)
        record = execute_trial(trial.spec, trial.placement, store, Attempt(
            on_epoch=lambda metrics, checkpoint: ray_compat.report(metrics), resume=restarted or setup.resume,
            progress=False, threads=max(1, int(setup.cpus)), node=ray_compat.this_node(),
            placement=setup.place(trial)))
    ray_compat.report({split_metric(trial.spec.eval_split, k): v for k, v in record.metrics.items()}
                      | {RECORD_KEY: json.dumps(record.to_dict(), default=str)})


class DriverOnly:
    """A Tune plugin that lives in the driver: Tune pickles its experiment state (for ``Tuner.restore``,
    which the harness does not use: resume reads the results folder), so it pickles as empty."""

    def __getstate__(self) -> dict[str, Any]:
        return {}


class TrialFeeder(DriverOnly, ray_compat.Searcher):
    """Feeds Tune the trials of an iterable, one each time Tune has room for another."""

    def __init__(self, trials: Iterator[Trial]):
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
    """Driver side: delivers each trial's record into ``store`` the moment it arrives; tells the listeners
    of every trial's start and epochs."""

    def __init__(self, store: TrialStore, pruner: Pruner, on_record: OnRecord | None,
                 listeners: Sequence[TrialListener]):
        self.store = store
        self.pruner = pruner
        self.on_record = on_record
        self.listeners = listeners
        self.records: list[TrialRecord] = []

    def _deliver(self, record: TrialRecord) -> None:
        self.records.append(deliver(record, self.store, self.on_record, self.listeners))

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
            pruned = trial_of(trial.config)
            self.store.delete_checkpoint(pruned)
            self._deliver(TrialRecord(trial_id=pruned.trial_id, status="pruned", spec=pruned.spec,
                                      placement=pruned.placement,
                                      error=f"pruned after epoch {trial.last_result.get('epoch')}"))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"{trial_of(trial.config).trial_id}: its worker died ({ray_compat.trial_error(trial)}); "
              "restarting it from its last checkpoint", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The trial's worker died more often than ``max_failures`` allows: a failed record with Ray's reason."""
        self._deliver(TrialRecord.failed(trial_of(trial.config), f"Ray: {ray_compat.trial_error(trial)}"))


class RayExecutor:
    """Runs trials as Ray Tune trials, their records written through ``store`` by the driver; use as a
    context manager (connects to Ray, shuts down what it started).

    ``gpus_per_trial`` may be a fraction (0.25 packs four trials on a GPU); default one GPU per trial
    where the cluster has GPUs, else CPU only. ``cpus_per_trial`` (default: the cluster's CPUs shared
    evenly between its GPUs, or 1 without GPUs) also sets torch's threads and, for GPU trials that
    set none, the data-loading workers (the CPUs left beside the main one). The trials that can run at
    once on a node share a quarter of its memory for decoded images (:func:`decoded_cache_share`).
    ``storage`` is where Tune keeps its experiment state (a folder or URI; default ``<results>/ray``):
    Tune's scratch space, removed after each run, since the trial records and checkpoints in the
    results folder are what resume reads. No folder needs to be shared between nodes.
    """

    def __init__(self, store: TrialStore, *, gpus_per_trial: float | None = None,
                 cpus_per_trial: float | None = None, max_concurrent: int | None = None, address: str | None = None,
                 storage: str | None = None, max_failures: int = 2, plugins: tuple[str, ...] = (),
                 listeners: Sequence[TrialListener] | None = None, dashboard: bool = False):
        self.store = store
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
        self._head_watch: Any = None  # the watcher process (head_watch.start) when joining a cluster

    def __enter__(self) -> "RayExecutor":
        self._started = ray_compat.init(self.address, dashboard=self.dashboard)
        if ray_compat.is_address_given(self.address):  # a cluster's head may be lost: exit naming --resume
            self._head_watch = head_watch.start(ray_compat.address())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._head_watch is not None:
            self._head_watch.terminate()
            self._head_watch.wait()
            self._head_watch = None
        for listener in self.listeners:
            listener.close()
        if self._started:
            ray_compat.shutdown()
            self._started = False

    def resources(self) -> tuple[float, float]:
        """(CPUs, GPUs) each trial holds, checked against the cluster."""
        cpus, gpus, _ = ray_compat.cluster_resources()
        return trial_resources(cpus, gpus, self.cpus_per_trial, self.gpus_per_trial,
                               check=not ray_compat.is_address_given(self.address))

    @staticmethod
    def slots(cpu: float, gpu: float) -> int:
        """Trials of ``cpu`` CPUs and ``gpu`` GPUs the whole cluster runs at once: Tune starts that many
        at once (left unbounded, it would start one trial's worker at a time when trials come from a
        searcher, and give the next trial to the first worker that is free)."""
        cpus, gpus, _ = ray_compat.cluster_resources()
        return trials_per_node(cpus, gpus, cpu, gpu, None)

    def run(self, trials: Iterable[Trial], *, resume: bool = False, on_epoch: OnEpoch | None = None,
            on_record: OnRecord | None = None) -> list[TrialRecord]:
        cpu, gpu = self.resources()
        storage = ray_compat.storage_path(self.storage, self.store.tune_dir)
        done: list[TrialRecord] = []
        feeder = TrialFeeder(pending(trials, self.store, resume, on_record, done, self.listeners))
        pruner = Pruner(on_epoch)
        collector = RecordCollector(self.store, pruner, on_record, self.listeners)
        ray_compat.delete_stale_experiments(storage, RUN_PREFIX, driver_alive)
        run_name = f"{RUN_PREFIX}{datetime.now():%Y%m%d-%H%M%S-%f}-pid{os.getpid()}"
        token = self.store.root / trial_files.visibility_token(run_name)
        atomic_write_text(token, run_name)
        keeper = ray_compat.driver_actor(trial_files.ResultsKeeper, str(self.store.root.resolve()))
        setup = WorkerSetup(cwd=os.getcwd(), results_dir=str(self.store.root.resolve()),
                            sys_path=tuple(p for p in sys.path if p), plugins=self.plugins, cpus=cpu, gpus=gpu,
                            max_concurrent=self.max_concurrent, resume=resume, token=token.name, keeper=keeper)
        try:
            ray_compat.fit(tune_trial, {"cpu": cpu, "gpu": gpu}, name=run_name, storage=storage,
                           trainable_kwargs={"setup": setup}, search_alg=feeder, stopper=pruner, num_samples=-1,
                           max_concurrent=self.max_concurrent or self.slots(cpu, gpu), max_failures=self.max_failures, callbacks=[collector],
                           trial_dirname=lambda config: trial_of(config).trial_id)
        finally:
            ray_compat.delete_experiment(storage, run_name)
            ray_compat.kill_actor(keeper)
            token.unlink(missing_ok=True)
        return done + collector.records
