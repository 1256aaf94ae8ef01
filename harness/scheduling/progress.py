"""What running trials are doing, for people and for trackers: listeners of trial events.

Executors (local and Ray alike, on the driver) tell their listeners when a trial starts, after each
of its epochs, and when its record arrives:

* :class:`TrialBoard`: on a terminal, a live table (rich) of every trial: method, seed, state,
  epoch/epochs, loss, validation Recall@1, GPU utilisation and memory (the last epoch's mean and peak,
  columns shown once a trial reports them), elapsed time, ETA and the reason of a failure; elsewhere
  (CI logs, ``nohup``) one line per finished epoch and one per finished trial.
* :class:`TensorBoardLogger`: per-epoch metrics of every trial to TensorBoard event files,
  ``<results>/tensorboard/<experiment>/<trial_id>`` (``tensorboard --logdir results/tensorboard``).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from harness.core.config import TrialConfig
from harness.core.metrics import base_metric, split_metric
from harness.core.record import TrialRecord

#: the validation score the table shows for each trial
VAL_RECALL = split_metric("val", "recall@1")


class TrialListener(Protocol):
    def started(self, trial: TrialConfig) -> None: ...

    def epoch(self, trial: TrialConfig, metrics: dict[str, Any]) -> None: ...

    def finished(self, record: TrialRecord) -> None: ...

    def close(self) -> None: ...


def summary_line(record: TrialRecord) -> str:
    """One line about a finished trial."""
    if record.ok:
        split = "val " if record.config.eval_split == "val" else ""
        outcome = f"{split}recall@1 {100 * record.metrics.get('recall@1', float('nan')):.2f}"
    else:
        outcome = f"{record.status.upper()}: {record.error}"
    resumed = f", resumed at epoch {record.resumed_at_epoch}" if record.resumed_at_epoch else ""
    return f"{record.trial_id}: {outcome} ({record.wall_time_s:.0f} s{resumed})"


@dataclass
class TrialRow:
    trial: TrialConfig
    state: str = "running"
    epoch: int = 0
    loss: float | None = None
    val_recall: float | None = None
    gpu_util: float | None = None
    gpu_memory: float | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    error: str = ""

    def elapsed(self) -> float:
        return (self.ended or time.time()) - self.started

    def eta(self) -> float | None:
        epochs = self.trial.recipe["epochs"]
        if self.state != "running" or not self.epoch or self.epoch >= epochs:
            return None
        return self.elapsed() / self.epoch * (epochs - self.epoch)


def _number(value: float | None, form: str) -> str:
    return "" if value is None else form.format(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}:{seconds:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"


class TrialBoard:
    """The live table on a terminal; plain lines elsewhere."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, max_rows: int = 40):
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self.max_rows = max_rows
        self.rows: dict[str, TrialRow] = {}
        self._live = None

    def _refresh(self) -> None:
        if not self.live_mode:
            return
        from rich.console import Console
        from rich.live import Live

        if self._live is None:
            self._live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=2,
                              transient=False)
            self._live.start()
        self._live.update(self._table())

    def _table(self):
        from rich.table import Table

        table = Table(title="trials", expand=False)
        gpu = any(r.gpu_util is not None for r in self.rows.values())
        numeric = ("seed", "epoch", "loss", "val R@1", "GPU %", "GPU GiB")
        for name in ("method", "seed", "split", "state", "epoch", "loss", "val R@1",
                     *(("GPU %", "GPU GiB") if gpu else ()), "elapsed", "ETA", "note"):
            table.add_column(name, justify="right" if name in numeric else "left")
        rows = sorted(self.rows.values(), key=lambda r: (r.state != "running", r.started))[: self.max_rows]
        for r in rows:
            style = {"failed": "red", "ok": "green", "pruned": "yellow"}.get(r.state, "")
            usage = (_number(r.gpu_util, "{:.0f}"), _number(r.gpu_memory, "{:.1f}")) if gpu else ()
            table.add_row(r.trial.method, str(r.trial.seed), r.trial.eval_split + (f"/{r.trial.fold}" if r.trial.folds else ""),
                          r.state, f"{r.epoch}/{r.trial.recipe['epochs']}", _number(r.loss, "{:.4f}"),
                          _number(None if r.val_recall is None else 100 * r.val_recall, "{:.2f}"), *usage,
                          _seconds(r.elapsed()), _seconds(r.eta()), r.error[:60], style=style)
        hidden = len(self.rows) - len(rows)
        if hidden:
            table.caption = f"{hidden} more trial(s) not shown"
        return table

    def _print(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line)
        else:
            print(line, file=self.stream, flush=True)

    def started(self, trial: TrialConfig) -> None:
        self.rows[trial.trial_id] = TrialRow(trial)
        self._refresh()

    def epoch(self, trial: TrialConfig, metrics: dict[str, Any]) -> None:
        row = self.rows.setdefault(trial.trial_id, TrialRow(trial))
        row.epoch = int(metrics.get("epoch", row.epoch))
        row.loss = metrics.get("loss", row.loss)
        row.val_recall = metrics.get(VAL_RECALL, row.val_recall)
        if self.live_mode:
            self._refresh()
        else:
            scores = " ".join(f"{k} {metrics[k]:.4f}" for k in ("loss", VAL_RECALL) if k in metrics)
            self._print(f"{trial.trial_id} epoch {row.epoch}/{trial.recipe['epochs']} {scores}")

    def finished(self, record: TrialRecord) -> None:
        row = self.rows.setdefault(record.trial_id, TrialRow(record.config))
        row.state, row.ended = record.status, time.time()
        row.error = record.error or ""
        if record.ok:
            row.val_recall = record.metrics.get("recall@1") if record.config.eval_split == "val" else row.val_recall
        self._refresh()
        if not self.live_mode:
            self._print(summary_line(record))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class TensorBoardLogger:
    """Every trial's per-epoch metrics (and its final ones) as TensorBoard scalars (needs ``tensorboard``:
    ``pip install -e ".[tracking]"``)."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - depends on the optional extra
            raise ImportError('--tensorboard needs TensorBoard: pip install -e ".[tracking]"') from None
        self.folder = Path(folder)
        self._writer_class = SummaryWriter
        self.writers: dict[str, Any] = {}

    def _writer(self, trial: TrialConfig):
        if trial.trial_id not in self.writers:
            self.writers[trial.trial_id] = self._writer_class(str(self.folder / trial.experiment / trial.trial_id))
        return self.writers[trial.trial_id]

    def started(self, trial: TrialConfig) -> None:
        self._writer(trial)

    def epoch(self, trial: TrialConfig, metrics: dict[str, Any]) -> None:
        writer, step = self._writer(trial), int(metrics.get("epoch", 0))
        for name, value in metrics.items():
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                split, metric = base_metric(name)
                writer.add_scalar(f"{split or 'train'}/{metric}", value, step)
        writer.flush()

    def finished(self, record: TrialRecord) -> None:
        writer = self._writer(record.config)
        step = len(record.history)
        for name, value in record.metrics.items():
            writer.add_scalar(f"{record.config.eval_split}/{name}", value, step)
        writer.close()
        self.writers.pop(record.trial_id, None)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
