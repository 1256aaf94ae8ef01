"""The trial configuration: everything one trial needs, as frozen data whose hash is the trial's id.

A :class:`TrialConfig` is built fully resolved (by :mod:`harness.experiment`): every hyperparameter
with its default filled in, the method's class-level settings that change results, the recipe's
every field, and the pretrained weights' sha256. Its id hashes that resolved content with numbers
normalised, so ``--hparam ms.alpha=2``, ``ms.alpha=2.0`` and no override (default 2) are one trial,
and changing a default in code gives new ids (``--resume`` never reuses a stale record).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from harness.core.names import check_name
from harness.core.recipe import Recipe

#: fields that do not change a trial's result (where it is written, how it is scheduled, where the
#: data and weights happen to live on this machine: the weights enter through their sha256)
_NOT_IN_IDENTITY = ("experiment", "results_dir", "device", "num_workers", "save_model", "fail_at_epoch",
                    "extra_metrics", "method_family", "data_root", "pretrained", "image_cache_bytes")
EVAL_SPLITS = ("test", "val")
#: why a trial runs: ``final`` (a leaderboard row), ``search`` (a proposal scored on validation
#: classes) or ``sweep`` (a sensitivity grid point; kept out of leaderboards even on the test split)
ROLES = ("final", "search", "sweep")


def canonical(value: Any) -> Any:
    """``value`` with numbers normalised for hashing: ``2``, ``2.0`` and ``np.float64(2)`` hash alike."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) or hasattr(value, "__float__") and not hasattr(value, "__len__"):
        number = float(value)
        return repr(number) if math.isfinite(number) else str(number)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; :func:`harness.engine.trial.run_trial` is a pure function of it.

    ``eval_split="test"`` trains on all training classes and evaluates on the unseen test classes;
    ``eval_split="val"`` (searches, sweeps) trains on the training classes minus the validation
    classes and evaluates on those, never loading a test image; with ``folds`` the validation
    classes are fold ``fold`` of a class-disjoint cross-validation over the training classes. ``method_settings`` holds the
    method's class-level choices that change results (learning-rate multiplier, pooling,
    normalisation, sampler). ``extra_metrics`` names the optional registered metrics the trial also
    computes (:mod:`harness.core.metrics`); ``method_family`` is the method's declared family, for
    the figures' colours (None in records written before it was recorded). ``code`` fingerprints the
    method's source (:func:`harness.plugins.method.code_fingerprint`): part of the id, so an edited loss
    is a new trial (None in records written before it was recorded, whose ids stay as they were).
    ``image_cache_bytes`` bounds the decoded images the trial keeps (its placement's share of a node's
    memory; None: the process default). ``fail_at_epoch`` is a test-only fault injection.
    """

    method: str
    dataset: str
    seed: int
    recipe: dict[str, Any]
    backbone: str
    embedding_dim: int = 512
    hparams: dict[str, Any] = field(default_factory=dict)
    method_settings: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    pretrained: str | None = None
    pretrained_sha256: str | None = None
    val_fraction: float = 0.2
    folds: int = 0
    fold: int | None = None
    eval_split: str = "test"
    role: str = "final"
    experiment: str = "default"
    results_dir: str = "results"
    device: str = "auto"
    num_workers: int = 0
    save_model: bool = True
    extra_metrics: list[str] = field(default_factory=list)
    method_family: str | None = None
    code: str | None = None
    image_cache_bytes: int | None = None
    fail_at_epoch: int | None = None

    def __post_init__(self) -> None:
        for kind in ("method", "dataset", "experiment"):  # they name the trial's folders
            check_name(kind, getattr(self, kind))
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got {self.eval_split!r}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.folds and (self.eval_split != "val" or self.fold is None or not 0 <= self.fold < self.folds):
            raise ValueError(f"fold {self.fold} of {self.folds}: folds are for validation trials, fold in 0..folds-1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        data = dict(data)
        if "utilization" in data:  # records written before metrics were a registry
            data["extra_metrics"] = ["utilization"] if data.pop("utilization") else []
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown trial config field(s) {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def recipe_obj(self) -> Recipe:
        return Recipe(**self.recipe)

    def identity(self) -> dict[str, Any]:
        """What the id hashes: every field that changes the result, numbers normalised."""
        return canonical({k: v for k, v in self.to_dict().items()
                          if k not in _NOT_IN_IDENTITY and not (k == "code" and v is None)})

    @property
    def trial_id(self) -> str:
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.method}-{self.dataset}-{self.eval_split}-s{self.seed}-{digest}"
