"""In-Shop Clothes Retrieval (Liu, Luo, Qiu, Wang and Tang, "DeepFashion: Powering Robust Clothes
Recognition and Retrieval with Rich Annotations", CVPR 2016).

Original layout of ``--data-root`` (the "In-shop Clothes Retrieval Benchmark" folder)::

    Eval/list_eval_partition.txt (or list_eval_partition.txt at the root)
        line 1: number of rows; line 2: "image_name item_id evaluation_status";
        rows "img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train|query|gallery"
    img/...   image paths relative to the root

Split as distributed: 3,997 training items (25,882 images); 3,985 test items, 14,218 query and
12,612 gallery images. Item ids are numbered in sorted order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.plugins.data.base import LoadedDataset, Subset, register_dataset
from harness.plugins.data.common import absolute_paths, check_disjoint, read_table

LAYOUT = (
    "Eval/list_eval_partition.txt (count; 'image_name item_id evaluation_status'; rows), images at <root>/img/..."
)
COLUMNS = ("image_name", "item_id", "evaluation_status")
STATUSES = ("train", "query", "gallery")


@register_dataset("inshop", recall_ks=(1, 10, 20, 30), layout=LAYOUT)
def load_inshop(root: Path) -> LoadedDataset:
    """In-Shop Clothes Retrieval: 7,982 items, 52,712 images; training items, test query and gallery."""
    partition = root / "list_eval_partition.txt"
    if not partition.exists():
        partition = root / "Eval" / "list_eval_partition.txt"
    rows = read_table(partition, LAYOUT, COLUMNS, counted=True, header=True)
    for row in rows:
        if row.fields[2] not in STATUSES:
            raise row.error(f"evaluation_status must be one of {', '.join(STATUSES)}, got {row.fields[2]!r}")
    item_ids = {item: index for index, item in enumerate(sorted({row.fields[1] for row in rows}))}
    images = np.array(absolute_paths(root, [row.fields[0] for row in rows], LAYOUT))
    labels = np.array([item_ids[row.fields[1]] for row in rows], dtype=np.int64)
    status = np.array([row.fields[2] for row in rows])

    def subset(name: str) -> Subset:
        return Subset(images[status == name].tolist(), labels[status == name])

    items = np.array([row.fields[1] for row in rows])
    for name in ("query", "gallery"):
        check_disjoint(items[status == "train"], items[status == name], f"{partition} (train rows)",
                       f"{partition} ({name} rows)")
    return LoadedDataset(train=subset("train"), query=subset("query"), gallery=subset("gallery"))
