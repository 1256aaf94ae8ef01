"""What running trials are doing, for people: the listeners of trial events and the live table.

Executors (local and Ray alike, on the driver) tell their listeners (:class:`TrialListener`) which
trials they plan to run, when a trial starts, after each of its epochs, and when its record arrives;
the trackers that listen too are in :mod:`harness.scheduling.tracking`.

* :class:`TrialBoard`: on a terminal, a live table (rich) of every trial: its number (a search's trials
  the numbers their study gives them), method, the hyperparameters that differ between the trials of
  its method (grouped per method), seed, split, state (pending ones too), epoch/epochs, loss, Recall@1
  (validation while training; the final one of the trial's split when it ends), GPU use where the
  trial reports it, elapsed time, ETA and the reason of a failure, under a title with "n of N done"
  and the command's overall ETA (each pending trial at the expected duration of its kind: method,
  dataset and epochs, :func:`expected_duration`); elsewhere (CI logs, ``nohup``) one line per finished
  epoch and one per finished trial.
"""
from __future__ import annotations

import heapq
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TextIO

from harness.core.trial import Trial
from harness.core.metrics import format_metric, split_metric
from harness.core.record import TrialRecord

VAL_RECALL = split_metric("val", "recall@1")

#: at most this many hyperparameter columns in the live table (those whose values differ between trials of one
#: method, grouped by method); more are shown in one column, each row with its own method's
MAX_HPARAM_COLUMNS = 4


class TrialListener(Protocol):
    def planned(self, trials: Iterable[Trial]) -> None: ...

    def started(self, trial: Trial) -> None: ...

    def epoch(self, trial: Trial, metrics: dict[str, Any]) -> None: ...

    def finished(self, record: TrialRecord) -> None: ...

    def close(self) -> None: ...


def announce(listeners: Sequence[TrialListener], trials: Iterable[Trial]) -> None:
    """Tell the listeners what an executor is about to run (before the first trial starts)."""
    for listener in listeners:
        listener.planned(trials)


def summary_line(record: TrialRecord) -> str:
    """One line about a finished trial."""
    if record.ok:
        split = "val " if record.spec.eval_split == "val" else ""
        outcome = f"{split}recall@1 {format_metric('recall@1', record.metrics.get('recall@1', float('nan')))}"
    else:
        outcome = f"{record.status.upper()}: {record.error}"
    resumed = f", resumed at epoch {record.resumed_at_epoch}" if record.resumed_at_epoch else ""
    return f"{record.trial_id}: {outcome} ({record.wall_time_s:.0f} s{resumed})"


def trial_kind(trial: Trial) -> tuple[str, str, int]:
    """What a trial's duration depends on, as the live table estimates it: its method, dataset and epochs."""
    spec = trial.spec
    return spec.method, spec.dataset, int(spec.recipe["epochs"])


@dataclass
class TrialRow:
    """A trial's line in the live table; times are the board's clock's."""

    trial: Trial
    number: str
    started: float
    state: str = "running"
    epoch: int = 0
    loss: float | None = None
    recall: float | None = None
    gpu: str = ""
    ended: float | None = None
    error: str = ""
    kept: bool = False  # finished by an earlier command (--resume): its time says nothing of this one's

    @property
    def epochs(self) -> int:
        return int(self.trial.spec.recipe["epochs"])

    def elapsed(self, now: float) -> float:
        if self.state == "pending":
            return 0.0
        return (self.ended if self.ended is not None else now) - self.started

    def eta(self, now: float) -> float | None:
        """A running trial's remaining time at its own pace so far (None before its first epoch ends)."""
        if self.state != "running" or not self.epoch or self.epoch >= self.epochs:
            return None
        return self.elapsed(now) / self.epoch * (self.epochs - self.epoch)

    def per_epoch(self, now: float) -> float | None:
        """Seconds per epoch so far (None before an epoch ended, and for a trial kept from before)."""
        if self.kept or not self.epoch or self.state == "pending":
            return None
        return self.elapsed(now) / self.epoch


def expected_duration(rows: Iterable[TrialRow], trial: Trial, now: float) -> float | None:
    """How long ``trial`` should take from start to end, from the trials of its kind (:func:`trial_kind`) on
    the board: the mean duration of those that finished, else the projection of those running; else its
    epochs at the seconds per epoch of its method on its dataset, else of every trial; None before any
    epoch has ended."""
    rows = list(rows)
    kind = trial_kind(trial)
    same = [r for r in rows if trial_kind(r.trial) == kind and not r.kept]
    done = [r.elapsed(now) for r in same if r.state == "ok"]
    if done:
        return statistics.fmean(done)
    running = [r.elapsed(now) + r.eta(now) for r in same if r.eta(now) is not None]
    if running:
        return statistics.fmean(running)
    for pool in ([r for r in rows if trial_kind(r.trial)[:2] == kind[:2]], rows):
        paces = [p for p in (r.per_epoch(now) for r in pool) if p is not None]
        if paces:
            return statistics.fmean(paces) * kind[2]
    return None


