"""CUB-200-2011 (Wah, Branson, Welinder, Perona and Belongie, Caltech tech. report CNS-TR-2011-001).

Original layout, ``--data-root`` being the ``CUB_200_2011`` folder or its parent::

    CUB_200_2011/images.txt                "<image id> <relative path>"
    CUB_200_2011/image_class_labels.txt    "<image id> <class id 1..200>"
    CUB_200_2011/images/<relative path>    e.g. 001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg

DML split (Oh Song et al., CVPR 2016): classes 1-100 train (5,864 images), 101-200 test (5,924).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.plugins.data.base import LoadedDataset, register_dataset
from harness.plugins.data.common import absolute_paths, read_table, split_at_class

LAYOUT = (
    "CUB_200_2011/{images.txt ('<id> <relpath>'), image_class_labels.txt ('<id> <class>'), images/<relpath>}"
)
LAST_TRAIN_CLASS = 100
NUM_CLASSES = 200


@register_dataset("cub", recall_ks=(1, 2, 4, 8), layout=LAYOUT)
def load_cub(root: Path) -> LoadedDataset:
    """CUB-200-2011 birds: 200 classes, 11,788 images; classes 1-100 train, 101-200 test."""
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    label_rows = read_table(root / "image_class_labels.txt", LAYOUT, ("image_id", "class_id"))
    class_of = {row.fields[0]: row.class_id(1, 1, NUM_CLASSES) for row in label_rows}
    image_rows = read_table(root / "images.txt", LAYOUT, ("image_id", "path"))
    labels = []
    for row in image_rows:
        if row.fields[0] not in class_of:
            raise row.error(f"image id {row.fields[0]} has no class in {root / 'image_class_labels.txt'}")
        labels.append(class_of[row.fields[0]])
    images = absolute_paths(root / "images", [row.fields[1] for row in image_rows], LAYOUT)
    return split_at_class(images, np.array(labels, dtype=np.int64), LAST_TRAIN_CLASS, root)
