"""The harness's commit and the library versions, as every trial record and leaderboard states them.

The device and hardware facts that join them in a record's environment need torch: they are
:mod:`harness.engine.hardware`'s (the core layer imports no torch)."""
from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_PACKAGES = ("torch", "torchvision", "timm", "pytorch-metric-learning", "faiss-cpu", "faiss-gpu", "ray",
             "optuna", "numpy", "pandas")


#: the checkout's folder of committed reference results: data a re-run rewrites, not code
RESULTS_FOLDER = "results"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The harness checkout's commit (:func:`checkout_commit`), decided once per process, on the first call (the
    CLI makes it as a command starts)."""
    return checkout_commit(Path(__file__).resolve().parent)


def checkout_commit(folder: Path) -> str:
    """The commit of the git checkout holding ``folder``, with ``+dirty`` when its code has uncommitted changes,
    or ``unknown``. Changes under the checkout's ``results/`` are not code: a re-run of a committed board
    replaces its records there while the code that trains them is the commit's."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                f":(top,exclude){RESULTS_FOLDER}"], cwd=folder, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
