"""Configuration as data: an :class:`ExperimentConfig` expands into one :class:`TrialConfig` per trial.

A trial is (method, hyperparameters, dataset, backbone, recipe, seed, evaluation split). Its id is a
hash of everything that changes its result, so that re-running or resuming recognises finished
trials, and two experiments that ran the same trial do not count it twice in a leaderboard.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from harness.data import DATASETS, create_dataset
from harness.method import get_method_class
from harness.models import check_backbone_name
from harness.recipe import Recipe, get_recipe

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


@dataclass
class ExperimentConfig:
    """What ``python -m harness run`` asks for: methods × seeds on one dataset under one recipe.

    ``recipe="paper"`` trains each method with its paper's recipe where it ships one (else the
    dataset's default); any other name applies that one recipe to every method (the fair protocol).
    ``recipe_overrides`` change fields of whichever recipe applies (e.g. ``epochs=5``).
    ``hparams`` maps a method name to hyperparameter overrides.
    """

    methods: list[str]
    dataset: str = "digits"
    seeds: list[int] = field(default_factory=lambda: [0])
    data_root: str | None = None
    backbone: str | None = None
    embedding_dim: int = 512
    pretrained: str | None = None
    recipe: str | None = None
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    val_fraction: float = 0.2
    eval_split: str = "test"
    experiment: str | None = None
    results_dir: str = "results"
    device: str = "auto"
    num_workers: int = 0
    save_model: bool = True
    utilization: bool = False

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "ExperimentConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)

    def recipe_for(self, method: str) -> Recipe:
        spec = DATASETS.get(self.dataset)
        name = self.recipe or spec.default_recipe
        if name == "paper":
            name = get_method_class(method).paper_recipe or spec.default_recipe
        return get_recipe(name).override(**self.recipe_overrides)

    def validate(self) -> None:
        """Fail at once on unknown names (method, dataset, backbone, recipe, hyperparameter) or a malformed dataset folder."""
        spec = DATASETS.get(self.dataset)
        for method in self.methods:
            cls = get_method_class(method)
            self.recipe_for(method)
            check_backbone_name(cls.backbone or self.backbone or spec.default_backbone)
            cls.check_hparam_names(self.hparams.get(method, {}))
        unknown_methods = set(self.hparams) - set(self.methods)
        if unknown_methods:
            raise ValueError(f"hyperparameters given for method(s) not in this run: {', '.join(sorted(unknown_methods))}")
        create_dataset(self.dataset, self.data_root, self.val_fraction)

    def trials(self) -> list[TrialConfig]:
        """One TrialConfig per (method, seed), in that order."""
        self.validate()
        spec = DATASETS.get(self.dataset)
        experiment = self.experiment or self.dataset
        out = []
        for method in self.methods:
            cls = get_method_class(method)
            recipe = self.recipe_for(method)
            if not cls.trains:
                recipe = recipe.override(epochs=0)
            for seed in self.seeds:
                out.append(TrialConfig(
                    method=method, dataset=self.dataset, seed=seed, recipe=recipe.to_dict(),
                    backbone=cls.backbone or self.backbone or spec.default_backbone,
                    embedding_dim=self.embedding_dim if cls.embedding_head else 0,
                    hparams={**cls.dataset_defaults(self.dataset), **self.hparams.get(method, {})},
                    data_root=self.data_root, pretrained=self.pretrained, val_fraction=self.val_fraction,
                    eval_split=self.eval_split, experiment=experiment, results_dir=self.results_dir,
                    device=self.device, num_workers=self.num_workers, save_model=self.save_model,
                    utilization=self.utilization,
                ))
        return out
