"""Trial records on disk: ``results/runs/<experiment>/<trial_id>/record.json``, written atomically.

Each record is the whole story of a trial (resolved config, metrics, per-epoch history, wall time,
trainable parameters, environment). Leaderboards are computed from these files alone.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

RECORD_FILE = "record.json"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """The trial records under one results folder (``results/`` by default)."""

    def __init__(self, root: str | Path = "results"):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def record_path(self, experiment: str, trial_id: str) -> Path:
        return self.runs / experiment / trial_id / RECORD_FILE

    def write(self, record: dict[str, Any]) -> Path:
        experiment = record["config"]["experiment"]
        path = self.record_path(experiment, record["trial_id"])
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        return path

    def read(self, experiment: str, trial_id: str) -> dict[str, Any] | None:
        path = self.record_path(experiment, trial_id)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def is_finished(self, experiment: str, trial_id: str) -> bool:
        record = self.read(experiment, trial_id)
        return record is not None and record.get("status") == "ok"

    def iter_records(self, experiment: str | None = None) -> Iterator[dict[str, Any]]:
        """Every readable record (sorted by path); a corrupt or partial one is skipped with a warning naming it."""
        base = self.runs / experiment if experiment else self.runs
        for path in sorted(base.glob(f"**/{RECORD_FILE}")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                warnings.warn(f"skipping unreadable trial record {path}: {error}", stacklevel=2)
                continue
            missing = [k for k in ("trial_id", "status", "config", "metrics") if k not in record]
            if missing:
                warnings.warn(f"skipping partial trial record {path}: missing {', '.join(missing)}", stacklevel=2)
                continue
            record["_path"] = str(path)
            yield record
