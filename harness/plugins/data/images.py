"""A torch ``Dataset`` over a :class:`~harness.plugins.data.base.Subset`: image files or an in-memory uint8 array."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from harness.plugins.data.base import Subset


class ImageDataset(Dataset):
    """``(transform(image), label)`` pairs; images as PIL, RGB (``channels=3``) or grayscale (``channels=1``).

    The label is the subset's original class id as a Python int (the trainer remaps it).
    """

    def __init__(self, subset: Subset, transform: Callable[[Image.Image], Any] | None = None, channels: int = 3):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.subset = subset
        self.transform = transform
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.subset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if isinstance(self.subset.images, np.ndarray):
            image = Image.fromarray(self.subset.images[index]).convert(self.mode)
        else:
            with Image.open(self.subset.images[index]) as file:
                image = file.convert(self.mode)
        return (self.transform(image) if self.transform else image), int(self.subset.labels[index])
