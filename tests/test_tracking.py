"""TensorBoard and MLflow in the harness's units (issue 33 item 7): metrics in percent as the tables show them and
named so, each epoch once, the final metrics once, hyperparameters in TensorBoard's HPARAMS tab only, and no
event file or run for a trial the command did not run. Read back with TensorBoard's own event reader and
MLflow's client."""
from __future__ import annotations

import pytest

from harness.core.record import TrialRecord
from harness.experiment import ExperimentConfig
from harness.scheduling.tracking import MLflowLogger, TensorBoardLogger

EPOCHS = [{"epoch": 1, "loss": 0.5, "steps_per_s": 12.5, "val_recall@1": 0.8, "val_map@r": 0.3},
          {"epoch": 2, "loss": 0.25, "steps_per_s": 12.0, "val_recall@1": 0.85, "val_map@r": 0.35}]


def four_trials():
    """A validation trial (a search's), a test trial, one that fails before its first epoch, one kept from an
    earlier command."""
    test, failing, kept = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0, 1, 2],
                                           recipe_overrides={"epochs": 2}).trials()
    return test.with_spec(eval_split="val", role="search"), test, failing, kept


def play(listener) -> None:
    val, test, failing, kept = four_trials()
    listener.planned([val, test, failing, kept])
    for trial in (val, test, failing):
        listener.started(trial)
    for metrics in EPOCHS:
        listener.epoch(val, metrics)
        listener.epoch(test, {k: v for k, v in metrics.items() if not k.startswith("val_")})
    history = [{"epoch": 1}, {"epoch": 2}]
    listener.finished(TrialRecord(trial_id=val.trial_id, status="ok", spec=val.spec, placement=val.placement,
                                  metrics={"recall@1": 0.85, "map@r": 0.35, "nmi": 0.6}, history=history))
    listener.finished(TrialRecord(trial_id=test.trial_id, status="ok", spec=test.spec, placement=test.placement,
                                  metrics={"recall@1": 0.9065, "map@r": 0.5, "utilization": 0.42}, history=history))
    listener.finished(TrialRecord.failed(failing, "TrialFailed: CUDA out of memory"))
    listener.finished(TrialRecord(trial_id=kept.trial_id, status="ok", spec=kept.spec, placement=kept.placement,
                                  metrics={"recall@1": 0.7}, history=history))
    listener.close()


def test_tensorboard_logs_percent_each_epoch_once_and_hyperparameters_in_the_hparams_tab(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    play(TensorBoardLogger(tmp_path))
    val, test, failing, kept = four_trials()
    folder = tmp_path / val.placement.experiment
    assert sorted(p.name for p in folder.iterdir()) == sorted([val.trial_id, test.trial_id])  # none for the others
    runs = {}
    for trial in (val, test):
        files = list((folder / trial.trial_id).iterdir())
        assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")  # one event file, in the run
        runs[trial.trial_id] = events = EventAccumulator(str(folder / trial.trial_id))
        events.Reload()
        assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("hparam/")]

    def points(trial, tag):
        return [(e.step, round(e.value, 4)) for e in runs[trial.trial_id].Scalars(tag)]

    assert sorted(runs[val.trial_id].Tags()["scalars"]) == [
        "train/loss", "train/steps_per_s", "val/map@r (%)", "val/nmi (%)", "val/recall@1 (%)"]
    assert points(val, "val/recall@1 (%)") == [(1, 80.0), (2, 85.0)]  # its last epoch is its final: logged once
    assert points(val, "val/nmi (%)") == [(2, 60.0)] and points(val, "train/loss") == [(1, 0.5), (2, 0.25)]
    assert sorted(runs[test.trial_id].Tags()["scalars"]) == [
        "test/map@r (%)", "test/recall@1 (%)", "test/utilization", "train/loss", "train/steps_per_s"]
    assert points(test, "test/recall@1 (%)") == [(2, 90.65)]  # as the tables print it
    assert points(test, "test/utilization") == [(2, 0.42)]     # declared as a plain number, not in percent
    content = runs[test.trial_id].PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    params = dict(session.session_start_info.hparams)
    assert params["method"].string_value == "ms" and params["seed"].number_value == test.spec.seed
    assert params["hparam.alpha"].number_value == pytest.approx(test.spec.hparams["alpha"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert sorted(m.name.tag for m in experiment.experiment.metric_infos) == [
        "test/map@r (%)", "test/recall@1 (%)", "test/utilization"]  # the scalars above, not copies of them


def test_mlflow_logs_the_same_values_named_for_mlflow(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    play(MLflowLogger(uri))
    val, test, failing, kept = four_trials()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(val.placement.experiment)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {val.trial_id, test.trial_id, failing.trial_id}  # the kept trial ran in an earlier command

    def points(trial, name):
        return [(m.step, round(m.value, 4)) for m in client.get_metric_history(runs[trial.trial_id].info.run_id, name)]

    assert points(val, "val/recall_at_1_pct") == [(1, 80.0), (2, 85.0)] and points(val, "val/nmi_pct") == [(2, 60.0)]
    assert points(test, "test/recall_at_1_pct") == [(2, 90.65)] and points(test, "test/utilization") == [(2, 0.42)]
    assert points(test, "train/loss") == [(1, 0.5), (2, 0.25)]
    assert float(runs[test.trial_id].data.params["hparam.alpha"]) == test.spec.hparams["alpha"]
    assert runs[test.trial_id].info.status == "FINISHED"
    assert runs[failing.trial_id].info.status == "FAILED" and runs[failing.trial_id].data.tags["status"] == "failed"
