"""The README's examples run exactly as printed: the loss plugin and its command, the dataset plugin and its
command, the Python API block and the configuration file. Each code block is read from README.md, written to
a temporary folder and run in a fresh process through the real CLI (so the plugins' registrations do not leak
into other tests); the commands are the README's own words, split as a shell would split them."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.core.store import TrialFolder, TrialStore
from harness.experiment import ExperimentConfig

REPO = Path(__file__).resolve().parents[1]


def readme_blocks(heading: str) -> list[tuple[str, str]]:
    """``(info string, text)`` of each fenced code block in the README section under ``heading``, in order."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index(heading) + 1
    level = heading.split()[0]
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")
                and lines[i].split()[0] in {level[:n] for n in range(1, len(level) + 1)}), len(lines))
    blocks, info, body = [], None, []
    for line in lines[start:end]:
        if line.startswith("```") and info is None:
            info, body = line[3:].strip(), []
        elif line.startswith("```"):
            blocks.append((info, "\n".join(body) + "\n"))
            info = None
        elif info is not None:
            body.append(line)
    return blocks


def plugin_and_command(heading: str) -> tuple[str, list[str]]:
    """The section's Python file and its ``python -m harness`` command (argv, this interpreter first)."""
    blocks = readme_blocks(heading)
    code = next(text for info, text in blocks if info == "python")
    command = next(text for info, text in blocks if info == "" and text.startswith("python -m harness"))
    argv = shlex.split(command)
    return code, [sys.executable, *argv[1:]]


