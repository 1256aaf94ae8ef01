"""The trial specification: what one trial computes, as frozen data whose hash is the trial's id.

A :class:`TrialSpec` is built fully resolved (by :mod:`harness.experiment`): every hyperparameter with
its default filled in, the method's class-level settings that change results, the recipe's every
field, the dataset and its split, and the pretrained weights' sha256. Every field is part of the id,
which hashes them with numbers normalised, so ``--hparam ms.alpha=2``, ``ms.alpha=2.0`` and no override
(default 2) are one trial, and changing a default in code gives new ids (``--resume`` never reuses a
stale record). Where and how a trial runs is its :class:`~harness.core.placement.Placement`, never
hashed: moving a trial to another results folder, device or machine keeps its id.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.names import check_name
from harness.core.recipe import Recipe

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
class TrialSpec:
    """What one trial computes; :func:`harness.engine.runner.run_trial` is a pure function of it (given
    the data and weights its placement points to).

    ``eval_split="test"`` trains on all training classes and evaluates on the unseen test classes;
    ``eval_split="val"`` (searches, sweeps) trains on the training classes minus the validation
    classes (``val_fraction`` of them) and evaluates on those, never loading a test image; with
    ``folds`` the validation classes are fold ``fold`` of a class-disjoint cross-validation over the
    training classes. ``method_settings`` holds the method's class-level choices that change results
    (learning-rate multiplier, pooling, normalisation, sampler). ``pretrained_sha256`` identifies the
    initial weights by content (their path on this machine is the placement's). ``code`` fingerprints
    the method's source (:func:`harness.plugins.method.code_fingerprint`): part of the id, so an edited
    loss is a new trial (None in records written before it was recorded, whose ids stay as they were:
    a ``None`` code is left out of the hash).
    """

    method: str
    dataset: str
    seed: int
    recipe: dict[str, Any]
    backbone: str
    embedding_dim: int = 512
    hparams: dict[str, Any] = field(default_factory=dict)
    method_settings: dict[str, Any] = field(default_factory=dict)
    pretrained_sha256: str | None = None
    val_fraction: float = 0.2
    folds: int = 0
    fold: int | None = None
    eval_split: str = "test"
    role: str = "final"
    code: str | None = None

    def __post_init__(self) -> None:
        for kind in ("method", "dataset"):  # they name the trial's folders
            check_name(kind, getattr(self, kind))
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got {self.eval_split!r}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.folds and (self.eval_split != "val" or self.fold is None or not 0 <= self.fold < self.folds):
            raise ValueError(f"fold {self.fold} of {self.folds}: folds are for validation trials, fold in 0..folds-1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def recipe_obj(self) -> Recipe:
        return Recipe(**self.recipe)

    def identity(self) -> dict[str, Any]:
        """What the id hashes: every field, numbers normalised (``code`` only when recorded)."""
        return canonical({k: v for k, v in self.to_dict().items() if not (k == "code" and v is None)})

    @property
    def trial_id(self) -> str:
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.method}-{self.dataset}-{self.eval_split}-s{self.seed}-{digest}"
