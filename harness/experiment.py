"""Configuration as data: an :class:`ExperimentConfig` expands into one :class:`TrialConfig` per trial.

A trial is (method, hyperparameters, dataset, backbone, recipe, seed, evaluation split). Its id is a
hash of everything that changes its result, so that re-running or resuming recognises finished
trials, and two experiments that ran the same trial do not count it twice in a leaderboard.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from harness.plugins.data import DATASETS, create_dataset
from harness.plugins.method import find_recipe, get_method_class
from harness.plugins.models import check_backbone_name
from harness.core.config import TrialConfig
from harness.core.recipe import Recipe

@dataclass
class ExperimentConfig:
    """What ``python -m harness run`` asks for: methods × seeds on one dataset under one recipe.

    ``recipe="paper"`` trains each method with its paper's recipe where it ships one (else the
    dataset's default); any other name applies that one recipe to every method (the fair protocol).
    ``recipe_overrides`` change fields of whichever recipe applies (e.g. ``epochs=5``).
    ``hparams`` maps a method name to hyperparameter overrides.
    """

    methods: list[str]
    dataset: str = "omniglot28"
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
        recipe = get_method_class(method).paper_recipe_for(self.dataset) if name == "paper" else None
        return (recipe or find_recipe(spec.default_recipe if name == "paper" else name)).override(**self.recipe_overrides)

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