def run_as_printed(argv: list[str], cwd: Path, results: Path, plugin_folder: Path | None = None
                   ) -> subprocess.CompletedProcess:
    """Run ``argv`` in ``cwd`` with this checkout importable (and ``plugin_folder`` on the path when given),
    results in ``results``; it must succeed."""
    path = [str(plugin_folder)] if plugin_folder else []
    env = {**os.environ, "DMLBENCH_RESULTS": str(results),
           "PYTHONPATH": os.pathsep.join([*path, str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_loss_plugin_trains_beside_a_built_in_method_as_printed(tmp_path):
    code, argv = plugin_and_command("### Add your own loss")
    module = argv[argv.index("--plugins") + 1]
    (tmp_path / f"{module}.py").write_text(code)
    assert 10 <= len([line for line in code.splitlines() if line.strip() and not line.lstrip().startswith(("#", '"'))]) <= 16
    done = run_as_printed(argv, tmp_path, tmp_path / "results")  # from the folder that holds the plugin
    records = {r.spec.method: r for _, r in TrialStore(tmp_path / "results").records()}
    assert set(records) == {"cosine_margin", "ms"}
    plugin = records["cosine_margin"]
    assert plugin.ok and plugin.spec.hparams == {"margin": 0.5} and plugin.placement.method_family == "pair"
    assert len(plugin.history) == 1 and 0 < plugin.history[0]["loss"] < 3
    # digits' five test classes: chance is about 20%; one epoch of the plugin's loss retrieves far better
    assert 0.6 < plugin.metrics["recall@1"] <= 1 and 0 < plugin.metrics["map@r"] < 1
    assert "cosine_margin" in done.stdout and f"{100 * plugin.metrics['recall@1']:.2f}" in done.stdout


def test_the_pml_wrapper_trains_a_pytorch_metric_learning_loss_as_printed(tmp_path):
    """The section's PMLLossMethod subclass wraps pytorch-metric-learning's CircleLoss: it trains beside ms
    with the loss it builds, at the hyperparameters it declares."""
    code, argv = plugin_and_command("### Wrap a pytorch-metric-learning loss")
    module = argv[argv.index("--plugins") + 1]
    (tmp_path / f"{module}.py").write_text(code)
    assert "PMLLossMethod" in code and "build_loss" in code
    done = run_as_printed(argv, tmp_path, tmp_path / "results")
    records = {r.spec.method: r for _, r in TrialStore(tmp_path / "results").records()}
    assert set(records) == {"circle", "ms"}
    circle = records["circle"]
    assert circle.ok and circle.spec.hparams == {"m": 0.4, "gamma": 80.0} and len(circle.history) == 1
    assert 0.6 < circle.metrics["recall@1"] <= 1  # chance on digits' five test classes is about 20%
    assert f"{100 * circle.metrics['recall@1']:.2f}" in done.stdout


def test_the_dataset_plugin_reads_class_folders_as_printed(tmp_path, omniglot_root):
    code, argv = plugin_and_command("### Add your own dataset")
    module = argv[argv.index("--plugins") + 1]
    (tmp_path / f"{module}.py").write_text(code)
    run_as_printed(argv, REPO, tmp_path / "results", tmp_path)  # --data-root is relative to the repository
    (path, record), = TrialStore(tmp_path / "results").records()
    root = REPO / argv[argv.index("--data-root") + 1]
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert record.ok and record.spec.dataset == "class_folders" and record.spec.method == "ms"
    arrays = TrialFolder(path.parent).embeddings()
    test_images = sum(len(list((root / c).iterdir())) for c in classes[len(classes) // 2:])
    assert arrays["query"].shape == (test_images, 512)  # the second half of the class folders is the test set
    assert len(np.unique(arrays["query_labels"])) == len(classes) - len(classes) // 2
    assert 1 / 20 < record.metrics["recall@1"] <= 1  # better than chance among 20 test characters


def test_the_python_api_block_runs_as_printed(tmp_path):
    (code,) = [text for info, text in readme_blocks("### Python API") if info == "python"]
    (tmp_path / "api.py").write_text(code)
    done = run_as_printed([sys.executable, "api.py"], tmp_path, tmp_path / "unused")
    *rows, evaluated = done.stdout.strip().splitlines()
    records = [r for _, r in TrialStore(tmp_path / "api-results").records("digits")]
    assert [row.split()[:3] for row in rows] == [[r.spec.method, str(r.spec.seed), "ok"] for r in records]
    assert sorted(r.spec.method for r in records) == ["ms", "triplet"]
    # evaluate_embeddings on the last trial's cached embeddings gives its recorded Recall@1, in percent
    assert f"'recall@1': '{100 * records[-1].metrics['recall@1']:.2f}'" in evaluated
    assert rows[-1].split()[-1] == f"{100 * records[-1].metrics['recall@1']:.2f}"


def test_the_configuration_file_is_valid_and_every_key_is_shown(tmp_path, monkeypatch, capsys, omniglot_root):
    (yaml_text,) = [text for info, text in readme_blocks("### Configuration files") if info == "yaml"]
    (tmp_path / "run.yaml").write_text(yaml_text)
    monkeypatch.chdir(REPO)  # its data_root is relative to the repository, as the README's commands are
    trials = ExperimentConfig.from_yaml(tmp_path / "run.yaml").trials()
    assert len(trials) == 6 and {t.spec.recipe["epochs"] for t in trials} == {4}
    assert {t.spec.hparams["alpha"] for t in trials if t.spec.method == "ms"} == {2.0}

    assert main(["config", "--show"]) == 0
    shown = capsys.readouterr().out
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in shown.splitlines() if line.startswith("  ")}
    for key in ExperimentConfig.yaml_keys():
        assert key in rows
    assert rows["embedding_dim"] == ["int", "512"] and rows["methods"] == ["list[str]", "required"]
    assert rows["seeds"] == ["list[int]", "[0]"]
    # a file without results_dir writes where run does without --results-dir: $DMLBENCH_RESULTS here
    assert rows["results_dir"] == ["str", os.environ["DMLBENCH_RESULTS"]]
    assert "trials_per_method" in rows and "role" not in rows and "eval_split" not in rows

    (tmp_path / "bad.yaml").write_text("methods: [ms]\nepochs: 1\n")
    assert main(["run", "--config", str(tmp_path / "bad.yaml"), "--executor", "local"]) == 2
    error = capsys.readouterr().err
    assert "unknown key(s) epochs; valid keys: backbone, data_root" in error and "config --show" in error
    assert len(error.strip().splitlines()) == 1
