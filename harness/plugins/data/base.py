"""The dataset contract: class-disjoint splits of image paths (or in-memory images) and labels.

A loader reads a dataset's *original* on-disk layout and returns the training classes and the
test classes (or In-Shop's query/gallery). The harness then carves a validation split from the
training classes (class-disjoint), so that hyperparameter searches never see a test class.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.core.registry import Registry
from harness.core.spec import TrialSpec


class DatasetFormatError(FileNotFoundError, ValueError):
    """A dataset folder that does not have the expected layout; the message names the file."""


def require_file(path: Path, layout: str) -> Path:
    """Return ``path`` if it exists, else raise a :class:`DatasetFormatError` naming it and the layout."""
    if not path.exists():
        raise DatasetFormatError(f"missing {path} (expected layout: {layout})")
    return path


def list_folder(folder: Path) -> list[Path]:
    """The entries of ``folder`` sorted by name; a :class:`DatasetFormatError` saying ``cannot read <folder>``
    if it cannot be listed (``Path.glob`` would return nothing and hide why)."""
    try:
        with os.scandir(folder) as entries:
            return sorted((Path(entry.path) for entry in entries), key=lambda p: p.name)
    except OSError as error:
        raise DatasetFormatError(f"cannot read {folder}: {error.strerror or error}") from None


@dataclass(frozen=True, eq=False)
class Subset:
    """Samples of one split: image file paths (or a uint8 array N×H×W[×C]) and integer class labels."""

    images: Sequence[str] | np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.labels)

    def select(self, mask: np.ndarray) -> "Subset":
        images = self.images[mask] if isinstance(self.images, np.ndarray) else [
            p for p, keep in zip(self.images, mask) if keep
        ]
        return Subset(images, self.labels[mask])


@dataclass(frozen=True)
class LoadedDataset:
    """What a loader returns: the training classes and the evaluation sets of the test classes.

    For most datasets ``query`` is the test set and ``gallery`` is None (leave-one-out retrieval
    over the test set, the query itself excluded). In-Shop has a separate gallery.
    """

    train: Subset
    query: Subset
    gallery: Subset | None = None


@dataclass(frozen=True)
class DatasetSplits:
    """Class-disjoint splits: ``train`` and ``val`` partition the training classes; ``test`` classes are unseen."""

    name: str
    trainval: Subset
    train: Subset
    val: Subset
    query: Subset
    gallery: Subset | None
    recall_ks: tuple[int, ...]
    channels: int


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loader and the protocol facts that go with it."""

    name: str
    load: Callable[[Path | None], LoadedDataset]
    description: str
    recall_ks: tuple[int, ...] = (1, 2, 4, 8)
    channels: int = 3
    needs_root: bool = True
    default_backbone: str = "resnet50"
    default_recipe: str = "default"
    layout: str = ""
    extra: dict = field(default_factory=dict)


DATASETS: Registry[DatasetSpec] = Registry("dataset", entry_point_group="harness.datasets")


def register_dataset(name: str, **spec_fields) -> Callable:
    """Decorator: ``@register_dataset("cub", recall_ks=(1, 2, 4, 8), layout="...")`` on a loader function."""

    def decorator(load: Callable[[Path | None], LoadedDataset]) -> Callable[[Path | None], LoadedDataset]:
        doc = (load.__doc__ or name).strip().splitlines()[0]
        DATASETS.register(name)(DatasetSpec(name=name, load=load, description=doc, **spec_fields))
        return load

    return decorator


def carve_validation(train: Subset, fraction: float) -> tuple[Subset, Subset]:
    """Split the training classes into (train, val), class-disjoint: the last ``fraction`` of sorted class ids is val."""
    classes = train.classes
    n_val = int(round(len(classes) * fraction))
    if fraction > 0 and n_val == 0:
        n_val = 1
    if n_val >= len(classes):
        raise ValueError(f"validation fraction {fraction} leaves no training classes out of {len(classes)}")
    val_classes = classes[len(classes) - n_val:]
    is_val = np.isin(train.labels, val_classes)
    return train.select(~is_val), train.select(is_val)


