"""Command-line conventions of issue 25, item 5, through the real CLI: ``--version``, ``--plugins`` before or
after the subcommand, a plugin module that cannot be imported (one line, exit 2, before anything runs),
``--dashboard`` without Ray's dashboard (exit 2 with the install command), and one ``--scheduler`` with the
same values in ``search`` and ``benchmark``."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
PLUGIN = '''
from harness.plugins.method import Method, register_method


@register_method("announced")
class Announced(Method):
    """A plugin method that only has to be listed."""

    def loss(self, outputs, labels):
        return outputs["embedding"].sum() * 0
'''


def test_version_names_the_package_and_its_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dmlbench (harness) {harness.__version__}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_plugins_load_before_or_after_the_subcommand(where, tmp_path):
    (tmp_path / "announcing_plugin.py").write_text(PLUGIN)
    plugins = ["--plugins", "announcing_plugin"]
    argv = [*plugins, "list"] if where == "before" else ["list", *plugins]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "harness", *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "announced" in done.stdout and "A plugin method that only has to be listed." in done.stdout


def test_a_plugin_module_that_cannot_be_imported_is_one_line(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--plugins", "no_such_plugin_module", "--methods", "pixels", "--dataset", "digits",
                 "--executor", "local", "--results-dir", str(results)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "--plugins no_such_plugin_module: cannot import it" in error and "PYTHONPATH" in error
    assert not results.exists()  # refused before anything ran or was written


@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is not None, reason="Ray's dashboard is installed here")
def test_dashboard_without_rays_dashboard_names_the_install_command(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--dashboard", "--methods", "pixels", "--dataset", "digits", "--results-dir",
                 str(results)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and 'pip install -e ".[dashboard]"' in error
    assert not results.exists()  # refused as the flag is parsed: no results folder, no trial


def test_search_and_benchmark_name_their_scheduler_alike():
    parser = build_parser()
    for scheduler in ("fifo", "asha"):
        search = parser.parse_args(["search", "--method", "ms", "--scheduler", scheduler])
        benchmark = parser.parse_args(["benchmark", "--methods", "ms", "--scheduler", scheduler])
        assert search.scheduler == benchmark.scheduler == scheduler
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmark", "--methods", "ms", "--scheduler", "none"])
