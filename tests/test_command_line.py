"""Command-line conventions: ``--help`` imports no heavy library, every option states its default, and an option
shared by several commands takes the same values in each; the environment is read by the CLI only."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import runpy
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.commands.options import executor_from_args
from conftest import REPO

#: what ``--help`` must not import: each costs a large share of a second or more to import
HEAVY = ("torch", "torchvision", "timm", "ray", "optuna", "pandas", "matplotlib", "faiss", "sklearn", "scipy")

#: a fresh interpreter runs ``python -m harness ARGS`` and prints which heavy libraries it imported
PROBE = """
import json, runpy, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["harness", *json.loads(sys.argv[1])]
try:
    runpy.run_module("harness", run_name="__main__")
except SystemExit as exit_:
    code = exit_.code
print(json.dumps({"code": code, "heavy": sorted(m for m in heavy if m in sys.modules)}))
"""


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's options as ``--help`` shows them (not ``--help`` itself, ``--version`` or hidden ones)."""
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
            and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


@pytest.fixture
def parser(monkeypatch) -> argparse.ArgumentParser:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return build_parser()


@pytest.mark.parametrize("args", [["--help"], ["--version"],
                                  *([name, "--help"] for name in subcommands(build_parser()))], ids=" ".join)
def test_help_imports_no_heavy_library(args):
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}


def test_every_option_states_its_default(parser):
    """Each option's help ends with its default, ``(default: ...)`` (``off`` for a flag, ``none`` for no value,
    in words where the default depends on something else); where the default is a value, the text names it."""
    checked = 0
    for command, sub in {"": parser, **subcommands(parser)}.items():
        for action in options(sub):
            if action.required:
                assert "(required)" in action.help, f"{command} {action.option_strings[0]}"
                continue
            assert re.search(r"\bdefault: ", action.help), f"{command} {action.option_strings[0]}: {action.help}"
            value = action.default
            if value not in (None, False, [], "", argparse.SUPPRESS):
                shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
                assert re.search(rf"\bdefault: {re.escape(shown)}(\W|$)", action.help), \
                    f"{command} {action.option_strings[0]} defaults to {shown!r}, its help says: {action.help}"
            checked += 1
    assert checked > 100


def test_stated_experiment_defaults_are_the_config_defaults(parser):
    """Options given as None (so that a --config file can set them) state the default ExperimentConfig fills in."""
    from harness.experiment import ExperimentConfig

    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}
    helps = {a.dest: a.help for a in options(subcommands(parser)["run"])}
    for name in ("dataset", "embedding_dim", "val_fraction", "num_workers", "device"):
        assert re.search(rf"\(default: {re.escape(str(defaults[name]))}\W", helps[name]), (name, helps[name])


def test_an_option_in_several_commands_takes_the_same_values_in_each(parser):
    """Same name, same kind of value (type, choices, number of values, flag or not) in every command. The one
    difference: ``leaderboard``'s --dataset and --experiment filter by several names where the training
    commands take one."""
    seen: dict[str, dict[tuple, list[str]]] = defaultdict(lambda: defaultdict(list))
    for command, sub in subcommands(parser).items():
        for action in options(sub):
            several = command == "leaderboard" and action.dest in ("dataset", "experiment")
            kind = (type(action).__name__, None if several else action.type, tuple(action.choices or ()), action.nargs)
            seen[action.option_strings[0]][kind].append(command)
    differing = {option: dict(kinds) for option, kinds in seen.items() if len(kinds) > 1}
    assert differing == {}
    assert set(seen["--scheduler"]) == {("_StoreAction", None, ("fifo", "asha"), None)}
    assert len(next(iter(seen["--metric"].values()))) == 3                # search, sweep and benchmark


def test_search_and_sweep_take_the_same_metric_names(parser):
    """``--metric recall@1`` in search, benchmark and sweep alike (search scores it on the validation classes;
    its older spelling val_recall@1 still works)."""
    from harness.commands.options import validation_objective

    for command in ("search", "benchmark", "sweep"):
        args = parser.parse_args([command, "--method", "ms", "--param", "alpha=1"] if command == "sweep" else
                                 [command, "--method", "ms"] if command == "search" else [command])
        assert args.metric == "recall@1"
    assert validation_objective("recall@1") == validation_objective("val_recall@1") == "val_recall@1"


def test_ray_address_is_read_by_the_command_line_only(monkeypatch):
    """``RAY_ADDRESS`` is ``--address``'s default; below the CLI an address is given, never read from the
    environment (a Python caller that gives none starts its own Ray)."""
    from harness.scheduling import ray_compat

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    args = build_parser().parse_args(["run"])
    assert args.address == "10.0.0.7:6379" and not executor_from_args(args).runs_here
    assert build_parser().parse_args(["run", "--address", "auto"]).address == "auto"
    assert not ray_compat.is_address_given(None)
    monkeypatch.delenv("RAY_ADDRESS")
    assert executor_from_args(build_parser().parse_args(["run"])).runs_here


