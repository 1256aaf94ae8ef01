"""One recipe per comparison, checked per experiment (issue 30.4), paper runs pinned (issue 30.6), and an experiment
that stays one protocol under concurrency (issue 34.6): paper runs whose recipes differ are refused naming the
fields, unless ``--incomparable-rows`` (then every board says so); the check holds across runs into one
experiment and between two runs at once (an atomic check-and-claim under the experiment's lock); a paper
recipe names its backbone and weights, and JRD's keeps each epoch's last partial batch as its code does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from harness.cli import main
from harness.scheduling.plan import HeldRecords, check_protocol
from harness.core.record import TrialRecord
from harness.core.store import CLAIMS_FOLDER, TrialStore
from harness.core.recipe import RECIPES
from harness.engine.train import build_train_loader
from harness.experiment import ExperimentConfig
from harness.plugins.method import METHODS, get_method_class
from harness.plugins.models import check_backbone_name

REPO = Path(__file__).resolve().parents[1]
TINY = ["run", "--dataset", "digits", "--epochs", "1", "--executor", "local", "--no-progress"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_paper_comparison_under_six_recipes_is_refused_naming_the_fields(tmp_path, capsys):
    """The issue's command: jrd and ms differ in pooling, Adam eps, epochs ...; triplet falls back to default."""
    results = tmp_path / "r"
    argv = ["run", "--recipe", "paper", "--methods", "jrd,triplet,contrastive,ms,softtriple,amsoftmax",
            "--dataset", "cub", "--data-root", str(tmp_path / "cub"), "--results-dir", str(results)]
    assert main(argv) == 2
    err = one_line(capsys)
    assert "--recipe paper would train jrd (jrd), triplet (default), contrastive (metrix), ms (metrix_ms)" in err
    for fields in ("adam_eps", "epochs", "pooling", "optimizer", "warmup_epochs", "grad_clip_value", "head_init",
                   "amp"):
        assert fields in err
    assert "--incomparable-rows" in err and not results.exists()


def test_methods_of_one_paper_recipe_are_not_refused():
    ExperimentConfig(methods=["jrd", "amsoftmax"], recipe="paper", dataset="digits",
                     from_scratch=True).validate()  # both: jrd's code


def record_of(config: ExperimentConfig) -> TrialRecord:
    """A finished record of the config's only trial, as the run would write it (its metrics made up: only its
    protocol is read)."""
    (trial,) = config.trials()
    return TrialRecord(trial_id=trial.trial_id, status="ok", error=None, spec=trial.spec, placement=trial.placement,
                       metrics={"recall@1": 0.5}, wall_time_s=1.0, n_trainable_params=1, environment={},
                       finished_at="2026-01-01T00:00:00+00:00")


def test_nir_then_proxyanchor_in_two_runs_into_one_experiment_is_refused(tmp_path, capsys):
    """The refusal of a method with its baseline under different recipes cannot be bypassed by two runs: the
    second run is compared with the experiment's records whatever its recipe is called."""
    results = tmp_path / "r"
    nir = ExperimentConfig(methods=["nir"], recipe="paper", dataset="omniglot28", results_dir=str(results),
                           from_scratch=True)
    TrialStore(results).write_record(record_of(nir))
    before = sorted(results.rglob("*"))
    assert main(["run", "--recipe", "paper", "--methods", "proxyanchor", "--dataset", "omniglot28", "--executor",
                 "local", "--from-scratch", "--results-dir", str(results)]) == 2
    err = one_line(capsys)
    assert "experiment omniglot28" in err and "holds nir trials run under another protocol than this run's proxyanchor" in err
    assert "optimizer=adamw (not adam)" in err and "--incomparable-rows" in err
    assert sorted(results.rglob("*")) == before


