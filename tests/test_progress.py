"""The live view of running trials, fed the events executors send (the trackers: ``test_tracking.py``)."""
from __future__ import annotations

import io

import pytest

from harness.core.record import TrialRecord
from harness.experiment import ExperimentConfig
from harness.scheduling.progress import TrialBoard


def trials(n: int = 2):
    return ExperimentConfig(methods=["ms", "amsoftmax"], dataset="digits", seeds=list(range(n)),
                            recipe_overrides={"epochs": 4}).trials()


def play(listener) -> None:
    a, b = trials()[0], trials()[-1]
    listener.planned([a, b])
    listener.started(a)
    listener.started(b)
    listener.epoch(a, {"epoch": 1, "loss": 0.5, "val_recall@1": 0.8})
    listener.epoch(a, {"epoch": 2, "loss": 0.25})
    listener.finished(TrialRecord(trial_id=a.trial_id, status="ok", spec=a.spec, placement=a.placement,
                                  metrics={"recall@1": 0.9}, history=[{"epoch": 1}, {"epoch": 2}]))
    listener.finished(TrialRecord.failed(b, "TrialFailed: non-finite loss"))
    listener.close()


def test_without_a_terminal_one_line_per_epoch_and_per_trial():
    out = io.StringIO()
    play(TrialBoard(stream=out))
    lines = out.getvalue().splitlines()
    a, b = trials()[0], trials()[-1]
    assert lines == ["2 trial(s) to run", f"{a.trial_id} epoch 1/4 loss 0.5000 val_recall@1 80.00", f"{a.trial_id} epoch 2/4 loss 0.2500",
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


def test_ray_results_reach_the_listeners_without_tunes_own_fields():
    pytest.importorskip("ray")
    from harness.scheduling.ray_compat import trial_metrics

    result = {"epoch": 2, "loss": 0.25, "val_recall@1": 0.8, "pid": 4242, "timestamp": 1.7e9, "training_iteration": 2,
              "time_this_iter_s": 1.5, "time_total_s": 3.0, "done": False, "hostname": "node", "config": {}}
    assert trial_metrics(result) == {"epoch": 2, "loss": 0.25, "val_recall@1": 0.8}


def test_the_live_table_tells_trials_apart_and_counts_down():
    """Trial numbers, the hyperparameters that differ, pending trials, n of N and an overall ETA."""
    from rich.console import Console

    base = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0], recipe_overrides={"epochs": 4}).trials()[0]
    proposals = [base.with_spec(hparams={**base.spec.hparams, "alpha": alpha}) for alpha in (0.5, 2.0, 8.0)]
    board = TrialBoard(stream=io.StringIO(), live=True)
    board.planned(proposals)
    board.started(proposals[0])
    board.epoch(proposals[0], {"epoch": 1, "loss": 0.5, "val_recall@1": 0.8, "gpu_util_pct": 63.0, "gpu_memory_gib": 2.5})
    board.rows[proposals[0].trial_id].started -= 30  # 30 s an epoch: 90 s left for it, 120 s for each pending one
    console = Console(file=io.StringIO(), width=200)
    console.print(board._table())
    text = console.file.getvalue()
    assert "0 of 3 done, 1 running, 2 pending, ETA 5:30" in text  # 90 + 2 × 120 s, one at a time
    lines = [line for line in text.splitlines() if " ms " in line]
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]  # trial numbers, running first
    assert "alpha" in text and all(v in text for v in ("0.5", "2", "8")) and "pending" in text
    assert "63% 2.5G" in text
    board.close()


def test_a_first_line_before_any_trial_starts():
    out = io.StringIO()
    TrialBoard(stream=out).planned(trials())
    assert out.getvalue() == "4 trial(s) to run\n"


