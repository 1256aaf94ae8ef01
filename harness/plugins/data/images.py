"""A torch ``Dataset`` over a :class:`~harness.plugins.data.base.Subset`: image files or an in-memory uint8 array."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from harness.plugins.data.base import Subset


class ImageFileError(ValueError):
    """An image file that cannot be opened or decoded (missing, truncated, not an image); the message
    names the file and ``path`` holds it (None when the error was re-raised from a loader worker)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


def load_image(path: str, mode: str) -> Image.Image:
    """The image at ``path``, fully decoded and converted to ``mode``; :class:`ImageFileError` names the file."""
    try:
        with Image.open(path) as file:
            return file.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageFileError(f"cannot read image {path}: {error}", path) from error


class ImageDataset(Dataset):
    """``(transform(image), label)`` pairs; images as PIL, RGB (``channels=3``) or grayscale (``channels=1``).

    The label is the subset's original class id as a Python int (the trainer remaps it). A file that
    cannot be read raises :class:`ImageFileError` naming it.
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
            image = load_image(self.subset.images[index], self.mode)
        return (self.transform(image) if self.transform else image), int(self.subset.labels[index])
