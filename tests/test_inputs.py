"""Bad input through the real CLI: one clear line on stderr and exit 2 before any trial starts, nothing
written; plus the declarations the checks rest on (every method's hyperparameter types and ranges)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import harness.experiment as experiment_module
from harness.cli import main
from harness.core.hparams import Choice, Interval, IntUniform, LogUniform, Param, Uniform, parse_distribution
from harness.core.store import CorruptFileError
from harness.experiment import ExperimentConfig
from harness.plugins.method import METHODS
from harness.plugins.models import create_backbone

DIGITS = ["--dataset", "digits", "--no-progress", "--executor", "local"]
FAST = [*DIGITS, "--epochs", "1"]


def refused(argv: list[str], tmp_path: Path, capsys) -> str:
    """Run the CLI; assert exit 2, exactly one line on stderr, no results folder; return that line."""
    results = tmp_path / "results"
    assert main([*argv, "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert not results.exists()
    return err


@pytest.mark.parametrize("flags, message", [
    (["--methods", "ms", "--hparam", "ms.alpha=abc"], "hyperparameter ms.alpha: expected float, got 'abc'"),
    (["--methods", "ms", "--hparam", "ms.alpha=0"], "hyperparameter ms.alpha: must be > 0, got 0"),
    (["--methods", "triplet", "--hparam", "triplet.margin=-0.1"], "triplet.margin: must be >= 0"),
    (["--methods", "normsoftmax", "--hparam", "normsoftmax.temperature=0"], "temperature: must be > 0"),
    (["--methods", "softtriple", "--hparam", "softtriple.centers_per_class=2.5"], "expected int, got 2.5"),
    (["--methods", "jrd", "--hparam", "jrd.kernel=cosine"], "jrd.kernel: must be one of 'gaussian'"),
    (["--methods", "jrd", "--hparam", "jrd.bandwidths=(None,0,1)"], "jrd.bandwidths: element 0: must be > 0"),
    (["--methods", "ms", "--recipe-set", "epochs=abc"], "recipe field epochs: expected int, got 'abc'"),
    (["--methods", "ms", "--recipe-set", "lr_head=-1"], "recipe field lr_head: must be >= 0"),
    (["--methods", "ms", "--seeds", "-1"], "seeds must be integers in [0, 2**32), got -1"),
    (["--methods", "ms", "--seeds", "0,1,0"], "seed(s) 0 given more than once"),
    (["--methods", "ms", "--embedding-dim", "-1"], "embedding_dim: must be >= 0, got -1"),
    (["--methods", "ms", "--device", "gpu"], "--device 'gpu' is not a device"),
    (["--methods", "ms", "--pretrained", "/nonexistent/weights.pth"], "--pretrained /nonexistent/weights.pth is not a file"),
    (["--methods", "ms", "--recipe-set", "batch_size=8"], "ms: batch_size 8 holds fewer than two classes of "
                                                          "samples_per_class 16"),
    (["--methods", "ms", "--recipe-set", "samples_per_class=4", "--recipe-set", "batch_size=64"],
     "ms: m-per-class batches of 64 need 16 classes, the training split has 5"),
    (["--methods", "ms", "--recipe-set", "sampler=balanced"],
     "recipe field sampler: must be one of 'method', 'random', 'm_per_class', got 'balanced'"),
    (["--methods", "ms", "--recipe-set", "lr_milestones=(0,2)"], "recipe field lr_milestones: element 0: must be >= 1"),
    (["--methods", "ms", "--recipe-set", "optimizer=lamb"], "unknown optimizer 'lamb'; valid optimizers: adam,"),
    (["--methods", "ms", "--val-fraction", "0"], "val_fraction: must be in (0, 1), got 0.0"),
    (["--methods", "ms", "--val-fraction", "1.5"], "val_fraction: must be in (0, 1), got 1.5"),
])
def test_run_refuses_bad_values_before_any_trial(flags, message, tmp_path, capsys):
    quick = DIGITS if "epochs=abc" in flags else FAST  # (--epochs would replace --recipe-set epochs)
    assert message in refused(["run", *flags, *quick], tmp_path, capsys)


@pytest.mark.skipif(torch.cuda.device_count() >= 8, reason="this machine has a cuda:7")
def test_run_refuses_a_device_this_machine_lacks(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert "--device cuda:7: this machine has" in refused(["run", "--methods", "ms", "--device", "cuda:7", *FAST],
                                                          tmp_path, capsys)


def test_an_empty_seed_list_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--methods", "ms", "--seeds", ",", *FAST])
    assert exit_.value.code == 2 and "expected at least one integer" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("methods: [ms]\nseeds: [0, 1\n", "config.yaml, line 3: not valid YAML"),
    ("methods: [ms]\n  seeds: 1\n", "config.yaml, line 2: not valid YAML"),
    ("- ms\n- triplet\n", "config.yaml, line 1: expected a mapping of ExperimentConfig fields"),
    ("methods: [ms]\nval_fraction: half\n", "config.yaml: val_fraction must be float, got 'half'"),
    ("methods: [ms]\nembedding_dim: big\n", "config.yaml: embedding_dim must be int, got 'big'"),
])
def test_a_bad_config_file_names_file_and_line(text, message, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    assert message in refused(["run", "--config", str(config), *FAST], tmp_path, capsys)


@pytest.mark.parametrize("flags, message", [
    (["--trials", "0"], "--trials must be at least 1, got 0"),
    (["--final-seeds", "-1"], "--final-seeds must be at least 0, got -1"),
    (["--metric", "val_nope"], "--metric must be a validation metric, one of val_recall@1"),
    (["--space", "base=uniform(0.9,0.1)"], "uniform needs low <= high, got (0.9, 0.1)"),
    (["--space", "alpha=uniform(0,5)"], "search space ms.alpha=Uniform(low=0.0, high=5.0): must be > 0, got 0.0"),
    (["--space", "alpha=choice(1,abc)"], "search space ms.alpha=Choice(options=(1, 'abc')): expected float"),
    (["--space", "alpha=choice()"], "choice needs at least one option"),
])
def test_search_refuses_bad_arguments_and_spaces_leaving_nothing_behind(flags, message, tmp_path, capsys):
    argv = ["search", "--method", "ms", "--dataset", "digits", "--no-progress", *flags]
    assert message in refused(argv, tmp_path, capsys)


def test_search_space_must_fit_the_hyperparameter_type_and_optuna(tmp_path, capsys):
    argv = ["search", "--method", "softtriple", "--dataset", "digits", "--space", "centers_per_class=uniform(1,4)"]
    assert "softtriple.centers_per_class takes int values; uniform draws floats" in refused(argv, tmp_path, capsys)
    argv = ["search", "--method", "jrd", "--dataset", "digits", "--space", "bandwidths=choice([1],None)"]
    assert "Optuna's choices must be numbers" in refused(argv, tmp_path, capsys)


def test_sweep_refuses_an_unknown_metric(tmp_path, capsys):
    argv = ["sweep", "--method", "ms", "--param", "alpha=1,2", "--metric", "recall@3", *FAST]
    err = refused(argv, tmp_path, capsys)
    assert "--metric 'recall@3' is not recorded; valid: recall@1, recall@2, recall@4, recall@8, map@r" in err


def test_validation_reads_the_dataset_once_per_process(monkeypatch):
    calls = []
    real = experiment_module.create_dataset
    monkeypatch.setattr(experiment_module, "create_dataset", lambda *a: calls.append(a) or real(*a))
    experiment_module.training_classes.cache_clear()
    experiment = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0, 1])
    for alpha in (1.0, 2.0, 4.0):  # as sweep does: one config per grid value
        replace(experiment, hparams={"ms": {"alpha": alpha}}).trials()
    assert calls == [("digits", None, 0.2)]


def test_truncated_pretrained_weights_name_their_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(create_backbone("small_cnn", 1).state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match=f"pretrained weights file {path} cannot be loaded into small_cnn"):
        create_backbone("small_cnn", 1, str(path))


# --- the declarations ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS.names())
def test_every_default_and_declared_space_is_valid(method):
    cls = METHODS.get(method)
    for name, param in cls.hparams.items():
        param.check(name, param.default)
        if param.space is not None:
            param.check_space(name, param.space)
    for dataset in ("cub", "cars", "sop", "inshop", "omniglot", "digits"):
        for name, value in cls.dataset_defaults(dataset).items():
            cls.hparams[name].check(name, value)


def test_param_types_and_intervals():
    alpha = Param(2.0, LogUniform(0.1, 20.0), valid="> 0")
    assert alpha.problem(2) is None and alpha.problem(1e300) is None
    assert alpha.problem(True) == "expected float, got True"
    assert alpha.problem(float("inf")) == "must be a finite number, got inf"  # issue 34: fails in the trial
    assert alpha.problem(float("nan")) == "must be a finite number, got nan"
    count = Param(3, IntUniform(1, 8), valid=">= 1")
    assert count.problem(2.0) == "expected int, got 2.0" and count.problem(0) == "must be >= 1, got 0"
    assert Param("a", Choice(("a", "b"))).problem("c") == "must be one of 'a', 'b', got 'c'"
    optional = Param(None, valid=">= 0", kind=(type(None), int))
    assert optional.problem(None) is None and optional.problem(-1) == "must be >= 0, got -1"
    assert str(Interval.parse("[0, 1)")) == "in [0, 1)" and Interval.parse("(0, 1)").contains(0) is False
    assert Interval.parse("<= 2").contains(2) and not Interval.parse("< 2").contains(2)
    with pytest.raises(ValueError, match="cannot parse interval"):
        Interval.parse("positive")
    with pytest.raises(ValueError, match="randint needs low <= high"):
        parse_distribution("randint(5,1)")
    assert parse_distribution("uniform(0,1)") == Uniform(0.0, 1.0)
