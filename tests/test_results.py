"""The committed results regenerate from the committed records, byte for byte, in a fresh clone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.store import TrialStore

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: the baseline each committed leaderboard (one per experiment) was written with (results/README.md gives the commands)
BASELINES = {"omniglot": "amsoftmax", "omniglot-cpu": "amsoftmax", "omniglot-cpu-joint": "amsoftmax",
             "omniglot28": "amsoftmax"}
REGENERATED = (".csv", ".long.csv", ".wide.csv", ".md", ".tex", ".env.json", ".recall_at_1.png", ".recall_at_k.png")


def experiments_with_records() -> list[str]:
    return sorted({r.placement.experiment for _, r in TrialStore(RESULTS).records()})


def test_every_committed_leaderboard_has_its_records_and_every_experiment_its_leaderboard():
    assert experiments_with_records() == sorted(BASELINES)
    assert sorted({p.name.removesuffix(".csv") for p in (RESULTS / "leaderboards").glob("*.csv")
                   if p.name.count(".") == 1}) == sorted(BASELINES)


@pytest.mark.parametrize("experiment", sorted(BASELINES))
def test_leaderboards_regenerate_byte_for_byte_from_the_committed_records(experiment, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS / "runs", results / "runs")
    assert main(["leaderboard", "--results-dir", str(results), "--experiment", experiment]) == 0  # options stored
    assert json.loads((results / "runs" / experiment / "leaderboard.json").read_text())["baseline"] == BASELINES[experiment]
    for suffix in REGENERATED:
        committed, regenerated = RESULTS / "leaderboards" / f"{experiment}{suffix}", \
            results / "leaderboards" / f"{experiment}{suffix}"
        assert regenerated.read_bytes() == committed.read_bytes(), f"{experiment}{suffix} differs"
