"""A torch ``Dataset`` over a :class:`~harness.plugins.data.base.Subset`: image files or an in-memory uint8 array.

Decoded cache: an image is decoded (PIL, or ``torchvision.io`` for a transform whose ``decoder`` is
``"torchvision"``), converted to the dataset's mode and put through the transform's leading
*deterministic* steps, and the result is kept in memory, so later epochs, later evaluations and later
trials in the same process skip that work. The cache holds the longest deterministic prefix that fits
(a fully deterministic evaluation or ``augmentation="none"`` transform: the final tensors), else the
uint8 image after the leading ``Resize``/``CenterCrop``; what follows (random crops, flips, tensor
conversion, normalisation) runs on every access. A cached item is exactly what the uncached path
computes from the same input with the same operations, so the cache never changes a result; it is a
choice of speed alone and not part of a trial's identity. It holds at most :data:`DECODED_CACHE_BYTES`
per process (a dataset that does not fit is read from disk as before; the oldest caches are dropped
first), or less where :func:`limit_decoded_cache` says so, or a dataset's ``cache_bytes``: the Ray
executor places each of the trials that may run at once on a node with its share of that node's memory
(the trial's ``image_cache_bytes``).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import v2

from harness.plugins.data.base import Subset

#: most bytes of decoded images one process keeps (all datasets together)
DECODED_CACHE_BYTES = 2 << 30
#: image-to-image steps with no randomness: the cache may hold their uint8 output
GEOMETRIC_STEPS = (T.Resize, T.CenterCrop, v2.Resize, v2.CenterCrop)
#: every step with no randomness: the cache may hold their output (float tensors after ToTensor)
DETERMINISTIC_STEPS = GEOMETRIC_STEPS + (T.ToTensor, T.PILToTensor, T.ConvertImageDtype, T.Normalize, v2.ToDtype,
                                         v2.Normalize)


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


def load_image_tensor(path: str, mode: str) -> torch.Tensor:
    """The image at ``path`` as a uint8 C×H×W tensor decoded by ``torchvision.io`` (libjpeg-turbo,
    libpng) in ``mode`` ("L" or "RGB"); :class:`ImageFileError` names the file."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(path), mode=ImageReadMode.GRAY if mode == "L" else ImageReadMode.RGB)
    except (OSError, RuntimeError, ValueError) as error:
        raise ImageFileError(f"cannot read image {path}: {error}", path) from error


def read_encoded(path: str) -> torch.Tensor:
    """The bytes of the file at ``path`` as a 1-D uint8 tensor, for decoding on the device
    (``decoder="nvjpeg"``); :class:`ImageFileError` names the file."""
    from torchvision.io import read_file

    try:
        return read_file(path)
    except (OSError, RuntimeError, ValueError) as error:
        raise ImageFileError(f"cannot read image {path}: {error}", path) from error


def collate_images(batch: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Images of different sizes (encoded files, decoded images) as a list, and their labels as a tensor."""
    return [image for image, _ in batch], torch.as_tensor([label for _, label in batch])


def split_deterministic(transform: Callable | None, steps_kind: tuple[type, ...] = DETERMINISTIC_STEPS
                        ) -> tuple[list[Callable], Callable | None]:
    """``transform``'s leading steps of ``steps_kind`` and a callable for the rest (None when nothing
    is left). Only a ``Compose`` is split; any other callable is all "rest"."""
    steps = getattr(transform, "transforms", None)
    if transform is None or not isinstance(transform, (T.Compose, v2.Compose)) or steps is None:
        return [], transform
    n = 0
    while n < len(steps) and isinstance(steps[n], steps_kind):
        n += 1
    rest = steps[n:]
    return list(steps[:n]), (type(transform)(rest) if rest else None)


class DecodedCache:
    """The prepared uint8 arrays of one (images, mode, decoder, deterministic steps); filled on access."""

    def __init__(self, n: int):
        self.arrays: list[np.ndarray | torch.Tensor | None] = [None] * n
        self.nbytes = 0
        self.full = False  # over its share of the budget: later images are not kept


class _CacheRegistry:
    """Every :class:`DecodedCache` of this process, oldest first, within ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.caches: OrderedDict[Hashable, DecodedCache] = OrderedDict()
        self.lock = threading.Lock()
        self.budget = budget

    def limit(self, budget: int) -> None:
        """Hold at most ``budget`` bytes from now on, dropping the oldest caches until the others fit."""
        with self.lock:
            self.budget = budget
            self._drop_oldest(budget)

    def get(self, key: Hashable, n: int, item_bytes: int, budget: int) -> DecodedCache | None:
        """The cache of ``key`` (made if ``n`` items of ``item_bytes`` fit, dropping the oldest), else None."""
        with self.lock:
            if key in self.caches:
                self.caches.move_to_end(key)
                return self.caches[key]
            need = n * item_bytes
            if need > budget:
                return None
            self._drop_oldest(budget - need)
            self.caches[key] = cache = DecodedCache(n)
            return cache

    def _drop_oldest(self, room: int) -> None:
        """Drop the oldest caches until the others hold at most ``room`` bytes (the lock held)."""
        while self.caches and sum(c.nbytes for c in self.caches.values()) > room:
            self.caches.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.caches.clear()


DECODED_CACHES = _CacheRegistry(DECODED_CACHE_BYTES)


