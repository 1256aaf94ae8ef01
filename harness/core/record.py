"""The trial record: the typed, versioned outcome of one trial, the only thing leaderboards read.

A :class:`TrialRecord` is built in one place (:func:`harness.engine.runner.run_trial`, or
:meth:`TrialRecord.failed` for a trial that raised) from its :class:`~harness.core.trial.Trial` (its
fully resolved :class:`~harness.core.spec.TrialSpec` and its
:class:`~harness.core.placement.Placement`); :class:`~harness.core.store.TrialStore` writes and reads
it as JSON, the pair as one flat ``config`` mapping (the layout records have always had).
:meth:`TrialRecord.from_dict` validates what it reads: a record of another version, with a
missing field, a ``null``, non-numeric or non-finite (NaN, infinite) metric is refused with the reason, so a
leaderboard never averages fewer seeds than it counts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from harness.core.placement import Placement
from harness.core.spec import TrialSpec
from harness.core.trial import Trial

#: bumped whenever a field changes meaning; readers refuse other versions
RECORD_VERSION = 2
STATUSES = ("ok", "failed", "pruned")


class RecordError(ValueError):
    """A record that cannot be read as a :class:`TrialRecord`; the message says why."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class TrialRecord:
    """Everything a trial produced: its spec and placement, metrics, per-epoch history, timing, environment.

    ``hparams_changed`` lists the hyperparameters that differ from the defaults the method resolves on the
    trial's dataset and recipe (``Method.changed_hparams``; for row labels); ``spec.hparams`` has them all. ``wall_time_s`` sums every attempt of the
    trial; ``resumed_at_epoch`` is the epoch its last attempt continued from (None: ran through).
    ``nodes`` names the Ray node (``node_id``, ``host``) of each of its attempts, in order (empty
    when it ran in the driver's process).
    ``evaluation`` says which implementations computed the metrics (kNN and k-means backends, and
    where they ran); ``loading`` how the training images were read (decoder, loader workers, where
    they were normalised); ``gpu`` the trial's GPU utilisation and memory, sampled through NVML while it
    ran (``{"available": False, "reason": ...}`` where it had none or NVML could not be read).
    """

    trial_id: str
    status: str
    spec: TrialSpec
    placement: Placement
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0
    resumed_at_epoch: int | None = None
    nodes: list[dict[str, str]] = field(default_factory=list)
    n_trainable_params: int | None = None
    hparams_changed: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, str] = field(default_factory=dict)
    loading: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    harness_version: str = ""
    error: str | None = None
    traceback: str | None = None
    finished_at: str = field(default_factory=now)
    version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise RecordError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.trial_id != self.spec.trial_id:
            raise RecordError(f"trial id {self.trial_id!r} does not match its spec's {self.spec.trial_id!r}")
        for name, value in self.metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RecordError(f"metric {name!r} is {value!r}, not a number")
            if not math.isfinite(value):
                raise RecordError(f"metric {name!r} is {value!r}, not a finite number")
        if self.status != "ok" and not self.error:
            raise RecordError(f"a {self.status} record needs its reason (error)")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def trial(self) -> Trial:
        return Trial(self.spec, self.placement)

    @property
    def recipe_name(self) -> str:
        return self.spec.recipe["name"]

    @property
    def recipe_hash(self) -> str:
        return self.spec.recipe_obj.hash

    @classmethod
    def failed(cls, trial: Trial, error: BaseException | str, *, wall_time_s: float = 0.0,
               traceback: str | None = None, environment: dict[str, Any] | None = None,
               harness_version: str = "") -> "TrialRecord":
        """The record of a trial that raised: its spec and placement, the reason, and no metrics."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return cls(trial_id=trial.trial_id, status="failed", spec=trial.spec, placement=trial.placement,
                   wall_time_s=wall_time_s,
                   environment=environment or {}, harness_version=harness_version, error=reason or "failed",
                   traceback=traceback)

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON: the spec and placement as one flat ``config`` (:meth:`Trial.to_dict`)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("spec", "placement")}
        data["config"] = self.trial.to_dict()
        data["recipe"] = {"name": self.recipe_name, "hash": self.recipe_hash}  # for readers of the raw JSON
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "TrialRecord":
        """Validate and build; raises :class:`RecordError` naming what is wrong."""
        if not isinstance(data, dict):
            raise RecordError(f"a record is a JSON object, got {type(data).__name__}")
        if data.get("version") != RECORD_VERSION:
            raise RecordError(f"record version {data.get('version')!r}, this harness reads version {RECORD_VERSION}")
        known = {f.name for f in fields(cls)}
        missing = sorted(k for k in ("trial_id", "status", "config", "metrics") if k not in data)
        if missing:
            raise RecordError(f"missing {', '.join(missing)}")
        if not isinstance(data["metrics"], dict):
            raise RecordError(f"metrics is {data['metrics']!r}, not a mapping")
        try:
            trial = Trial.from_dict(data["config"])
        except (TypeError, ValueError) as error:
            raise RecordError(f"config: {error}") from None
        values = {k: v for k, v in data.items() if k in known and k not in ("spec", "placement")}
        try:
            return cls(spec=trial.spec, placement=trial.placement, **values)
        except TypeError as error:
            raise RecordError(str(error)) from None