def time_to_finish(running: list[float], pending: list[float]) -> float:
    """When the last trial ends: the ``running`` trials' remaining times on as many slots (at least one),
    each ``pending`` duration started in order on the slot that frees first."""
    slots = sorted(running) or [0.0]
    for duration in pending:
        heapq.heapreplace(slots, slots[0] + duration)
    return max(slots)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}:{seconds:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _order(number: str) -> tuple[int, str]:
    """Trial numbers in numeric order (``2`` before ``10``)."""
    return (int(number), "") if number.isdigit() else (1 << 30, number)


def gpu_use(metrics: dict[str, Any]) -> str:
    """``util% memGiB`` from an epoch's ``gpu_util_pct`` and ``gpu_memory_gib`` (:mod:`harness.engine.gpu_usage`),
    where the trial reports them."""
    parts = []
    if isinstance(metrics.get("gpu_util_pct"), (int, float)):
        parts.append(f"{metrics['gpu_util_pct']:.0f}%")
    if isinstance(metrics.get("gpu_memory_gib"), (int, float)):
        parts.append(f"{metrics['gpu_memory_gib']:.1f}G")
    return " ".join(parts)


class NumberedTrials(Protocol):
    """Trials to run that carry their own numbers (a search's: Optuna's trial numbers), which the live table
    shows instead of numbering the trials in the order they appear."""

    def __iter__(self) -> Iterator[Trial]: ...

    def number_of(self, trial: Trial) -> str | None: ...


class TrialBoard:
    """The live table on a terminal; plain lines elsewhere. ``clock`` gives the time (seconds)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, max_rows: int = 40,
                 clock: Callable[[], float] = time.time):
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self.max_rows = max_rows
        self.clock = clock
        self.rows: dict[str, TrialRow] = {}
        self.total: int | None = None
        self.numbering: list[Callable[[Trial], str | None]] = []
        self._live = None

    # ---- what the table shows ----------------------------------------------------------------------
    def _row(self, trial: Trial) -> TrialRow:
        if trial.trial_id not in self.rows:
            number = next((n for n in (f(trial) for f in self.numbering) if n is not None), None)
            self.rows[trial.trial_id] = TrialRow(trial, number=number or str(len(self.rows) + 1),
                                                 started=self.clock())
        return self.rows[trial.trial_id]

    def hparam_columns(self) -> list[tuple[str, str]]:
        """(method, hyperparameter) of each hyperparameter whose values differ between the board's trials of
        that method (a search's searched ones), grouped by method: one method's ``alpha`` is never another's."""
        by_method: dict[str, list[TrialRow]] = {}
        for row in self.rows.values():
            by_method.setdefault(row.trial.spec.method, []).append(row)
        columns = []
        for method, rows in sorted(by_method.items()):
            names = sorted({name for row in rows for name in row.trial.spec.hparams})
            columns += [(method, name) for name in names
                        if len({_value(row.trial.spec.hparams.get(name, "")) for row in rows}) > 1]
        return columns

    def counts(self) -> dict[str, int]:
        states = [row.state for row in self.rows.values()]
        total = max(self.total or 0, len(states))
        running = states.count("running")
        done = len(states) - running - states.count("pending")
        return {"done": done, "running": running, "pending": total - done - running, "total": total}

    def eta(self) -> float | None:
        """The command's remaining time: each running trial's own remaining time (at its pace so far, else
        its kind's expected duration less its elapsed time), then each pending trial at the expected
        duration of its kind (:func:`expected_duration`; one not yet announced, as the last one announced)
        on the slots the running trials hold; None while any is unknown (before an epoch has ended)."""
        now = self.clock()
        rows = list(self.rows.values())
        running, left = [r for r in rows if r.state == "running"], []
        for row in running:
            expected = expected_duration(rows, row.trial, now)
            own = row.eta(now)
            if own is None and expected is None:
                return None
            left.append(own if own is not None else max(0.0, expected - row.elapsed(now)))
        pending = [r.trial for r in rows if r.state == "pending"]
        unannounced = self.counts()["pending"] - len(pending)
        if unannounced > 0 and rows:
            pending += [rows[-1].trial] * unannounced
        durations = [expected_duration(rows, trial, now) for trial in pending]
        if any(d is None for d in durations) or not (running or durations):
            return None
        return time_to_finish(left, durations)  # type: ignore[arg-type]

    def title(self) -> str:
        c = self.counts()
        eta = self.eta()
        return (f"trials: {c['done']} of {c['total']} done, {c['running']} running, {c['pending']} pending"
                + (f", ETA {_seconds(eta)}" if eta else ""))

    def _table(self):
        from rich.table import Table

        now = self.clock()
        hparams = self.hparam_columns()
        methods = {method for method, _ in hparams}
        merged = len(hparams) > MAX_HPARAM_COLUMNS  # too many to show apart: one column, each row its own
        headers = (["hyperparameters"] if merged else
                   [name if len(methods) == 1 else f"{method}.{name}" for method, name in hparams])
        show_gpu = any(row.gpu for row in self.rows.values())
        table = Table(title=self.title(), expand=False)
        columns = ["#", "method", *headers, "seed", "split", "state", "epoch", "loss", "R@1",
                   *(["GPU"] if show_gpu else []), "elapsed", "ETA", "note"]
        numeric = {"#", "seed", "epoch", "loss", "R@1", *([] if merged else headers)}
        for name in columns:
            table.add_column(name, justify="right" if name in numeric else "left")
        order = {"running": 0, "pending": 2}
        rows = sorted(self.rows.values(), key=lambda r: (order.get(r.state, 1), _order(r.number)))[: self.max_rows]
        for r in rows:
            style = {"failed": "red", "ok": "green", "pruned": "yellow", "pending": "dim"}.get(r.state, "")
            spec = r.trial.spec
            mine = [(name, _value(spec.hparams.get(name, ""))) for method, name in hparams if method == spec.method]
            values = ([" ".join(f"{n}={v}" for n, v in mine)] if merged else
                      [_value(spec.hparams.get(name, "")) if method == spec.method else "" for method, name in hparams])
            table.add_row(r.number, spec.method, *values,
                          str(spec.seed), spec.eval_split + (f"/{spec.fold}" if spec.folds else ""), r.state,
                          f"{r.epoch}/{r.epochs}", "" if r.loss is None else f"{r.loss:.4f}",
                          "" if r.recall is None else format_metric("recall@1", r.recall), *([r.gpu] if show_gpu else []),
                          _seconds(r.elapsed(now)) if r.state != "pending" else "", _seconds(r.eta(now)),
                          r.error[:60], style=style)
        hidden = len(self.rows) - len(rows)
        if hidden:
            table.caption = f"{hidden} more trial(s) not shown"
        return table

    # ---- drawing -----------------------------------------------------------------------------------
    def _refresh(self) -> None:
        if not self.live_mode:
            return
        from rich.console import Console
        from rich.live import Live

        if self._live is None:
            self._live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=2,
                              transient=False, get_renderable=self._table)
            self._live.start()
        self._live.update(self._table())

    def _print(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line)
        else:
            print(line, file=self.stream, flush=True)

    # ---- events ------------------------------------------------------------------------------------
    def planned(self, trials: Iterable[Trial]) -> None:
        """The trials about to run: a list shows each as pending; a lazy stream (a search) with a length
        gives the total."""
        number_of = getattr(trials, "number_of", None)
        if callable(number_of):
            self.numbering.append(number_of)
        if isinstance(trials, Sequence):
            for trial in trials:
                self._row(trial).state = "pending"
        if isinstance(trials, Sized):
            self.total = (self.total or 0) + len(trials)
        if self.live_mode:
            self._refresh()
        else:
            total = f"{len(trials)} trial(s)" if isinstance(trials, Sized) else "trials"
            self._print(f"{total} to run")

    def started(self, trial: Trial) -> None:
        row = self._row(trial)
        row.state, row.started = "running", self.clock()
        self._refresh()

    def epoch(self, trial: Trial, metrics: dict[str, Any]) -> None:
        row = self._row(trial)
        if row.state == "pending":
            row.state, row.started = "running", self.clock()
        row.epoch = int(metrics.get("epoch", row.epoch))
        row.loss = metrics.get("loss", row.loss)
        row.recall = metrics.get(VAL_RECALL, row.recall)
        row.gpu = gpu_use(metrics) or row.gpu
        if self.live_mode:
            self._refresh()
        else:
            scores = " ".join(f"{k} {metrics[k]:.4f}" if k == "loss" else f"{k} {format_metric(k, metrics[k])}"
                              for k in ("loss", VAL_RECALL) if k in metrics)
            self._print(f"{trial.trial_id} epoch {row.epoch}/{row.epochs} {scores}")

    def finished(self, record: TrialRecord) -> None:
        row = self._row(record.trial)
        kept = row.state == "pending"  # finished by an earlier command (--resume): not run again
        row.state, row.ended, row.kept = record.status, self.clock(), kept
        if kept:
            row.started = row.ended
        row.error = "finished before, kept" if kept else record.error or ""
        row.epoch = max(row.epoch, len(record.history))
        if record.ok:
            row.recall = record.metrics.get("recall@1", row.recall)
        self._refresh()
        if not self.live_mode:
            self._print(f"{record.trial_id}: finished before, kept (--resume)" if kept else summary_line(record))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
