"""Images per second per loader worker for CUB-sized JPEGs under the real train transform: PIL against
``torchvision.io`` (the recipe's ``decoder`` field).

Writes ``--images`` random JPEGs of 500×375 (CUB's typical size; quality 90) to a temporary folder,
then reads each through :class:`~harness.plugins.data.ImageDataset` with the ``default`` recipe's train
transform (RandomResizedCrop 224 + horizontal flip, to a normalised tensor), the decoded cache off
(every epoch decodes, as with CUB on a GPU node), on one thread: what one loader worker delivers.
Both decoders run alternately ``--rounds`` times; the ratio is of the medians.

    python benchmarks/decode.py [--images 200] [--rounds 3]

Measured on the idle 2-core CPU machine (load average 0.8, no other job), 2026-11-24: PIL 381.0
images/s per worker, torchvision.io 534.9 (1.40x PIL). An earlier run at load average 3.0 gave 266.5
and 446.3 (1.67x).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.core.recipe import RECIPES
from harness.plugins.data import ImageDataset, Subset
from harness.plugins.transforms import build_transform

WIDTH, HEIGHT = 500, 375


def write_jpegs(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` JPEGs of smooth random colour fields with noise (compressible like a photo, not like flat colour)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC)
        noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-20, 21, size=(HEIGHT, WIDTH, 3)), 0, 255)
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(noisy.astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def images_per_second(dataset: ImageDataset) -> float:
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = RECIPES.get("default")
    with tempfile.TemporaryDirectory(prefix="dmlbench-decode-") as folder:
        subset = Subset(write_jpegs(Path(folder), args.images), np.zeros(args.images, dtype=np.int64))
        datasets = {decoder: ImageDataset(subset, build_transform(recipe.override(decoder=decoder), 3, None, train=True),
                                          channels=3, cache_bytes=0)
                    for decoder in ("pil", "torchvision")}
        print(f"{args.images} JPEGs of {WIDTH}x{HEIGHT}, train transform RandomResizedCrop(224) + flip, 1 thread; "
              f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start")
        rates: dict[str, list[float]] = {name: [] for name in datasets}
        for _ in range(args.rounds):
            for name, dataset in datasets.items():
                rates[name].append(images_per_second(dataset))
    pil = statistics.median(rates["pil"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  decoder={name:12s} {rate:7.1f} images/s per worker (median of {args.rounds})  {rate / pil:.2f}x PIL")
    print(f"  load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
