"""The trial store and record: exact resume, safe loading, atomic writes with the umask's permissions,
unwritable folders, and trial identity from the resolved configuration. Each test injects its fault."""
from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.core.record import RecordError, TrialRecord
from harness.core.store import TrialStore, UnsafeFileError
from harness.core.trial import Trial
from harness.engine.tensor_files import load_tensors
from harness.engine.runner import Attempt, execute_trial
from harness.experiment import ExperimentConfig

FAST = ["--dataset", "digits", "--no-progress", "--executor", "local", "--cpus-per-trial", "1"]


def digits_trial(tmp_path: Path, method: str = "ms", epochs: int = 3, **hparams) -> Trial:
    experiment = ExperimentConfig(methods=[method], dataset="digits", results_dir=str(tmp_path),
                                  recipe_overrides={"epochs": epochs}, hparams={method: hparams} if hparams else {})
    return experiment.trials()[0]


def execute(trial: Trial, store: TrialStore, resume: bool = False) -> TrialRecord:
    """``execute_trial`` of ``trial`` through ``store``, without a progress bar."""
    return execute_trial(trial.spec, trial.placement, store, Attempt(resume=resume, progress=False))


def test_a_resumed_trial_equals_an_uninterrupted_one(tmp_path):
    """Interrupt a trial after epoch 2 of 4 (its epoch checkpoint stays), resume it: same history and
    metrics as a run that was never interrupted, on the CPU with the same threads."""
    torch.set_num_threads(1)
    whole = execute(digits_trial(tmp_path / "whole", epochs=4), TrialStore(tmp_path / "whole"))
    trial = digits_trial(tmp_path / "cut", epochs=4)
    store = TrialStore(tmp_path / "cut")
    failed = execute(trial.with_placement(fail_at_epoch=3), store)
    assert failed.status == "failed" and store.checkpoint_path(trial).exists()
    resumed = execute(trial, store, resume=True)
    assert resumed.ok and resumed.resumed_at_epoch == 2 and whole.resumed_at_epoch is None
    strip = lambda history: [{k: v for k, v in h.items() if k != "steps_per_s"} for h in history]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    assert resumed.metrics == whole.metrics
    assert resumed.wall_time_s > 0 and not store.checkpoint_path(trial).exists()


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {Payload.marker}",))


def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    trial = digits_trial(tmp_path, epochs=2)
    store = TrialStore(tmp_path)
    path = store.checkpoint_path(trial)
    path.parent.mkdir(parents=True)
    Payload.marker = str(tmp_path / "pwned")
    torch.save({"trainer": Payload()}, path)
    with pytest.raises(UnsafeFileError, match=str(path)):
        load_tensors(path)
    record = execute(trial, store, resume=True)
    assert record.status == "failed" and str(path) in record.error and "not loaded" in record.error
    assert not (tmp_path / "pwned").exists()


def test_a_truncated_checkpoint_is_named_and_the_trial_starts_again(tmp_path):
    trial = digits_trial(tmp_path, epochs=2)
    store = TrialStore(tmp_path)
    execute(trial.with_placement(fail_at_epoch=2), store)
    path = store.checkpoint_path(trial)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.warns(UserWarning, match=f"{path} is truncated"):
        record = execute(trial, store, resume=True)
    assert record.ok and record.resumed_at_epoch is None and len(record.history) == 2


def test_files_are_written_atomically_with_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["run", "--methods", "pixels", "--results-dir", str(tmp_path), *FAST]) == 0
    finally:
        os.umask(old)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "record.json" for p in written) and any(p.suffix == ".csv" for p in written)
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o644}
    assert not [p for p in written if p.name.endswith(".tmp")]


def test_checkpoints_hold_tensors_and_plain_types_only(tmp_path):
    trial = digits_trial(tmp_path, epochs=2)
    store = TrialStore(tmp_path)
    execute(trial.with_placement(fail_at_epoch=2), store)
    state = torch.load(store.checkpoint_path(trial), weights_only=True)  # raises on anything else
    assert set(state) == {"trainer", "rng", "loader", "history", "elapsed_s", "nodes"}
    assert state["trainer"]["epoch"] == 1 and len(state["loader"]["sampler_labels"]) == 5