class Clock:
    """A clock the test moves by hand: durations are injected, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_follows_each_kind_of_trial_within_25_percent():
    """amsoftmax trials take ~4 s and ms trials ~60 s (2 epochs each, one at a time): once one trial of each
    kind has finished, the ETA stays within ±25% of the time actually left at every event (the mean over
    finished trials said 1:54 where 3:11 were left, once the second amsoftmax trial had ended)."""
    configs = ExperimentConfig(methods=["amsoftmax", "ms"], dataset="digits", seeds=[0, 1, 2, 3],
                               recipe_overrides={"epochs": 2}).trials()
    ams, ms = configs[:4], configs[4:]
    order = [ams[0], ms[0], ams[1], ms[1], ms[2], ams[2], ms[3], ams[3]]
    durations = {t.trial_id: d for t, d in zip(order, [4.0, 60.0, 4.4, 66.0, 54.0, 3.6, 63.0, 4.2])}
    end = sum(durations.values())
    clock = Clock()
    start = clock.now
    board = TrialBoard(stream=io.StringIO(), live=False, clock=clock)
    board.planned(configs)
    checked = []

    def check() -> None:
        if {"amsoftmax", "ms"} <= {r.trial.spec.method for r in board.rows.values() if r.state == "ok"}:
            left = start + end - clock.now
            if left > 1e-6:  # (the time left after the last trial is 0 up to rounding)
                checked.append((board.eta(), left))

    for trial in order:
        board.started(trial)
        check()
        clock.now += durations[trial.trial_id] / 2
        board.epoch(trial, {"epoch": 1, "loss": 0.5})
        check()
        clock.now += durations[trial.trial_id] / 2
        board.epoch(trial, {"epoch": 2, "loss": 0.4})
        board.finished(TrialRecord(trial_id=trial.trial_id, status="ok", spec=trial.spec, placement=trial.placement,
                                   metrics={"recall@1": 0.9}, history=[{"epoch": 1}, {"epoch": 2}]))
        check()
    assert len(checked) >= 15
    assert all(eta is not None and 0.75 * left <= eta <= 1.25 * left for eta, left in checked), [
        (eta, left) for eta, left in checked if eta is None or not 0.75 * left <= eta <= 1.25 * left]
    board.close()


def test_the_eta_counts_the_slots_the_running_trials_hold():
    """Two trials at once, 100 s each: with two pending, the ETA is one more round, not two."""
    configs = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0, 1, 2, 3],
                               recipe_overrides={"epochs": 2}).trials()
    clock = Clock()
    board = TrialBoard(stream=io.StringIO(), live=False, clock=clock)
    board.planned(configs)
    board.started(configs[0])
    board.started(configs[1])
    clock.now += 50
    board.epoch(configs[0], {"epoch": 1})
    board.epoch(configs[1], {"epoch": 1})
    assert board.eta() == pytest.approx(50 + 100)  # both finish in 50 s, then the two pending run side by side


def test_hyperparameter_columns_are_grouped_per_method():
    """ms's alpha and proxyanchor's alpha are two columns; with more than fit, one column shows each row's
    own varying hyperparameters, so that triplet's margin and amsoftmax's scale both appear."""
    from rich.console import Console

    def varied(method: str, name: str, values: list) -> list:
        base = ExperimentConfig(methods=[method], dataset="digits", seeds=[0]).trials()[0]
        return [base.with_spec(hparams={**base.spec.hparams, name: v}) for v in values]

    board = TrialBoard(stream=io.StringIO(), live=True)
    board.planned(varied("ms", "alpha", [2.0, 8.0]) + varied("proxyanchor", "alpha", [16.0, 32.0]))
    assert board.hparam_columns() == [("ms", "alpha"), ("proxyanchor", "alpha")]
    console = Console(file=io.StringIO(), width=240)
    console.print(board._table())
    header = next(line for line in console.file.getvalue().splitlines() if "method" in line)
    assert "ms.alpha" in header and "proxyanchor.alpha" in header and " alpha " not in header
    board.close()
    board = TrialBoard(stream=io.StringIO(), live=True)
    board.planned(varied("triplet", "margin", [0.1, 0.2]) + varied("amsoftmax", "scale", [16.0, 64.0])
                  + varied("ms", "alpha", [2.0, 8.0]) + varied("ms", "beta", [10.0, 50.0])
                  + varied("proxyanchor", "alpha", [16.0, 32.0]))
    assert len(board.hparam_columns()) == 5  # more than MAX_HPARAM_COLUMNS: one column
    console = Console(file=io.StringIO(), width=240)
    console.print(board._table())
    text = console.file.getvalue()
    assert "hyperparameters" in text and "margin=0.1" in text and "scale=64" in text and "alpha=32" in text
    board.close()


def test_a_search_numbers_its_trials_as_optuna_does():
    """Trials announced with their own numbers (a search's) keep them in the live table."""
    from rich.console import Console

    base = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0]).trials()[0]
    proposals = [base.with_spec(hparams={**base.spec.hparams, "alpha": a}) for a in (1.0, 2.0)]

    class Numbered:
        def __iter__(self):
            return iter(proposals)

        def number_of(self, trial):
            return {proposals[0].trial_id: "4", proposals[1].trial_id: "5"}.get(trial.trial_id)

    board = TrialBoard(stream=io.StringIO(), live=True)
    board.planned(Numbered())
    for trial in proposals:
        board.started(trial)
    console = Console(file=io.StringIO(), width=200)
    console.print(board._table())
    lines = [line for line in console.file.getvalue().splitlines() if " ms " in line]
    assert [line.split()[1] for line in lines] == ["4", "5"]
    board.close()
