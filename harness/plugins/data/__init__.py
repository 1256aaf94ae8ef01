"""Datasets: ``import harness.plugins.data`` registers every loader; ``create_dataset(name, root)`` builds the splits."""
from harness.plugins.data.base import DATASETS, DatasetFormatError, DatasetSplits, Subset, create_dataset
from harness.plugins.data.images import ImageDataset, ImageFileError
from harness.plugins.data import cars, cub, digits, inshop, omniglot, omniglot28, sop  # noqa: F401  (register the datasets)

__all__ = ["DATASETS", "DatasetFormatError", "DatasetSplits", "ImageDataset", "ImageFileError", "Subset", "create_dataset"]
