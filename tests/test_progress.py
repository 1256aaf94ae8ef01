"""The live view of running trials and the TensorBoard logs, fed the events executors send."""
from __future__ import annotations

import io

import pytest

from harness.core.record import TrialRecord
from harness.experiment import ExperimentConfig
from harness.scheduling.progress import TensorBoardLogger, TrialBoard


def trials(n: int = 2):
    return ExperimentConfig(methods=["ms", "amsoftmax"], dataset="digits", seeds=list(range(n)),
                            recipe_overrides={"epochs": 4}).trials()


def play(listener) -> None:
    a, b = trials()[0], trials()[-1]
    listener.started(a)
    listener.started(b)
    listener.epoch(a, {"epoch": 1, "loss": 0.5, "val_recall@1": 0.8})
    listener.epoch(a, {"epoch": 2, "loss": 0.25})
    listener.finished(TrialRecord(trial_id=a.trial_id, status="ok", config=a, metrics={"recall@1": 0.9},
                                  history=[{"epoch": 1}, {"epoch": 2}]))
    listener.finished(TrialRecord.failed(b, "TrialFailed: non-finite loss"))
    listener.close()


def test_without_a_terminal_one_line_per_epoch_and_per_trial():
    out = io.StringIO()
    play(TrialBoard(stream=out))
    lines = out.getvalue().splitlines()
    a, b = trials()[0], trials()[-1]
    assert lines == [f"{a.trial_id} epoch 1/4 loss 0.5000 val_recall@1 0.8000", f"{a.trial_id} epoch 2/4 loss 0.2500",
                     f"{a.trial_id}: recall@1 90.00 (0 s)", f"{b.trial_id}: FAILED: TrialFailed: non-finite loss (0 s)"]


def test_on_a_terminal_a_live_table_of_every_trial():
    board = TrialBoard(stream=io.StringIO(), live=True)
    a, b = trials()[0], trials()[-1]
    board.started(a)
    board.started(b)
    board.epoch(a, {"epoch": 1, "loss": 0.5, "val_recall@1": 0.8})
    board.rows[a.trial_id].started -= 30  # 30 s for its first epoch: 90 s to go
    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(board._table())
    text = console.file.getvalue()
    assert "ms" in text and "amsoftmax" in text and "1/4" in text and "0.5000" in text and "80.00" in text
    assert "1:30" in text  # the ETA
    board.finished(TrialRecord.failed(b, "TrialFailed: non-finite loss"))
    console = Console(file=io.StringIO(), width=160)
    console.print(board._table())
    assert "failed" in console.file.getvalue() and "non-finite loss" in console.file.getvalue()
    board.close()


def test_tensorboard_logs_every_epoch_and_the_final_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    play(TensorBoardLogger(tmp_path))
    a, *_ = trials()
    events = EventAccumulator(str(tmp_path / a.experiment / a.trial_id))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["test/recall@1", "train/loss", "val/recall@1"]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 0.5), (2, 0.25)]
