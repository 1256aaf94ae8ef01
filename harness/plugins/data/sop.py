"""Stanford Online Products (Oh Song, Xiang, Jegelka and Savarese, "Deep Metric Learning via
Lifted Structured Feature Embedding", CVPR 2016).

Original layout of ``--data-root`` (the ``Stanford_Online_Products`` folder)::

    Ebay_train.txt, Ebay_test.txt   header "image_id class_id super_class_id path",
                                    rows "1 1 1 bicycle_final/111085122871_0.JPG"
    <super class>_final/<file>.JPG  paths relative to the root

Split as distributed: 11,318 training classes (59,551 images), 11,316 test classes (60,502).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.plugins.data.base import LoadedDataset, Subset, register_dataset
from harness.plugins.data.common import absolute_paths, check_disjoint, read_table

LAYOUT = "Ebay_train.txt and Ebay_test.txt ('image_id class_id super_class_id path'), images at <root>/<path>"
COLUMNS = ("image_id", "class_id", "super_class_id", "path")


def _read_split(root: Path, filename: str) -> Subset:
    rows = read_table(root / filename, LAYOUT, COLUMNS, header=True)
    labels = np.array([row.integer(1) for row in rows], dtype=np.int64)
    return Subset(absolute_paths(root, [row.fields[3] for row in rows], LAYOUT), labels)


@register_dataset("sop", recall_ks=(1, 10, 100, 1000), layout=LAYOUT)
def load_sop(root: Path) -> LoadedDataset:
    """Stanford Online Products: 22,634 classes, 120,053 images; the distributed train/test class split."""
    train, test = _read_split(root, "Ebay_train.txt"), _read_split(root, "Ebay_test.txt")
    check_disjoint(train.labels, test.labels, root / "Ebay_train.txt", root / "Ebay_test.txt")
    return LoadedDataset(train=train, query=test)
