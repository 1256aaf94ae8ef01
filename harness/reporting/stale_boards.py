"""Stale leaderboards: the files of an experiment's board that its records no longer produce (its name
changed when the experiment came to span several datasets, or stopped spanning them)."""
from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

from harness.reporting import plots
from harness.reporting.board_names import board_name

#: the files of leaderboard ``<name>``: ``<name><suffix>``
BOARD_SUFFIXES = (".env.json", ".csv", ".long.csv", ".wide.csv", ".md", ".tex", ".column.tex",
                  *(f".{figure}.{fmt}" for figure in plots.FIGURES for fmt in plots.PLOT_FORMATS))


def stale_boards(out_dir: Path, experiment: str, current: set[str]) -> list[str]:
    """The names of ``experiment``'s leaderboards in ``out_dir`` that are no longer any leaderboard's
    (not in ``current``): ``<experiment>`` once it spans several datasets, ``<experiment>@<dataset>``
    once it no longer does, or no longer holds ``dataset``, and ``<experiment>.<dataset>``, the name such a
    board had before :data:`~harness.reporting.board_names.DATASET_SEPARATOR`, unless a board has it now.
    A board is known by its ``.env.json``."""
    stale = []
    for env_file in sorted(out_dir.glob(f"{glob.escape(experiment)}*.env.json")):
        name = env_file.name.removesuffix(".env.json")
        if name in current:
            continue
        try:
            dataset = json.loads(env_file.read_text()).get("dataset")
        except (OSError, ValueError, AttributeError):
            continue
        if name in (experiment, board_name(experiment, dataset, True), f"{experiment}.{dataset}"):
            stale.append(name)
    return stale


def remove_stale_boards(out_dir: Path, experiment: str, names: dict[tuple[str, str], str]) -> None:
    """Delete the files of ``experiment``'s :func:`stale_boards` given every leaderboard's ``names``
    (:func:`~harness.reporting.board_names.leaderboard_names`; its records rebuild them), saying so on stderr."""
    boards = sorted(name for (owner, _), name in names.items() if owner == experiment)
    for name in stale_boards(out_dir, experiment, set(names.values())):
        for suffix in BOARD_SUFFIXES:
            (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
        print(f"removed the stale leaderboard {out_dir / name}.* (experiment {experiment} now has "
              f"{', '.join(boards)})", file=sys.stderr)
