"""Where results go when no ``--results-dir`` is given (decided here, in the CLI layer, and nowhere else).

A user's runs go to a folder outside the source tree, ``$DMLBENCH_RESULTS``, else
``$XDG_DATA_HOME/dmlbench/results``, else ``~/.local/share/dmlbench/results``. The committed reference
results of a source checkout (``<repo>/results``) are read-only data: no command writes them unless it is
pointed there with ``--results-dir``, except ``leaderboard``, which regenerates them from their own records
(byte for byte, so a checkout stays clean).
"""
from __future__ import annotations

import os
from pathlib import Path

import harness

RESULTS_ENV = "DMLBENCH_RESULTS"


def user_results_dir() -> Path:
    """The default results folder of a user's runs (outside the source tree)."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "dmlbench" / "results"


def reference_results_dir() -> Path | None:
    """The committed reference results of this source checkout (``<repo>/results`` holding ``runs/``), or None
    (an installed package has none)."""
    repo = Path(harness.__file__).resolve().parents[1]
    folder = repo / "results"
    return folder if (repo / "pyproject.toml").is_file() and (folder / "runs").is_dir() else None


def results_dir(given: str | None) -> str:
    """``--results-dir`` if given, else the user's results folder."""
    return given or str(user_results_dir())


def leaderboard_roots(given: str | None) -> list[Path]:
    """The results folders ``leaderboard`` regenerates: ``--results-dir`` if given, else the user's folder
    (where it exists) and the reference folder (where there is one)."""
    if given:
        return [Path(given)]
    roots = [user_results_dir(), reference_results_dir()]
    return list(dict.fromkeys(r for r in roots if r is not None and (r / "runs").is_dir()))


def site_dir() -> Path:
    """Where ``report`` writes its HTML site by default: ``site/`` beside the user's results folder (outside
    the source tree, so that a report of the committed results leaves a checkout clean)."""
    return user_results_dir().parent / "site"
