"""A trial's identity apart from its placement: the id hashes the spec alone (every spec field changes it, no
placement field does), every committed record keeps its id through the split, and a command's store is built
once and handed down (executors and ``run_trial`` write through it, never a store rebuilt from a path)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from harness.core.placement import Placement
from harness.core.record import RecordError, TrialRecord
from harness.core.spec import TrialSpec
from harness.core.store import TrialStore
from harness.core.trial import Trial
from harness.engine.runner import Attempt, execute_trial, run_trial
from harness.experiment import ExperimentConfig
from harness.scheduling.executors import LocalExecutor

RESULTS = Path(__file__).resolve().parents[1] / "results"
SPEC = TrialSpec(method="ms", dataset="digits", seed=0, recipe={"name": "digits", "epochs": 8}, backbone="small_cnn",
                 embedding_dim=64, hparams={"alpha": 2.0}, method_settings={"pooling": None}, code="abc")
#: a changed value of every spec field (``folds`` and ``fold`` on a cross-validated validation spec)
SPEC_CHANGES = {"method": "triplet", "dataset": "omniglot", "seed": 1, "recipe": {"name": "digits", "epochs": 9},
                "backbone": "resnet18", "embedding_dim": 128, "hparams": {"alpha": 2.5},
                "method_settings": {"pooling": "max"}, "pretrained_sha256": "0" * 64, "val_fraction": 0.3,
                "eval_split": "val", "role": "sweep", "code": "abd"}
FOLD_CHANGES = {"folds": 4, "fold": 2}
PLACEMENT_CHANGES = {"experiment": "elsewhere", "results_dir": "/tmp/other-results", "device": "cuda:1",
                     "num_workers": 8, "save_model": False, "data_root": "/data/digits", "pretrained": "/w/a.pth",
                     "image_cache_bytes": 1 << 30, "extra_metrics": ["utilization"], "method_family": "pair",
                     "fail_at_epoch": 2}


def test_every_spec_field_changes_the_id_and_no_placement_field_does():
    assert set(SPEC_CHANGES) | set(FOLD_CHANGES) == {f.name for f in fields(TrialSpec)}  # a new field needs a case
    assert set(PLACEMENT_CHANGES) == {f.name for f in fields(Placement)}
    for name, value in SPEC_CHANGES.items():
        assert replace(SPEC, **{name: value}).trial_id != SPEC.trial_id, name
    cross_validated = replace(SPEC, eval_split="val", folds=3, fold=1)
    for name, value in FOLD_CHANGES.items():
        assert replace(cross_validated, **{name: value}).trial_id != cross_validated.trial_id, name
    trial = Trial(SPEC, Placement())
    for name, value in PLACEMENT_CHANGES.items():
        moved = trial.with_placement(**{name: value})
        assert moved.placement != trial.placement and moved.trial_id == trial.trial_id == SPEC.trial_id, name
    assert trial.with_placement(**PLACEMENT_CHANGES).trial_id == SPEC.trial_id


def test_an_experiment_placed_elsewhere_gives_the_same_ids():
    here = ExperimentConfig(methods=["ms", "pixels"], dataset="digits", seeds=[0, 1]).trials()
    there = ExperimentConfig(methods=["ms", "pixels"], dataset="digits", seeds=[0, 1], results_dir="/elsewhere",
                             experiment="moved", device="cpu", num_workers=3, save_model=False,
                             extra_metrics=["utilization"]).trials()
    assert [t.spec for t in here] == [t.spec for t in there] and [t.trial_id for t in here] == [t.trial_id for t in there]
    assert {t.placement.results_dir for t in there} == {"/elsewhere"} and len({t.trial_id for t in here}) == 4


@pytest.mark.parametrize("path", sorted(RESULTS.rglob("record.json")), ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_committed_record_keeps_its_id_and_its_layout(path):
    """Each committed record read through the one record reader and re-hashed through its spec alone has the
    id it was written under (its folder's name); written back, its ``spec`` and ``placement`` sections hold
    every field of its flat version-2 ``config`` as stored, each in the section its dataclass declares (fields
    it predates take their defaults; ``utilization`` is the optional metric it named), and it reads back equal."""
    data = json.loads(path.read_text())
    record = TrialStore.read_record_file(path)
    assert record.spec.trial_id == record.trial_id == data["trial_id"] == path.parent.name
    written = record.to_dict()
    assert written["version"] == 3 and set(written["spec"]) == {f.name for f in fields(TrialSpec)}
    assert set(written["placement"]) == {f.name for f in fields(Placement)}
    stored = data["config"] if "config" in data else {**data["spec"], **data["placement"]}
    stored = {k: v for k, v in stored.items() if k != "utilization"}
    sections = {**written["spec"], **written["placement"]}
    assert {k: sections[k] for k in stored} == stored
    assert set(sections) - set(stored) <= {"code", "method_family", "extra_metrics", "image_cache_bytes"}
    assert TrialRecord.from_dict(json.loads(json.dumps(written, default=str))) == record


def test_a_record_keeps_what_is_hashed_apart_from_the_planned_and_the_actual_placement(tmp_path):
    """Issue 32 item 5: the JSON's ``spec`` section is what the id hashes; ``placement`` is the trial as the
    command planned it (device ``auto``) and ``actual_placement`` what the attempt ran under (the device
    resolved, a worker's loader workers and image cache), neither rewriting the other."""
    trial = ExperimentConfig(methods=["pixels"], dataset="digits", seeds=[0], results_dir=str(tmp_path),
                             recipe_overrides={"epochs": 1}).trials()[0]
    assert trial.placement.device == "auto" and trial.placement.num_workers == 0
    worker = replace(trial.placement, device="cpu", num_workers=1, image_cache_bytes=1 << 20)
    store = TrialStore(tmp_path)
    record = execute_trial(trial.spec, trial.placement, store, Attempt(progress=False, placement=worker))
    assert record.ok and record.placement == trial.placement and record.actual_placement == worker
    assert record.loading["loader_workers"] == 1  # it did run with the worker's loader processes
    store.write_record(record)
    data = json.loads(store.record_path(trial).read_text())
    assert data["version"] == 3 and "config" not in data
    assert hashlib.sha1(json.dumps(TrialSpec(**data["spec"]).identity(), sort_keys=True).encode()).hexdigest()[:10] \
        == record.trial_id.rsplit("-", 1)[1]
    assert (data["placement"]["device"], data["placement"]["num_workers"], data["placement"]["image_cache_bytes"]) \
        == ("auto", 0, None)
    assert (data["actual_placement"]["device"], data["actual_placement"]["num_workers"],
            data["actual_placement"]["image_cache_bytes"]) == ("cpu", 1, 1 << 20)
    assert TrialStore.read_record_file(store.record_path(trial)) == record
    planned_only = execute_trial(trial.spec, trial.placement, store, Attempt(progress=False))
    assert planned_only.actual_placement == replace(trial.placement, device="cpu")  # "auto" resolved, nothing else


def test_old_and_new_records_are_read_by_one_reader_and_a_bad_section_is_named():
    spec, placement = SPEC, Placement(experiment="e", device="cuda:1")
    new = TrialRecord(trial_id=spec.trial_id, status="ok", spec=spec, placement=placement, metrics={"recall@1": 0.5})
    data = new.to_dict()
    old = {k: v for k, v in data.items() if k not in ("spec", "placement", "actual_placement")}
    old.update(version=2, config={**data["spec"], **data["placement"], "utilization": True})
    del old["config"]["extra_metrics"]
    assert TrialRecord.from_dict(old) == replace(new, placement=replace(placement, extra_metrics=["utilization"]))
    assert TrialRecord.from_dict(data) == new
    for broken, message in [({**data, "spec": {**data["spec"], "colour": 1}}, "unknown spec field"),
                            ({**data, "placement": {**data["placement"], "colour": 1}}, "unknown placement field"),
                            ({k: v for k, v in data.items() if k != "placement"}, "missing placement"),
                            ({**old, "config": [1]}, "config is"), ({**data, "version": 4}, "reads versions 2, 3")]:
        with pytest.raises(RecordError, match=message):
            TrialRecord.from_dict(broken)


def test_committed_records_are_all_found():
    assert len(list(RESULTS.rglob("record.json"))) >= 200  # the parametrised test above is not vacuous


def test_executors_and_run_trial_write_through_the_store_handed_down(tmp_path, monkeypatch):
    """No store is rebuilt from a path while trials run: the records, checkpoints and weights land in the store
    handed to the executor (or to ``run_trial``), even where a placement names another folder."""
    monkeypatch.chdir(tmp_path)
    trials = [t.with_placement(results_dir="named-in-placement") for t in ExperimentConfig(
        methods=["ms", "pixels"], dataset="digits", recipe_overrides={"epochs": 1}).trials()]
    store = TrialStore(tmp_path / "handed-down")
    built = []
    original = TrialStore.__init__
    monkeypatch.setattr(TrialStore, "__init__", lambda self, root="results": (built.append(root), original(self, root))[1])
    with LocalExecutor(store, progress=False, cpus_per_trial=1, listeners=[]) as executor:
        records = executor.run(trials)
    assert built == [] and [r.status for r in records] == ["ok", "ok"]
    assert sorted(p.parent.name for p in store.record_files()) == sorted(t.trial_id for t in trials)
    assert (store.trial_dir(trials[0]) / "model.pt").is_file() and not (tmp_path / "named-in-placement").exists()

    checkpoints = []
    again = TrialStore(tmp_path / "direct")
    record = run_trial(trials[0].spec, trials[0].placement, again,
                       Attempt(on_epoch=lambda metrics, checkpoint: checkpoints.append(checkpoint), progress=False))
    assert record.ok and checkpoints == [again.checkpoint_path(trials[0])] and again.record_files() == []
    assert record.metrics == records[0].metrics  # the same spec on the CPU: the same numbers, wherever placed
