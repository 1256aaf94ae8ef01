"""The packaged ``omniglot28`` dataset: shape, classes and split of its own, and equal to the ``omniglot``
loader on the original layout (``../shared/data/omniglot``), down to the bytes of its rebuilt file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

from harness.plugins.data import DATASETS, create_dataset
from harness.plugins.data.build_omniglot28 import build_arrays, npz_bytes
from harness.plugins.data.omniglot28 import DATA_FILE, LICENSE_FILE

OMNIGLOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "omniglot"
needs_original = pytest.mark.skipif(not (OMNIGLOT / "images_background").is_dir(),
                                    reason=f"original Omniglot layout not found at {OMNIGLOT}")
SPLITS = ("trainval", "train", "val", "query")


@pytest.fixture(scope="module")
def packaged():
    return create_dataset("omniglot28")


def test_packaged_file_shapes_classes_and_licence(packaged) -> None:
    spec = DATASETS.get("omniglot28")
    assert not spec.needs_root and spec.channels == packaged.channels == 1 and spec.default_recipe == "cpu"
    assert DATA_FILE.stat().st_size < 3_000_000 and "MIT License" in LICENSE_FILE.read_text()
    for name in SPLITS:
        subset = getattr(packaged, name)
        assert subset.images.dtype == np.uint8 and subset.images.shape[1:] == (28, 28)
        assert np.bincount(subset.labels)[subset.classes].tolist() == [20] * len(subset.classes)
    assert [len(getattr(packaged, n).classes) for n in SPLITS] == [157, 126, 31, 85]
    assert len(packaged.trainval) + len(packaged.query) == 4840 and packaged.gallery is None
    assert set(packaged.trainval.classes).isdisjoint(packaged.query.classes)
    assert set(packaged.train.classes).isdisjoint(packaged.val.classes)
    assert packaged.query.classes.tolist() == list(range(157, 242))  # Latin, Sanskrit, Tagalog
    with np.load(DATA_FILE, allow_pickle=False) as data:
        paths = data["paths"]
    test_alphabets = {p.split("/")[1] for p in paths[len(packaged.trainval):]}
    assert test_alphabets == {"Latin", "Sanskrit", "Tagalog"}


@needs_original
def test_split_and_labels_equal_the_omniglot_loader(packaged) -> None:
    original = create_dataset("omniglot", OMNIGLOT)
    with np.load(DATA_FILE, allow_pickle=False) as data:
        paths = [str(OMNIGLOT.resolve() / p) for p in data["paths"]]
    assert paths == list(original.trainval.images) + list(original.query.images)
    for name in SPLITS:
        mine, theirs = getattr(packaged, name), getattr(original, name)
        assert np.array_equal(mine.labels, theirs.labels), name
    # A 28 px recipe's evaluation transform sees the same pixels from the file as from the array.
    resize = T.Compose([T.Resize(28), T.CenterCrop(28)])
    for i in (0, 1234, len(original.query) - 1):
        with Image.open(original.query.images[i]) as file:
            from_file = np.asarray(resize(file.convert("L")))
        assert np.array_equal(from_file, np.asarray(resize(Image.fromarray(packaged.query.images[i]))))


@needs_original
def test_rebuild_is_byte_identical() -> None:
    assert npz_bytes(build_arrays(OMNIGLOT)) == DATA_FILE.read_bytes()
