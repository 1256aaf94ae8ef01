"""A careless or hostile user (issue 23): names that would leave the results folder, NaN metrics, Recall@K
beyond the candidates, stale leaderboards, a full disk, a read-only folder, resources this machine lacks,
bad benchmark objectives and folds, embeddings without their arrays. Each test injects its fault; each bad
input gets one line and exit 2 before any folder exists."""
from __future__ import annotations

import errno
import io
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.core.placement import Placement
from harness.core.spec import TrialSpec
from harness.core.recipe import Recipe
from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from test_inputs import refused  # exit 2, one line, no results folder

DIGITS = ["--dataset", "digits", "--no-progress", "--executor", "local"]
FAST = [*DIGITS, "--epochs", "1", "--cpus-per-trial", "1"]


def record(method: str, seed: int, r1: float, dataset: str = "cub", experiment: str = "e") -> TrialRecord:
    spec = TrialSpec(method=method, dataset=dataset, seed=seed, recipe=Recipe(name="default").to_dict(),
                     backbone="resnet50")
    return TrialRecord(trial_id=spec.trial_id, status="ok", spec=spec, placement=Placement(experiment=experiment),
                       metrics={"recall@1": r1, "map@r": r1 / 3}, environment={"device": "cpu"})


def write_raw(store: TrialStore, rec: TrialRecord, **placement_changes) -> Path:
    """Write ``rec`` as JSON with ``placement_changes`` made behind the record's back (a crafted file)."""
    data = rec.to_dict()
    data["placement"].update(placement_changes)
    path = store.runs / rec.placement.experiment / rec.trial_id / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---- 1-2: every name that becomes a path stays inside the results folder --------------------------------

