"""The one module that touches Ray APIs which moved between Ray 2.x releases.

Tune's function API (``report``, ``get_checkpoint``, ``Checkpoint``) and its run configuration
(``RunConfig``, ``FailureConfig``, ``CheckpointConfig``) live in ``ray.tune`` since Ray 2.41 and in
``ray.train`` before; output verbosity, the trial working directory, storage and ``ray.init``'s
arguments also changed. Everything else in the harness calls the functions below.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import ray
from ray import tune
from ray.tune import result as tune_result
from ray.tune.search import Searcher

try:  # Ray >= 2.41: the Tune function API lives in ray.tune
    from ray.tune import report as _tune_report
except ImportError:  # Ray 2.40
    from ray.train import report as _tune_report

RunConfig = getattr(tune, "RunConfig", None) or ray.train.RunConfig
FailureConfig = getattr(tune, "FailureConfig", None) or ray.train.FailureConfig
Callback = tune.Callback
Stopper = tune.Stopper

__all__ = ["Callback", "Searcher", "Stopper", "delete_stale_experiments", "init", "shutdown", "address",
           "is_address_given", "cluster_resources", "node_capacity", "this_node", "driver_actor", "call", "kill_actor",
           "report", "fit", "trial_error", "storage_path", "delete_experiment"]

#: Ray's session and log folders (short: Ray's Unix sockets live there)
TEMP_DIR = "/tmp/ray"
#: the only interface a locally started Ray listens on
LOCALHOST = "127.0.0.1"


def _quiet() -> None:
    """Silence Tune's console output (the old reporter at verbosity 0 prints nothing) and let Ctrl+C
    stop the driver at once (Tune's own handler would end the run "gracefully" and return normally)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # a result without the searched metric (a failed trial's last one) is the harness's to judge, not an error
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a trial's failure is reported by the harness (restart line, failed record), not as Tune's traceback
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def is_address_given(address: str | None) -> bool:
    """Whether ``init`` joins an existing cluster rather than starting one. The address is given, never read
    from the environment here: the CLI reads ``RAY_ADDRESS`` as ``--address``'s default."""
    return bool(address)


def init(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
         dashboard: bool = False) -> bool:
    """Connect to Ray unless already connected; returns whether this call connected (so should shut down).

    With an ``address`` (``auto`` or host:port; a cluster with token authentication also needs
    ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``) it joins that cluster; otherwise it starts a new local
    instance (never another Ray that runs on this machine) bound to 127.0.0.1 with ``num_cpus`` and
    ``num_gpus`` (default: what this machine has), the dashboard off unless asked (then on 127.0.0.1
    too), workers' output kept in their log files under ``/tmp/ray``, only Ray's errors on the
    console, and a watcher that ends the processes this
    command started (Ray's included) when it ends, even by ``kill -9`` (:mod:`harness.scheduling.reaper`).
    """
    _quiet()
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"include_dashboard": dashboard, "log_to_driver": False, "logging_level": logging.ERROR}
    if is_address_given(address):
        with loopback_only() if joins_loopback(address) else contextlib.nullcontext():
            ray.init(address=address, **common)
        return True
    start_reaper()
    with loopback_only():
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, _temp_dir=TEMP_DIR,
                 _node_ip_address=LOCALHOST, dashboard_host=LOCALHOST, **common)
    return True


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Ray resolves 127.0.0.1 to the machine's network address unless its (private) cluster switch is
    off, as on a laptop; off, a Ray started here (GCS, raylets, workers, agents) listens on the
    loopback only, and a driver joining such a Ray takes 127.0.0.1 as its own address too."""
    from ray._private import ray_constants

    switch = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = switch


def joins_loopback(address: str | None) -> bool:
    """Whether ``address`` (``auto`` or host:port) names a Ray on this machine's loopback (``auto``: the Ray
    that Ray itself finds, through ``RAY_ADDRESS`` or this machine's latest session)."""
    from ray._private.services import get_ray_address_from_environment

    target = address if address and address != "auto" else get_ray_address_from_environment("auto", TEMP_DIR)
    host = (target or "").split("://")[-1].rpartition(":")[0].strip("[]")
    return host in (LOCALHOST, "localhost", "::1")


def start_reaper() -> None:
    """Start the watcher of this process (:mod:`harness.scheduling.reaper`), in its own session so
    that a signal to this process's group leaves it to clean up."""
    subprocess.Popen([sys.executable, "-m", "harness.scheduling.reaper", str(os.getpid())], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def shutdown() -> None:
    ray.shutdown()


def address() -> str:
    """The address other drivers join this Ray cluster at (``--address``)."""
    return ray.get_runtime_context().gcs_address


def node_capacity() -> tuple[float, float, int]:
    """(CPUs, GPUs, memory in bytes) of the node this process runs on: Ray's count of its CPUs and
    GPUs, and its physical memory."""
    node_id = ray.get_runtime_context().get_node_id()
    resources = next(node["Resources"] for node in ray.nodes() if node["NodeID"] == node_id)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), int(memory)