def test_leaderboard_in_a_fresh_process_writes_the_board_run_wrote(tmp_path):
    """``leaderboard`` alone (a new interpreter, nothing imported before) knows the optional metrics' labels and
    units as ``run`` does: its board of a run with ``utilization`` is byte for byte the one the run wrote."""
    assert main(["run", "--methods", "pixels", "--extra-metrics", "utilization", "--dataset", "digits", "--epochs", "1",
                 "--no-progress", "--executor", "local", "--results-dir", str(tmp_path)]) == 0
    written = (tmp_path / "leaderboards" / "digits.md").read_text()
    assert "u(Q)" in written
    (tmp_path / "leaderboards" / "digits.md").unlink()
    subprocess.run([sys.executable, "-m", "harness", "leaderboard", "--results-dir", str(tmp_path)], cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    assert (tmp_path / "leaderboards" / "digits.md").read_text() == written


#: what the commands that do not train, and every input error, must not import (issue 33: an answer in under a
#: second without torch, timm or Ray, nor the reports' pandas, SciPy and matplotlib); Optuna (a fifth of a second)
#: is allowed where a search is planned
TRAINING_LIBRARIES = ("torch", "torchvision", "timm", "ray", "pytorch_metric_learning", "faiss", "sklearn", "FrEIA",
                      "pandas", "matplotlib", "scipy")

#: the plugin loss that benchmarks/cli_startup.py times (pytorch-metric-learning's circle loss, imported where
#: the loss is built), read from that script: the test and the benchmark time one file
CIRCLE_PLUGIN = runpy.run_path(str(REPO / "benchmarks" / "cli_startup.py"), run_name="cli_startup")["CIRCLE_PLUGIN"]


@pytest.fixture(scope="module")
def timm_names_cache(tmp_path_factory) -> Path:
    """A cache folder (``$DMLBENCH_CACHE``) holding timm's model names: the first look-up under this timm version
    (``list`` here, in a fresh interpreter) imports timm once and writes them; later commands read the file."""
    from importlib.metadata import version

    cache = tmp_path_factory.mktemp("cache")
    subprocess.run([sys.executable, "-m", "harness", "list"], cwd=REPO, env={**os.environ, "DMLBENCH_CACHE": str(cache)},
                   capture_output=True, timeout=300, check=True)
    names = (cache / f"timm-{version('timm')}-models.txt").read_text().split()
    assert "resnet50" in names and len(names) > 1000
    return cache


@pytest.mark.parametrize("args, error", [
    (["list"], None),
    (["config", "--show"], None),
    (["run", "--methods", "circel"], "unknown method 'circel'"),
    (["run", "--plugins", "my_circle", "--methods", "circel"], "valid methods: amsoftmax, arcface, circle,"),
    (["run", "--plugins", "my_circle", "--methods", "circle", "--hparam", "circle.m=2"],
     "hyperparameter circle.m: must be in [0, 1], got 2"),
    (["run", "--methods", "ms", "--hparam", "ms.zzz=2"], "method 'ms' has no hyperparameter zzz"),
    (["run", "--methods", "ms", "--dataset", "omniglot29"], "unknown dataset 'omniglot29'"),
    (["run", "--methods", "ms", "--backbone", "resnet5"], "unknown backbone 'resnet5'"),
    (["run", "--methods", "ms", "--recipe", "cpuu"], "unknown recipe 'cpuu'"),
    (["search", "--method", "circel"], "unknown method 'circel'"),
    (["search", "--method", "ms", "--space", "ms.zzz"], "zzz"),
    (["sweep", "--method", "ms", "--param", "zzz=1,2"], "method 'ms' has no hyperparameter zzz"),
    (["sweep", "--method", "ms", "--param", "alpha=1,-1"], "must be > 0, got -1"),
    (["benchmark", "--methods", "ms,circel"], "unknown method 'circel'"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_what_does_not_train_imports_no_training_library(timm_names_cache, tmp_path, args, error):
    """``list``, ``config --show`` and every input error of the training commands answer from the registries'
    declarations: no torch, timm, Ray, scikit-learn or pytorch-metric-learning is imported (each costs seconds),
    nor the reports' pandas, SciPy or matplotlib. ``list`` and a backbone typo read timm's names from the cache
    (:func:`timm_names_cache`)."""
    (tmp_path / "my_circle.py").write_text(CIRCLE_PLUGIN)
    env = {**os.environ, "DMLBENCH_CACHE": str(timm_names_cache),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(TRAINING_LIBRARIES)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 0 if error is None else 2, "heavy": []}, out.stderr
    if error is not None:
        assert error in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_warning_prints_as_one_line_without_file_or_source(tmp_path):
    """A warning during a command (here a ``--plugins`` module's) prints as ``warning: <message> (<category>)``
    on one line, not in Python's raw format with file, line number and source line (issue 34 item 19)."""
    (tmp_path / "warns.py").write_text('import warnings\n\nwarnings.warn("this plugin is old;\\n  use the new one")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "harness", "--plugins", "warns", "--version"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stderr == "warning: this plugin is old; use the new one (UserWarning)\n"
