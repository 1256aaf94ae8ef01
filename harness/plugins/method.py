"""The Method interface: one class per DML method, registered by name (timm-style).

A method declares everything that distinguishes it, so the engine never branches on its name:

* ``hparams`` — each hyperparameter's paper default and search distribution;
* ``taps`` — which :class:`~harness.plugins.models.ModelOutput` fields its loss reads
  (``embedding``, ``pooled``, ``feature_map`` or an intermediate stage ``stage<i>``);
* ``sampler`` — ``"random"`` (plain shuffling) or ``"m_per_class"`` (pair losses);
* ``normalize_embedding`` / ``embedding_head`` — what the embedding head does; ``pooling`` only for a
  method that forces its own (``pixels``): otherwise the recipe's (``Recipe.pooling``);
* ``lr_multiplier`` — the learning rate of its own parameters (proxies, class weights) relative
  to the recipe's ``lr_method``; override :meth:`param_groups` for finer control (it reads the recipe);
* ``baseline`` — the registered method it extends (JRD: AM-Softmax); under ``--recipe paper`` a method and
  its baseline in one run must train alike, else the run is refused;
* ``own_hparams`` — what an extension adds: its own hyperparameters, the main one (the weight of the added
  term: JRD's α) first; every other hyperparameter is its baseline's, declared alike
  (:meth:`base_hparams`, checked by :func:`extension_problems`). A benchmark's ``nested`` protocol searches
  the baseline first and then only these; ``baseline_at_zero`` says the method is its baseline when the
  main one is 0 (JRD at α = 0 is AM-Softmax);
* ``paper_recipe`` — the :class:`~harness.core.recipe.Recipe` its authors trained with, as data
  (:meth:`paper_recipe_for` when it differs per dataset, :meth:`declared_recipes` lists them all);
* ``dataset_defaults(dataset)`` — hyperparameters its paper sets per dataset;
* ``derived_defaults(values, given)`` — defaults that depend on other hyperparameters (JRD's α by kernel),
  filled by :meth:`Method.resolve_hparams`, the one step both trials and :func:`create_method` resolve through;
* ``trains`` / ``backbone`` — a method that does not train (``pixels``) and the backbone it forces.

A method's class is a declaration that imports no torch: the registry, validation, ``list`` and ``config``
read these attributes without it (so a typo is answered in well under a second), and a method module
imports torch, pytorch-metric-learning and its own networks inside the functions that train. An instance
is an ``nn.Module`` (:func:`module_class` adds ``nn.Module`` under the declaration when the first one is
built): its trainable parameters (proxies, class weights, flows, message passing networks) live in it
and get their own optimizer group.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import importlib.metadata
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from harness.core.hparams import Param
from harness.core.recipe import RECIPES, Recipe
from harness.core.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.plugins.models import ModelOutput


class Method:
    """Base class of a DML method. Subclasses implement :meth:`loss` (and maybe :meth:`training_loss`).

    Building one (``create_method(name, ...)`` or ``cls(...)``) returns an instance of
    :func:`module_class` ``(cls)``: ``cls`` with ``nn.Module`` under it, so ``isinstance(m, cls)`` holds."""

    name: ClassVar[str] = ""
    #: the method's family in the leaderboard figures' colours: pair, proxy, classification, JRD variants,
    #: floor or other (the taxonomy of Musgrave et al., "A Metric Learning Reality Check", ECCV 2020)
    family: ClassVar[str] = "other"
    hparams: ClassVar[dict[str, Param]] = {}
    taps: ClassVar[tuple[str, ...]] = ("embedding",)
    sampler: ClassVar[str] = "random"
    normalize_embedding: ClassVar[bool] = True
    pooling: ClassVar[str | None] = None
    embedding_head: ClassVar[bool] = True
    lr_multiplier: ClassVar[float] = 1.0
    baseline: ClassVar[str | None] = None
    own_hparams: ClassVar[tuple[str, ...]] = ()
    baseline_at_zero: ClassVar[bool] = False
    paper_recipe: ClassVar[Recipe | None] = None
    trains: ClassVar[bool] = True
    backbone: ClassVar[str | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Method:
        return object.__new__(module_class(cls))

    def __init__(self, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any):
        super().__init__()  # nn.Module's, next in the instance's class order (module_class)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.feature_dim = feature_dim
        self.config: dict[str, Any] = self.resolve_hparams(hparams)

    def loss(self, outputs: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch, from the model's outputs and contiguous labels."""
        raise NotImplementedError

    def training_loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One batch's loss. Methods that mix inputs or features (Metrix) override this."""
        return self.loss(model(images), labels)

    def param_groups(self, recipe: Recipe) -> list[dict]:
        """Optimizer groups for the method's own parameters: ``recipe.lr_method × lr_multiplier``."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        return [{"params": params, "lr": recipe.lr_method * self.lr_multiplier, "weight_decay": recipe.weight_decay,
                 "name": "method"}]

    @classmethod
    def check_hparam_names(cls, names: Iterable[str]) -> None:
        """Raise ``ValueError`` listing the valid names unless every one of ``names`` is declared."""
        unknown = set(names) - set(cls.hparams)
        if unknown:
            raise ValueError(f"method {cls.name!r} has no hyperparameter {', '.join(sorted(unknown))}; "
                             f"valid: {', '.join(sorted(cls.hparams)) or 'none'}")

    @classmethod
    def base_hparams(cls) -> tuple[str, ...]:
        """The hyperparameters it shares with its baseline (every one but its own); none without a baseline."""
        return tuple(name for name in cls.hparams if name not in cls.own_hparams) if cls.baseline else ()

    @classmethod
    def main_hparam(cls) -> str | None:
        """Its main own hyperparameter (the first of :attr:`own_hparams`), the axis of a sensitivity view."""
        return cls.own_hparams[0] if cls.own_hparams else None

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """The class-level choices that change results (part of a trial's identity, recorded in its
        specification as ``method_settings``; the engine reads them from there)."""
        return {"lr_multiplier": cls.lr_multiplier, "pooling": cls.pooling, "normalize_embedding": cls.normalize_embedding,
                "embedding_head": cls.embedding_head, "sampler": cls.sampler, "taps": list(cls.taps)}

    @classmethod
    def resolve_hparams(cls, given: dict[str, Any], dataset: str | None = None,
                        recipe: Recipe | None = None) -> dict[str, Any]:
        """Every hyperparameter of this method: the one resolution step that runs, searches, sweeps, finals,
        a record's :meth:`changed_hparams` and :func:`create_method` all go through, so they never disagree.

        In order of precedence: ``given`` (the user's values, a search's proposal), the ``recipe``'s values
        for this method (``Recipe.method_hparams``: its authors' code), the paper's values for ``dataset``
        (:meth:`dataset_defaults`), then the defaults that depend on other values (:meth:`derived_defaults`,
        computed from all of the above), then the declared defaults. Names are checked (``ValueError``)."""
        from_recipe = recipe.method_hparams.get(cls.name, {}) if recipe is not None else {}
        cls.check_hparam_names(from_recipe)
        cls.check_hparam_names(given)
        chosen = {**(cls.dataset_defaults(dataset) if dataset is not None else {}), **from_recipe, **given}
        declared = {name: p.default for name, p in cls.hparams.items()}
        return {**declared, **cls.derived_defaults({**declared, **chosen}, set(chosen)), **chosen}

    @classmethod
    def changed_hparams(cls, values: dict[str, Any], dataset: str | None = None,
                        recipe: Recipe | None = None) -> dict[str, Any]:
        """The hyperparameters of resolved ``values`` that differ from the default :meth:`resolve_hparams`
        gives them on ``dataset`` under ``recipe`` with the others as they are (a record's
        ``hparams_changed``, its row label): JRD's ``kernel=polynomial`` is a change, the α it implies is not."""
        return {name: value for name, value in values.items()
                if name not in cls.hparams or value != cls.resolve_hparams(
                    {k: v for k, v in values.items() if k != name and k in cls.hparams}, dataset, recipe)[name]}

    @classmethod
    def derived_defaults(cls, values: dict[str, Any], given: set[str]) -> dict[str, Any]:
        """Defaults that depend on other hyperparameters' values (e.g. JRD's α by kernel), for the names not
        in ``given``; ``values`` holds the declared defaults overlaid with what was given."""
        return {}

    @classmethod
    def dataset_defaults(cls, dataset: str) -> dict[str, Any]:
        """Hyperparameters the paper sets per dataset (e.g. layers × heads); user overrides win."""
        return {}

    @classmethod
    def paper_recipe_for(cls, dataset: str) -> Recipe | None:
        """The recipe its authors used on ``dataset`` (default: :attr:`paper_recipe` everywhere)."""
        return cls.paper_recipe

    @classmethod
    def declared_recipes(cls) -> tuple[Recipe, ...]:
        """Every recipe this method declares (selectable by name with ``--recipe``)."""
        return (cls.paper_recipe,) if cls.paper_recipe is not None else ()

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or cls.name).strip().splitlines()[0]


