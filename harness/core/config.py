"""The trial configuration: everything one trial needs, as frozen data whose hash is the trial's id."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.core.recipe import Recipe

#: fields of a TrialConfig that do not change its result (where it is written, how it is scheduled)
_NOT_IN_IDENTITY = ("experiment", "results_dir", "device", "num_workers", "save_model", "fail_at_epoch", "utilization")


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; ``run_trial(asdict(config))`` is a pure function of it.

    ``eval_split="test"`` trains on all training classes and evaluates on the unseen test classes;
    ``eval_split="val"`` (hyperparameter search) trains on the training classes minus the validation
    classes and evaluates on those, so a search never sees a test class.
    ``fail_at_epoch`` is a test-only fault injection: the trial raises at that epoch.
    """

    method: str
    dataset: str
    seed: int
    recipe: dict[str, Any]
    backbone: str
    embedding_dim: int = 512
    hparams: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    pretrained: str | None = None
    val_fraction: float = 0.2
    eval_split: str = "test"
    experiment: str = "default"
    results_dir: str = "results"
    device: str = "auto"
    num_workers: int = 0
    save_model: bool = True
    utilization: bool = False
    fail_at_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.eval_split not in ("test", "val"):
            raise ValueError(f"eval_split must be 'test' or 'val', got {self.eval_split!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def recipe_obj(self) -> Recipe:
        return Recipe(**self.recipe)

    @property
    def trial_id(self) -> str:
        identity = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_IDENTITY}
        digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.method}-{self.dataset}-{self.eval_split}-s{self.seed}-{digest}"

    @property
    def trial_dir(self) -> Path:
        return Path(self.results_dir) / "runs" / self.experiment / self.trial_id