def cluster_resources() -> tuple[float, float, int]:
    """(CPUs, GPUs, alive nodes) of the connected cluster."""
    total = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return float(total.get("CPU", 0)), float(total.get("GPU", 0)), nodes


#: what Tune adds to every result besides the trial's own metrics (process, node, timing, iteration)
_TUNE_RESULT_KEYS = frozenset((*tune_result.AUTO_RESULT_KEYS, tune_result.DONE, tune_result.TRIAL_ID,
                               tune_result.EXPERIMENT_TAG, tune_result.SHOULD_CHECKPOINT))


def trial_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a trial reported in a Tune result, without what Tune adds (``pid``, ``timestamp``, ...)."""
    return {k: v for k, v in result.items()
            if k not in _TUNE_RESULT_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def report(metrics: dict[str, Any]) -> None:
    """Report one result of a running Tune trial."""
    _tune_report(metrics)


def this_node() -> dict[str, str]:
    """The Ray node this process runs on: its node id and host name."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "host": platform.node()}


def driver_actor(cls: type, *args: Any) -> Any:
    """An actor of ``cls`` on this (the driver's) node, holding no CPU."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(cls).options(scheduling_strategy=here).remote(*args)


def call(method: Any, *args: Any) -> Any:
    """Call an actor's method and wait for its answer."""
    return ray.get(method.remote(*args))


def kill_actor(actor: Any) -> None:
    ray.kill(actor)


def trial_error(trial: Any) -> str:
    """One line on a Tune trial's latest failure (its worker died, or its function raised)."""
    local = Path(trial.error_file) if getattr(trial, "error_file", None) else None
    text = local.read_text() if local and local.exists() else str(trial.get_error() or "")
    lines = [line.strip() for line in text.rsplit("Failure # ", 1)[-1].splitlines()[1:] if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", line)]
    return (raised or lines or [f"Ray trial {trial.trial_id} failed"])[-1 if raised else 0]


def fit(trainable: Callable[..., None], resources: dict[str, float], *, name: str, storage: str,
        trainable_kwargs: dict[str, Any] | None = None, search_alg: Searcher | None = None,
        stopper: Stopper | None = None, num_samples: int = 1, max_concurrent: int | None = None,
        max_failures: int = 0, callbacks: list | None = None,
        trial_dirname: Callable[[dict], str] | None = None) -> None:
    """Run a Tune experiment of function trials, each holding ``resources`` (``cpu``, ``gpu``, fractions ok).

    A trial whose worker dies is restarted up to ``max_failures`` times (it finds its own epoch
    checkpoint: Tune keeps none). ``trainable_kwargs`` reach every trial through Ray's object
    store. Actors are reused between trials (no re-import per trial). Results reach the caller
    through ``callbacks`` (and ``search_alg``); Tune's result grid is not used.
    """
    _quiet()
    dirname = (lambda trial: f"{trial_dirname(trial.config)}_{trial.trial_id}") if trial_dirname else None
    tune_config = tune.TuneConfig(
        search_alg=search_alg, num_samples=num_samples,
        max_concurrent_trials=max_concurrent or None, reuse_actors=True, trial_dirname_creator=dirname,
    )
    run_config = RunConfig(
        name=name, storage_path=storage, verbose=0, callbacks=callbacks, stop=stopper,
        failure_config=FailureConfig(max_failures=max_failures),
    )
    trainable = tune.with_parameters(trainable, **trainable_kwargs) if trainable_kwargs else trainable
    tuner = tune.Tuner(tune.with_resources(trainable, resources),
                       tune_config=tune_config, run_config=run_config)
    tuner.fit()


def storage_path(storage: str | None, default: str | Path) -> str:
    """Tune's storage: a URI (``s3://``, ``gs://``...) as given, a folder as an absolute path."""
    if storage and "://" in storage:
        return storage
    return str(Path(storage or default).expanduser().resolve())


def delete_stale_experiments(storage: str, prefix: str, alive: Callable[[str], bool]) -> None:
    """Remove the experiment folders named ``<prefix>...`` of a local ``storage`` whose driver is gone
    (``alive(name)`` false): what a killed run left behind."""
    if "://" in storage or not Path(storage).is_dir():
        return
    for folder in Path(storage).glob(f"{prefix}*"):
        if folder.is_dir() and not alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)


def delete_experiment(storage: str, name: str) -> None:
    """Remove one experiment's folder (its Tune state and leftover checkpoints) from the storage."""
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(storage)
    path = f"{root.rstrip('/')}/{name}"
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(path)