@functools.cache
def module_class(cls: type[Method]) -> type:
    """``cls`` as an ``nn.Module``: a subclass of ``cls`` and ``nn.Module`` (in that order, so the method's own
    attributes win), made once per method when its first instance is built; the one place a declaration
    meets torch."""
    from torch import nn

    if issubclass(cls, nn.Module):
        return cls
    return type(cls.__name__, (cls, nn.Module), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                                 "__doc__": cls.__doc__})


#: Built-in methods register through this package's own ``harness.methods`` entry point (the ``methods``
#: package), third-party ones through theirs or ``--plugins``: nothing registers as a side effect of
#: importing the harness.
METHODS: Registry[type[Method]] = Registry("method", entry_point_group="harness.methods")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register_method("jrd")`` registers a :class:`Method` subclass under ``name``."""

    def decorator(cls: type[Method]) -> type[Method]:
        if not issubclass(cls, Method):
            raise TypeError(f"{cls.__name__} must subclass harness.plugins.method.Method")
        cls.name = name
        return METHODS.register(name)(cls)

    return decorator


def get_method_class(name: str) -> type[Method]:
    return METHODS.get(name)


def extension_problems(cls: type[Method]) -> list[str]:
    """What is inconsistent in a method's baseline declaration (empty when nothing): its baseline is
    registered and is not itself; its own hyperparameters are declared, distinct and not the baseline's;
    every other one is the baseline's, with the same default and space; a method without a baseline
    declares no own hyperparameters."""
    name = cls.name
    if cls.baseline is None:
        return [f"{name}: own_hparams {cls.own_hparams} without a baseline"] if cls.own_hparams else []
    if cls.baseline == name or cls.baseline not in METHODS.names():
        return [f"{name}: baseline {cls.baseline!r} is not another registered method"]
    base = METHODS.get(cls.baseline).hparams
    problems = [f"{name}: own hyperparameter {p!r} is not declared" for p in cls.own_hparams if p not in cls.hparams]
    problems += [f"{name}: own hyperparameter {p!r} is also {cls.baseline}'s" for p in cls.own_hparams if p in base]
    if not cls.own_hparams or len(set(cls.own_hparams)) != len(cls.own_hparams):
        problems.append(f"{name}: own_hparams {cls.own_hparams} must name each added hyperparameter once")
    problems += [f"{name}: {p!r} is neither its own nor {cls.baseline}'s" for p in cls.base_hparams() if p not in base]
    alike = lambda a, b: (a.default, a.space, a.valid) == (b.default, b.space, b.valid)  # noqa: E731
    problems += [f"{name}: {p!r} is {cls.baseline}'s but declared differently ({cls.hparams[p]} vs {base[p]})"
                 for p in cls.base_hparams() if p in base and not alike(cls.hparams[p], base[p])]
    problems += [f"{name}: {cls.baseline}'s {p!r} is missing" for p in base if p not in cls.hparams]
    return problems


def method_families() -> dict[str, str]:
    """Every registered method's declared family (for the figures of records written before records
    carried it)."""
    return {name: METHODS.get(name).family for name in METHODS.names()}


def find_recipe(name: str) -> Recipe:
    """A recipe by name: a shared one (:data:`~harness.core.recipe.RECIPES`) or one a method declares."""
    if name in RECIPES:
        return RECIPES.get(name)
    for method in METHODS.names():
        for recipe in METHODS.get(method).declared_recipes():
            if recipe.name == name:
                return recipe
    raise UnknownNameError(f"unknown recipe {name!r}; valid recipes: {', '.join(recipe_names())}")


def recipe_names() -> list[str]:
    """The names of every shared and method-declared recipe."""
    declared = {r.name for m in METHODS.names() for r in METHODS.get(m).declared_recipes()}
    return sorted(set(RECIPES.names()) | declared)


def _module_imports(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that the source file ``path`` imports (absolute or relative)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package if node.level == 1 else package.rsplit(".", node.level - 1)[0]
            names.add(f"{base}.{node.module}" if node.module else base)
            names.update(f"{base}.{a.name}" for a in node.names if not node.module)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    top = package.split(".")[0]
    return {n for n in names if n == top or n.startswith(top + ".")}


def _module_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """Where module ``name`` lives, found without importing it (a method imports its torch code, such as
    :mod:`methods.intra_batch_network`, only when it trains, and its fingerprint must not depend on whether it
    has); None for a name that is no module (a class imported from one)."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__spec__", None)
    parent, _, _ = name.rpartition(".")
    search = None
    if parent:
        parent_spec = _module_spec(parent)
        if parent_spec is None or parent_spec.submodule_search_locations is None:
            return None
        search = list(parent_spec.submodule_search_locations)
    return importlib.machinery.PathFinder.find_spec(name, search)


