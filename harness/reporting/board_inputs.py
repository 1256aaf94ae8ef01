"""What an experiment's leaderboard was drawn from, so that ``leaderboard`` redraws only what changed.

A board is a pure function of its inputs: the experiment's records (``runs/<experiment>/*/record.json``),
its options (``runs/<experiment>/leaderboard.json`` with those given on the command line), the published
reference rows it shows, and the code that draws it (the harness's and the registered methods' source files,
and the versions of the libraries that format and draw the tables and figures). :func:`experiment_inputs`
digests them without pandas, torch or matplotlib; ``<results>/.board-inputs.json`` (:class:`BoardInputs`)
keeps, per leaderboard folder and experiment, that digest and the digest of every file drawn from it. An
experiment whose inputs and files are as they were is not redrawn: its files are already what a redraw
would write, byte for byte. Anything else (a record added, changed or removed, an option, a code or
library change, a board file edited or deleted) redraws it. The file is a cache: deleting it costs one
redraw, and a damaged one is ignored.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Iterable

from harness.core.store import RECORD_FILE, TrialStore, atomic_write_text
from harness.reporting.board_options import BoardOptions

#: the cache file in a leaderboard folder
INPUTS_FILE = ".board-inputs.json"
#: the distributions whose versions change a board's bytes (number formats, statistics, figures)
DRAWING_LIBRARIES = ("numpy", "pandas", "scipy", "statsmodels", "matplotlib")
#: the entry-point group of method plugins (:data:`harness.plugins.method.METHODS`)
METHOD_ENTRY_POINTS = "harness.methods"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_files(module: str) -> list[Path]:
    """The ``.py`` files of ``module`` (a package's, recursively), found without importing it."""
    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return sorted(p for folder in spec.submodule_search_locations for p in Path(folder).rglob("*.py"))
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def code_digest() -> str:
    """The harness's and every registered method plugin's source files, and :data:`DRAWING_LIBRARIES`'
    versions."""
    digest = hashlib.sha256()
    modules = ["harness", *sorted({ep.value.split(":")[0] for ep in metadata.entry_points(group=METHOD_ENTRY_POINTS)})]
    for module in modules:
        for path in _source_files(module):
            digest.update(f"{module}:{path.name}\0".encode())
            digest.update(path.read_bytes())
    for library in DRAWING_LIBRARIES:
        try:
            version = metadata.version(library)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}={version}\0".encode())
    return digest.hexdigest()


def experiments_with_records(store: TrialStore) -> list[str]:
    """Every experiment folder under ``runs/`` that holds a trial record."""
    if not store.runs.is_dir():
        return []
    return sorted({path.parent.parent.name for path in store.runs.glob(f"*/*/{RECORD_FILE}")})


def experiment_inputs(store: TrialStore, experiment: str, options: BoardOptions, datasets: Iterable[str] | None,
                      code: str) -> str:
    """The digest of everything ``experiment``'s boards are drawn from: its record files, its board
    ``options`` (the stored ones with those given on the command line), the published rows they name, the
    ``datasets`` it is limited to, and ``code`` (:func:`code_digest`). A missing or unreadable published file
    digests as such (the redraw says why)."""
    digest = hashlib.sha256()
    chosen = {"options": asdict(options), "datasets": sorted(datasets) if datasets else None, "code": code}
    digest.update(json.dumps(chosen, sort_keys=True).encode())
    for path in store.record_files(experiment):
        digest.update(f"\0{path.relative_to(store.runs)}\0".encode())
        digest.update(path.read_bytes())
    try:
        digest.update(b"\0<none>" if options.published_csv is None else options.published_csv.read_bytes())
    except OSError:
        digest.update(b"\0<unreadable>")
    return digest.hexdigest()


class BoardInputs:
    """``<results>/.board-inputs.json``: per leaderboard folder (its resolved path), ``{experiment: {"inputs":
    digest, "files": {name: digest}}}``. It lives beside ``runs/``, not among the boards it describes."""

    def __init__(self, store: TrialStore, out_dir: Path):
        self.path = store.root / INPUTS_FILE
        self.out_dir = out_dir
        self.folder = str(out_dir.resolve())
        try:
            every = json.loads(self.path.read_text())
            entries = every.get(self.folder) if isinstance(every, dict) else None
            self.entries = entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def unchanged(self, experiment: str, inputs: str) -> dict[str, Path] | None:
        """The files drawn for ``experiment`` ({name: path}) if it was drawn from ``inputs`` and every file is
        still as drawn; else None."""
        entry = self.entries.get(experiment)
        if not isinstance(entry, dict) or entry.get("inputs") != inputs or not isinstance(entry.get("files"), dict):
            return None
        files = {name: self.out_dir / name for name in entry["files"]}
        for name, path in files.items():
            if not path.is_file() or _file_digest(path) != entry["files"][name]:
                return None
        return files

    def drawn(self, experiment: str, inputs: str, files: Iterable[Path]) -> None:
        """Note that ``files`` were drawn for ``experiment`` from ``inputs``."""
        self.entries[experiment] = {"inputs": inputs,
                                    "files": {path.name: _file_digest(path) for path in sorted(files)}}

    def save(self) -> None:
        """Write the file back, with the other leaderboard folders' entries as they are now."""
        try:
            every = json.loads(self.path.read_text())
            every = every if isinstance(every, dict) else {}
        except (OSError, ValueError):
            every = {}
        every[self.folder] = self.entries
        atomic_write_text(self.path, json.dumps(every, indent=1, sort_keys=True) + "\n")
