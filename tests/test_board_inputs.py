"""``leaderboard`` redraws only the experiments whose inputs changed (issue 33: an answer in under a second when
nothing did): the same files, byte for byte, as a full redraw; and no pandas, matplotlib or torch imported when
nothing changed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.store import TrialStore
from harness.reporting.board_inputs import INPUTS_FILE
from test_leaderboard import record

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Two experiments, ``cub`` (ms and jrd, three seeds) and ``cars`` (ms, three seeds)."""
    store = TrialStore(tmp_path / "results")
    for seed, r1 in enumerate((0.60, 0.61, 0.62)):
        store.write_record(record("ms", seed, r1))
        store.write_record(record("jrd", seed, r1 + 0.05))
        store.write_record(record("ms", seed, r1 - 0.1, dataset="cars"))
    return store.root


def leaderboard(results: Path, *flags: str) -> int:
    return main(["leaderboard", "--results-dir", str(results), *flags])


def board_files(results: Path) -> dict[str, tuple[bytes, int]]:
    """{file name: (bytes, modification time)} of every board file."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((results / "leaderboards").iterdir())}


def full_redraw(results: Path) -> dict[str, bytes]:
    """The files a redraw from nothing writes."""
    (results / INPUTS_FILE).unlink()
    assert leaderboard(results) == 0
    return {name: data for name, (data, _) in board_files(results).items()}


def test_an_unchanged_experiment_is_not_redrawn_and_a_changed_one_is(results, capsys):
    assert leaderboard(results) == 0
    first_out = capsys.readouterr().out
    drawn = board_files(results)
    assert {"cub.md", "cars.md", "cub.recall_at_1.png"} <= set(drawn)

    assert leaderboard(results) == 0
    captured = capsys.readouterr()
    assert captured.out == first_out  # the same files listed
    assert "2 experiment(s) not redrawn" in captured.err
    assert board_files(results) == drawn  # not one file rewritten (same modification times)

    store = TrialStore(results)
    store.write_record(record("jrd", 3, 0.70))  # a fourth jrd seed in cub only
    assert leaderboard(results) == 0
    assert "1 experiment(s) not redrawn" in capsys.readouterr().err
    now = board_files(results)
    assert all(now[name] == drawn[name] for name in now if name.startswith("cars."))
    assert now["cub.csv"][0] != drawn["cub.csv"][0] and b"jrd" in now["cub.csv"][0]
    assert {name: data for name, (data, _) in now.items()} == full_redraw(results)


@pytest.mark.parametrize("change", ["deleted", "edited"])
def test_a_board_file_deleted_or_edited_is_drawn_again(results, change):
    assert leaderboard(results) == 0
    drawn = board_files(results)
    md = results / "leaderboards" / "cub.md"
    md.unlink() if change == "deleted" else md.write_text("edited by hand\n")
    assert leaderboard(results) == 0
    assert md.read_bytes() == drawn["cub.md"][0]


def test_an_option_given_redraws_and_is_remembered(results):
    assert leaderboard(results) == 0
    assert leaderboard(results, "--format", "csv,md") == 0
    assert json.loads((results / "runs" / "cub" / "leaderboard.json").read_text())["formats"] == ["csv", "md"]
    before = board_files(results)
    assert leaderboard(results) == 0  # the stored options: nothing to redraw
    assert board_files(results) == before


def test_a_changed_published_table_redraws(results, tmp_path):
    published = tmp_path / "published.csv"
    header = "source,citation,method,dataset,backbone,embedding_dim,metric,value_percent,selection\n"
    published.write_text(header + "ms_paper,Wang et al. 2019,ms,cub,BN-Inception,512,recall@1,65.7,as quoted\n")
    assert leaderboard(results, "--published", str(published)) == 0
    assert "65.7" in (results / "leaderboards" / "cub.md").read_text()
    published.write_text(header + "ms_paper,Wang et al. 2019,ms,cub,BN-Inception,512,recall@1,66.1,as quoted\n")
    assert leaderboard(results) == 0  # the stored option names the same file, whose rows changed
    assert "66.1" in (results / "leaderboards" / "cub.md").read_text()


def test_nothing_changed_answers_without_pandas_matplotlib_or_torch(results):
    assert leaderboard(results) == 0
    probe = ("import sys; from harness.cli import main; status = main(['leaderboard', '--results-dir', sys.argv[1]]); "
             "print(status, *sorted(m for m in ('pandas', 'matplotlib', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, str(results)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0"
