"""Issue 20: user results apart from the reference ones, one protocol per experiment, records that say where
they ran, boards that remember their options, nothing overwritten silently, and ``reproduce``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.commands.locations import leaderboard_roots, reference_results_dir, results_dir
from harness.core.store import TrialStore

REPO = Path(__file__).resolve().parents[1]
TINY = ["run", "--dataset", "digits", "--methods", "amsoftmax", "--epochs", "1", "--executor", "local",
        "--no-progress"]


def only_record(results: Path):
    [(path, record)] = list(TrialStore(results).records())
    return path, record


def test_a_run_without_results_dir_goes_to_the_user_folder_never_the_committed_one(user_results_folder):
    assert results_dir(None) == str(user_results_folder)
    assert reference_results_dir() == REPO / "results"
    assert main(TINY) == 0
    assert (user_results_folder / "runs" / "digits").is_dir()
    assert not (REPO / "results" / "runs" / "digits").exists()
    assert leaderboard_roots(None) == [user_results_folder, REPO / "results"]


def test_a_run_under_another_protocol_stops_naming_what_differs(tmp_path, capsys):
    results = tmp_path / "r"
    assert main([*TINY, "--results-dir", str(results)]) == 0
    before = sorted(results.rglob("*"))
    assert main([*TINY, "--results-dir", str(results), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs=2 (not 1)" in err[0] and "--experiment digits-epochs2" in err[0]
    assert sorted(results.rglob("*")) == before
    assert main([*TINY, "--results-dir", str(results), "--epochs", "2", "--experiment", "digits-epochs2"]) == 0


def test_a_finished_record_is_kept_without_resume_and_replaced_with_overwrite(tmp_path, capsys):
    results = tmp_path / "r"
    assert main([*TINY, "--results-dir", str(results)]) == 0
    path, first = only_record(results)
    capsys.readouterr()
    assert main([*TINY, "--results-dir", str(results)]) == 0
    assert f"kept {path}: finished already" in capsys.readouterr().out
    assert only_record(results)[1].finished_at == first.finished_at and path.read_text() == json.dumps(
        json.loads(path.read_text()), indent=2, sort_keys=True) + "\n"
    assert main([*TINY, "--results-dir", str(results), "--overwrite"]) == 0
    assert f"kept {path}" not in capsys.readouterr().out
    assert main([*TINY, "--results-dir", str(results), "--overwrite", "--resume"]) == 2


def test_records_say_where_they_ran_and_the_commit_the_command_started_from(tmp_path):
    assert main([*TINY, "--results-dir", str(tmp_path)]) == 0
    _, record = only_record(tmp_path)
    hardware = record.environment["hardware"]
    assert set(hardware) >= {"cpu", "isa", "threads", "gpu", "cuda", "cudnn", "deterministic"}
    assert hardware["threads"] == 1  # the local executor's default, as the Ray executor's
    assert hardware["deterministic"]["cudnn_deterministic"] is True
    from harness.core.environment import git_commit
    assert record.environment["git_commit"] == git_commit()


def test_a_board_whose_seeds_ran_on_different_hardware_says_so(tmp_path):
    assert main([*TINY, "--results-dir", str(tmp_path), "--seeds", "0,1"]) == 0
    paths = [p for p, _ in TrialStore(tmp_path).records()]
    data = json.loads(paths[1].read_text())
    data["environment"]["hardware"]["cpu"] = "Another CPU"
    paths[1].write_text(json.dumps(data))
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    env = json.loads((tmp_path / "leaderboards" / "digits.env.json").read_text())
    assert env["mixed_hardware"] is True and len(env["hardware"]) == 2
    assert "different kinds of hardware" in (tmp_path / "leaderboards" / "digits.md").read_text()


def test_a_board_remembers_its_options(tmp_path):
    assert main([*TINY, "--results-dir", str(tmp_path), "--seeds", "0,1", "--methods", "amsoftmax,pixels"]) == 0
    assert main(["leaderboard", "--results-dir", str(tmp_path), "--baseline", "amsoftmax", "--format", "csv,md"]) == 0
    stored = json.loads((tmp_path / "runs" / "digits" / "leaderboard.json").read_text())
    assert stored["baseline"] == "amsoftmax" and stored["formats"] == ["csv", "md"]
    long = (tmp_path / "leaderboards" / "digits.long.csv").read_bytes()
    assert b"amsoftmax [" in long  # the baseline column is filled
    for suffix in (".long.csv", ".tex"):
        (tmp_path / "leaderboards" / f"digits{suffix}").unlink()
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0  # plain: the stored options
    assert (tmp_path / "leaderboards" / "digits.long.csv").read_bytes() == long
    assert not (tmp_path / "leaderboards" / "digits.tex").exists()


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "recipe field epochs: must be >= 1, got 0"),
    (["--recipe-set", "epochs=0"], "recipe field epochs: must be >= 1, got 0"),
])
def test_zero_epochs_is_refused_before_any_folder(flags, message, tmp_path, capsys):
    argv = [a for a in TINY if a not in ("--epochs", "1")] + flags
    assert main([*argv, "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value", [("--seeds", "0,,1"), ("--seeds", "0,"), ("--methods", "ms,,triplet")])
def test_empty_list_items_are_refused(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*TINY, flag, value, "--results-dir", str(tmp_path / "r")])
    assert exit_.value.code == 2 and "without an empty" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_reproduce_on_the_same_machine_drifts_by_zero(tmp_path, capsys):
    assert main([*TINY, "--results-dir", str(tmp_path / "r")]) == 0
    path, record = only_record(tmp_path / "r")
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["reproduce", str(path.parent.parent), "--out", str(tmp_path / "scratch"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "differences: none" in out
    drift = pd.read_csv(tmp_path / "scratch" / "drift.csv")
    assert len(drift) == len(record.metrics) and (drift["drift"] == 0).all()
    assert path.read_bytes() == before  # the record is never rewritten


def test_plain_leaderboard_regenerates_the_committed_boards_from_their_stored_options(tmp_path):
    shutil.copytree(REPO / "results" / "runs" / "omniglot28", tmp_path / "runs" / "omniglot28")
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    for path in sorted((tmp_path / "leaderboards").iterdir()):
        if path.suffix != ".pdf":
            assert path.read_bytes() == (REPO / "results" / "leaderboards" / path.name).read_bytes(), path.name
