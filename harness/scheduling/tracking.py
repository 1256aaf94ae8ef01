"""Trackers: listeners of trial events that log every trial to TensorBoard or MLflow, in the harness's units.

What both log (:class:`TrackedScalars`): every epoch once, at its number as the step (the training loss,
steps per second, GPU use, and a validation trial's metrics), then the trial's final metrics at its last
epoch's step, except those its last epoch logged already (a validation trial's last epoch is its final
evaluation). A metric the tables show in percent is logged in percent and named so (``val/recall@1 (%)``,
in MLflow ``val/recall_at_1_pct``); training statistics are logged as they are. A trial that the command
did not run (kept from an earlier one, ``--resume``) is not logged again.

* :class:`TensorBoardLogger`: one event file per trial, ``<results>/tensorboard/<experiment>/<trial_id>``,
  made when the trial first has something to log (a trial that fails before its first epoch leaves none);
  each finished trial's hyperparameters beside its final metrics in the HPARAMS tab only
  (``tensorboard --logdir results/tensorboard``).
* :class:`MLflowLogger`: one MLflow run per trial (parameters, per-epoch and final metrics, tags), in
  a local SQLite store ``<results>/mlflow.db`` by default (``mlflow ui --backend-store-uri
  sqlite:///results/mlflow.db``).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Mapping

from harness.core.metrics import base_metric, declared_metric
from harness.core.record import TrialRecord
from harness.core.trial import Trial


def trial_params(trial: Trial) -> dict[str, Any]:
    """A trial's parameters as trackers show them: what it runs and every resolved hyperparameter."""
    spec = trial.spec
    return {"method": spec.method, "dataset": spec.dataset, "seed": spec.seed, "backbone": spec.backbone,
            "embedding_dim": spec.embedding_dim, "recipe": spec.recipe["name"], "epochs": spec.recipe["epochs"],
            "split": spec.eval_split, **{f"hparam.{k}": v for k, v in spec.hparams.items()}}


def in_percent(name: str) -> bool:
    """Whether the tables show metric ``name`` in percent (a training statistic such as ``loss`` is no metric)."""
    spec = declared_metric(name)
    return spec is not None and spec.percent


def scalar(split: str, name: str, value: float) -> tuple[str, float]:
    """``(<split>/<name> (%), 100·value)`` for a metric the tables show in percent, else
    ``(<split>/<name>, value)``."""
    return (f"{split}/{name} (%)", 100 * value) if in_percent(name) else (f"{split}/{name}", value)


