"""Rebuild the packaged ``omniglot28.npz`` from Omniglot's original layout, byte for byte.

    python -m harness.plugins.data.build_omniglot28 ../shared/data/omniglot [--out PATH]

The drawings, labels and split are the ``omniglot`` loader's (:func:`harness.plugins.data.omniglot.load_omniglot`);
each drawing is converted to grayscale and resized to 28×28 by torchvision's ``Resize`` (PIL bilinear),
as a 28 px recipe resizes it. The ``.npz`` is written deterministically: fixed member order, fixed
zip timestamps and no pickled objects, so the same images give the same bytes.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.transforms import functional as F

from harness.plugins.data.base import DatasetFormatError
from harness.plugins.data.omniglot import load_omniglot
from harness.plugins.data.omniglot28 import DATA_FILE, SIZE

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def drawing_28(path: str) -> np.ndarray:
    """One drawing as the 28 px recipes see it: grayscale, ``Resize(28)`` (PIL bilinear, antialiased)."""
    with Image.open(path) as file:
        return np.asarray(F.resize(file.convert("L"), [SIZE, SIZE]), dtype=np.uint8)


def build_arrays(root: Path) -> dict[str, np.ndarray]:
    """The arrays of ``omniglot28.npz`` from the original layout under ``root`` (see :mod:`.omniglot28`)."""
    root = root.resolve()
    loaded = load_omniglot(root)
    paths = list(loaded.train.images) + list(loaded.query.images)
    return {
        "images": np.stack([drawing_28(p) for p in paths]),
        "labels": np.concatenate([loaded.train.labels, loaded.query.labels]).astype(np.int64),
        "paths": np.array([Path(p).relative_to(root).as_posix() for p in paths]),
        "last_train_class": np.array(int(loaded.train.labels.max()), dtype=np.int64),
    }


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` (readable by ``np.load``) whose bytes depend on the arrays alone."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.plugins.data.build_omniglot28",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="Omniglot in its original layout (images_background/...)")
    parser.add_argument("--out", type=Path, default=DATA_FILE, help=f"output file (default: {DATA_FILE})")
    args = parser.parse_args(argv)
    try:
        arrays = build_arrays(args.root)
    except DatasetFormatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_atomically(args.out, npz_bytes(arrays))
    print(f"{args.out}: {len(arrays['labels'])} drawings of {len(np.unique(arrays['labels']))} classes, "
          f"{args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
