"""The committed results regenerate from the committed records, byte for byte, in a fresh clone."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.store import TrialStore

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: the baseline each committed leaderboard was written with (results/README.md gives the commands)
BASELINES = {"omniglot": "amsoftmax", "omniglot28": "amsoftmax"}
REGENERATED = (".csv", ".long.csv", ".wide.csv", ".md", ".tex", ".env.json", ".recall_at_1.png", ".recall_at_k.png")


def datasets_with_records() -> list[str]:
    return sorted({r.config.dataset for _, r in TrialStore(RESULTS).records()})


def test_every_committed_default_run_leaderboard_has_its_records():
    assert "omniglot28" in datasets_with_records()


@pytest.mark.parametrize("dataset", sorted(BASELINES))
def test_leaderboards_regenerate_byte_for_byte_from_the_committed_records(dataset, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS / "runs", results / "runs")
    assert main(["leaderboard", "--results-dir", str(results), "--dataset", dataset,
                 "--baseline", BASELINES[dataset]]) == 0
    for suffix in REGENERATED:
        committed, regenerated = RESULTS / "leaderboards" / f"{dataset}{suffix}", \
            results / "leaderboards" / f"{dataset}{suffix}"
        assert regenerated.read_bytes() == committed.read_bytes(), f"{dataset}{suffix} differs"
