"""The trial record: the typed, versioned outcome of one trial, the only thing leaderboards read.

A :class:`TrialRecord` is built in one place (:func:`harness.engine.runner.run_trial`, or
:meth:`TrialRecord.failed` for a trial that raised) from its :class:`~harness.core.trial.Trial` (its
fully resolved :class:`~harness.core.spec.TrialSpec` and its
:class:`~harness.core.placement.Placement`); :class:`~harness.core.store.TrialStore` writes and reads
it as JSON (version 3), whose sections show what the id hashes and what it does not::

    {"version": 3, "trial_id": ..., "status": ...,
     "spec": {...},               # hashed: the id is the hash of this section alone
     "placement": {...},          # not hashed: where and how the command planned to run it
     "actual_placement": {...},   # not hashed: what it ran under (device resolved, a Ray worker's loader
                                  # workers and image cache); null where unknown (before version 3, or
                                  # a record the Ray driver writes for a trial it stopped or lost)
     "recipe": {"name": ..., "hash": ...}, "metrics": {...}, "history": [...], ...}

:meth:`TrialRecord.from_dict` is the one reader of every version: a version-2 record (the pair as one flat
``config`` mapping) is split into the same sections by field name, so every record on disk keeps its id.
It validates what it reads: a record of another version, with a missing field, a ``null``, non-numeric or
non-finite (NaN, infinite) metric, a field of another type than its declared one (``history: [{...}, 5]``,
``wall_time_s: "abc"``), or metrics that do not match their checksum is refused with the reason, so a
leaderboard never averages fewer seeds than it counts, a report never fails half-way on a field, and a
record whose metrics were edited by hand is flagged by every command that reads it (each skips it with a
warning naming its file). The checksum (``metrics_sha256``, :func:`metrics_checksum`, written with every
record) is of the trial id and metrics; records written before it have none and are read as they are.
"""
from __future__ import annotations

import hashlib
import json
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from harness.core.placement import Placement
from harness.core.settings_file import matches_type, type_name
from harness.core.spec import TrialSpec
from harness.core.trial import Trial, build

#: the layout records are written in; bumped whenever a field changes meaning
RECORD_VERSION = 3
#: the layouts :meth:`TrialRecord.from_dict` reads: 2 (spec and placement flat in one ``config``) and 3
READ_VERSIONS = (2, RECORD_VERSION)
#: ``diverged``: training diverged (a non-finite loss; readers also apply the dataset's pixel floor,
#: :mod:`harness.reporting.tables`): finished, shown as such, never averaged into a row
STATUSES = ("ok", "diverged", "failed", "pruned")


class RecordError(ValueError):
    """A record that cannot be read as a :class:`TrialRecord`; the message says why."""


def metrics_checksum(trial_id: str, metrics: dict[str, float]) -> str:
    """The sha256 of a trial's id and metrics (as canonical JSON): what ``metrics_sha256`` holds."""
    text = json.dumps({"trial_id": trial_id, "metrics": metrics}, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
    ``placement`` is where the command planned the trial (what ``--resume`` and ``reproduce`` place it by
    again); ``actual_placement`` what it ran under (its device resolved, e.g. ``auto`` to ``cuda:0``; a Ray
    worker's loader workers and share of its node's memory for decoded images), None where not known.
    ``version`` is the layout the record is written in (a record read is held, and written back, in today's).
    """

    trial_id: str
    status: str
    spec: TrialSpec
    placement: Placement
    actual_placement: Placement | None = None
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
               harness_version: str = "", actual_placement: Placement | None = None,
               status: str = "failed") -> "TrialRecord":
        """The record of a trial that raised (``status`` failed, or diverged): its spec and placement, the
        reason, and no metrics."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return cls(trial_id=trial.trial_id, status=status, spec=trial.spec, placement=trial.placement,
                   actual_placement=actual_placement, wall_time_s=wall_time_s,
                   environment=environment or {}, harness_version=harness_version, error=reason or "failed",
                   traceback=traceback)

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON (the module's docstring shows its sections)."""
        data = asdict(self)  # spec, placement and actual_placement as their own sections
        data["recipe"] = {"name": self.recipe_name, "hash": self.recipe_hash}  # for readers of the raw JSON
        data["metrics_sha256"] = metrics_checksum(self.trial_id, self.metrics)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "TrialRecord":
        """Validate and build from any of :data:`READ_VERSIONS`; raises :class:`RecordError` naming what is wrong."""
        if not isinstance(data, dict):
            raise RecordError(f"a record is a JSON object, got {type(data).__name__}")
        if data.get("version") not in READ_VERSIONS:
            raise RecordError(f"record version {data.get('version')!r}, this harness reads versions "
                              f"{', '.join(map(str, READ_VERSIONS))}")
        sections = ("config",) if data["version"] == 2 else ("spec", "placement")
        missing = sorted(k for k in ("trial_id", "status", *sections, "metrics") if k not in data)
        if missing:
            raise RecordError(f"missing {', '.join(missing)}")
        if not isinstance(data["metrics"], dict):
            raise RecordError(f"metrics is {data['metrics']!r}, not a mapping")
        try:
            trial = Trial.from_dict(sections_of_config(data["config"]) if data["version"] == 2 else data)
            actual = data.get("actual_placement")
            actual = build(Placement, actual, "actual_placement") if isinstance(actual, dict) else None
        except (TypeError, ValueError) as error:
            raise RecordError(str(error)) from None
        known = {f.name for f in fields(cls)} - {"spec", "placement", "actual_placement", "version"}
        values = {k: v for k, v in data.items() if k in known}
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            if name != "metrics" and not matches_type(value, hints[name]):  # metrics: checked, with reasons, below
                raise RecordError(f"{name} is {_shown(value)}, not {type_name(hints[name])}")
        try:
            record = cls(spec=trial.spec, placement=trial.placement, actual_placement=actual, **values)
        except TypeError as error:
            raise RecordError(str(error)) from None
        checksum = data.get("metrics_sha256")
        if checksum is not None and checksum != metrics_checksum(record.trial_id, record.metrics):
            raise RecordError("its metrics do not match their checksum (metrics_sha256): they were changed after "
                              "the trial wrote them; restore the record, or run the trial again with --overwrite")
        return record


def _shown(value: Any) -> str:
    """``value`` as a message shows it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def sections_of_config(config: Any) -> dict[str, dict[str, Any]]:
    """A version-2 record's flat ``config`` as the ``spec`` and ``placement`` sections of today's layout, each
    field in the section whose dataclass declares it (``utilization``, written before metrics were a registry,
    as the optional metric it named); ``ValueError`` if it is no mapping."""
    if not isinstance(config, dict):
        raise ValueError(f"config is {config!r}, not a mapping")
    config = dict(config)
    if "utilization" in config:
        config["extra_metrics"] = ["utilization"] if config.pop("utilization") else []
    spec_fields = {f.name for f in fields(TrialSpec)}
    return {"spec": {k: v for k, v in config.items() if k in spec_fields},
            "placement": {k: v for k, v in config.items() if k not in spec_fields}}