def carve_fold(train: Subset, fold: int, folds: int) -> tuple[Subset, Subset]:
    """Fold ``fold`` of a class-disjoint ``folds``-fold cross-validation over the training classes:
    the sorted class ids cut into ``folds`` contiguous parts (sizes differing by at most one); part
    ``fold`` is val, the others train."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} of {folds} does not exist")
    if folds > len(train.classes):
        raise ValueError(f"{folds} folds need at least {folds} training classes, there are {len(train.classes)}")
    val_classes = np.array_split(np.asarray(train.classes), folds)[fold]
    is_val = np.isin(train.labels, val_classes)
    return train.select(~is_val), train.select(is_val)


class WithheldSplit:
    """Stands for the test classes in a validation trial: any use of it raises, so a search or sweep
    cannot touch a test image by construction, not by convention."""

    def __init__(self, dataset: str):
        self._dataset = dataset

    def __getattr__(self, name: str):
        raise RuntimeError(f"the test classes of {self._dataset} are withheld from validation trials")

    def __len__(self) -> int:
        raise RuntimeError(f"the test classes of {self._dataset} are withheld from validation trials")


def _example(subset: Subset, label: int) -> str:
    """``class 7 (…/a.png)``: a class of ``subset`` named by its label and, where it has files, its first image."""
    if isinstance(subset.images, np.ndarray):
        return f"class {label}"
    return f"class {label} ({subset.images[int(np.flatnonzero(subset.labels == label)[0])]})"


def check_retrievable(name: str, loaded: LoadedDataset) -> None:
    """Raise :class:`DatasetFormatError` unless ``loaded`` can train and be evaluated by retrieval: some
    training class holds two images (a positive pair), and each test query has another image of its class
    to retrieve (in the gallery, or in the test set itself where there is none); else every trial would fail,
    with a sampler's bare assertion or a metric that is NaN (MAP@R divides by that count)."""
    labels, counts = np.unique(loaded.train.labels, return_counts=True)
    if len(labels) and counts.max() < 2:
        raise DatasetFormatError(f"dataset {name}: every one of its {len(labels)} training classes holds one image "
                                 f"(e.g. {_example(loaded.train, labels[0])}); metric learning needs classes of "
                                 "at least 2 images (positive pairs)")
    if loaded.gallery is None:
        labels, counts = np.unique(loaded.query.labels, return_counts=True)
        alone = labels[counts < 2]
        why = "holds one image: it has no other image of its class to retrieve"
    else:
        alone = np.setdiff1d(loaded.query.classes, loaded.gallery.classes)
        why = "has no image in the gallery: its queries have nothing of their class to retrieve"
    if len(alone):
        raise DatasetFormatError(f"dataset {name}: {len(alone)} of its {len(loaded.query.classes)} test classes "
                                 f"{'each ' if len(alone) > 1 else ''}{why} (e.g. {_example(loaded.query, alone[0])}); "
                                 "Recall@K and MAP@R need at least 2 images of each test class")


@functools.lru_cache(maxsize=4)
def _load(name: str, root: Path | None, root_mtime_ns: int) -> LoadedDataset:
    """A dataset's index, read once per process for each (dataset, folder, folder's mtime), so trials
    that follow one another in a worker share it (and with it their decoded-image cache); one that cannot
    be trained or evaluated by retrieval raises (:func:`check_retrievable`)."""
    loaded = DATASETS.get(name).load(root)
    check_retrievable(name, loaded)
    return loaded


def create_dataset(name: str, root: str | Path | None = None, val_fraction: float = TrialSpec.val_fraction, *,
                   fold: int | None = None, folds: int = 0, withhold_test: bool = False) -> DatasetSplits:
    """Load a registered dataset from ``root`` and return its class-disjoint splits.

    The validation classes are the last ``val_fraction`` of the training classes, or with ``folds``
    fold ``fold`` of a class-disjoint cross-validation. ``withhold_test`` replaces the test splits
    (and ``trainval``) with :class:`WithheldSplit` (for validation trials)."""
    spec = DATASETS.get(name)
    if spec.needs_root and root is None:
        raise DatasetFormatError(f"dataset {name!r} needs --data-root (expected layout: {spec.layout})")
    if root is not None and not Path(root).is_dir():
        raise DatasetFormatError(f"data root {root} is not a folder (expected layout: {spec.layout})")
    loaded = _load(name, Path(root).resolve() if root is not None else None,
                   Path(root).stat().st_mtime_ns if root is not None else 0)
    train, val = carve_fold(loaded.train, fold, folds) if folds else carve_validation(loaded.train, val_fraction)
    withheld = WithheldSplit(name) if withhold_test else None
    return DatasetSplits(
        name=name,
        trainval=loaded.train if withheld is None else withheld,
        train=train,
        val=val,
        query=loaded.query if withheld is None else withheld,
        gallery=loaded.gallery if withheld is None else withheld,
        recall_ks=spec.recall_ks,
        channels=spec.channels,
    )
