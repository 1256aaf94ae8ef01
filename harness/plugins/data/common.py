"""Helpers shared by the loaders: whitespace-separated index files, image paths, split by class id."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.plugins.data.base import DatasetFormatError, LoadedDataset, Subset, require_file


@dataclass(frozen=True)
class Row:
    """One data line of an index file, with where it came from (for error messages)."""

    path: Path
    lineno: int
    fields: tuple[str, ...]

    def error(self, message: str) -> DatasetFormatError:
        return DatasetFormatError(f"{self.path}, line {self.lineno}: {message}")

    def integer(self, index: int) -> int:
        try:
            return int(self.fields[index])
        except ValueError:
            raise self.error(f"expected an integer, got {self.fields[index]!r}") from None

    def class_id(self, index: int, low: int, high: int) -> int:
        """Field ``index`` as a class id in ``low..high`` (the dataset's documented classes)."""
        value = self.integer(index)
        if not low <= value <= high:
            raise self.error(f"class id {value} outside {low}..{high}")
        return value


def _first_row(path: Path, lines: list[tuple[int, str]]) -> Row:
    lineno, line = lines[0] if lines else (1, "")
    return Row(path, lineno, tuple(line.split()))


def read_table(
    path: Path, layout: str, columns: Sequence[str], *, counted: bool = False, header: bool = False
) -> list[Row]:
    """The rows of a whitespace-separated index file, each with ``len(columns)`` fields.

    The last field takes the rest of the line (so it may hold spaces). ``counted``: line 1 holds the
    number of rows (the DeepFashion convention); ``header``: the next line names ``columns``.
    Blank lines are skipped. Raises :class:`DatasetFormatError` naming the file and the line.
    """
    lines = list(enumerate(require_file(path, layout).read_text(encoding="utf-8").splitlines(), start=1))
    expected_rows = None
    if counted:
        row = _first_row(path, lines)
        if len(row.fields) != 1:
            raise row.error(f"expected the number of rows, got {' '.join(row.fields)!r}")
        expected_rows = row.integer(0)
        lines = lines[1:]
    if header:
        row = _first_row(path, lines)
        if row.fields != tuple(columns):
            raise row.error(f"expected the header {' '.join(columns)!r}, got {' '.join(row.fields)!r}")
        lines = lines[1:]
    rows = []
    for lineno, line in lines:
        fields = tuple(line.split(maxsplit=len(columns) - 1))
        if not fields:
            continue
        row = Row(path, lineno, fields)
        if len(fields) != len(columns):
            raise row.error(f"expected {len(columns)} fields ({' '.join(columns)}), got {line.strip()!r}")
        rows.append(row)
    if expected_rows is not None and expected_rows != len(rows):
        raise DatasetFormatError(f"{path}, line 1: announces {expected_rows} rows but the file holds {len(rows)}")
    return rows


def absolute_paths(root: Path, relpaths: Sequence[str], layout: str) -> list[str]:
    """``root / relpath`` as absolute strings; the first must exist (a cheap check of the root)."""
    root = root.resolve()
    paths = [str(root / p) for p in relpaths]
    if paths:
        require_file(Path(paths[0]), layout)
    return paths


def check_disjoint(train_ids: np.ndarray, test_ids: np.ndarray, train_source: object, test_source: object) -> None:
    """Raise :class:`DatasetFormatError` naming the shared class ids unless no test class is a training class."""
    shared = np.intersect1d(train_ids, test_ids)
    if len(shared):
        shown = ", ".join(map(str, shared[:10])) + (f" and {len(shared) - 10} more" if len(shared) > 10 else "")
        raise DatasetFormatError(f"{test_source} holds class id(s) {shown} that {train_source} also holds: "
                                 "test classes must not be trained on")


def split_at_class(
    images: list[str] | np.ndarray, labels: np.ndarray, last_train_class: int, source: object
) -> LoadedDataset:
    """Train on the classes ``<= last_train_class``, test on the others; both must be non-empty."""
    samples = Subset(images, labels)
    is_train = labels <= last_train_class
    if not is_train.any() or is_train.all():
        side = "training" if not is_train.any() else "test"
        raise DatasetFormatError(
            f"{source}: no {side} classes (classes <= {last_train_class} train, the others test) "
            f"among the {len(np.unique(labels))} classes found"
        )
    return LoadedDataset(train=samples.select(is_train), query=samples.select(~is_train))
