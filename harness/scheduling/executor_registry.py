"""Executors by name, like methods and datasets: ``--executor NAME`` builds the one registered under
NAME from the command's :class:`ExecutorOptions`.

A new executor is one file: a class with ``__enter__``, ``__exit__`` and ``run`` (the
:class:`~harness.scheduling.executors.Executor` protocol; :func:`~harness.scheduling.executors.pending`
and :func:`~harness.scheduling.executors.deliver` do the resume and record-writing parts) and a
factory decorated with ``@register_executor("name")``; its module is loaded with ``--plugins`` or
through the ``harness.executors`` entry-point group.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from harness.core.registry import Registry

if TYPE_CHECKING:  # the command line lists the executors without importing torch (``--help``)
    from harness.core.store import TrialStore
    from harness.scheduling.executors import Executor, LocalExecutor
    from harness.scheduling.progress import TrialListener


@dataclass(frozen=True)
class ExecutorOptions:
    """Where and with what an executor runs trials (the command's executor flags, as data): ``store`` is the
    command's :class:`~harness.core.store.TrialStore`, built once, which every executor writes records
    through. An executor uses the options it understands: the local one ``progress``, ``cpus_per_trial``
    and ``listeners``."""

    store: TrialStore
    listeners: Sequence[TrialListener] = field(default_factory=list)
    progress: bool = True
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = None
    storage: str | None = None
    max_failures: int = 2
    plugins: tuple[str, ...] = ()
    dashboard: bool = False


ExecutorFactory = Callable[[ExecutorOptions], "Executor"]
#: every executor by name: ``local`` and ``ray`` here, others from ``--plugins`` or the entry points
EXECUTORS: Registry[ExecutorFactory] = Registry("executor", entry_point_group="harness.executors")


def register_executor(name: str) -> Callable[[ExecutorFactory], ExecutorFactory]:
    """Decorator: ``@register_executor("slurm")`` registers a factory ``ExecutorOptions -> Executor``."""
    return EXECUTORS.register(name)


def create_executor(name: str, options: ExecutorOptions) -> Executor:
    """The executor registered under ``name``, built from ``options`` (a context manager)."""
    return EXECUTORS.get(name)(options)


@register_executor("local")
def local_executor(options: ExecutorOptions) -> LocalExecutor:
    """One trial after another in this process (imports torch: only when chosen)."""
    from harness.scheduling.executors import LocalExecutor

    cpus = options.cpus_per_trial
    return LocalExecutor(options.store, progress=options.progress, cpus_per_trial=max(1, int(cpus)) if cpus else None,
                         listeners=options.listeners)


@register_executor("ray")
def ray_executor(options: ExecutorOptions) -> Executor:
    """Ray Tune trials on every GPU or CPU of this machine or cluster (imports Ray: only when chosen)."""
    from harness.scheduling.ray_executor import RayExecutor

    return RayExecutor(options.store, gpus_per_trial=options.gpus_per_trial,
                       cpus_per_trial=options.cpus_per_trial, max_concurrent=options.max_concurrent,
                       address=options.address, storage=options.storage, max_failures=options.max_failures,
                       plugins=options.plugins, listeners=options.listeners, dashboard=options.dashboard)
