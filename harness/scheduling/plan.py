"""The plan below the training commands: one step from the trials a command asks for to the records it prints.

``run``, ``sweep``, ``search`` and ``benchmark`` parse their flags into data (an
:class:`~harness.experiment.ExperimentConfig` or a benchmark's manifest, and an :class:`ExecutorChoice`) and
hand them here; nothing of this returns up into the command layer:

1. validate: the executor's options (:meth:`ExecutorChoice.check`) and the trials' devices, before any folder
   exists or Ray starts (the experiment validated its own fields when it built its trials);
2. read the records of the trials' experiments from the store, once per command (:class:`HeldRecords`);
3. check the protocol against them (:func:`check_protocol`; what makes two trials comparable is
   :mod:`harness.core.protocol`'s);
4. keep finished trials (:func:`plan_trials`: ``--resume`` skips them silently, ``--overwrite`` runs them
   again, neither keeps each with one line);
5. hand the executor its work (:meth:`Plan.run`; :meth:`ExecutorChoice.open` runs the trials in this process,
   saying so in one line, where Ray would bring nothing);
6. return the records the command prints (kept and new, and the experiment's others for its leaderboard).
"""
from __future__ import annotations

import functools
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from harness.core.protocol import distinct, protocol_differences
from harness.core.record import TrialRecord
from harness.core.spec import TrialSpec
from harness.core.store import TrialStore
from harness.core.trial import Trial
from harness.scheduling.executor_registry import ExecutorOptions, create_executor

if TYPE_CHECKING:
    from harness.scheduling.executors import Executor
    from harness.scheduling.progress import TrialListener

#: the executor a command uses when none is named (where it brings something: :meth:`ExecutorChoice.open`)
DEFAULT_EXECUTOR = "ray"


@dataclass(frozen=True)
class ExecutorChoice:
    """Where trials run and what they hold: the executor flags as data. ``name`` None is the default executor
    (:data:`DEFAULT_EXECUTOR`, or this process where it brings nothing); ``mlflow`` "" logs to a SQLite file in
    the results folder, None not at all; ``address_given`` says how ``address`` was given (``--address X`` or
    ``RAY_ADDRESS=X``, for messages); ``fail_at_epoch`` is the test-only fault injection (:meth:`place`)."""

    name: str | None = None
    progress: bool = True
    tensorboard: bool = False
    mlflow: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = None
    address_given: str = ""
    storage: str | None = None
    max_failures: int = 2
    plugins: tuple[str, ...] = ()
    dashboard: bool = False
    fail_at_epoch: int | None = None

    def place(self, trials: list[Trial]) -> list[Trial]:
        """The trials with the test-only ``--fail-at-epoch`` fault injected (a placement: the ids stay)."""
        if self.fail_at_epoch is None:
            return trials
        return [t.with_placement(fail_at_epoch=self.fail_at_epoch) for t in trials]

    @property
    def runs_here(self) -> bool:
        """Whether the trials run on this machine (no Ray cluster joined with ``--address``)."""
        return not self.address

    def check(self) -> None:
        """Refuse, before any folder is made or Ray starts, an ``--max-concurrent`` below 1, an address where no
        Ray cluster answers (named as ``address_given`` says it was given), and (trials on Ray on this machine) a
        trial that needs more CPUs or GPUs than the machine has (read only when asked for: the defaults fit)."""
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        on_ray = (self.name or DEFAULT_EXECUTOR) == "ray"
        if on_ray and self.address:
            from harness.scheduling.cluster_address import check_ray_address

            check_ray_address(self.address, self.address_given or f"--address {self.address}")
        if on_ray and self.runs_here and (self.cpus_per_trial is not None or self.gpus_per_trial is not None):
            self.resources()

    @staticmethod
    def machine() -> tuple[float, float]:
        """(CPUs, GPUs) of this machine."""
        import torch  # only when trials run here

        return float(os.cpu_count() or 1), float(torch.cuda.device_count())

    def resources(self, machine: tuple[float, float] | None = None) -> tuple[float, float]:
        """(CPUs, GPUs) each trial holds on this ``machine`` (default: :meth:`machine`; ``ValueError`` where
        it has too few)."""
        from harness.scheduling.executors import trial_resources

        return trial_resources(*(machine or self.machine()), self.cpus_per_trial, self.gpus_per_trial)

    def at_once_here(self) -> int:
        """How many trials could run at once on this machine (at most ``max_concurrent``)."""
        from harness.scheduling.executors import trials_per_node

        machine = self.machine()
        return trials_per_node(*machine, *self.resources(machine), self.max_concurrent)

    def executor_name(self, at_most: int) -> str:
        """The executor to use for at most ``at_most`` trials at once: the one named, else the default, except
        where Ray brings nothing (one trial, or one at a time on this machine, and nothing asked of Ray:
        no cluster, storage or dashboard): then this process's, said in one line."""
        if self.name is not None:
            return self.name
        if DEFAULT_EXECUTOR == "ray" and self.runs_here and not (self.storage or self.dashboard):
            at_once = min(at_most, self.at_once_here())
            if at_once <= 1:
                reason = "one trial" if at_most <= 1 else "one trial at a time on this machine"
                print(f"running in this process without Ray ({reason}: Ray would only add its start-up; "
                      "--executor ray to use it)", flush=True)
                return "local"
        return DEFAULT_EXECUTOR

    def open(self, store: TrialStore, at_most: int) -> Executor:
        """The executor for at most ``at_most`` trials at once (a context manager: Ray starts on entry and stops
        on exit), writing records through ``store``, with a live table of its trials (plain lines when stdout is
        not a terminal) and the optional TensorBoard and MLflow logs."""
        from harness.scheduling.progress import TrialBoard

        listeners: list[TrialListener] = [TrialBoard(live=None if self.progress else False)]
        if self.tensorboard:
            from harness.scheduling.tracking import TensorBoardLogger

            listeners.append(TensorBoardLogger(store.tensorboard_dir))
        if self.mlflow is not None:
            from harness.scheduling.tracking import MLflowLogger

            listeners.append(MLflowLogger(self.mlflow or mlflow_store(store.root)))
        options = ExecutorOptions(
            store, listeners=listeners, progress=self.progress, gpus_per_trial=self.gpus_per_trial,
            cpus_per_trial=self.cpus_per_trial, max_concurrent=self.max_concurrent, address=self.address,
            storage=self.storage, max_failures=self.max_failures, plugins=self.plugins, dashboard=self.dashboard)
        return create_executor(self.executor_name(at_most), options)


