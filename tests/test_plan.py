"""The plan below the commands (issue 32 item 3, issue 33 item 2): records read once per command, finished
trials kept, and the default executor running in this process where Ray would bring nothing."""
from __future__ import annotations

from collections import Counter

import pytest

from harness.cli import main
from harness.core.store import TrialStore
from harness.scheduling.executor_registry import EXECUTORS
from harness.scheduling.plan import ExecutorChoice

PIXELS = ["run", "--methods", "pixels", "--dataset", "digits", "--no-progress"]  # pixels trains no epoch: fast


@pytest.fixture
def no_ray(monkeypatch):
    """The ``ray`` executor refuses to start (a run that starts Ray fails)."""
    def refuse(options):
        raise AssertionError("Ray was started")

    monkeypatch.setitem(EXECUTORS._entries, "ray", refuse)


def test_one_trial_runs_in_this_process_without_ray_and_says_so(tmp_path, no_ray, capsys):
    assert main([*PIXELS, "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("running in this process without Ray (one trial") == 1
    [(_, record)] = list(TrialStore(tmp_path).records())
    assert record.ok and record.nodes == []  # no Ray node ran it


def test_ray_is_used_where_named_or_where_trials_can_run_at_once(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert ExecutorChoice().executor_name(1) == "local"
    assert ExecutorChoice(max_concurrent=1).executor_name(5) == "local"   # one at a time: nothing concurrent
    assert ExecutorChoice(cpus_per_trial=2).executor_name(5) == "local"   # a trial holds both CPUs
    assert ExecutorChoice().executor_name(2) == "ray"                     # two trials on two CPUs
    assert ExecutorChoice(name="ray").executor_name(1) == "ray"           # named: always
    assert ExecutorChoice(address="auto").executor_name(1) == "ray"       # a cluster joined
    assert ExecutorChoice(storage="s3://b/p").executor_name(1) == "ray"   # Tune's storage asked for


def test_a_run_reads_each_record_once_and_keeps_finished_trials(tmp_path, no_ray, monkeypatch, capsys):
    """Three seeds, then the same run again: every record file is read once per command (the protocol check,
    the finished trials, the leaderboard files and the printed table all use that one reading)."""
    args = [*PIXELS, "--seeds", "0,1,2", "--executor", "local", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    reads: Counter = Counter()
    read = TrialStore.read_record_file

    def counting(path):
        reads[str(path)] += 1
        return read(path)

    monkeypatch.setattr(TrialStore, "read_record_file", staticmethod(counting))
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("finished already") == 3 and "digits: 3 trials" in out
    assert len(reads) == 3 and set(reads.values()) == {1}
