"""Omniglot (Lake, Salakhutdinov and Tenenbaum, "Human-level concept learning through probabilistic
program induction", Science 2015).

Original layout of ``--data-root``::

    images_background/<alphabet>/<character>/<drawer>.png   (105x105 1-bit PNG)
    images_evaluation/<alphabet>/<character>/<drawer>.png   (optional)

A class is (alphabet, character). Split by alphabet, so that test alphabets are unseen: alphabets
sorted by name (background set first, then evaluation set) and the last 3/8 of them (rounded half
up) are test. Class ids count up in that order, characters sorted by name within an alphabet.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.plugins.data.base import (DatasetFormatError, LoadedDataset, list_folder, register_dataset,
                                       require_file)
from harness.plugins.data.common import split_at_class

LAYOUT = "images_background/<alphabet>/<character>/*.png (and optionally images_evaluation/...)"
SETS = ("images_background", "images_evaluation")
TEST_FRACTION = 3 / 8


def _subfolders(folder: Path) -> list[Path]:
    return [p for p in list_folder(folder) if p.is_dir()]


@register_dataset(
    "omniglot", channels=1, default_backbone="small_cnn", default_recipe="cpu", needs_root=True, layout=LAYOUT
)
def load_omniglot(root: Path) -> LoadedDataset:
    """Omniglot handwritten characters: a class per (alphabet, character); the last 3/8 of alphabets test."""
    root = root.resolve()
    require_file(root / SETS[0], LAYOUT)
    alphabets = [alphabet for name in SETS if (root / name).is_dir() for alphabet in _subfolders(root / name)]
    if len(alphabets) < 2:
        raise DatasetFormatError(f"{root / SETS[0]} holds {len(alphabets)} alphabet folder(s); need at least 2")
    n_train_alphabets = len(alphabets) - max(1, math.floor(len(alphabets) * TEST_FRACTION + 0.5))
    images: list[str] = []
    labels: list[int] = []
    first_class_of_alphabet: list[int] = []
    n_classes = 0
    for alphabet in alphabets:
        first_class_of_alphabet.append(n_classes)
        for character in _subfolders(alphabet):
            drawings = [str(p) for p in list_folder(character) if p.suffix.lower() == ".png"]
            if not drawings:
                raise DatasetFormatError(f"{character} holds no .png drawing (expected layout: {LAYOUT})")
            images += drawings
            labels += [n_classes] * len(drawings)
            n_classes += 1
    last_train_class = first_class_of_alphabet[n_train_alphabets] - 1
    return split_at_class(images, np.array(labels, dtype=np.int64), last_train_class, root)
