"""Trackers: listeners of trial events that log every trial to TensorBoard or MLflow.

* :class:`TensorBoardLogger`: per-epoch metrics of every trial to TensorBoard event files,
  ``<results>/tensorboard/<experiment>/<trial_id>``, and each finished trial's hyperparameters beside
  its final metrics (the HPARAMS tab; ``tensorboard --logdir results/tensorboard``).
* :class:`MLflowLogger`: one MLflow run per trial (parameters, per-epoch and final metrics, tags), in
  a local SQLite store ``<results>/mlflow.db`` by default (``mlflow ui --backend-store-uri
  sqlite:///results/mlflow.db``).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.core.metrics import base_metric
from harness.core.record import TrialRecord
from harness.core.trial import Trial


def trial_params(trial: Trial) -> dict[str, Any]:
    """A trial's parameters as trackers show them: what it runs and every resolved hyperparameter."""
    spec = trial.spec
    return {"method": spec.method, "dataset": spec.dataset, "seed": spec.seed, "backbone": spec.backbone,
            "embedding_dim": spec.embedding_dim, "recipe": spec.recipe["name"], "epochs": spec.recipe["epochs"],
            "split": spec.eval_split, **{f"hparam.{k}": v for k, v in spec.hparams.items()}}


def final_metrics(record: TrialRecord) -> dict[str, float]:
    """A finished trial's metrics named by the split they were computed on (``test/recall@1``)."""
    return {f"{record.spec.eval_split}/{name}": float(value) for name, value in record.metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def epoch_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """An epoch's numeric metrics as ``train/<name>`` and ``val/<name>`` (``epoch`` is the step)."""
    return {f"{base_metric(name)[0] or 'train'}/{base_metric(name)[1]}": float(value)
            for name, value in metrics.items()
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardLogger:
    """Every trial's per-epoch metrics (and its final ones) as TensorBoard scalars, and its
    hyperparameters beside its final metrics in the HPARAMS tab (needs ``tensorboard``:
    ``pip install -e ".[tracking]"``)."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - depends on the optional extra
            raise ImportError('--tensorboard needs TensorBoard: pip install -e ".[tracking]"') from None
        self.folder = Path(folder)
        self._writer_class = SummaryWriter
        self.writers: dict[str, Any] = {}

    def _writer(self, trial: Trial):
        if trial.trial_id not in self.writers:
            self.writers[trial.trial_id] = self._writer_class(str(self.folder / trial.placement.experiment / trial.trial_id))
        return self.writers[trial.trial_id]

    def planned(self, trials: Iterable[Trial]) -> None:
        """Nothing to log before a trial starts."""

    def started(self, trial: Trial) -> None:
        self._writer(trial)

    def epoch(self, trial: Trial, metrics: dict[str, Any]) -> None:
        writer, step = self._writer(trial), int(metrics.get("epoch", 0))
        for name, value in epoch_scalars(metrics).items():
            writer.add_scalar(name, value, step)
        writer.flush()

    def finished(self, record: TrialRecord) -> None:
        writer = self._writer(record.trial)
        step = len(record.history)
        metrics = final_metrics(record)
        for name, value in metrics.items():
            writer.add_scalar(name, value, step)
        if metrics:
            params = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                      for k, v in trial_params(record.trial).items()}
            writer.add_hparams(params, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        writer.close()
        self.writers.pop(record.trial_id, None)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


class MLflowLogger:
    """One MLflow run per trial, in the experiment of the trial's experiment name: the trial's parameters
    and tags (trial id, status), every epoch's metrics by step and the final metrics (needs the
    ``mlflow`` extra: ``pip install -e ".[mlflow]"``). ``tracking_uri`` defaults to a SQLite file in
    the results folder; MLflow's own ``MLFLOW_TRACKING_URI`` is not read (the CLI decides)."""

    def __init__(self, tracking_uri: str):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ImportError('--mlflow needs MLflow: pip install -e ".[mlflow]"') from None
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.runs: dict[str, str] = {}

    @staticmethod
    def _name(metric: str) -> str:
        """MLflow's metric names allow no ``@``: ``recall@1`` is logged as ``recall_at_1``."""
        return metric.replace("@", "_at_")

    def _experiment_id(self, name: str) -> str:
        existing = self.client.get_experiment_by_name(name)
        return existing.experiment_id if existing is not None else self.client.create_experiment(name)

    def _run(self, trial: Trial) -> str:
        if trial.trial_id not in self.runs:
            run = self.client.create_run(self._experiment_id(trial.placement.experiment), run_name=trial.trial_id,
                                         tags={"trial_id": trial.trial_id, "method": trial.spec.method})
            self.runs[trial.trial_id] = run.info.run_id
            for name, value in trial_params(trial).items():
                self.client.log_param(run.info.run_id, name, value)
        return self.runs[trial.trial_id]

    def planned(self, trials: Iterable[Trial]) -> None:
        """Runs are created when trials start."""

    def started(self, trial: Trial) -> None:
        self._run(trial)

    def epoch(self, trial: Trial, metrics: dict[str, Any]) -> None:
        run, step = self._run(trial), int(metrics.get("epoch", 0))
        for name, value in epoch_scalars(metrics).items():
            self.client.log_metric(run, self._name(name), value, step=step)

    def finished(self, record: TrialRecord) -> None:
        run = self._run(record.trial)
        for name, value in final_metrics(record).items():
            self.client.log_metric(run, self._name(name), value, step=len(record.history))
        self.client.set_tag(run, "status", record.status)
        self.client.set_terminated(run, status="FINISHED" if record.ok else "FAILED")
        self.runs.pop(record.trial_id, None)

    def close(self) -> None:
        for run in self.runs.values():
            self.client.set_terminated(run, status="KILLED")
        self.runs.clear()