def test_incomparable_rows_runs_them_and_every_board_says_so(tmp_path, capsys):
    results = tmp_path / "r"
    common = [*TINY, "--results-dir", str(results), "--experiment", "ex"]
    assert main([*common, "--methods", "triplet", "--recipe", "digits"]) == 0
    assert main([*common, "--methods", "amsoftmax", "--recipe", "cpu"]) == 2  # another recipe by name: compared too
    assert "image_size=28 (not 16)" in capsys.readouterr().err
    assert main([*common, "--methods", "amsoftmax", "--recipe", "cpu", "--incomparable-rows"]) == 0
    words = "rows NOT comparable: their methods trained differently (image_size, lr_decay_epochs, resize_size, " \
            "samples_per_class)"
    assert words in capsys.readouterr().out  # the table printed at the end of the run
    boards = results / "leaderboards"
    assert (boards / "ex.md").read_text().startswith(f"## ex (digits): {words}\n")
    assert f"\\caption{{ex (digits): {words.replace('_', chr(92) + '_')}" in (boards / "ex.tex").read_text()
    assert set(pd.read_csv(boards / "ex.csv")["not_comparable"]) == {words}
    assert set(pd.read_csv(boards / "ex.long.csv")["not_comparable"]) == {words}
    assert json.loads((boards / "ex.env.json").read_text())["not_comparable"] == words
    assert main(["report", "--results-dir", str(results), "--out", str(tmp_path / "site")]) == 0
    assert words in (tmp_path / "site" / "ex" / "index.html").read_text()
    assert words in (tmp_path / "site" / "index.html").read_text()
    # one method's trials still share everything
    assert main([*common, "--methods", "amsoftmax", "--recipe", "digits", "--incomparable-rows"]) == 2
    assert "holds amsoftmax trials run under another protocol" in capsys.readouterr().err


def test_a_run_under_way_holds_the_protocol_and_a_dead_ones_claim_does_not(tmp_path):
    store = TrialStore(tmp_path / "r")
    one = ExperimentConfig(methods=["triplet"], dataset="digits", recipe_overrides={"epochs": 1},
                           results_dir=str(store.root)).trials()
    two = ExperimentConfig(methods=["triplet"], dataset="digits", recipe_overrides={"epochs": 2}, seeds=[1],
                           results_dir=str(store.root)).trials()
    claims = store.experiment_dir("digits") / CLAIMS_FOLDER
    with store.protocol_claim("digits", [t.spec for t in one], lambda held: None):
        assert len(list(claims.glob("*.json"))) == 1
        with pytest.raises(ValueError, match=r"holds triplet trials run under another protocol .*epochs=2 \(not 1\)"):
            check_protocol(two, HeldRecords(store, ["digits"]))
    assert not claims.exists()  # the claim goes with its run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claims.mkdir(parents=True)
    stale = claims / "dead.json"
    stale.write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "specs": [one[0].spec.to_dict()]}))
    check_protocol(two, HeldRecords(store, ["digits"]))  # a claim of a process that is gone holds nothing
    assert not stale.exists()


