"""YAML configuration files (issue 23, items 8-10): flags merge into the file key by key, every value has its
field's type, and only user-facing keys are accepted; each bad file is one line and exit 2 before any folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.experiment import ExperimentConfig

RUN = ["run", "--no-progress", "--executor", "local", "--cpus-per-trial", "1"]


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_a_flag_merges_into_the_files_mapping_key_by_key(tmp_path):
    path = config_file(tmp_path, "methods: [ms]\ndataset: digits\nrecipe_overrides: {batch_size: 48, epochs: 3}\n"
                                 "hparams: {ms: {alpha: 3.0, beta: 40.0}}\n")
    config = ExperimentConfig.from_yaml(path, recipe_overrides={"epochs": 1}, hparams={"ms": {"alpha": 1.0}})
    assert config.recipe_overrides == {"batch_size": 48, "epochs": 1}
    assert config.hparams == {"ms": {"alpha": 1.0, "beta": 40.0}}


def test_the_record_shows_the_merged_settings(tmp_path):
    path = config_file(tmp_path, "methods: [ms]\ndataset: digits\nrecipe_overrides: {batch_size: 48}\n"
                                 "hparams: {ms: {beta: 40.0}}\n")
    out = tmp_path / "out"
    assert main([*RUN, "--config", str(path), "--epochs", "1", "--hparam", "ms.alpha=1.5", "--recipe-set",
                 "lr_head=0.002", "--results-dir", str(out)]) == 0
    (record,) = [json.loads(p.read_text()) for p in out.glob("runs/*/*/record.json")]
    recipe, hparams = record["spec"]["recipe"], record["spec"]["hparams"]
    assert (recipe["batch_size"], recipe["epochs"], recipe["lr_head"]) == (48, 1, 0.002)
    assert (hparams["alpha"], hparams["beta"]) == (1.5, 40.0)


@pytest.mark.parametrize("line, message", [
    ('save_model: "no"', "save_model must be bool"),
    ("experiment: 5", "experiment must be"),
    ("results_dir: 5", "results_dir must be"),
    ("data_root: 5", "data_root must be"),
    ("seeds: 3", "seeds must be list"),
    ("role: search", "unknown key(s) role; valid keys:"),
    ("eval_split: val", "unknown key(s) eval_split"),
    ("epochs: 1", "valid keys: backbone, data_root"),
])
def test_a_bad_value_or_key_is_one_line_before_any_folder(line, message, tmp_path, capsys):
    path = config_file(tmp_path, f"methods: [ms]\ndataset: digits\n{line}\n")
    out = tmp_path / "out"
    assert main([*RUN, "--config", str(path), "--results-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("key, value, message", [
    ("methods", "ms", "methods must be list"),
    ("trials_per_method", "2", "trials_per_method must be int"),
])
def test_a_manifest_value_of_the_wrong_type_is_one_line(key, value, message, tmp_path, capsys):
    stored = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "omniglot-cpu" / "manifest.yaml"
    manifest = {**yaml.safe_load(stored.read_text()), key: value}
    path = config_file(tmp_path, yaml.safe_dump(manifest))
    out = tmp_path / "out"
    assert main(["benchmark", "--config", str(path), "--results-dir", str(out), "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
