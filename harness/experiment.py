"""Configuration as data: an :class:`ExperimentConfig` expands into one :class:`~harness.core.trial.Trial`
per trial, its :class:`~harness.core.spec.TrialSpec` fully resolved and its
:class:`~harness.core.placement.Placement` from the run's output and device settings.

A trial is (method, hyperparameters, dataset, backbone, recipe, seed, evaluation split). Its id is a
hash of its spec, everything that changes its result, so that re-running or resuming recognises finished
trials, and a trial recorded twice in an experiment counts once in its leaderboard.
"""
from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import harness.engine  # noqa: F401  (registers the engine's optional metrics, which validate() checks names against)
from harness.plugins.data import DATASETS, create_dataset
from harness.plugins.method import Method, code_fingerprint, find_recipe, get_method_class
from harness.plugins.backbone_names import check_backbone_name
from harness.plugins.optimizers import OPTIMIZERS
from harness.core.placement import Placement
from harness.core.spec import TrialSpec
from harness.core.trial import Trial
from harness.core.hparams import Param
from harness.core.metrics import EVALUATION_METRICS, optional_metric_names, split_metric
from harness.core.names import check_name
from harness.core.protocol import check_one_recipe
from harness.core.recipe import Recipe
from harness.core.settings_file import check_fields, merge, read_mapping

#: fields the harness sets for searches and sweeps, never a user's configuration file
INTERNAL_FIELDS = ("role", "eval_split")
SEED_LIMIT = 2 ** 32  # NumPy's seeds


def check_device(device: str, available: bool = True) -> None:
    """Raise ``ValueError`` unless ``device`` is ``auto`` or a torch device (and, with ``available``, one here)."""
    if device == "auto":
        return
    import torch  # here: validating a run that names no device imports no torch (issue 33)

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r} is not a device; e.g. auto, cpu, cuda, cuda:1") from None
    if not available or parsed.type == "cpu":
        return
    count = torch.cuda.device_count() if parsed.type == "cuda" else None
    if parsed.type == "cuda" and (count == 0 or (parsed.index or 0) >= count):
        raise ValueError(f"--device {device}: this machine has {count} CUDA device(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine")


@functools.lru_cache(maxsize=None)
def training_classes(dataset: str, root: str | None, val_fraction: float) -> dict[str, int]:
    """Load a dataset's index once per process (a malformed folder raises here) and return how many
    classes each evaluation split trains on: ``{"test": all training classes, "val": those minus val}``."""
    splits = create_dataset(dataset, root, val_fraction)
    return {"test": len(splits.trainval.classes), "val": len(splits.train.classes)}