def test_an_unwritable_results_folder_fails_before_any_trial(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["run", "--methods", "ms", "--results-dir", str(blocker / "results"), *FAST]) == 2
    assert f"the results folder {blocker / 'results'} is not writable" in capsys.readouterr().err
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not os.access(folder, os.W_OK):  # (root writes anywhere: then only the case above applies)
            assert main(["run", "--methods", "ms", "--results-dir", str(folder), *FAST]) == 2
            assert f"the results folder {folder} is not writable" in capsys.readouterr().err
    finally:
        folder.chmod(0o755)
    assert not list(tmp_path.rglob("record.json"))


def test_a_record_that_cannot_be_written_fails_that_trial_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    calls = []
    original = TrialStore.write_record

    def full_disk_once(self, record):
        calls.append(record.trial_id)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return original(self, record)

    monkeypatch.setattr(TrialStore, "write_record", full_disk_once)
    code = main(["run", "--methods", "pixels", "--seeds", "0,1", "--results-dir", str(tmp_path), *FAST])
    out = capsys.readouterr()
    assert code == 1 and "No space left on device" in out.err and len(calls) == 2
    assert len(list(tmp_path.glob("runs/*/*/record.json"))) == 1


def test_explicit_defaults_give_the_same_trial_id_and_a_changed_default_a_new_one(tmp_path, monkeypatch):
    from methods.ms import MultiSimilarity

    plain = digits_trial(tmp_path).trial_id
    default = MultiSimilarity.hparams["alpha"].default
    assert digits_trial(tmp_path, alpha=default).trial_id == plain
    assert digits_trial(tmp_path, alpha=float(default)).trial_id == plain
    assert digits_trial(tmp_path, alpha=default + 1).trial_id != plain
    monkeypatch.setattr(MultiSimilarity, "hparams", {**MultiSimilarity.hparams,
                                                     "alpha": replace(MultiSimilarity.hparams["alpha"], default=3.0)})
    assert digits_trial(tmp_path).trial_id != plain
    monkeypatch.setattr(MultiSimilarity, "lr_multiplier", 10.0)
    trial = digits_trial(tmp_path)
    assert trial.spec.method_settings["lr_multiplier"] == 10.0 and trial.spec.hparams["alpha"] == 3.0


def test_pretrained_weights_enter_the_identity_by_content_not_path(tmp_path):
    a, b, c = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    torch.save({"w": torch.zeros(2)}, a)
    b.write_bytes(a.read_bytes())
    torch.save({"w": torch.ones(2)}, c)

    def trial(path: Path):
        return ExperimentConfig(methods=["ms"], dataset="digits", pretrained=str(path)).trials()[0]

    assert trial(a).trial_id == trial(b).trial_id != trial(c).trial_id
    assert len(trial(a).spec.pretrained_sha256) == 64


def test_records_are_validated_when_read(tmp_path):
    record = execute(digits_trial(tmp_path, method="pixels"), TrialStore(tmp_path))
    data = record.to_dict()
    assert TrialRecord.from_dict(json.loads(json.dumps(data, default=str))) == record
    for change, message in [({"version": 1}, "version"), ({"metrics": {"recall@1": None}}, "not a number"),
                            ({"metrics": {"recall@1": "high"}}, "not a number"), ({"status": "done"}, "status"),
                            ({"trial_id": "other"}, "does not match")]:
        with pytest.raises(RecordError, match=message):
            TrialRecord.from_dict({**data, **change})
    assert record.harness_version and record.spec.pretrained_sha256 is None


def test_pickle_is_never_needed_to_read_a_results_folder(tmp_path):
    """Every weights and embeddings file a run leaves loads without unpickling anything."""
    import numpy as np

    assert main(["run", "--methods", "ms", "--epochs", "1", "--results-dir", str(tmp_path), *FAST]) == 0
    weights, embeddings = list(tmp_path.rglob("*.pt")), list(tmp_path.rglob("*.npz"))
    assert [p.name for p in weights] == ["model.pt"] and [p.name for p in embeddings] == ["embeddings.npz"]
    assert set(load_tensors(weights[0])) and all(isinstance(v, torch.Tensor) for v in load_tensors(weights[0]).values())
    with np.load(embeddings[0], allow_pickle=False) as arrays:
        assert arrays["query"].shape == (len(arrays["query_labels"]), 512)
