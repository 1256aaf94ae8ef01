"""Dataset loaders: tiny fake folders in each original layout, the shared Omniglot subset, sklearn digits."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat
from torchvision.transforms import ToTensor

from harness.plugins.data import DATASETS, DatasetFormatError, DatasetSplits, ImageDataset, ImageFileError, create_dataset
from harness.core.registry import UnknownNameError

OMNIGLOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
IMAGES_PER_CLASS = 2


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (6, 5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode == "L" else (200, 30, 60)).save(path)


def check_splits(splits: DatasetSplits, train_classes: set[int], test_classes: set[int]) -> None:
    """Train/test as expected and disjoint; val drawn from the training classes, disjoint from train."""
    assert set(splits.trainval.classes.tolist()) == train_classes
    assert set(splits.query.classes.tolist()) == test_classes
    assert not train_classes & test_classes
    train, val = set(splits.train.classes.tolist()), set(splits.val.classes.tolist())
    assert val and train and not train & val and train | val == train_classes
    assert len(splits.train) + len(splits.val) == len(splits.trainval)
    for subset in (splits.trainval, splits.train, splits.val, splits.query):
        assert subset.labels.dtype == np.int64
        if not isinstance(subset.images, np.ndarray):
            assert all(Path(p).is_absolute() and Path(p).exists() for p in subset.images)


# --- fake datasets in their original layouts ------------------------------------------------------

CUB_CLASSES = (1, 2, 100, 101, 150, 200)


def make_cub(parent: Path) -> Path:
    root = parent / "CUB_200_2011"
    images, labels = [], []
    for c in CUB_CLASSES:
        for k in range(IMAGES_PER_CLASS):
            relpath = f"{c:03d}.Bird_{c}/Bird_{c}_{k:04d}_{1000 + k}.jpg"
            write_image(root / "images" / relpath)
            image_id = len(images) + 1
            images.append(f"{image_id} {relpath}")
            labels.append(f"{image_id} {c}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(reversed(labels)) + "\n")  # joined by id, not order
    return root


CARS_CLASSES = (1, 50, 98, 99, 150, 196)


def make_cars(root: Path) -> Path:
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    n = len(CARS_CLASSES) * IMAGES_PER_CLASS
    annotations = np.empty((1, n), dtype=[(f, object) for f in fields])
    for i in range(n):
        relpath = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / relpath)
        annotations[0, i] = (
            np.array([relpath]),
            *(np.array([[v]], dtype=np.uint16) for v in (10, 12, 300, 200)),
            np.array([[CARS_CLASSES[i // IMAGES_PER_CLASS]]], dtype=np.uint8),
            np.array([[i % 2]], dtype=np.uint8),  # the classification split: must be ignored
        )
    class_names = np.empty((1, 196), dtype=object)
    for c in range(196):
        class_names[0, c] = np.array([f"Make Model {c + 1} 2012"])
    savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": class_names})
    return root


def make_sop(root: Path) -> Path:
    header = "image_id class_id super_class_id path\n"
    image_id = 0
    for filename, classes in (("Ebay_train.txt", (1, 2, 3)), ("Ebay_test.txt", (4, 5, 6))):
        rows = []
        for c in classes:
            super_class, super_name = (1, "bicycle") if c % 2 else (2, "cabinet")
            for k in range(IMAGES_PER_CLASS):
                image_id += 1
                relpath = f"{super_name}_final/11108512287{c}_{k}.JPG"
                write_image(root / relpath)
                rows.append(f"{image_id} {c} {super_class} {relpath}\n")
        (root / filename).write_text(header + "".join(rows))
    return root


INSHOP_ROWS = [
    ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
    ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
    ("img/MEN/Denim/id_00000007/01_1_front.jpg", "id_00000007", "train"),
    ("img/MEN/Denim/id_00000007/01_2_side.jpg", "id_00000007", "train"),
    ("img/WOMEN/Skirts/id_00000005/01_1_front.jpg", "id_00000005", "query"),
    ("img/WOMEN/Skirts/id_00000005/01_2_side.jpg", "id_00000005", "gallery"),
    ("img/WOMEN/Skirts/id_00000005/01_3_back.jpg", "id_00000005", "gallery"),
    ("img/MEN/Shirts/id_00000011/01_1_front.jpg", "id_00000011", "query"),
    ("img/MEN/Shirts/id_00000011/01_2_side.jpg", "id_00000011", "gallery"),
]


def make_inshop(root: Path, in_eval_folder: bool = True) -> Path:
    for relpath, _, _ in INSHOP_ROWS:
        write_image(root / relpath)
    lines = [str(len(INSHOP_ROWS)), "image_name item_id evaluation_status"]
    lines += [f"{path:<67}{item} {status}" for path, item, status in INSHOP_ROWS]  # padded as distributed
    partition = root / "Eval" / "list_eval_partition.txt" if in_eval_folder else root / "list_eval_partition.txt"
    partition.parent.mkdir(parents=True, exist_ok=True)
    partition.write_text("\n".join(lines) + "\n")
    return root


def make_omniglot(root: Path) -> Path:
    for alphabet in ("Alpha", "Beta"):
        write_image(root / "images_background" / alphabet / "character01" / "0001_01.png", mode="L")
    return root


# --- the loaders ------------------------------------------------------------------------------

@pytest.mark.parametrize("use_parent", [False, True])
def test_cub(tmp_path: Path, use_parent: bool) -> None:
    root = make_cub(tmp_path)
    splits = create_dataset("cub", tmp_path if use_parent else root)
    check_splits(splits, {1, 2, 100}, {101, 150, 200})
    assert len(splits.trainval) == len(splits.query) == 3 * IMAGES_PER_CLASS
    for path, label in zip(splits.query.images, splits.query.labels):
        assert Path(path).parent.name.startswith(f"{label:03d}.")
    assert splits.recall_ks == (1, 2, 4, 8) and splits.gallery is None


def test_cars(tmp_path: Path) -> None:
    root = make_cars(tmp_path)
    raw = loadmat(root / "cars_annos.mat")  # read back as the original file reads
    assert raw["annotations"].shape == (1, len(CARS_CLASSES) * IMAGES_PER_CLASS)
    assert raw["annotations"][0, 0]["relative_im_path"][0] == "car_ims/000001.jpg"
    assert raw["annotations"][0, 0]["class"].shape == (1, 1) and raw["class_names"].shape == (1, 196)
    splits = create_dataset("cars", root)
    check_splits(splits, {1, 50, 98}, {99, 150, 196})
    assert [Path(p).name for p in splits.trainval.images][:2] == ["000001.jpg", "000002.jpg"]


def test_sop(tmp_path: Path) -> None:
    splits = create_dataset("sop", make_sop(tmp_path))
    check_splits(splits, {1, 2, 3}, {4, 5, 6})
    assert splits.recall_ks == (1, 10, 100, 1000)
    assert Path(splits.query.images[0]).relative_to(tmp_path.resolve()).parts[0] == "cabinet_final"


@pytest.mark.parametrize("in_eval_folder", [True, False])
def test_inshop(tmp_path: Path, in_eval_folder: bool) -> None:
    splits = create_dataset("inshop", make_inshop(tmp_path, in_eval_folder))
    assert splits.recall_ks == (1, 10, 20, 30)
    assert splits.gallery is not None
    item = {"id_00000002": 0, "id_00000005": 1, "id_00000007": 2, "id_00000011": 3}  # sorted item ids
    for subset, status in ((splits.trainval, "train"), (splits.query, "query"), (splits.gallery, "gallery")):
        rows = [row for row in INSHOP_ROWS if row[2] == status]
        assert [Path(p).relative_to(tmp_path.resolve()).as_posix() for p in subset.images] == [r[0] for r in rows]
        assert subset.labels.tolist() == [item[r[1]] for r in rows]
    assert set(splits.query.classes) == set(splits.gallery.classes) == {1, 3}
    assert set(splits.train.classes) | set(splits.val.classes) == {0, 2}
    assert not set(splits.train.classes) & set(splits.val.classes)


def test_omniglot_shared_subset() -> None:
    if not (OMNIGLOT / "images_background").is_dir():
        pytest.skip(f"the shared Omniglot subset is absent (expected at {OMNIGLOT})")
    splits = create_dataset("omniglot", OMNIGLOT)
    assert DATASETS.get("omniglot").channels == splits.channels == 1
    assert len(splits.trainval.classes) + len(splits.query.classes) == 242
    check_splits(splits, set(range(157)), set(range(157, 242)))

    def alphabet_classes(subset) -> dict[str, set[tuple[str, str]]]:
        found: dict[str, set[tuple[str, str]]] = {}
        for path in subset.images:
            alphabet, character = Path(path).parts[-3:-1]
            found.setdefault(alphabet, set()).add((alphabet, character))
        return found

    test_alphabets = alphabet_classes(splits.query)
    assert sorted(test_alphabets) == ["Latin", "Sanskrit", "Tagalog"]
    assert sum(len(chars) for chars in test_alphabets.values()) == 85
    assert not set(alphabet_classes(splits.trainval)) & set(test_alphabets)
    for subset in (splits.trainval, splits.query):
        assert set(np.bincount(subset.labels)[subset.classes].tolist()) == {20}
        pairs = {label: Path(p).parts[-3:-1] for p, label in zip(subset.images, subset.labels)}
        assert len(set(pairs.values())) == len(pairs)  # one (alphabet, character) per class id
    image, label = ImageDataset(splits.query, ToTensor(), channels=1)[0]
    assert image.shape == (1, 105, 105) and label == 157


def test_digits() -> None:
    splits = create_dataset("digits")
    check_splits(splits, {0, 1, 2, 3, 4}, {5, 6, 7, 8, 9})
    assert splits.channels == 1 and not DATASETS.get("digits").needs_root
    assert splits.trainval.images.dtype == np.uint8 and splits.trainval.images.shape[1:] == (8, 8)
    assert splits.trainval.images.max() == 255
    assert len(splits.trainval) + len(splits.query) == 1797


def test_image_dataset(tmp_path: Path) -> None:
    splits = create_dataset("cub", make_cub(tmp_path))
    rgb = ImageDataset(splits.query, ToTensor())
    image, label = rgb[0]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 5, 6)
    assert type(label) is int and label == 101 and len(rgb) == len(splits.query)
    assert ImageDataset(splits.query, ToTensor(), channels=1)[0][0].shape == (1, 5, 6)
    assert ImageDataset(splits.query)[0][0].mode == "RGB"  # no transform: the PIL image
    digits = create_dataset("digits")
    image, label = ImageDataset(digits.query, ToTensor(), channels=1)[3]
    assert image.shape == (1, 8, 8) and label == int(digits.query.labels[3])
    assert ImageDataset(digits.query, ToTensor(), channels=3)[0][0].shape == (3, 8, 8)


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, make, missing",
    [
        ("cub", make_cub, "CUB_200_2011/images.txt"),
        ("cub", make_cub, "CUB_200_2011/image_class_labels.txt"),
        ("cars", make_cars, "cars_annos.mat"),
        ("sop", make_sop, "Ebay_train.txt"),
        ("sop", make_sop, "Ebay_test.txt"),
        ("inshop", make_inshop, "Eval/list_eval_partition.txt"),
        ("omniglot", make_omniglot, "images_background"),
    ],
)
def test_missing_index_file_is_named(tmp_path: Path, name: str, make, missing: str) -> None:
    make(tmp_path)
    target = tmp_path / missing
    if target.is_dir():
        target.rename(tmp_path / "elsewhere")
    else:
        target.unlink()
    root = tmp_path / "CUB_200_2011" if name == "cub" else tmp_path
    with pytest.raises(DatasetFormatError, match=Path(missing).name) as error:
        create_dataset(name, root)
    assert "expected layout" in str(error.value)


def test_missing_images_folder_is_named(tmp_path: Path) -> None:
    root = make_cub(tmp_path)
    (root / "images").rename(root / "pictures")
    with pytest.raises(DatasetFormatError, match="expected layout") as error:
        create_dataset("cub", root)
    assert str(root / "images") in str(error.value)


@pytest.mark.parametrize(
    "name, make, relpath, line, content, expected",
    [
        ("cub", make_cub, "CUB_200_2011/images.txt", 3, "3", "images.txt, line 3: expected 2 fields"),
        ("cub", make_cub, "CUB_200_2011/image_class_labels.txt", 2, "11 bird", "line 2: expected an integer"),
        ("sop", make_sop, "Ebay_test.txt", 4, "9 x 1 a.JPG", "Ebay_test.txt, line 4: expected an integer"),
        ("sop", make_sop, "Ebay_train.txt", 1, "id class path", "Ebay_train.txt, line 1: expected the header"),
        ("inshop", make_inshop, "Eval/list_eval_partition.txt", 5, "img/a.jpg id_1 val", "line 5: evaluation_status"),
        ("inshop", make_inshop, "Eval/list_eval_partition.txt", 1, "12", "line 1: announces 12 rows"),
    ],
)
def test_malformed_row_names_file_and_line(
    tmp_path: Path, name: str, make, relpath: str, line: int, content: str, expected: str
) -> None:
    make(tmp_path)
    path = tmp_path / relpath
    lines = path.read_text().splitlines()
    lines[line - 1] = content
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=expected):
        create_dataset(name, tmp_path)


def test_cars_malformed_mat(tmp_path: Path) -> None:
    (tmp_path / "cars_annos.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(DatasetFormatError, match="cars_annos.mat"):
        create_dataset("cars", tmp_path)
    savemat(tmp_path / "cars_annos.mat", {"class_names": np.array(["x"], dtype=object)})
    with pytest.raises(DatasetFormatError, match="no struct array 'annotations'"):
        create_dataset("cars", tmp_path)


def test_one_sided_split_is_an_error(tmp_path: Path) -> None:
    root = make_cub(tmp_path)
    kept = [line for line in (root / "image_class_labels.txt").read_text().splitlines() if int(line.split()[1]) <= 100]
    kept_ids = {line.split()[0] for line in kept}
    images = [line for line in (root / "images.txt").read_text().splitlines() if line.split()[0] in kept_ids]
    (root / "images.txt").write_text("\n".join(images) + "\n")
    with pytest.raises(DatasetFormatError, match="no test classes"):
        create_dataset("cub", root)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as error:
        create_dataset("imagenet")
    for name in ("cars", "cub", "digits", "inshop", "omniglot", "sop"):
        assert name in str(error.value)


def test_root_required(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="needs --data-root"):
        create_dataset("cub")
    with pytest.raises(DatasetFormatError, match="not a folder"):
        create_dataset("sop", tmp_path / "nowhere")


def test_cub_under_a_parent_names_the_file_actually_missing(tmp_path: Path) -> None:
    root = make_cub(tmp_path)
    (root / "images.txt").unlink()
    with pytest.raises(DatasetFormatError) as error:
        create_dataset("cub", tmp_path)  # the parent of CUB_200_2011
    assert f"missing {root / 'images.txt'} " in str(error.value)


@pytest.mark.parametrize("class_id", [0, 201])
def test_cub_class_ids_outside_1_to_200_are_refused(tmp_path: Path, class_id: int) -> None:
    root = make_cub(tmp_path)
    path = root / "image_class_labels.txt"
    lines = path.read_text().splitlines()
    lines[1] = f"{lines[1].split()[0]} {class_id}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=f"image_class_labels.txt, line 2: class id {class_id} outside 1..200"):
        create_dataset("cub", root)


def test_cars_class_ids_outside_1_to_196_are_refused(tmp_path: Path) -> None:
    root = make_cars(tmp_path)
    mat = loadmat(root / "cars_annos.mat")
    # a new array, never a write into loadmat's: its one-byte arrays can share memory with CPython's
    # cached one-byte bytes objects, and writing 197 there corrupts every b'\x..' of that value after
    mat["annotations"][0, 2]["class"] = np.array([[197]], dtype=np.uint8)
    savemat(root / "cars_annos.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(DatasetFormatError, match="annotation 3: class id 197 outside 1..196"):
        create_dataset("cars", root)


def test_sop_test_classes_that_are_training_classes_are_refused(tmp_path: Path) -> None:
    root = make_sop(tmp_path)
    path = root / "Ebay_test.txt"
    lines = path.read_text().splitlines()
    for i in (1, 3):  # the first rows of classes 4 and 5 claim training classes 2 and 3
        image_id, _, super_class, relpath = lines[i].split()
        lines[i] = f"{image_id} {i // 2 + 2} {super_class} {relpath}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"Ebay_test.txt holds class id\(s\) 2, 3 that .*Ebay_train.txt"):
        create_dataset("sop", root)


def test_inshop_test_items_that_are_training_items_are_refused(tmp_path: Path) -> None:
    root = make_inshop(tmp_path)
    path = root / "Eval" / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("id_00000011 gallery", "id_00000002 gallery"))
    with pytest.raises(DatasetFormatError, match=r"\(gallery rows\) holds class id\(s\) id_00000002"):
        create_dataset("inshop", root)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_unreadable_image_names_its_file(tmp_path: Path, damage: str) -> None:
    splits = create_dataset("cub", make_cub(tmp_path))
    path = Path(splits.query.images[1])
    write_image(path, size=(64, 48))  # big enough that half of it is a truncated JPEG
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an image")
    else:
        path.unlink()
    dataset = ImageDataset(splits.query, ToTensor())
    assert dataset[0][0].shape == (3, 5, 6)  # the others still load
    with pytest.raises(ImageFileError, match=f"cannot read image {path}") as error:
        dataset[1]
    assert error.value.path == str(path)


def test_an_unreadable_class_folder_is_reported_as_unreadable(tmp_path: Path, monkeypatch) -> None:
    root = make_omniglot(tmp_path)
    locked = root / "images_background" / "Beta" / "character01"
    scandir = os.scandir

    def refuse_locked(path=".", *args):  # mode 000 stops everyone but root: for root, inject the refusal
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    locked.chmod(0)
    try:
        with pytest.raises(DatasetFormatError, match=f"cannot read {locked}: Permission denied"):
            create_dataset("omniglot", root)
    finally:
        locked.chmod(0o755)