def _source_files(module_name: str) -> dict[str, Path]:
    """The module's source file and those of the modules of its own top-level package that it imports,
    transitively (``methods.jrd`` -> ``methods.jrd_kernels``, ``methods.amsoftmax``)."""
    files: dict[str, Path] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        spec = _module_spec(name)
        path = Path(spec.origin if spec is not None and spec.origin else "")
        if name in files or path.suffix != ".py" or not path.is_file():
            continue
        files[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0] or name
        todo += sorted(_module_imports(path, package) - {name})
    return files


@functools.lru_cache(maxsize=None)
def _distribution(module_name: str) -> str | None:
    """``name==version`` of the installed distribution that ships the module's top-level package, if any
    other than the harness's own; looked up once per process (reading every installed distribution's file
    list takes seconds, and every trial an experiment builds asks)."""
    top = module_name.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        if dist != "dmlbench":
            return f"{dist}=={importlib.metadata.version(dist)}"
    return None


def code_fingerprint(cls: type[Method]) -> str:
    """A fingerprint of a method's code, part of its trials' ids (an edited loss is a new trial): the sha256
    of its module's source and of the modules of its own package it imports, plus the version of the
    distribution that ships it when that is not the harness."""
    digest = hashlib.sha256()
    for name, path in sorted(_source_files(cls.__module__).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    distribution = _distribution(cls.__module__)
    return (f"{distribution}:" if distribution else "") + digest.hexdigest()[:16]


def create_method(name: str, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any) -> Method:
    """Build a registered method from its name plus hyperparameter overrides (timm's ``create_model``)."""
    return get_method_class(name)(num_classes=num_classes, embedding_dim=embedding_dim,
                                  feature_dim=feature_dim, **hparams)


class PMLLossMethod(Method):
    """A method that is one pytorch-metric-learning loss (plus an optional miner) on the embedding.

    Subclasses build the loss (and miner) from ``self.config``; the embedding is cast to float32
    first so that bf16 autocast never reaches the loss's exponentials.
    """

    def __init__(self, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any):
        super().__init__(num_classes, embedding_dim, feature_dim, **hparams)
        self.criterion = self.build_loss()
        self.miner = self.build_miner()

    def build_loss(self) -> nn.Module:
        raise NotImplementedError

    def build_miner(self) -> nn.Module | None:
        return None

    def loss(self, outputs: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        embedding = outputs["embedding"].float()
        tuples = self.miner(embedding, labels) if self.miner is not None else None
        return self.criterion(embedding, labels, tuples)


__all__ = ["Method", "PMLLossMethod", "METHODS", "register_method", "create_method", "get_method_class",
           "method_families", "extension_problems", "Param",
           "UnknownNameError", "find_recipe", "recipe_names"]