@dataclass(kw_only=True)
class TrainingSetup:
    """What trials train and how, besides their methods, dataset and seeds: the fields a run's
    :class:`ExperimentConfig` and a benchmark's manifest share, with one set of defaults.

    ``recipe="paper"`` trains each method with its paper's recipe where it ships one (else the
    dataset's default); any other name applies that one recipe to every method (the fair protocol).
    ``recipe_overrides`` change fields of whichever recipe applies (e.g. ``epochs=5``).
    ``hparams`` maps a method name to hyperparameter overrides.
    """

    data_root: str | None = None
    backbone: str | None = None
    embedding_dim: int = TrialSpec.embedding_dim
    pretrained: str | None = None
    recipe: str | None = None
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    val_fraction: float = TrialSpec.val_fraction

    def training_setup(self) -> dict[str, Any]:
        """These fields by name, their containers copied (to build the other kind of config from)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(TrainingSetup)}


@dataclass
class ExperimentConfig(TrainingSetup):
    """What ``python -m harness run`` asks for: methods × seeds on one dataset under one recipe
    (:class:`TrainingSetup` holds the recipe, backbone, hyperparameter and data-root fields).
    ``incomparable_rows`` (``--incomparable-rows``) lets ``recipe="paper"`` train methods whose paper recipes
    differ, and the run join an experiment whose other methods trained differently; its boards say so.
    ``from_scratch`` (``--from-scratch``) lets ``recipe="paper"`` train without the pretrained weights a paper
    recipe pins, under that recipe renamed ``<name>-from-scratch``."""

    methods: list[str]
    dataset: str = "omniglot28"
    seeds: list[int] = field(default_factory=lambda: [0])
    eval_split: str = "test"
    role: str = "final"
    experiment: str | None = None
    results_dir: str = Placement.results_dir
    device: str = Placement.device
    num_workers: int = Placement.num_workers
    save_model: bool = Placement.save_model
    extra_metrics: list[str] = field(default_factory=list)
    incomparable_rows: bool = False
    from_scratch: bool = False

    @classmethod
    def from_yaml(cls, path: str | Path, defaults: dict[str, Any] | None = None,
                  **overrides: Any) -> "ExperimentConfig":
        """The config of a YAML mapping of user-facing field names (:data:`INTERNAL_FIELDS` are refused), each
        value of its field's declared type, over ``defaults``, with ``overrides`` (the flags given; None: not
        given) merged in key by key, so ``--hparam jrd.alpha=1`` keeps the file's other ``jrd``
        hyperparameters and ``--epochs 1`` its other recipe overrides. Bad input raises ``ValueError`` naming
        the file (and the valid keys, or the type expected)."""
        data = read_mapping(path, cls.__name__)
        check_fields(path, data, cls, cls.yaml_keys())
        return cls(**merge(merge(defaults or {}, data), overrides))

    @classmethod
    def yaml_keys(cls) -> list[str]:
        """The keys a YAML ``--config`` may hold: every field but :data:`INTERNAL_FIELDS`."""
        return [f.name for f in fields(cls) if f.name not in INTERNAL_FIELDS]

    @property
    def recipe_name(self) -> str:
        """The recipe asked for: ``recipe``, else the dataset's default (``paper``: each method's own)."""
        return self.recipe or DATASETS.get(self.dataset).default_recipe

    def recipe_for(self, method: str) -> Recipe:
        """The recipe ``method`` trains with: its paper's (``recipe="paper"``, else the dataset's default
        where its paper ships none), or the named one, with the overrides applied (checked by
        :func:`check_recipe` in :meth:`validate`)."""
        default = DATASETS.get(self.dataset).default_recipe
        paper = get_method_class(method).paper_recipe_for(self.dataset) if self.recipe_name == "paper" else None
        name = default if self.recipe_name == "paper" else self.recipe_name
        recipe = (paper or find_recipe(name)).override(**self.recipe_overrides)
        if self.from_scratch and recipe.pretrained_weights:
            recipe = recipe.override(name=f"{recipe.name}-from-scratch",
                                     pretrained_weights=f"none, from scratch (the paper's: {recipe.pretrained_weights})")
        return recipe

    def backbone_for(self, method: str) -> str:
        """The backbone ``method`` trains: the one it forces (``pixels``), else ``backbone``, else the one its recipe
        pins (a paper's), else the dataset's default."""
        return (get_method_class(method).backbone or self.backbone or self.recipe_for(method).backbone
                or DATASETS.get(self.dataset).default_backbone)

    def hparams_for(self, method: str) -> dict[str, Any]:
        """Every hyperparameter ``method`` trains with in this experiment: the one resolution step
        (:meth:`Method.resolve_hparams`) of the values given for it, its recipe's and the dataset's."""
        return get_method_class(method).resolve_hparams(self.hparams.get(method, {}), self.dataset,
                                                        self.recipe_for(method))

    def with_hparams(self, method: str, values: dict[str, Any]) -> "ExperimentConfig":
        """This experiment with ``values`` given for ``method`` besides those given already (a search's
        proposal, a sweep's grid point, a search's best values for its finals): resolved afresh by its trials."""
        return replace(self, hparams={**self.hparams, method: {**self.hparams.get(method, {}), **values}})

    def validate(self) -> None:
        """Fail at once, before any trial, on what a trial would fail on: unknown names (method, dataset,
        backbone, recipe, hyperparameter), a value of the wrong type or out of range (hyperparameters,
        recipe fields, seeds, sizes, fractions, device, weights file), a recipe that cannot train a method
        (:func:`check_recipe`), or a malformed dataset folder (read once per process, :func:`training_classes`)."""
        self.check_fields()
        DATASETS.get(self.dataset)  # an unknown dataset is named first
        Recipe.check_overrides(self.recipe_overrides)
        unknown_methods = set(self.hparams) - set(self.methods)
        if unknown_methods:
            raise ValueError(f"hyperparameters given for method(s) not in this run: {', '.join(sorted(unknown_methods))}")
        for method in self.methods:
            cls = get_method_class(method)
            check_backbone_name(self.backbone_for(method))
            for name, value in self.hparams_for(method).items():
                cls.hparams[name].check(f"hyperparameter {method}.{name}", value)
        if self.recipe_name == "paper":
            check_one_recipe({m: self.recipe_for(m).to_dict() for m in self.methods if get_method_class(m).trains},
                             self.incomparable_rows)
            self.check_paper_weights()
        classes = training_classes(self.dataset, self.data_root, self.val_fraction)[self.eval_split]
        for method in self.methods:
            check_recipe(get_method_class(method), self.recipe_for(method), classes)

    def check_paper_weights(self) -> None:
        """Under ``--recipe paper``, refuse (``ValueError``, one line naming what is missing) a method whose paper
        recipe pins a backbone other than ``--backbone``, or pretrained weights not given with ``--pretrained``
        (unless ``--from-scratch``, whose recipes say so: :meth:`recipe_for`)."""
        for method in self.methods:
            recipe = self.recipe_for(method)
            if not get_method_class(method).trains or get_method_class(method).backbone:
                continue
            if recipe.backbone and self.backbone and self.backbone != recipe.backbone:
                raise ValueError(f"--recipe paper trains {method} on {recipe.backbone}, as its paper did; --backbone "
                                 f"{self.backbone} is another: give another --recipe to train it on {self.backbone}")
            if recipe.pretrained_weights and not self.pretrained and not self.from_scratch:
                raise ValueError(f"--recipe paper: {method}'s paper fine-tunes {recipe.backbone or 'its backbone'} from "
                                 f"{recipe.pretrained_weights}; give that file with --pretrained PATH, or --from-scratch "
                                 f"to train from random initialisation (its rows' recipe then says so)")

    def check_fields(self) -> None:
        """Raise ``ValueError`` on a field of the wrong type or out of range (a YAML config is not type-checked)."""
        if not isinstance(self.methods, list) or not self.methods or not all(isinstance(m, str) for m in self.methods):
            raise ValueError(f"methods must be a non-empty list of names, got {self.methods!r}")
        seeds = self.seeds
        if not isinstance(seeds, list) or not seeds:
            raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
                raise ValueError(f"seeds must be integers in [0, 2**32), got {seed!r}")
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seed(s) {', '.join(map(str, repeated))} given more than once")
        for name, valid in (("embedding_dim", ">= 0"), ("num_workers", ">= 0"), ("val_fraction", "(0, 1)")):
            kind = float if name == "val_fraction" else int
            Param(kind(0), valid=valid).check(name, getattr(self, name))
        for name in ("recipe_overrides", "hparams"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        if not all(isinstance(v, dict) for v in self.hparams.values()):
            raise ValueError(f"hparams must map each method to a mapping of hyperparameters, got {self.hparams!r}")
        for name in ("incomparable_rows", "from_scratch"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.from_scratch and self.pretrained:
            raise ValueError("--from-scratch trains from random initialisation; --pretrained gives weights: give one")
        if self.experiment is not None:
            check_name("experiment", self.experiment)
        check_device(self.device, available=False)
        if not isinstance(self.extra_metrics, list) or not all(isinstance(m, str) for m in self.extra_metrics):
            raise ValueError(f"extra_metrics must be a list of metric names, got {self.extra_metrics!r}")
        unknown = [m for m in self.extra_metrics if m not in optional_metric_names()]
        if unknown:
            raise ValueError(f"unknown optional metric(s) {', '.join(unknown)}; registered: "
                             f"{', '.join(optional_metric_names()) or 'none'}")
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            raise ValueError(f"--pretrained {self.pretrained} is not a file")

    def metric_names(self) -> list[str]:
        """The metrics every trial of this experiment records on the test split."""
        spec = DATASETS.get(self.dataset)
        return [*(f"recall@{k}" for k in spec.recall_ks), *EVALUATION_METRICS, *self.extra_metrics]

    def trials(self) -> list[Trial]:
        """One trial per (method, seed), in that order."""
        self.validate()
        experiment = self.experiment or self.dataset
        out = []
        for method in self.methods:
            cls = get_method_class(method)
            recipe = self.recipe_for(method)
            if not cls.trains:
                recipe = recipe.override(epochs=0)
            placement = Placement(
                experiment=experiment, results_dir=self.results_dir, device=self.device, num_workers=self.num_workers,
                save_model=self.save_model, data_root=self.data_root, pretrained=None if cls.backbone else self.pretrained,
                extra_metrics=list(self.extra_metrics), method_family=cls.family)
            for seed in self.seeds:
                out.append(Trial(TrialSpec(
                    method=method, dataset=self.dataset, seed=seed, recipe=recipe.to_dict(),
                    backbone=self.backbone_for(method),
                    embedding_dim=self.embedding_dim if cls.embedding_head else 0,
                    hparams=self.hparams_for(method),
                    method_settings=cls.settings(),
                    pretrained_sha256=None if cls.backbone or not self.pretrained else file_sha256(self.pretrained),
                    val_fraction=self.val_fraction, eval_split=self.eval_split, role=self.role, code=code_fingerprint(cls),
                ), placement))
        return out


def file_sha256(path: str) -> str:
    """The sha256 of a weights file (a trial's identity holds it rather than the path)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_recipe(cls: type[Method], recipe: Recipe, classes: int) -> None:
    """The one check of a method's resolved recipe before any trial (its fields were checked when it was
    built, :data:`~harness.core.recipe.FIELD_RULES`): its optimizer is registered, and a method that trains
    can draw its batches from the training split's ``classes`` classes (:meth:`Recipe.check_batches`, which
    also refuses a sampler that is not one). Raises ``ValueError`` naming what is wrong."""
    OPTIMIZERS.get(recipe.optimizer)  # an unknown optimizer fails here, naming the registered ones
    if cls.trains:
        recipe.check_batches(cls.name, cls.sampler, classes)


#: the fewest validation classes a retrieval metric can learn from (with one, every neighbour is right)
MIN_VALIDATION_CLASSES = 2


def check_validation_split(experiment: ExperimentConfig) -> None:
    """Refuse a search or sweep whose validation split has fewer than :data:`MIN_VALIDATION_CLASSES`
    classes, or leaves fewer than two to train on (digits at the default 0.2 has one of five)."""
    classes = training_classes(experiment.dataset, experiment.data_root, experiment.val_fraction)
    val = classes["test"] - classes["val"]
    if val < MIN_VALIDATION_CLASSES or classes["val"] < 2:
        raise ValueError(f"the validation split of {experiment.dataset} at --val-fraction {experiment.val_fraction:g} "
                         f"has {val} class(es) and leaves {classes['val']} to train on; a retrieval metric needs "
                         f"at least {MIN_VALIDATION_CLASSES} of each: change --val-fraction")


def check_objective(experiment: ExperimentConfig, metric: str) -> None:
    """Refuse a search objective that the experiment's validation trials do not record (``val_<metric>``)."""
    metrics = [split_metric("val", name) for name in experiment.metric_names()]
    if metric not in metrics:
        raise ValueError(f"--metric must be a validation metric, one of {', '.join(metrics)}; got {metric!r}")


def check_folds(experiment: ExperimentConfig, folds: int) -> None:
    """Refuse a ``folds``-fold cross-validation whose smallest fold has fewer than
    :data:`MIN_VALIDATION_CLASSES` of the training classes (then at least as many are left to train on)."""
    classes = training_classes(experiment.dataset, experiment.data_root, experiment.val_fraction)["test"]
    if classes // folds < MIN_VALIDATION_CLASSES:
        raise ValueError(f"--folds {folds}: {experiment.dataset} has {classes} training classes, so a fold would hold "
                         f"{classes // folds}; a retrieval metric needs at least {MIN_VALIDATION_CLASSES} per fold: "
                         f"--folds {classes // MIN_VALIDATION_CLASSES} at most")
