"""Omniglot at 28×28, packaged: the embedded default dataset, no ``--data-root`` and no download.

The 4,840 drawings of ``../shared/data/omniglot`` (Lake, Salakhutdinov and Tenenbaum, "Human-level
concept learning through probabilistic program induction", Science 2015; MIT licence, copied beside
the data as ``omniglot28.LICENSE``): 8 alphabets of the background set, 242 character classes, 20
drawings each. ``omniglot28.npz`` holds

- ``images``: uint8 N×28×28, each drawing as the ``omniglot`` loader's images reach a 28 px recipe:
  the 105×105 1-bit PNG converted to grayscale ("L", 0/255) and resized by torchvision's
  ``Resize(28)`` (PIL bilinear with antialiasing). A 28 px recipe's ``Resize(28)`` and
  ``CenterCrop(28)`` leave these images unchanged, so training on ``omniglot28`` sees the pixels
  that ``omniglot`` at 28 px sees;
- ``labels``: int64 class ids, the ``omniglot`` loader's (alphabets, then characters, by name);
- ``paths``: each drawing's path relative to the data root (provenance);
- ``last_train_class``: the ``omniglot`` loader's split: alphabets by name, the last 3/8 test
  (Latin, Sanskrit, Tagalog: 85 classes), the first 5 train (157 classes). The validation split is
  carved from the training classes like every dataset's (:func:`harness.plugins.data.base.carve_validation`).

Its default recipe is ``cpu`` (the small CNN at 28 px, 12 epochs), the recipe of the committed
omniglot leaderboard, so the default run's rows are comparable with that leaderboard's.

Rebuild it, byte for byte, from the original layout::

    python -m harness.plugins.data.build_omniglot28 ../shared/data/omniglot
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np

from harness.plugins.data.base import LoadedDataset, register_dataset
from harness.plugins.data.common import split_at_class

SIZE = 28
#: the packaged array file and its licence (package data of ``harness.plugins.data``)
DATA_FILE = Path(str(files("harness.plugins.data") / "omniglot28.npz"))
LICENSE_FILE = DATA_FILE.with_suffix(".LICENSE")


@register_dataset(
    "omniglot28",
    channels=1,
    needs_root=False,
    default_backbone="small_cnn",
    default_recipe="cpu",
    layout="none: packaged (harness/plugins/data/omniglot28.npz)",
)
def load_omniglot28(root: Path | None = None) -> LoadedDataset:
    """Omniglot, 8 alphabets at 28x28 (packaged): a class per character; Latin, Sanskrit, Tagalog test."""
    with np.load(DATA_FILE, allow_pickle=False) as data:
        images, labels, last_train_class = data["images"], data["labels"], int(data["last_train_class"])
    return split_at_class(images, labels, last_train_class, DATA_FILE)
