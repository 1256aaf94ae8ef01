"""Datasets: ``import harness.plugins.data`` registers every loader; ``create_dataset(name, root)`` builds the splits.

Importing it imports no torch: :class:`ImageDataset` and :class:`ImageFileError` (torch and torchvision) are
imported from :mod:`harness.plugins.data.images` when first named (PEP 562), so the registry's declarations
answer a command's validation at once."""
from typing import Any

from harness.plugins.data.base import DATASETS, DatasetFormatError, DatasetSplits, Subset, create_dataset
from harness.plugins.data import cars, cub, digits, inshop, omniglot, omniglot28, sop  # noqa: F401  (register the datasets)

__all__ = ["DATASETS", "DatasetFormatError", "DatasetSplits", "ImageDataset", "ImageFileError", "Subset", "create_dataset"]


def __getattr__(name: str) -> Any:
    if name in ("ImageDataset", "ImageFileError"):
        from harness.plugins.data import images

        return getattr(images, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