def limit_decoded_cache(nbytes: int) -> None:
    """Keep at most ``nbytes`` of decoded images in this process (all datasets together) from now on:
    the default of the datasets made later (``cache_bytes=None``); the oldest caches held beyond it
    are dropped."""
    if nbytes < 0:
        raise ValueError(f"a cache budget is a number of bytes >= 0, got {nbytes}")
    DECODED_CACHES.limit(nbytes)


def _source_key(images: Sequence[str] | np.ndarray) -> Hashable:
    """What identifies a subset's images: their paths, or a digest of the in-memory array."""
    if isinstance(images, np.ndarray):
        return ("array", images.shape, str(images.dtype), hashlib.blake2b(np.ascontiguousarray(images).data,
                                                                           digest_size=16).hexdigest())
    return ("paths", tuple(images))


class ImageDataset(Dataset):
    """``(transform(image), label)`` pairs; images as PIL, RGB (``channels=3``) or grayscale (``channels=1``).

    A transform whose ``decoder`` attribute is ``"torchvision"`` (see
    :func:`harness.plugins.transforms.build_transform`) receives uint8 C×H×W tensors decoded by
    ``torchvision.io`` instead of PIL images; with ``decoder="nvjpeg"`` (and no transform) the dataset
    hands over each file's bytes undecoded (an in-memory array's images as uint8 tensors), and
    ``collate_fn`` batches them as lists, for :class:`~harness.plugins.transforms.DeviceBatch` to decode on
    the device. ``decoder`` defaults to the transform's. The label is the subset's original class id as a
    Python int (the trainer remaps it). A file that cannot be read raises :class:`ImageFileError`
    naming it. ``cache_bytes`` (default: this process's budget, :data:`DECODED_CACHE_BYTES` unless
    :func:`limit_decoded_cache` set another; 0 = off) bounds the decoded cache described in the module
    docstring.
    """

    def __init__(self, subset: Subset, transform: Callable[[Any], Any] | None = None, channels: int = 3,
                 cache_bytes: int | None = None, decoder: str | None = None):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.subset = subset
        self.transform = transform
        self.mode = "L" if channels == 1 else "RGB"
        self.decoder = decoder or getattr(transform, "decoder", "pil")
        self.collate_fn = collate_images if self.decoder == "nvjpeg" else None
        self.prepare_steps, self.augment = split_deterministic(transform, GEOMETRIC_STEPS)
        self.cache_bytes = DECODED_CACHES.budget if cache_bytes is None else cache_bytes
        self._cache: DecodedCache | None = None
        self._cache_resolved = False

    def __len__(self) -> int:
        return len(self.subset)

    def _decode(self, index: int) -> Image.Image | torch.Tensor:
        source = self.subset.images[index]
        if isinstance(self.subset.images, np.ndarray):
            image = Image.fromarray(source).convert(self.mode)
            if self.decoder != "pil":
                array = np.array(image)
                return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
            return image
        if self.decoder == "nvjpeg":
            return read_encoded(source)
        if self.decoder == "torchvision":
            return load_image_tensor(source, self.mode)
        return load_image(source, self.mode)

    def _prepare(self, index: int) -> Image.Image | torch.Tensor:
        image = self._decode(index)
        for step in self.prepare_steps:
            image = step(image)
        return image

    def prepared(self, index: int) -> Image.Image | torch.Tensor:
        """Image ``index`` decoded and through the transform's cached steps (from the cache if held)."""
        cache = self._decoded_cache(index)
        if cache is not None and cache.arrays[index] is not None:
            item = cache.arrays[index]
            if isinstance(item, torch.Tensor):
                return item.clone()  # the cache's own copy never reaches a caller
            return Image.fromarray(item)
        image = self._prepare(index)
        if cache is not None and not cache.full:
            item = image if isinstance(image, torch.Tensor) else np.array(image)
            if cache.nbytes + item.nbytes > self.cache_bytes:
                cache.full = True
            else:
                cache.arrays[index] = item
                cache.nbytes += item.nbytes
        return image

    def _decoded_cache(self, index: int) -> DecodedCache | None:
        """The cache of the longest deterministic prefix whose items fit the budget (settles
        ``prepare_steps`` and ``augment`` on first use), or None."""
        if self._cache_resolved:
            return self._cache
        self._cache_resolved = True
        if self.cache_bytes <= 0 or len(self) == 0:
            return None
        for kind in (DETERMINISTIC_STEPS, GEOMETRIC_STEPS):
            self.prepare_steps, self.augment = split_deterministic(self.transform, kind)
            if isinstance(self.subset.images, np.ndarray) and not self.prepare_steps:
                return None  # nothing to save: the in-memory array is already the decoded image
            image = self._prepare(index)
            nbytes = image.element_size() * image.nelement() if isinstance(image, torch.Tensor) else np.array(image).nbytes
            key = (_source_key(self.subset.images), self.mode, self.decoder, repr(self.prepare_steps))
            self._cache = DECODED_CACHES.get(key, len(self), nbytes, self.cache_bytes)
            if self._cache is not None:
                return self._cache
        self.prepare_steps, self.augment = split_deterministic(self.transform, GEOMETRIC_STEPS)
        return None

    def preload(self, threads: int = 1) -> None:
        """Fill the decoded cache now (before loader workers fork, so they share it), ``threads`` at a time."""
        if self._decoded_cache(0) is None:
            return
        with ThreadPoolExecutor(max(1, threads)) as pool:  # PIL and torchvision decode without the GIL
            for _ in pool.map(self.prepared, range(len(self))):
                pass

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.prepared(index)
        return (self.augment(image) if self.augment else image), int(self.subset.labels[index])
