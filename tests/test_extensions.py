"""Each extension is one file: a loss, a dataset, an executor, an optimizer and a metric, all added by
ONE plugin module written to a temporary folder and loaded with ``--plugins``, then run through the
real CLI (a fresh process, so the registrations do not leak into other tests). No harness file changes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.core.store import TrialStore

PLUGIN = '''
"""A third party's plugin: one file, five extensions."""
import numpy as np
import torch

from harness.core.metrics import register_metric
from harness.plugins.data.base import register_dataset
from harness.plugins.data.common import split_at_class
from harness.plugins.method import Method, register_method
from harness.plugins.optimizers import register_optimizer
from harness.scheduling.executor_registry import register_executor
from harness.scheduling.executors import LocalExecutor


@register_method("centre_pull")
class CentrePull(Method):
    """Pulls each embedding towards its batch class mean and pushes the means apart (a toy loss)."""

    family = "proxy"

    def loss(self, outputs, labels):
        z = outputs["embedding"].float()
        classes, index = labels.unique(return_inverse=True)
        means = torch.zeros(len(classes), z.shape[1]).index_add_(0, index, z) / torch.bincount(index)[:, None]
        pull = (z - means[index]).pow(2).sum(1).mean()
        push = torch.relu(1.0 - torch.cdist(means, means)).triu(1).sum()
        return pull + push


@register_dataset("stripes", channels=1, needs_root=False, default_backbone="small_cnn", default_recipe="digits")
def load_stripes(root=None):
    """Eight classes of 8x8 stripe patterns with noise: classes 0-4 train, 5-7 test."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 24)
    rows = np.arange(8)[None, :, None]
    images = ((rows * (labels[:, None, None] + 1)) % 3 == 0) * 200 + rng.integers(0, 55, (len(labels), 8, 8))
    return split_at_class(images.astype(np.uint8), labels, 4, "stripes")


@register_executor("inline")
def inline(options):
    """The local executor, announcing itself (a cluster's would submit jobs here)."""
    print(f"inline executor: trials run in process {__import__('os').getpid()}", flush=True)
    return LocalExecutor(options.store, progress=False, listeners=options.listeners)


@register_optimizer("sgd")
def sgd(groups, recipe):
    return torch.optim.SGD(groups, momentum=0.9)


@register_metric("spread", label="Spread", percent=False)
def spread(inputs):
    """The mean per-dimension standard deviation of the query embeddings."""
    return float(torch.as_tensor(inputs.query).float().std(0).mean())
'''


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "my_extensions.py").write_text(PLUGIN)
    results = folder / "results"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(Path(__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "harness", "--plugins", "my_extensions", "run", "--methods", "centre_pull",
               "--dataset", "stripes", "--executor", "inline", "--recipe-set", "optimizer=sgd",
               "--extra-metrics", "spread", "--epochs", "2", "--seeds", "0,1", "--no-progress",
               "--results-dir", str(results)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    records = [r for _, r in TrialStore(results).records()]
    return done.stdout, records, results


def test_a_plugin_loss_trains_and_its_family_colours_its_row(plugin_run):
    _, records, results = plugin_run
    assert [r.spec.method for r in records] == ["centre_pull", "centre_pull"]
    assert all(r.ok and len(r.history) == 2 and all(0 < e["loss"] < 100 for e in r.history) for r in records)
    assert {r.placement.method_family for r in records} == {"proxy"}  # the record carries the declared family
    assert set(pd.read_csv(results / "leaderboards" / "stripes.long.csv")["family"]) == {"proxy"}


def test_a_plugin_dataset_is_split_by_class(plugin_run):
    _, records, results = plugin_run
    assert {r.spec.dataset for r in records} == {"stripes"}
    assert all(0.0 <= r.metrics["recall@1"] <= 1.0 for r in records)
    assert (results / "leaderboards" / "stripes.csv").exists()


def test_a_plugin_executor_runs_the_trials(plugin_run):
    stdout, records, _ = plugin_run
    assert stdout.count("inline executor: trials run in process") == 1 and len(records) == 2


def test_a_plugin_optimizer_trains_the_recipe(plugin_run):
    _, records, _ = plugin_run
    assert {r.spec.recipe["optimizer"] for r in records} == {"sgd"}


def test_a_plugin_metric_is_recorded_and_shown_under_its_label(plugin_run):
    _, records, results = plugin_run
    assert all(r.metrics["spread"] > 0 for r in records)
    board = pd.read_csv(results / "leaderboards" / "stripes.csv")
    markdown = (results / "leaderboards" / "stripes.md").read_text()
    assert "Spread" in markdown and f"{board['spread_mean'][0]:.4f}" in markdown  # as is, not in percent
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert header.index("NMI") < header.index("Spread")  # after the evaluation's own metrics


def test_unregistered_names_are_refused_with_the_registered_ones(tmp_path, capsys):
    from harness.cli import main

    assert main(["run", "--methods", "pixels", "--dataset", "digits", "--executor", "local", "--recipe-set",
                 "optimizer=sgd", "--results-dir", str(tmp_path / "r")]) == 2
    assert "unknown optimizer 'sgd'; valid optimizers: adam, adamw, radam" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--methods", "pixels", "--executor", "slurm"])
    error = capsys.readouterr().err
    assert "invalid choice: 'slurm'" in error and "local" in error and "ray" in error
    assert not (tmp_path / "r").exists()
