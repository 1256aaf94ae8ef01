"""Issue 34 (3, 4, 12, 13, 19): ``reproduce`` never writes into the results folder that holds what it checks,
re-runs only the record's own code, and refuses up front, one line per record and before any scratch folder,
what it cannot re-run here: a method a plugin not loaded registers, code whose fingerprint differs, a device
or dataset folder this machine lacks, a thread count that is not one. A whole ``runs/`` folder is a target."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.scheduling.reproduction import record_files
from harness.core.record import TrialRecord
from harness.core.store import TrialStore

PIXELS = ["run", "--methods", "pixels", "--dataset", "digits", "--executor", "local", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, TrialRecord]:
    """A results folder holding one finished trial (pixels on digits: no training) and its record."""
    results = tmp_path_factory.mktemp("reproduce") / "results"
    assert main([*PIXELS, "--results-dir", str(results)]) == 0
    [(path, record)] = list(TrialStore(results).records())
    return path, record


def crafted(record: TrialRecord, folder: Path, *, spec: dict | None = None, placement: dict | None = None,
            environment: dict | None = None) -> Path:
    """``record`` with some spec, placement or environment fields changed, written as a record of its own."""
    new_spec = replace(record.spec, **(spec or {}))
    again = replace(record, trial_id=new_spec.trial_id, spec=new_spec, placement=replace(record.placement, **(placement or {})),
                    environment={**record.environment, **(environment or {})})
    return TrialStore(folder).write_record(again)


def refused_lines(argv: list[str], scratch: Path, capsys) -> list[str]:
    assert main(["reproduce", *argv, "--out", str(scratch), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not scratch.exists()
    return err


def test_reproduce_never_writes_into_the_records_results_folder(finished, capsys):
    path, _ = finished
    results = path.parents[3]
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    for out in (results, results / "scratch"):
        assert main(["reproduce", str(path.parent), "--out", str(out), "--no-progress"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert f"the results folder {results.resolve()} that holds {path}" in line and "a re-run never writes" in line
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("changes, message", [
    ({"spec": {"method": "my_loss"}}, "unknown method 'my_loss'; valid methods: "),
    ({"spec": {"code": "0123456789abcdef"}}, "pixels's code here (fingerprint "),
    ({"placement": {"device": "cuda:0"}}, "--device cuda:0: this machine has 0 CUDA device(s) (the record's device); "
                                          "give --device, e.g. --device cpu"),
    ({"placement": {"data_root": "/nonexistent/digits"}}, "its dataset folder /nonexistent/digits is not a folder on "
                                                          "this machine; give --data-root"),
    ({"environment": {"hardware": {"threads": -1}}}, "its recorded thread count (environment.hardware.threads) is -1, "
                                                     "not a positive integer"),
])
def test_what_cannot_be_rerun_is_refused_up_front(changes, message, finished, tmp_path, capsys):
    if "device" in changes.get("placement", {}):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    _, record = finished
    path = crafted(record, tmp_path / "results", **changes)
    [line] = refused_lines([str(path)], tmp_path / "scratch", capsys)
    assert line.startswith("error: cannot re-run ") and message in line
    if "method" in changes.get("spec", {}):
        assert "load it: python -m harness --plugins MODULE reproduce" in line
    if "code" in changes.get("spec", {}):
        assert "is not the code the record ran (fingerprint 0123456789abcdef" in line


def test_one_line_for_each_record_that_cannot_be_rerun(finished, tmp_path, capsys):
    _, record = finished
    for method in ("loss_a", "loss_b"):
        crafted(record, tmp_path / "results", spec={"method": method})
    lines = refused_lines([str(tmp_path / "results" / "runs")], tmp_path / "scratch", capsys)
    assert len(lines) == 2 and all("if a plugin registers it, load it" in line for line in lines)


def test_a_whole_runs_or_results_folder_is_a_target(finished):
    path, _ = finished
    results = path.parents[3]
    assert record_files(str(results / "runs"), ()) == [path]
    assert record_files(str(results), ()) == [path]
    assert record_files(str(path.parents[1]), ()) == [path]


def test_the_record_device_can_be_replaced(finished, tmp_path, capsys):
    """A record that ran on a device this machine lacks re-runs on ``--device cpu`` (pixels: to zero drift)."""
    _, record = finished
    path = crafted(record, tmp_path / "results", placement={"device": "cuda:7"})
    assert main(["reproduce", str(path), "--out", str(tmp_path / "scratch"), "--device", "cpu", "--no-progress"]) == 0
    assert "reproduced" in capsys.readouterr().out
