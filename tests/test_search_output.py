"""What a user reads of a search and an evaluation: metrics in percent, as the leaderboards print them, and
the search's figures in the harness's own style (white axes, titled for what they show, tick labels that
never overprint), checked on a search run through the CLI and on the committed omniglot-cpu benchmark's studies."""
from __future__ import annotations

import contextlib
import io
import json
import re
from itertools import combinations
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.cli import main
from harness.core.store import TrialStore
from harness.reporting.search_plots import search_figures
from harness.scheduling.benchmark import BenchmarkManifest
from harness.scheduling.search import param_importances, search_space, trials_table

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "results" / "benchmarks" / "omniglot-cpu"
PERCENT = r"\d{1,3}\.\d\d %"


@pytest.fixture(scope="module")
def local_search(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("search")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["search", "--method", "amsoftmax", "--dataset", "digits", "--val-fraction", "0.4", "--executor",
                     "local", "--trials", "5", "--epochs", "1", "--final-seeds", "0", "--no-progress",
                     "--results-dir", str(out)])
    assert code == 0
    return out / "searches" / "digits.amsoftmax", stdout.getvalue()


def test_a_search_prints_its_validation_metric_in_percent(local_search):
    folder, stdout = local_search
    table = pd.read_csv(folder / "trials.csv")
    told = re.findall(rf"^search digits.amsoftmax trial (\d) \(\d of 5 done\): .* -> val_recall@1 ({PERCENT})$",
                      stdout, re.M)
    complete = table[table["state"] == "COMPLETE"]
    assert len(told) == len(complete) >= 3
    # numbered as trials.csv (and Optuna) number them; the fractions trials.csv holds, × 100
    assert sorted(told) == sorted((str(n), f"{100 * v:.2f} %") for n, v in zip(complete["number"],
                                                                                 complete["val_recall@1"]))
    best = json.loads((folder / "best.json").read_text())
    line = next(line for line in stdout.splitlines() if line.startswith("best of search digits.amsoftmax: "))
    assert line.startswith(f"best of search digits.amsoftmax: val_recall@1 {100 * best['value']:.2f} % "
                           f"(trial {best['trial_number']}) with scale=")
    assert all(len(digits) <= 4 for digits in re.findall(r"=\d*\.(\d+)", line))  # no 17-digit floats
    assert "5 trial(s) to run" in stdout  # the live table's "n of N" knows a search's planned trials
    # five trials are too few for importances and a contour: not drawn, and said so
    assert "no importances or contour plot: " in stdout and "fewer than the 10 they need" in stdout
    epochs = re.findall(r" epoch 1/1 loss \d+\.\d{4} val_recall@1 (\S+)$", stdout, re.M)
    assert epochs and all(re.fullmatch(r"\d{1,3}\.\d\d", e) for e in epochs)


def test_evaluate_prints_percent_like_the_leaderboard_and_json_the_recorded_fractions(tmp_path, capsys):
    code = main(["run", "--methods", "ms", "--dataset", "digits", "--epochs", "1", "--executor", "local",
                 "--no-progress", "--results-dir", str(tmp_path)])
    assert code == 0
    (path, record), = TrialStore(tmp_path).records()
    capsys.readouterr()
    assert main(["evaluate", str(path.parent)]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = dict(line.split(None, 1) for line in lines)
    assert list(shown) == ["recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi"]
    for name, text in shown.items():  # the record's numbers (recomputed from its embeddings), in percent
        assert re.fullmatch(PERCENT, text) and text == f"{100 * record.metrics[name]:.2f} %", name
    board = (tmp_path / "leaderboards" / "digits.md").read_text()
    assert shown["recall@1"].removesuffix(" %") in board  # as the leaderboard prints it
    assert main(["evaluate", str(path.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(record.metrics)


def drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()
    return fig


def overprinted_ticks(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of tick labels of one axis whose drawn text boxes overlap, over every visible axes."""
    renderer = fig.canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)
                      if t.get_visible() and t.get_text()]
            for a, b in combinations(labels, 2):
                if a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)):
                    clashes.append((a.get_text(), b.get_text()))
    return clashes


def check_style(figures: dict[str, Figure], title: str) -> None:
    assert set(figures) <= {"history", "importances", "contour", "scatter"} and {"history", "scatter"} <= set(figures)
    for name, fig in figures.items():
        drawn(fig)
        assert fig.get_suptitle().startswith(f"{title}: ") and "Plot" not in fig.get_suptitle(), name
        assert overprinted_ticks(fig) == [], name
        for ax in fig.axes:
            if ax.get_visible():  # the leaderboard figures' white axes, no ggplot grey and grid
                assert matplotlib.colors.to_hex(ax.get_facecolor()) == "#ffffff", name
                assert not any(line.get_visible() for line in ax.get_xgridlines()), name
    assert "against each searched hyperparameter" in figures["scatter"].get_suptitle()
    assert "validation R@1 (%)" in figures["scatter"].axes[0].get_ylabel()


def test_the_search_figures_are_written_in_the_harness_style(local_search):
    folder, _ = local_search
    assert {p.name for p in folder.glob("*.png")} == {"history.png", "scatter.png"}
    study = optuna.load_study(study_name="digits.amsoftmax", storage=f"sqlite:///{folder / 'study.db'}")
    space = search_space("amsoftmax", [])
    rc_before = dict(matplotlib.rcParams)
    figures = search_figures(trials_table(study, "val_recall@1"), "val_recall@1", space, "digits.amsoftmax",
                             param_importances(study, space))
    check_style(figures, "digits.amsoftmax")
    assert dict(matplotlib.rcParams) == rc_before  # no global style left behind
    points = figures["scatter"].axes[0].collections[0].get_offsets()
    complete = pd.read_csv(folder / "trials.csv").query("state == 'COMPLETE'")
    assert sorted(np.asarray(points)[:, 1]) == pytest.approx(sorted(100 * complete["val_recall@1"]))


@pytest.mark.parametrize("method", ["jrd", "ms", "softtriple", "triplet"])
def test_the_committed_benchmark_searches_draw_without_overprinted_ticks(method):
    """The committed studies (jrd's sigma ticks overprinted in Optuna's slice plot); softtriple: five
    hyperparameters, an integer one; triplet: a categorical one."""
    manifest = BenchmarkManifest.from_yaml(BENCHMARK / "manifest.yaml")
    study = optuna.load_study(study_name=method, storage=f"sqlite:///{BENCHMARK / 'study.db'}")
    space = manifest.space(method)
    figures = search_figures(trials_table(study, manifest.metric), manifest.metric, space, method,
                             param_importances(study, space))
    check_style(figures, method)
    if len(space) >= 2:  # the figures say how many trials they rest on
        n = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        assert n >= 10 and f"(from {n} completed trials)" in figures["importances"].get_suptitle()
        assert f"({n} completed trials)" in figures["contour"].get_suptitle()
    scatter = figures["scatter"]
    names = [ax.get_xlabel() for ax in scatter.axes if ax.get_visible() and ax.get_xlabel()]
    assert names == sorted(space)
    for ax in scatter.axes:
        if ax.get_xlabel() in ("alpha", "sigma", "la", "gamma", "beta"):  # log-uniform: a log axis
            assert ax.get_xscale() == "log"
