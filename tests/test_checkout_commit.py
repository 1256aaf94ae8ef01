"""A record's commit says ``+dirty`` when the code differs from the commit, not when the checkout's committed
results do: re-running a committed board replaces its records under ``results/`` while its code is the
commit's."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.core.environment import checkout_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout with a package and committed results, one commit."""
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "loss.py").write_text("SCALE = 20\n")
    (tmp_path / "results" / "runs").mkdir(parents=True)
    (tmp_path / "results" / "runs" / "record.json").write_text("{}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_a_clean_checkout_is_its_commit(checkout):
    assert checkout_commit(checkout / "harness") == git(checkout, "rev-parse", "HEAD")


def test_replaced_results_are_not_dirty_code(checkout):
    git(checkout, "rm", "-q", "results/runs/record.json")  # a re-run removes the old records (staged)
    (checkout / "results" / "runs").mkdir(parents=True, exist_ok=True)
    (checkout / "results" / "runs" / "new.json").write_text("{}\n")
    assert checkout_commit(checkout / "harness") == git(checkout, "rev-parse", "HEAD")


def test_a_changed_source_file_is_dirty(checkout):
    (checkout / "harness" / "loss.py").write_text("SCALE = 30\n")
    assert checkout_commit(checkout / "harness") == git(checkout, "rev-parse", "HEAD") + "+dirty"


def test_outside_a_checkout_the_commit_is_unknown(tmp_path):
    assert checkout_commit(tmp_path) == "unknown"
