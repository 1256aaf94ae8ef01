"""End to end through the real CLI on the bundled digits: records, leaderboard, errors, resume, embed."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.core.store import TrialStore

FAST = ["--epochs", "1", "--no-progress", "--executor", "local"]
DIGITS = ["--dataset", "digits"]  # the smoke-test dataset (the default is the packaged omniglot28)


def records(results_dir):
    return {r.trial_id: r.to_dict() for _, r in TrialStore(results_dir).records()}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    code = main(["run", "--methods", "pixels,amsoftmax,ms", "--seeds", "0,1", "--results-dir", str(out),
                 *DIGITS, *FAST])
    assert code == 0
    return out


def test_run_writes_one_record_per_trial_with_full_story(digits_run):
    recs = records(digits_run)
    assert len(recs) == 6
    for rec in recs.values():
        assert rec["status"] == "ok"
        assert set(rec["metrics"]) >= {"recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi"}
        assert rec["spec"]["dataset"] == "digits" and rec["recipe"]["name"] == "digits"
        assert rec["environment"]["versions"]["torch"] and rec["wall_time_s"] > 0
        assert all(0.0 <= v <= 1.0 for v in rec["metrics"].values())
    am = [r for r in recs.values() if r["spec"]["method"] == "amsoftmax"]
    assert all(r["n_trainable_params"] > 0 and len(r["history"]) == 1 for r in am)


def test_leaderboard_mean_std_match_the_records(digits_run):
    board = pd.read_csv(digits_run / "leaderboards" / "digits.csv")
    recs = records(digits_run).values()
    for method in ("pixels", "amsoftmax", "ms"):
        row = board[board["method"] == method].iloc[0]
        values = np.array([r["metrics"]["recall@1"] for r in recs if r["spec"]["method"] == method])
        assert row["n_seeds"] == 2
        assert row["recall@1_mean"] == pytest.approx(values.mean(), abs=1e-6)
        assert row["recall@1_std"] == pytest.approx(values.std(ddof=1), abs=1e-6)


def test_same_seed_gives_the_same_metrics(digits_run, tmp_path):
    assert main(["run", "--methods", "ms", "--seeds", "1", "--results-dir", str(tmp_path), *DIGITS, *FAST]) == 0
    again = next(iter(records(tmp_path).values()))
    first = records(digits_run)[again["trial_id"]]
    assert again["metrics"] == first["metrics"]


def test_resume_skips_finished_trials(digits_run, capsys):
    before = {k: r["finished_at"] for k, r in records(digits_run).items()}
    assert main(["run", "--methods", "pixels,amsoftmax,ms", "--seeds", "0,1", "--results-dir", str(digits_run),
                 "--resume", *DIGITS, *FAST]) == 0
    assert {k: r["finished_at"] for k, r in records(digits_run).items()} == before
    assert ": recall@1 " not in capsys.readouterr().out  # no trial ran again


def test_embed_reuses_a_trained_trial(digits_run, tmp_path):
    from PIL import Image

    trial = next(r for r in records(digits_run).values() if r["spec"]["method"] == "amsoftmax")
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["b.png", "a.png", "sub/c.png"]):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / name)
    out = tmp_path / "emb.npy"
    run_dir = (digits_run / "runs" / "digits" / trial["trial_id"])
    assert main(["embed", str(run_dir), str(folder), "--out", str(out)]) == 0
    emb = np.load(out)
    assert emb.shape == (3, 512)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    paths = (tmp_path / "emb.npy.paths.txt").read_text().split()
    assert paths == sorted(paths) and paths[0].endswith("a.png")


def test_nan_loss_diverges_that_trial_and_the_others_go_on(tmp_path):
    code = main(["run", "--methods", "amsoftmax,pixels", "--hparam", "amsoftmax.scale=1e300",  # finite, overflows float32
                 "--results-dir", str(tmp_path), *DIGITS, *FAST])
    assert code == 1  # after its summary, run says that a trial did not finish
    recs = {r["spec"]["method"]: r for r in records(tmp_path).values()}
    assert recs["amsoftmax"]["status"] == "diverged" and "non-finite loss" in recs["amsoftmax"]["error"]
    assert recs["pixels"]["status"] == "ok"
    board = pd.read_csv(tmp_path / "leaderboards" / "digits.csv")
    assert board.set_index("method").loc["amsoftmax", ["n_diverged", "n_failed"]].tolist() == [1, 0]


@pytest.mark.parametrize("argv, message", [
    (["run", "--methods", "nope"], "valid methods: "),
    (["run", "--methods", "ms", "--dataset", "imagenet"], "valid datasets: "),
    (["run", "--methods", "ms", "--backbone", "resnet_9000"], "unknown backbone 'resnet_9000'"),
    (["run", "--methods", "ms", "--hparam", "ms.gamma=1"], "valid: alpha, base, beta, epsilon"),
    (["run", "--methods", "ms", "--recipe", "fast"], "valid recipes: "),
])
def test_bad_names_fail_at_once_with_the_valid_ones(argv, message, tmp_path, capsys):
    assert main(argv + ["--results-dir", str(tmp_path), *FAST]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_missing_index_file_is_named(tmp_path, capsys):
    root = tmp_path / "CUB_200_2011"
    (root / "images").mkdir(parents=True)
    (root / "images.txt").write_text("1 001.A/a.jpg\n")
    assert main(["run", "--methods", "ms", "--dataset", "cub", "--data-root", str(root),
                 "--results-dir", str(tmp_path), *FAST]) == 2
    assert "image_class_labels.txt" in capsys.readouterr().err


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("triplet", "contrastive", "ms", "softtriple", "amsoftmax", "pixels", "omniglot", "cub",
                 "digits", "bninception", "small_cnn", "resnet50"):
        assert name in out
    assert "executors (--executor): local, ray" in out and "optimizers (recipe field optimizer): adam, adamw, radam" in out
    assert "optional metrics (--extra-metrics): utilization (u(Q))" in out and "(JRD variants)" in out


def test_utilization_is_an_optional_registered_metric_shown_as_is(tmp_path, capsys):
    assert main(["run", "--methods", "pixels", "--extra-metrics", "utilization", "--results-dir", str(tmp_path),
                 *DIGITS, *FAST]) == 0
    (rec,) = records(tmp_path).values()
    assert rec["placement"]["extra_metrics"] == ["utilization"]
    assert 0.0 < rec["metrics"]["utilization"] < 4.0  # squared distance between unit vectors
    row = pd.read_csv(tmp_path / "leaderboards" / "digits.csv").iloc[0]
    board = (tmp_path / "leaderboards" / "digits.md").read_text()
    assert "u(Q)" in board and f"{row['utilization_mean']:.4f}" in board  # not in percent, under its label
    assert main(["run", "--methods", "pixels", "--extra-metrics", "nosuch", "--results-dir", str(tmp_path / "x"),
                 *DIGITS, *FAST]) == 2
    assert "unknown optional metric(s) nosuch; registered: utilization" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_config_file_sets_methods_and_seeds_unless_flags_do(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("methods: [pixels]\ndataset: digits\nseeds: [3]\n")
    assert main(["run", "--config", str(config), "--results-dir", str(tmp_path / "a"), *FAST]) == 0
    assert [(r["spec"]["method"], r["spec"]["seed"]) for r in records(tmp_path / "a").values()] == [("pixels", 3)]
    assert main(["run", "--config", str(config), "--seeds", "4", "--results-dir", str(tmp_path / "b"), *FAST]) == 0
    assert [r["spec"]["seed"] for r in records(tmp_path / "b").values()] == [4]