def mlflow_store(results_dir: str | Path) -> str:
    """The default MLflow tracking URI: a SQLite file in the results folder."""
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


class HeldRecords:
    """The records of some experiments, read from the store once per command and kept up to date with the
    records the command writes: what the protocol check, the finished trials and the leaderboards read."""

    def __init__(self, store: TrialStore, experiments: Iterable[str]):
        self.store = store
        self.by_path = {path: record for experiment in sorted(set(experiments))
                        for path, record in store.records(experiment)}

    def add(self, records: Iterable[TrialRecord]) -> None:
        """Records the command has written since (they replace those at their paths)."""
        for record in records:
            self.by_path[self.store.record_path(record.trial)] = record

    def of(self, trial: Trial) -> TrialRecord | None:
        """The record held for ``trial`` (None: none)."""
        return self.by_path.get(self.store.record_path(trial))

    def items(self) -> list[tuple[Path, TrialRecord]]:
        """(path, record) of every record held, by path."""
        return sorted(self.by_path.items(), key=lambda item: item[0])


def check_protocol(trials: list[Trial], held: HeldRecords, incomparable_rows: bool = False) -> None:
    """Refuse (``ValueError``, one line), before any folder exists, trials that would join an experiment whose
    trials (its records, held, and the claims of the runs into it under way) ran under another protocol
    (:mod:`harness.core.protocol`): an experiment is one protocol. ``incomparable_rows`` lets different
    methods train differently (their boards say so); one method's trials always share a protocol."""
    for experiment, mine in _final_trials(trials).items():
        _refuse_another_protocol(held.store, experiment, mine, held.store.held_specs(experiment, held.by_path),
                                 incomparable_rows)


@contextmanager
def claimed_protocol(held: HeldRecords, trials: list[Trial], incomparable_rows: bool = False) -> Iterator[None]:
    """Run the body holding the protocol of every experiment ``trials`` join: per experiment, the check of
    :func:`check_protocol` (which :func:`prepare` made first, before any folder exists) and a claim of the
    protocol in one atomic step (:meth:`~harness.core.store.TrialStore.protocol_claim`, which reads only the
    records written since ``held`` was read), so that of two runs at once under different protocols the second
    is refused; the claims go when the body ends."""
    store = held.store
    with ExitStack() as claims:
        for experiment, mine in _final_trials(trials).items():
            claims.enter_context(store.protocol_claim(
                experiment, [t.spec for t in mine],
                functools.partial(_refuse_another_protocol, store, experiment, mine, incomparable_rows=incomparable_rows),
                known=held.by_path))
        yield


def _final_trials(trials: list[Trial]) -> dict[str, list[Trial]]:
    """The trials that enter their experiment's boards (final, test split), by experiment."""
    out: dict[str, list[Trial]] = {}
    for trial in trials:
        if trial.spec.role == "final" and trial.spec.eval_split == "test":
            out.setdefault(trial.placement.experiment, []).append(trial)
    return dict(sorted(out.items()))


