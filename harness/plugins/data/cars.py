"""Cars196 (Krause, Stark, Deng and Fei-Fei, "3D Object Representations for Fine-Grained
Categorization", ICCV Workshops 2013).

Original layout of ``--data-root``::

    cars_annos.mat   struct array ``annotations`` (relative_im_path 'car_ims/000001.jpg',
                     bbox_x1, bbox_y1, bbox_x2, bbox_y2, class 1..196, test) and ``class_names``
    car_ims/000001.jpg ... car_ims/016185.jpg

DML split (Oh Song et al., CVPR 2016): classes 1-98 train (8,054 images), 99-196 test (8,131);
the file's ``test`` flag (the classification split) is ignored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.plugins.data.base import DatasetFormatError, LoadedDataset, register_dataset, require_file
from harness.plugins.data.common import absolute_paths, split_at_class

LAYOUT = "cars_annos.mat (struct array 'annotations': relative_im_path, class, ...) and car_ims/*.jpg"
LAST_TRAIN_CLASS = 98
NUM_CLASSES = 196
FIELDS = ("relative_im_path", "class")


@register_dataset("cars", recall_ks=(1, 2, 4, 8), layout=LAYOUT)
def load_cars(root: Path) -> LoadedDataset:
    """Stanford Cars196: 196 classes, 16,185 images; classes 1-98 train, 99-196 test."""
    from scipy.io import loadmat  # here: the registry's declarations load without SciPy (issue 33)
    from scipy.io.matlab import MatReadError

    mat_path = require_file(root / "cars_annos.mat", LAYOUT)
    try:
        annotations = loadmat(mat_path, squeeze_me=True).get("annotations")
    except (MatReadError, ValueError) as error:
        raise DatasetFormatError(f"{mat_path} is not a readable MATLAB file ({error})") from None
    if annotations is None or not set(FIELDS) <= set(annotations.dtype.names or ()):
        raise DatasetFormatError(
            f"{mat_path} has no struct array 'annotations' with fields {', '.join(FIELDS)} (expected layout: {LAYOUT})"
        )
    relpaths, labels = [], []
    for index, annotation in enumerate(np.atleast_1d(annotations), start=1):
        try:
            relpaths.append(str(annotation["relative_im_path"]))
            labels.append(int(annotation["class"]))
        except (TypeError, ValueError) as error:
            raise DatasetFormatError(f"{mat_path}, annotation {index}: malformed ({error})") from None
        if not 1 <= labels[-1] <= NUM_CLASSES:
            raise DatasetFormatError(f"{mat_path}, annotation {index}: class id {labels[-1]} outside 1..{NUM_CLASSES}")
    images = absolute_paths(root, relpaths, LAYOUT)
    return split_at_class(images, np.array(labels, dtype=np.int64), LAST_TRAIN_CLASS, mat_path)
