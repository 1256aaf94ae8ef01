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


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The harness checkout's commit (with ``+dirty`` when it has uncommitted changes), or ``unknown``;
    decided once per process, on the first call (the CLI makes it as a command starts)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
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