def _refuse_another_protocol(store: TrialStore, experiment: str, trials: list[Trial], held: list[TrialSpec],
                             incomparable_rows: bool) -> None:
    held = distinct(held)
    for trial in trials:
        for old in held:
            if incomparable_rows and old.method != trial.spec.method:
                continue
            differ = protocol_differences(trial.spec, old)
            if differ:
                also = "" if old.method == trial.spec.method else ", or --incomparable-rows to add its rows anyway"
                raise ValueError(
                    f"experiment {experiment} in {store.runs} holds {old.method} trials run under another "
                    f"protocol than this run's {trial.spec.method}: {', '.join(differ)}; give this run its own "
                    f"--experiment (e.g. --experiment {experiment}-{differ[0].split(' ')[0].replace('=', '')[:24]}){also}")


def check_devices(trials: list[Trial], executor: ExecutorChoice) -> None:
    """Refuse a trial's device this machine lacks, where the trials run here."""
    if executor.runs_here:
        from harness.experiment import check_device  # imports torch: only when a command runs

        for device in sorted({t.placement.device for t in trials}):
            check_device(device)


@dataclass
class Plan:
    """What a command runs: its ``trials``, those ``to_run`` (the others finished already), the records of their
    experiments (``held``, read once), the executor, whether interrupted trials continue (``resume``) and whether
    different methods may train differently (``incomparable_rows``)."""

    trials: list[Trial]
    to_run: list[Trial]
    held: HeldRecords
    executor: ExecutorChoice
    resume: bool = False
    incomparable_rows: bool = False
    ran: list[TrialRecord] = field(default_factory=list)

    def run(self) -> list[TrialRecord]:
        """Run the trials to run, their experiments' protocol claimed meanwhile (none to run: no executor starts),
        and return the records of every trial of the plan: those kept, then those run, in the order they
        finished; the held records take the new ones in."""
        kept = [record for trial in self.trials if trial not in self.to_run
                for record in [self.held.of(trial)] if record is not None]
        with claimed_protocol(self.held, self.to_run, self.incomparable_rows):
            if self.to_run:
                with self.executor.open(self.held.store, len(self.to_run)) as executor:
                    self.ran = executor.run(self.to_run, resume=self.resume)
        self.held.add(self.ran)
        return kept + self.ran


def prepare(trials: list[Trial], store: TrialStore, executor: ExecutorChoice, incomparable_rows: bool = False,
            writing: Iterable[Trial] = ()) -> HeldRecords:
    """What every command checks before any trial starts or any folder exists, and the records it reads for
    that, once: the executor's options and the trials' devices, the records of the trials' experiments, the
    protocol of the trials' final ones against them (a search's or benchmark's finals at their defaults:
    hyperparameters are no part of a protocol), the results folder (and the folders of the trials ``writing``)
    writable. Raises ``ValueError`` (one line) on what no trial should start with."""
    executor.check()
    check_devices(trials, executor)
    held = HeldRecords(store, {t.placement.experiment for t in trials})
    check_protocol(trials, held, incomparable_rows)
    store.check_writable(writing)
    return held


def plan_trials(trials: list[Trial], store: TrialStore, executor: ExecutorChoice, *, resume: bool = False,
                overwrite: bool = False, incomparable_rows: bool = False) -> Plan:
    """The plan of ``trials`` (validated by the experiment that built them), prepared by :func:`prepare`. A trial with a
    finished record is not run again: with ``resume`` silently, without ``overwrite`` named in one line;
    ``overwrite`` runs it again, and what belonged to the record it replaces (its weights and embeddings, which
    the new trial may not write: ``--no-save-model``) is removed, one line saying so."""
    if resume and overwrite:
        raise ValueError("--resume keeps finished records and --overwrite replaces them: give one")
    held = prepare(trials, store, executor, incomparable_rows, writing=trials)
    for trial in trials if overwrite else []:
        replaced = held.of(trial)
        if replaced is not None:
            removed = store.remove_outputs(trial)
            print(f"replacing {store.record_path(trial)} ({replaced.status}, finished {replaced.finished_at})"
                  + (f"; removed its {', '.join(p.name for p in removed)}" if removed else ""))
    finished = [t for t in trials if not overwrite and (record := held.of(t)) is not None and record.ok]
    if not resume:
        for trial in finished:
            print(f"kept {store.record_path(trial)}: finished already (--overwrite runs it again)")
    return Plan(trials=trials, to_run=[t for t in trials if t not in finished], held=held, executor=executor,
                resume=resume, incomparable_rows=incomparable_rows)