def scalars(split: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers among ``metrics`` as tracker scalars (:func:`scalar`)."""
    return dict(scalar(split, name, float(value)) for name, value in metrics.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool))


def epoch_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """An epoch's numbers as ``train/<name>`` and ``val/<name> (%)`` scalars (:func:`scalars`; ``epoch`` is the
    step)."""
    named: dict[str | None, dict[str, Any]] = {}
    for name, value in metrics.items():
        if name != "epoch":
            split, base = base_metric(name)
            named.setdefault(split, {})[base] = value
    return {tag: value for split, part in named.items() for tag, value in scalars(split or "train", part).items()}


class TrackedScalars:
    """What a tracker logs of each trial, once per epoch and step: :meth:`epoch` an epoch's scalars at its step,
    :meth:`final` the final metrics at the last epoch's step less those that epoch logged; only trials
    :meth:`started` in this command are tracked."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, set[str]]] = {}

    def started(self, trial: Trial) -> None:
        self.last[trial.trial_id] = (0, set())

    def tracked(self, trial_id: str) -> bool:
        return trial_id in self.last

    def epoch(self, trial: Trial, metrics: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
        """(step, scalars) of one epoch's metrics."""
        step, values = int(metrics.get("epoch", 0)), epoch_scalars(metrics)
        self.last[trial.trial_id] = (step, set(values))
        return step, values

    def final(self, record: TrialRecord) -> tuple[int, dict[str, float]]:
        """(step, scalars) of a finished trial's metrics not logged at its last epoch's step; the trial's done."""
        step = len(record.history)
        last_step, logged = self.last.pop(record.trial_id, (0, set()))
        done = logged if last_step == step else set()
        return step, {tag: value for tag, value in scalars(record.spec.eval_split, record.metrics).items()
                      if tag not in done}


class TensorBoardLogger:
    """Every trial's per-epoch metrics and final ones as TensorBoard scalars (:class:`TrackedScalars`), and its
    hyperparameters beside its final metrics in the HPARAMS tab (needs ``tensorboard``:
    ``pip install -e ".[tracking]"``)."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:  # pragma: no cover - depends on the optional extra
            raise ImportError('--tensorboard needs TensorBoard: pip install -e ".[tracking]"') from None
        self.folder = Path(folder)
        self._writer_class, self._hparams = SummaryWriter, hparams
        self.scalars = TrackedScalars()
        self.writers: dict[str, Any] = {}

    def _writer(self, trial: Trial):
        """The trial's event file writer, made on first use."""
        if trial.trial_id not in self.writers:
            folder = self.folder / trial.placement.experiment / trial.trial_id
            self.writers[trial.trial_id] = self._writer_class(str(folder))
        return self.writers[trial.trial_id]

    def planned(self, trials: Iterable[Trial]) -> None:
        """Nothing to log before a trial starts."""

    def started(self, trial: Trial) -> None:
        self.scalars.started(trial)

    def epoch(self, trial: Trial, metrics: dict[str, Any]) -> None:
        step, values = self.scalars.epoch(trial, metrics)
        if values:
            writer = self._writer(trial)
            for tag, value in values.items():
                writer.add_scalar(tag, value, step)
            writer.flush()

    def finished(self, record: TrialRecord) -> None:
        if not self.scalars.tracked(record.trial_id):
            return
        step, values = self.scalars.final(record)
        if values or record.trial_id in self.writers:
            writer = self._writer(record.trial)
            for tag, value in values.items():
                writer.add_scalar(tag, value, step)
            if record.ok and record.metrics:
                self._log_hparams(writer, record)
            writer.close()
        self.writers.pop(record.trial_id, None)

    def _log_hparams(self, writer: Any, record: TrialRecord) -> None:
        """The trial's parameters and the tags of its final metrics (logged as scalars already) for the HPARAMS
        tab: the summaries ``SummaryWriter.add_hparams`` writes, without its copy of every metric as a one-point
        ``hparam/`` scalar in a second event file."""
        params = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                  for k, v in trial_params(record.trial).items()}
        for summary in self._hparams(params, scalars(record.spec.eval_split, record.metrics)):
            writer._get_file_writer().add_summary(summary)  # the writer's own event file (what add_hparams uses)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


class MLflowLogger:
    """One MLflow run per trial, in the experiment of the trial's experiment name: the trial's parameters
    and tags (trial id, status), every epoch's metrics by step and the final metrics (:class:`TrackedScalars`;
    needs the ``mlflow`` extra: ``pip install -e ".[mlflow]"``). ``tracking_uri`` defaults to a SQLite file
    in the results folder; MLflow's own ``MLFLOW_TRACKING_URI`` is not read (the CLI decides)."""

    def __init__(self, tracking_uri: str):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ImportError('--mlflow needs MLflow: pip install -e ".[mlflow]"') from None
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.scalars = TrackedScalars()
        self.runs: dict[str, str] = {}

    @staticmethod
    def _name(tag: str) -> str:
        """MLflow's metric names allow neither ``@`` nor ``(%)``: ``val/recall@1 (%)`` is ``val/recall_at_1_pct``."""
        return tag.replace("@", "_at_").replace(" (%)", "_pct")

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
        self.scalars.started(trial)
        self._run(trial)

    def epoch(self, trial: Trial, metrics: dict[str, Any]) -> None:
        run = self._run(trial)
        step, values = self.scalars.epoch(trial, metrics)
        for tag, value in values.items():
            self.client.log_metric(run, self._name(tag), value, step=step)

    def finished(self, record: TrialRecord) -> None:
        if not self.scalars.tracked(record.trial_id):
            return
        run = self._run(record.trial)
        step, values = self.scalars.final(record)
        for tag, value in values.items():
            self.client.log_metric(run, self._name(tag), value, step=step)
        self.client.set_tag(run, "status", record.status)
        self.client.set_terminated(run, status="FINISHED" if record.ok else "FAILED")
        self.runs.pop(record.trial_id, None)

    def close(self) -> None:
        for run in self.runs.values():
            self.client.set_terminated(run, status="KILLED")
        self.runs.clear()
