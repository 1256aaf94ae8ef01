"""Issue 34.2: a results folder is a closed space. A symbolic link inside it that leads out of it (an
experiment's folder, a trial folder, ``leaderboards``, a search's folder) is never written through: the
command stops with one line naming the link, exit 2, and nothing lands outside."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.core.names import inside

DIGITS = ["--dataset", "digits", "--no-progress", "--executor", "local", "--epochs", "1", "--cpus-per-trial", "1"]


def linked(results: Path, relative: str, outside: Path) -> Path:
    """``results/relative`` made a symbolic link to the folder ``outside``."""
    link = results / relative
    link.parent.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    return link


def refused_naming(argv: list[str], link: Path, outside: Path, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"{link} is a symbolic link to {outside.resolve()}, outside the results folder" in err
    assert sorted(outside.rglob("*")) == []


@pytest.mark.parametrize("relative", ["runs/digits", "runs", "leaderboards"])
def test_run_never_writes_through_a_link_out_of_the_results_folder(relative, tmp_path, capsys):
    results, outside = tmp_path / "results", tmp_path / "elsewhere"
    link = linked(results, relative, outside)
    refused_naming(["run", "--methods", "pixels", *DIGITS, "--results-dir", str(results)], link, outside, capsys)


def test_overwrite_never_writes_through_a_linked_trial_folder(tmp_path, capsys):
    results, outside = tmp_path / "results", tmp_path / "elsewhere"
    argv = ["run", "--methods", "pixels", *DIGITS, "--results-dir", str(results)]
    assert main(argv) == 0
    (trial,) = (results / "runs" / "digits").iterdir()
    moved = tmp_path / "moved"
    trial.rename(moved)
    link = linked(results, f"runs/digits/{trial.name}", outside)
    before = sorted(p.name for p in moved.iterdir())
    capsys.readouterr()
    refused_naming([*argv, "--overwrite"], link, outside, capsys)
    assert sorted(p.name for p in moved.iterdir()) == before


def test_leaderboard_and_search_never_write_through_a_link(tmp_path, capsys):
    results, outside = tmp_path / "results", tmp_path / "elsewhere"
    assert main(["run", "--methods", "pixels", *DIGITS, "--results-dir", str(results)]) == 0
    (results / "leaderboards").rename(tmp_path / "boards")
    link = linked(results, "leaderboards", outside)
    capsys.readouterr()
    refused_naming(["leaderboard", "--results-dir", str(results)], link, outside, capsys)
    link.unlink()
    link = linked(results, "searches/omniglot28.ms", outside)
    refused_naming(["search", "--method", "ms", "--dataset", "omniglot28", "--epochs", "1", "--trials", "1",
                    "--final-seeds", "0", "--executor", "local", "--no-progress", "--results-dir", str(results)],
                   link, outside, capsys)


def test_links_that_stay_inside_are_followed(tmp_path):
    results = tmp_path / "results"
    (results / "archive" / "digits").mkdir(parents=True)
    (results / "runs").mkdir()
    (results / "runs" / "digits").symlink_to(results / "archive" / "digits")
    assert inside(results, results / "runs" / "digits" / "t1") == results / "runs" / "digits" / "t1"
    whole = tmp_path / "results-link"
    whole.symlink_to(results)
    assert inside(whole, whole / "runs" / "x") == whole / "runs" / "x"
    with pytest.raises(ValueError, match="lies outside the results folder"):
        inside(results, results / ".." / "x")
