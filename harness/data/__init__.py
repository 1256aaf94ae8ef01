"""Datasets: ``import harness.data`` registers every loader; ``create_dataset(name, root)`` builds the splits."""
from harness.data.base import DATASETS, DatasetFormatError, DatasetSplits, Subset, create_dataset
from harness.data.images import ImageDataset
from harness.data import cars, cub, digits, inshop, omniglot, sop  # noqa: F401  (register the datasets)

__all__ = ["DATASETS", "DatasetFormatError", "DatasetSplits", "ImageDataset", "Subset", "create_dataset"]
