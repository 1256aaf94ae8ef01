"""A leaderboard's own options (baseline, formats, published rows, the one-column table's metrics), stored
with its experiment.

``runs/<experiment>/leaderboard.json`` remembers how the experiment's leaderboard was made, so that a plain
``python -m harness leaderboard`` rewrites it the same way (byte for byte), and a ``run`` that adds trials
to the experiment keeps its significance marks. Options given explicitly (``--baseline``, ``--format``,
``--published``/``--no-published``, ``--column-metrics``, a benchmark's manifest) are used and stored; the
others come from the file, else the defaults.
"""
from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from harness.core.store import TrialStore, atomic_write_text
from harness.reporting.published import PUBLISHED_CSV

#: the metrics of a one-column table unless the board's options name others; the first ranks the rows (here, not
#: beside the table's code, so that the command line reads it without pandas: ``--help`` stays fast)
COLUMN_METRICS = ("recall@1", "map@r")

FORMATS = ("csv", "md", "tex", "png", "pdf")
#: the ``published`` value meaning the packaged table of published figures
PACKAGED = "packaged"


class Stored(enum.Enum):
    """The value of an option not given: whatever the experiment stored, else the default."""

    STORED = "stored"


STORED = Stored.STORED


@dataclass(frozen=True)
class BoardOptions:
    """``baseline``: the method every group is tested against (None: no tests); ``formats``: the files written
    besides ``.env.json``; ``published``: :data:`PACKAGED`, a CSV path, or None (no published rows);
    ``column_metrics``: the metrics of the one-column table (``<name>.column.tex``), the first ranking its rows."""

    baseline: str | None = None
    formats: tuple[str, ...] = FORMATS
    published: str | None = PACKAGED
    column_metrics: tuple[str, ...] = COLUMN_METRICS

    def __post_init__(self) -> None:
        if self.baseline is not None and not isinstance(self.baseline, str):
            raise ValueError(f"baseline must be a method name or null, got {self.baseline!r}")
        if not isinstance(self.formats, tuple) or not all(isinstance(f, str) for f in self.formats):
            raise ValueError(f"formats must be a list of names, got {self.formats!r}")
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(unknown)}; valid: {', '.join(FORMATS)}")
        if (not isinstance(self.column_metrics, tuple) or not self.column_metrics
                or not all(isinstance(m, str) for m in self.column_metrics)):
            raise ValueError(f"column_metrics must be a non-empty list of metric names, got {self.column_metrics!r}")
        if self.published is not None and not isinstance(self.published, str):
            raise ValueError(f"published must be {PACKAGED!r}, a CSV path or null, got {self.published!r}")

    @property
    def published_csv(self) -> Path | None:
        if self.published is None:
            return None
        return PUBLISHED_CSV if self.published == PACKAGED else Path(self.published)

    def given(self, **options: Any) -> "BoardOptions":
        """These options with the ones given (not :data:`STORED`) replaced."""
        chosen = {k: tuple(v) if k in ("formats", "column_metrics") else v for k, v in options.items()
                  if v is not STORED}
        return replace(self, **chosen)


def published_option(csv: str | Path | None | Stored) -> str | None | Stored:
    """How ``published`` is stored: :data:`PACKAGED` for the packaged table, else the CSV's path (None: none)."""
    if csv is None or csv is STORED:
        return csv
    return PACKAGED if Path(csv).resolve() == PUBLISHED_CSV.resolve() else str(csv)


def given_options(baseline: str | None | Stored, formats: Iterable[str] | Stored,
                  published_csv: str | Path | None | Stored, column_metrics: Iterable[str] | Stored) -> dict[str, Any]:
    """A command's board options as :meth:`BoardOptions.given` takes them (:data:`STORED` where not given): what
    the boards are drawn with and what their input digests (:mod:`harness.reporting.board_inputs`) cover."""
    return {"baseline": baseline, "formats": formats, "published": published_option(published_csv),
            "column_metrics": column_metrics}


def options_path(store: TrialStore, experiment: str) -> Path:
    return store.runs / experiment / "leaderboard.json"


def load_options(store: TrialStore, experiment: str) -> BoardOptions:
    """The options stored with ``experiment`` (the defaults where it stores none); ``ValueError`` naming the
    file if it is not a valid options file."""
    path = options_path(store, experiment)
    if not path.is_file():
        return BoardOptions()
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        for key in ("formats", "column_metrics"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return BoardOptions(**data)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a leaderboard options file ({error})") from None


def remember_options(store: TrialStore, experiment: str, options: BoardOptions) -> None:
    """Store ``options`` with ``experiment`` (the file is rewritten only when they change)."""
    path = options_path(store, experiment)
    text = json.dumps({**asdict(options), "formats": list(options.formats),
                       "column_metrics": list(options.column_metrics)}, indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
