"""scikit-learn's bundled handwritten digits (the UCI "Optical Recognition of Handwritten Digits"
set, Alpaydin and Kaynak 1998; ``sklearn.datasets.load_digits``): 1,797 8x8 images, no download.

The embedded default dataset: no ``--data-root``. Split by class: digits 0-4 train, 5-9 test.
Images are a uint8 array N x 8 x 8, the 0-16 intensities scaled to 0-255.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.plugins.data.base import LoadedDataset, register_dataset
from harness.plugins.data.common import split_at_class

LAST_TRAIN_CLASS = 4


@register_dataset(
    "digits",
    recall_ks=(1, 2, 4, 8),
    channels=1,
    needs_root=False,
    default_backbone="small_cnn",
    default_recipe="digits",
    layout="none: bundled with scikit-learn",
)
def load_digits(root: Path | None = None) -> LoadedDataset:
    """scikit-learn digits (8x8, bundled): digits 0-4 train, 5-9 test."""
    from sklearn.datasets import load_digits as sklearn_digits  # here: the registry loads without scikit-learn

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    return split_at_class(images, bunch.target.astype(np.int64), LAST_TRAIN_CLASS, "sklearn digits")