@pytest.mark.parametrize("argv, message", [
    (["run", "--methods", "pixels", "--experiment", "../../x", *DIGITS], "experiment name '../../x' is not a plain"),
    (["run", "--methods", "pixels", "--experiment", "/tmp/x", *DIGITS], "experiment name '/tmp/x' is not a plain"),
    (["run", "--methods", "pixels", "--experiment", "..", *DIGITS], "experiment name '..' is not a plain"),
    (["run", "--methods", "pixels", "--experiment", "a" * 300, *DIGITS], "is 300 characters long; at most 100"),
    (["search", "--method", "ms", "--name", "../../x", "--val-fraction", "0.4", *FAST],
     "search name '../../x' is not a plain"),
    (["benchmark", "--methods", "ms", "--name", "../x", "--val-fraction", "0.4", *FAST],
     "benchmark name '../x' is not a plain"),
])
def test_a_name_that_would_leave_the_results_folder_is_refused(argv, message, tmp_path, capsys):
    assert message in refused(argv, tmp_path, capsys)
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("registration", ["register_method", "register_dataset"])
def test_a_plugin_registering_a_path_like_name_is_refused(registration, tmp_path, monkeypatch, capsys):
    module = f"evil_{registration}"
    (tmp_path / f"{module}.py").write_text(
        "from harness.plugins.method import Method, register_method\n"
        "from harness.plugins.data.base import register_dataset\n"
        + ("@register_method('../../evil')\nclass Evil(Method):\n    pass\n" if registration == "register_method"
           else "@register_dataset('../../evil', channels=1)\ndef evil(root):\n    pass\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["--plugins", module, "list"]) == 2
    finally:
        sys.modules.pop(module, None)
    assert "name '../../evil' is not a plain folder name" in capsys.readouterr().err


def test_the_store_refuses_paths_outside_its_folder_and_crafted_records_are_skipped(tmp_path, capsys):
    store = TrialStore(tmp_path / "results")
    for folder in (store.search_dir, store.benchmark_dir, store.sweep_dir, store.experiment_dir):
        with pytest.raises(ValueError, match="outside the results folder"):
            folder("../../x")
    store.write_record(record("ms", 0, 0.5))
    crafted = write_raw(store, record("ms", 1, 0.7), experiment="../../../escaped")
    assert main(["leaderboard", "--results-dir", str(store.root), "--no-published", "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert f"skipping trial record {crafted}" in err and "experiment name '../../../escaped'" in err
    assert not list(tmp_path.rglob("escaped*"))
    assert sorted(p.name for p in (store.root / "leaderboards").iterdir()) == [
        "e.csv", "e.env.json", "e.long.csv", "e.wide.csv"]


# ---- 3: a non-finite metric makes an ok record invalid ------------------------------------------------------

@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_metric_makes_the_record_invalid_and_the_seed_uncounted(value, tmp_path, capsys):
    store = TrialStore(tmp_path / "results")
    store.write_record(record("ms", 0, 0.5))
    bad = record("ms", 1, 0.7)
    bad.metrics["recall@1"] = value  # (TrialRecord refuses it when built: the file is crafted)
    path = store.runs / "e" / bad.trial_id / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(bad.to_dict()))
    assert main(["leaderboard", "--results-dir", str(store.root), "--no-published", "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert f"skipping trial record {path}: metric 'recall@1' is {value!r}, not a finite number" in err
    board = (store.root / "leaderboards" / "e.csv").read_text().splitlines()
    header, row = board[0].split(","), board[1].split(",")
    assert row[header.index("n_seeds")] == "1" and float(row[header.index("recall@1_mean")]) == 0.5


# ---- 4, 15: evaluate: Recall@K beyond the candidates, embeddings without their arrays --------------------

def trial_folder(tmp_path: Path, **arrays: np.ndarray) -> Path:
    rec = record("ms", 0, 0.5, dataset="digits")
    folder = TrialStore(tmp_path).write_record(rec).parent
    np.savez(folder / "embeddings.npz", **arrays)
    return folder


def test_recall_at_k_beyond_the_candidates_retrieves_them_all(tmp_path, capsys):
    # five queries, leave-one-out (four candidates each); the last query's class has no other member
    folder = trial_folder(tmp_path, query=np.eye(5, dtype=np.float32), query_labels=np.array([0, 0, 1, 1, 2]))
    assert main(["evaluate", str(folder), "--json", "--recall-ks", "1,100000", "--no-nmi",
                 "--metrics", "recall@100000,recall@1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["recall@100000"] == pytest.approx(4 / 5)  # every query with a class mate finds it


@pytest.mark.parametrize("arrays, missing", [
    ({"query": np.eye(4)}, "query_labels"),
    ({"embeddings": np.eye(4), "labels": np.arange(4)}, "query, query_labels"),
    ({"query": np.eye(4), "query_labels": np.arange(4), "gallery": np.eye(4)}, "gallery_labels"),
])
def test_embeddings_without_their_arrays_are_one_line(arrays, missing, tmp_path, capsys):
    folder = trial_folder(tmp_path, **arrays)
    assert main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"embeddings.npz lacks the array(s) {missing}" in err


# ---- 5: a leaderboard whose experiment gains or loses a dataset ---------------------------------------------

def boards(folder: Path) -> set[str]:
    return {p.name.removesuffix(".env.json") for p in folder.glob("*.env.json")}


def test_stale_leaderboards_go_when_the_experiments_datasets_change(tmp_path, capsys):
    store = TrialStore(tmp_path / "results")
    out = store.root / "leaderboards"
    other = record("ms", 0, 0.4, dataset="cub", experiment="e.cars")  # an experiment whose name looks like e's
    for rec in (record("ms", 0, 0.5), record("ms", 1, 0.6), other):
        store.write_record(rec)
    leaderboard = ["leaderboard", "--results-dir", str(store.root), "--no-published"]
    assert main(leaderboard) == 0
    assert boards(out) == {"e", "e.cars"}
    cars = record("ms", 0, 0.7, dataset="cars")
    store.write_record(cars)
    assert main(leaderboard) == 0
    assert f"removed the stale leaderboard {out / 'e'}.* (experiment e now has e@cars, e@cub)" in capsys.readouterr().err
    assert boards(out) == {"e@cub", "e@cars", "e.cars"}  # e's cars board and experiment e.cars's are two files
    assert pd.read_csv(out / "e.cars.csv")["recall@1_mean"].tolist() == [0.4]
    assert pd.read_csv(out / "e@cars.csv")["recall@1_mean"].tolist() == [0.7]
    (store.runs / "e" / cars.trial_id / "record.json").unlink()
    assert main(leaderboard) == 0
    assert boards(out) == {"e", "e.cars"} and "removed the stale leaderboard" in capsys.readouterr().err
    assert not (out / "e@cub.csv").exists() and (out / "e.csv").exists()
    assert pd.read_csv(out / "e.cars.csv")["recall@1_mean"].tolist() == [0.4]


# ---- 11: a full disk names the file ---------------------------------------------------------------------------

class FullDisk(io.BufferedWriter):
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_the_reason_and_names_the_file(tmp_path, monkeypatch, capsys):
    full: set[int] = set()
    mkstemp, fdopen = tempfile.mkstemp, os.fdopen

    def make_temp(*args, **kwargs):
        fd, name = mkstemp(*args, **kwargs)
        (full.add if ".pt." in Path(name).name else full.discard)(fd)  # checkpoints and weights: a full disk
        return fd, name

    def open_fd(fd, mode="r", *args, **kwargs):
        return FullDisk(io.FileIO(fd, "wb")) if fd in full else fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", make_temp)
    monkeypatch.setattr(os, "fdopen", open_fd)
    assert main(["run", "--methods", "ms", "--results-dir", str(tmp_path), *FAST]) == 1
    (path,) = tmp_path.glob("runs/digits/*/record.json")
    error = json.loads(path.read_text())["error"]
    assert error == f"OSError: [Errno 28] No space left on device: '{path.parent / 'checkpoint.pt'}'"
    assert not list(tmp_path.rglob("*.tmp"))


# ---- 16: a read-only results folder ----------------------------------------------------------------------------

@pytest.mark.parametrize("error", [errno.EROFS, errno.EACCES])
def test_leaderboard_on_a_read_only_folder_is_one_line(error, tmp_path, monkeypatch, capsys):
    store = TrialStore(tmp_path / "results")
    store.write_record(record("ms", 0, 0.5))

    def read_only(*args, dir=None, **kwargs):  # as root, chmod stops nothing: inject the refusal
        raise OSError(error, os.strerror(error), str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["leaderboard", "--results-dir", str(store.root), "--no-published"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: [Errno {error}] {os.strerror(error)}: '{store.root / 'leaderboards'}'\n"


# ---- 17: Ray resource flags refused before any folder and before Ray ---------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--gpus-per-trial", f"{torch.cuda.device_count() + 0.3}"], f"GPU(s); this machine has {os.cpu_count()} and"),
    (["--cpus-per-trial", f"{os.cpu_count() + 98}"], f"a trial needs {os.cpu_count() + 98} CPU(s)"),
    (["--max-concurrent", "-1"], "--max-concurrent must be at least 1, got -1"),
    (["--max-concurrent", "0"], "--max-concurrent must be at least 1, got 0"),
])
@pytest.mark.parametrize("command", ["run", "benchmark"])
def test_ray_resource_flags_are_refused_before_any_folder_and_before_ray(command, flags, message, tmp_path, capsys,
                                                                         monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    methods = ["--methods", "pixels"] if command == "run" else ["--methods", "ms", "--val-fraction", "0.4"]
    assert message in refused([command, *methods, "--dataset", "digits", "--no-progress", *flags], tmp_path, capsys)
    assert not ray.is_initialized()


# ---- 12-13: benchmark objective and folds checked first ----------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--folds", "1000"], "--folds 1000: digits has 5 training classes, so a fold would hold 0"),
    (["--folds", "3"], "--folds 3: digits has 5 training classes, so a fold would hold 1; a retrieval metric "
                       "needs at least 2 per fold: --folds 2 at most"),
    (["--metric", "val_nosuch"], "--metric must be a validation metric, one of val_recall@1"),
])
def test_benchmark_folds_and_objective_are_checked_first(flags, message, tmp_path, capsys):
    assert message in refused(["benchmark", "--methods", "ms", *FAST, *flags], tmp_path, capsys)
