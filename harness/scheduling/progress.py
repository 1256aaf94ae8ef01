"""What running trials are doing, for people: the listeners of trial events and the live table.

Executors (local and Ray alike, on the driver) tell their listeners (:class:`TrialListener`) which
trials they plan to run, when a trial starts, after each of its epochs, and when its record arrives;
the trackers that listen too are in :mod:`harness.scheduling.tracking`.

* :class:`TrialBoard`: on a terminal, a live table (rich) of every trial: its number, method, the
  hyperparameters that differ between trials, seed, split, state (pending ones too), epoch/epochs,
  loss, Recall@1 (validation while training; the final one of the trial's split when it ends), GPU
  use where the trial reports it, elapsed time, ETA and the reason of a failure, under a title with
  "n of N done" and the command's overall ETA; elsewhere (CI logs, ``nohup``) one line per finished
  epoch and one per finished trial.
"""
from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from harness.core.trial import Trial
from harness.core.metrics import format_metric, split_metric
from harness.core.record import TrialRecord

VAL_RECALL = split_metric("val", "recall@1")

#: at most this many hyperparameter columns in the live table (those whose values differ between trials)
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


@dataclass
class TrialRow:
    trial: Trial
    number: int
    state: str = "running"
    epoch: int = 0
    loss: float | None = None
    recall: float | None = None
    gpu: str = ""
    started: float = field(default_factory=time.time)
    ended: float | None = None
    error: str = ""

    @property
    def epochs(self) -> int:
        return int(self.trial.spec.recipe["epochs"])

    def elapsed(self) -> float:
        if self.state == "pending":
            return 0.0
        return (self.ended or time.time()) - self.started

    def eta(self) -> float | None:
        if self.state != "running" or not self.epoch or self.epoch >= self.epochs:
            return None
        return self.elapsed() / self.epoch * (self.epochs - self.epoch)

    def start(self) -> None:
        self.state, self.started = "running", time.time()


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}:{seconds:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def gpu_use(metrics: dict[str, Any]) -> str:
    """``util% memGiB`` from an epoch's ``gpu_util_pct`` and ``gpu_memory_gib`` (:mod:`harness.engine.gpu_usage`),
    where the trial reports them."""
    parts = []
    if isinstance(metrics.get("gpu_util_pct"), (int, float)):
        parts.append(f"{metrics['gpu_util_pct']:.0f}%")
    if isinstance(metrics.get("gpu_memory_gib"), (int, float)):
        parts.append(f"{metrics['gpu_memory_gib']:.1f}G")
    return " ".join(parts)


class TrialBoard:
    """The live table on a terminal; plain lines elsewhere."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, max_rows: int = 40):
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self.max_rows = max_rows
        self.rows: dict[str, TrialRow] = {}
        self.total: int | None = None
        self._live = None

    # ---- what the table shows ----------------------------------------------------------------------
    def _row(self, trial: Trial) -> TrialRow:
        if trial.trial_id not in self.rows:
            self.rows[trial.trial_id] = TrialRow(trial, number=len(self.rows) + 1)
        return self.rows[trial.trial_id]

    def varying_hparams(self) -> list[str]:
        """The hyperparameters whose values differ between the board's trials (a search's searched ones)."""
        names = sorted({name for row in self.rows.values() for name in row.trial.spec.hparams})
        varying = [name for name in names
                   if len({_value(row.trial.spec.hparams.get(name, "")) for row in self.rows.values()}) > 1]
        return varying[:MAX_HPARAM_COLUMNS]

    def counts(self) -> dict[str, int]:
        states = [row.state for row in self.rows.values()]
        total = max(self.total or 0, len(states))
        running = states.count("running")
        done = len(states) - running - states.count("pending")
        return {"done": done, "running": running, "pending": total - done - running, "total": total}

    def eta(self) -> float | None:
        """The command's remaining time: the running trials' own ETAs plus the pending ones at the mean
        duration of the finished trials (else of the running trials' projections), over the trials
        that run at once; None until one trial has finished an epoch."""
        running = [row for row in self.rows.values() if row.state == "running"]
        finished = [row.elapsed() for row in self.rows.values() if row.state == "ok"]
        projected = [row.elapsed() + row.eta() for row in running if row.eta() is not None]
        samples = finished or projected
        if not samples:
            return None
        typical = statistics.fmean(samples)
        left = sum(row.eta() if row.eta() is not None else max(0.0, typical - row.elapsed()) for row in running)
        return (left + self.counts()["pending"] * typical) / max(1, len(running))

    def title(self) -> str:
        c = self.counts()
        eta = self.eta()
        return (f"trials: {c['done']} of {c['total']} done, {c['running']} running, {c['pending']} pending"
                + (f", ETA {_seconds(eta)}" if eta else ""))

    def _table(self):
        from rich.table import Table

        hparams = self.varying_hparams()
        show_gpu = any(row.gpu for row in self.rows.values())
        table = Table(title=self.title(), expand=False)
        columns = ["#", "method", *hparams, "seed", "split", "state", "epoch", "loss", "R@1",
                   *(["GPU"] if show_gpu else []), "elapsed", "ETA", "note"]
        numeric = {"#", "seed", "epoch", "loss", "R@1", *hparams}
        for name in columns:
            table.add_column(name, justify="right" if name in numeric else "left")
        order = {"running": 0, "pending": 2}
        rows = sorted(self.rows.values(), key=lambda r: (order.get(r.state, 1), r.number))[: self.max_rows]
        for r in rows:
            style = {"failed": "red", "ok": "green", "pruned": "yellow", "pending": "dim"}.get(r.state, "")
            spec = r.trial.spec
            table.add_row(str(r.number), spec.method, *(_value(spec.hparams.get(h, "")) for h in hparams),
                          str(spec.seed), spec.eval_split + (f"/{spec.fold}" if spec.folds else ""), r.state,
                          f"{r.epoch}/{r.epochs}", "" if r.loss is None else f"{r.loss:.4f}",
                          "" if r.recall is None else format_metric("recall@1", r.recall), *([r.gpu] if show_gpu else []),
                          _seconds(r.elapsed()) if r.state != "pending" else "", _seconds(r.eta()), r.error[:60],
                          style=style)
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
        self._row(trial).start()
        self._refresh()

    def epoch(self, trial: Trial, metrics: dict[str, Any]) -> None:
        row = self._row(trial)
        row.state = "running" if row.state == "pending" else row.state
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
        row.state, row.ended = record.status, time.time()
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