def harness_child(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_two_runs_at_once_into_one_experiment_leave_one_protocol(tmp_path):
    """Issue 34.6 with two real processes: the test holds the experiment's lock until both runs wait on it, so
    both have passed the read-only check when the first claims; whichever claims first trains, the other is
    refused with one line, and a later run under the winner's protocol is accepted."""
    store = TrialStore(tmp_path / "r")
    argv = [*TINY, "--methods", "triplet", "--results-dir", str(store.root)]
    runs = {"1": [*argv, "--epochs", "1", "--seeds", "0"], "2": [*argv, "--epochs", "2", "--seeds", "1"]}
    with store.protocol_lock("digits"):
        children = {epochs: harness_child(args) for epochs, args in runs.items()}
        for child in children.values():
            line = child.stderr.readline()
            while line and "waiting for another run into experiment digits to claim its protocol" not in line:
                line = child.stderr.readline()
            assert line, "a run did not wait for the protocol lock"
    ends = {epochs: child.communicate(timeout=600) for epochs, child in children.items()}  # drains both pipes
    outcome = {epochs: (child.returncode, ends[epochs][1]) for epochs, child in children.items()}
    assert sorted(code for code, _ in outcome.values()) == [0, 2], outcome
    (winner,) = [e for e, (code, _) in outcome.items() if code == 0]
    (loser,) = [e for e in outcome if e != winner]
    refusal = outcome[loser][1].strip().splitlines()
    assert len(refusal) == 1 and f"epochs={loser} (not {winner})" in refusal[0]
    held = {r.spec.recipe["epochs"] for _, r in store.records("digits")}
    assert held == {int(winner)}
    assert not (store.experiment_dir("digits") / CLAIMS_FOLDER).exists()
    assert main([*argv, "--epochs", winner, "--seeds", "2"]) == 0  # the experiment is still usable


# ---- paper runs pinned (issue 30.6) ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", sorted(m for m in METHODS.names() if METHODS.get(m).paper_recipe is not None))
def test_every_paper_recipe_names_its_backbone_and_weights(method):
    for recipe in get_method_class(method).declared_recipes():
        check_backbone_name(recipe.backbone)
        assert recipe.backbone in ("bninception", "resnet50") and "ImageNet" in recipe.pretrained_weights


def test_a_paper_run_without_its_papers_weights_is_refused_naming_them(tmp_path, capsys):
    results = tmp_path / "r"
    base = ["run", "--recipe", "paper", "--dataset", "cub", "--methods", "jrd", "--data-root", str(tmp_path / "cub"),
            "--results-dir", str(results)]
    assert main(base) == 2
    err = one_line(capsys)
    assert "jrd's paper fine-tunes bninception from ImageNet-1k BN-Inception, Cadene pretrainedmodels " \
           "bn_inception-52deb4733.pth; give that file with --pretrained PATH, or --from-scratch" in err
    assert main([*base, "--backbone", "resnet50"]) == 2
    assert "--recipe paper trains jrd on bninception, as its paper did; --backbone resnet50" in one_line(capsys)
    weights = tmp_path / "bn_inception-52deb4733.pth"
    weights.write_bytes(b"weights")
    assert main([*base, "--from-scratch", "--pretrained", str(weights)]) == 2
    assert "give one" in one_line(capsys) and not results.exists()


def test_a_paper_run_trains_the_papers_backbone_and_says_when_it_starts_from_scratch(tmp_path):
    weights = tmp_path / "bn_inception-52deb4733.pth"
    weights.write_bytes(b"weights")
    pinned = ExperimentConfig(methods=["jrd", "amsoftmax"], recipe="paper", pretrained=str(weights)).trials()
    assert {(t.spec.backbone, t.spec.recipe["name"]) for t in pinned} == {("bninception", "jrd")}
    assert all(t.spec.pretrained_sha256 for t in pinned)
    scratch = ExperimentConfig(methods=["jrd", "amsoftmax"], recipe="paper", from_scratch=True).trials()
    assert {(t.spec.backbone, t.spec.recipe["name"], t.spec.pretrained_sha256) for t in scratch} == \
        {("bninception", "jrd-from-scratch", None)}
    assert scratch[0].spec.recipe["pretrained_weights"].startswith("none, from scratch (the paper's: ImageNet-1k")
    assert scratch[0].trial_id != pinned[0].trial_id
    # a shared recipe pins nothing: its trial ids are those of before the fields existed
    assert "backbone" not in RECIPES.get("cpu").to_dict() and "drop_last" not in RECIPES.get("cpu").to_dict()


@pytest.mark.parametrize("recipe, steps, images", [
    (get_method_class("jrd").paper_recipe, 59, 5864),          # JRD batch.py:134-139, no drop_last
    (get_method_class("softtriple").paper_recipe, 59, 5864),   # idstcv/SoftTriple train.py:106-108, no drop_last
    (get_method_class("proxyanchor").paper_recipe, 58, 5800),  # Proxy-Anchor code/train.py: drop_last = True
    (get_method_class("metrix_ms").paper_recipe, 58, 5800),    # billpsomas/metrix main.py (cub): drop_last = True
    (RECIPES.get("default"), 58, 5800)])
def test_a_paper_recipe_keeps_each_epochs_last_partial_batch_where_its_code_does(recipe, steps, images):
    """The authors' loaders, read in their code: JRD's and SoftTriple's keep an epoch's last partial batch (CUB's
    5,864 training images in batches of 100 are 59 steps, the last of 64), Proxy-Anchor's and Metrix's drop it, as
    the shared recipes do (58 steps, 5,800 images). Every paper recipe here samples plainly (m-per-class
    batches are whole by construction)."""
    labels = np.repeat(np.arange(100), 59)[:5864]
    dataset = TensorDataset(torch.arange(5864), torch.as_tensor(labels))
    loader = build_train_loader(dataset, labels, recipe.override(batch_size=100), "random",
                                torch.Generator().manual_seed(0))
    sizes = [len(batch[0]) for batch in loader]
    assert (len(sizes), sum(sizes)) == (steps, images)
    seen = torch.cat([batch[0] for batch in loader])
    assert len(set(seen.tolist())) == images  # each image at most once an epoch
