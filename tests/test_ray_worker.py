"""What a Ray worker does to its process and its files (issue 32 item 6): a reused worker process keeps its
folder and import path, and a trial on a node without the results folder leaves no scratch folder behind.
Run in this process, without a Ray session: the keeper is called directly."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from harness.core.store import TrialStore  # noqa: E402
from harness.experiment import ExperimentConfig  # noqa: E402
from harness.scheduling import ray_compat  # noqa: E402
from harness.scheduling.ray_executor import WorkerSetup  # noqa: E402
from harness.scheduling.trial_files import RelayedStore, ResultsKeeper, store_for, visibility_token  # noqa: E402


def trial():
    return ExperimentConfig(methods=["pixels"], dataset="digits", seeds=[0]).trials()[0]


def test_a_reused_worker_imports_the_drivers_plugins_without_changing_its_folder_or_import_path(tmp_path, monkeypatch):
    driver = tmp_path / "driver"
    (driver / "dmlbench_test_pkg").mkdir(parents=True)
    (driver / "dmlbench_test_plugin.py").write_text("IMPORTED = True\n")
    (driver / "dmlbench_test_pkg" / "__init__.py").write_text("")
    (driver / "dmlbench_test_pkg" / "extra.py").write_text("IMPORTED = True\n")
    worker = tmp_path / "tune-trial-dir"  # where Tune leaves a trial's worker
    worker.mkdir()
    monkeypatch.chdir(worker)
    cwd, path = os.getcwd(), list(sys.path)
    setup = WorkerSetup(cwd=str(driver), results_dir=str(driver / "results"), sys_path=(str(driver),),
                        plugins=("dmlbench_test_plugin", "dmlbench_test_pkg.extra"), cpus=1, gpus=0,
                        max_concurrent=None, resume=False)
    try:
        for _ in range(2):  # two trials in one reused process
            setup.apply()
            assert os.getcwd() == cwd and sys.path == path
        assert sys.modules["dmlbench_test_plugin"].IMPORTED and sys.modules["dmlbench_test_pkg.extra"].IMPORTED
    finally:
        for name in ("dmlbench_test_plugin", "dmlbench_test_pkg", "dmlbench_test_pkg.extra"):
            sys.modules.pop(name, None)
    missing = WorkerSetup(cwd=str(driver), results_dir="", sys_path=(str(driver),), plugins=("dmlbench_no_such",),
                          cpus=1, gpus=0, max_concurrent=None, resume=False)
    with pytest.raises(ImportError, match="dmlbench_no_such"):
        missing.apply()

    # relative paths of the placement are the driver's folder's, in the placement the trial runs under
    monkeypatch.setattr(ray_compat, "node_capacity", lambda: (2.0, 0.0, 8 * 2**30))
    planned = trial().with_placement(data_root="data/digits", pretrained="/weights/a.pth")
    placed = setup.place(planned)
    assert (placed.data_root, placed.pretrained, placed.device) == (str(driver / "data/digits"), "/weights/a.pth", "cpu")
    assert os.getcwd() == cwd


def test_a_relayed_store_sends_its_files_to_the_driver_and_removes_its_scratch_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_compat, "call", lambda method, *args: method(*args))  # the keeper, in this process
    driver = tmp_path / "driver-results"
    keeper, token, done = ResultsKeeper(str(driver)), visibility_token("run"), trial()
    with store_for(str(driver), token, keeper) as store:  # the token is not there: this node cannot see the folder
        assert isinstance(store, RelayedStore) and store.root.is_dir() and not store.root.is_relative_to(driver)
        scratch = store.root
        model = store.save_model(done, b"weights")
        store.save_checkpoint(done, b"epoch 3")
        assert store.load_checkpoint(done, Path.read_bytes) == b"epoch 3"
        assert not model.exists()  # sent, not kept on the node
    assert not scratch.exists()
    assert (driver / model.relative_to(scratch)).read_bytes() == b"weights"
    with pytest.raises(RuntimeError), store_for(str(driver), token, keeper) as store:
        scratch = store.root
        raise RuntimeError("the trial's worker failed")
    assert not scratch.exists()

    (driver / token).write_text("run")  # a node that sees the driver's folder writes there itself
    with store_for(str(driver), token, keeper) as store:
        assert type(store) is TrialStore and store.root == driver
    assert (driver / token).is_file()
