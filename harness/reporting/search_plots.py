"""A hyperparameter search's figures, in the style of the leaderboard figures (:mod:`harness.reporting.plots`):
white axes, the Okabe–Ito colours, the metric in percent where it is declared so, byte-stable PNGs.

They are a pure function of the search's ``trials.csv`` (one row per trial: ``number``, ``state``, the
objective's column, one column per searched hyperparameter), the searched space and, from two
hyperparameters on, their importances (computed by Optuna from the study):

* ``history.png``: the objective of each completed trial by trial number, and the best so far;
* ``importances.png``: each hyperparameter's importance for the objective;
* ``contour.png``: the objective over the two most important hyperparameters (filled contours of the
  completed trials' values, linearly interpolated between them, with the trials as dots; dots only where
  one of them is categorical);
* ``scatter.png``: the objective against each hyperparameter, one panel each, dots coloured by trial number.

A log-uniform hyperparameter gets a logarithmic axis with labelled decades (at most five; plain numbers
within one decade), a numeric one at most four ticks, a categorical one a slanted label per choice, so that
tick labels do not overprint.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.tri import Triangulation

from harness.core.hparams import Choice, Distribution, IntUniform, LogUniform
from harness.core.metrics import base_metric, metric_label, metric_scale
from harness.reporting.plots import FIGSIZE, save

POINT, BEST, BAR = "#0072B2", "#D55E00", "#009E73"  # Okabe–Ito blue, vermillion, bluish green
MAX_TICKS = 4


def _objective(metric: str, unit: bool = True) -> str:
    """``val_recall@1`` → ``validation R@1 (%)`` (without ``unit``: ``validation R@1``)."""
    split, name = base_metric(metric)
    unit = " (%)" if unit and metric_scale(metric) == 100 else ""
    return f"{'validation ' if split == 'val' else ''}{metric_label(name)}{unit}"


def _completed(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    done = trials[(trials["state"] == "COMPLETE") & trials[metric].notna()]
    return done.assign(shown=done[metric].astype(float) * metric_scale(metric))


def _positions(values: pd.Series, dist: Distribution) -> np.ndarray:
    """Where a hyperparameter's values sit on its axis: the value, or a choice's index."""
    if isinstance(dist, Choice):
        index = {str(option): i for i, option in enumerate(dist.options)}
        return values.map(lambda v: index.get(str(v), np.nan)).to_numpy(dtype=float)
    return values.to_numpy(dtype=float)


def _as_drawn(positions: np.ndarray, dist: Distribution) -> np.ndarray:
    """Positions as the axis spaces them: log10 on a log axis."""
    return np.log10(positions) if isinstance(dist, LogUniform) else positions


def _hparam_axis(ax: Axes, name: str, dist: Distribution, axis: str = "x") -> None:
    """Label ``name``'s axis with ticks that do not overprint: log decades (plain numbers within one decade),
    at most four numbers (integers for an integer hyperparameter), or the choices, slanted; the range is the
    searched one with a margin, so that a trial at a bound is drawn whole."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    set_label, set_scale, set_limits = ((ax.set_xlabel, ax.set_xscale, ax.set_xlim) if axis == "x"
                                        else (ax.set_ylabel, ax.set_yscale, ax.set_ylim))
    set_label(name)
    if isinstance(dist, Choice):
        target.set_ticks(range(len(dist.options)), [str(o) for o in dist.options])
        if axis == "x":
            ax.tick_params(axis="x", labelrotation=30)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
        set_limits(-0.5, len(dist.options) - 0.5)
    elif isinstance(dist, LogUniform):
        set_scale("log")
        if math.log10(dist.high / dist.low) >= 1:
            target.set_major_locator(LogLocator(base=10, numticks=MAX_TICKS + 1))
        else:  # within a decade: a few plain numbers
            target.set_major_locator(MaxNLocator(MAX_TICKS - 1))
            target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        target.set_minor_formatter(NullFormatter())
        pad = (dist.high / dist.low) ** 0.04
        set_limits(dist.low / pad, dist.high * pad)
    else:
        target.set_major_locator(MaxNLocator(MAX_TICKS, integer=isinstance(dist, IntUniform)))
        pad = 0.04 * (dist.high - dist.low) or 0.5
        set_limits(dist.low - pad, dist.high + pad)


def history_figure(trials: pd.DataFrame, metric: str, title: str) -> Figure:
    done = _completed(trials, metric).sort_values("number")
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(done["number"], done["shown"], "o", color=POINT, label="completed trial")
    ax.step(done["number"], done["shown"].cummax(), where="post", color=BEST, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"trial number ({len(done)} of {len(trials)} completed)")
    ax.set_ylabel(_objective(metric))
    fig.suptitle(f"{title}: {_objective(metric)} of each search trial", fontsize="medium")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    return fig


def importances_figure(importances: Mapping[str, float], metric: str, title: str, n_trials: int) -> Figure:
    """Each hyperparameter's importance, estimated from ``n_trials`` completed trials (said in the title)."""
    names = sorted(importances, key=lambda n: importances[n])
    fig = Figure(figsize=(FIGSIZE[0], 1.5 + 0.35 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color=BAR)
    for i, name in enumerate(names):
        ax.annotate(f"{importances[name]:.2f}", (importances[name], i), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize="x-small", color="0.25")
    ax.set_xlim(0, 1.1 * max(max(importances.values()), 1e-9))
    ax.set_xlabel(f"fANOVA importance for {_objective(metric, unit=False)} (the importances sum to 1)")
    fig.suptitle(f"{title}: which hyperparameters matter (from {n_trials} completed trials)", fontsize="medium")
    return fig


def contour_figure(trials: pd.DataFrame, metric: str, space: Mapping[str, Distribution], params: list[str],
                   title: str) -> Figure:
    """The objective over ``params`` (two): filled contours where the completed trials span an area."""
    done = _completed(trials, metric)
    x_name, y_name = params
    x, y = _positions(done[x_name], space[x_name]), _positions(done[y_name], space[y_name])
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    filled = None
    if not any(isinstance(space[n], Choice) for n in params):  # no values between two choices: dots only
        try:  # triangulated as the axes are drawn (log10 on a log axis): straight edges on screen
            triangles = Triangulation(_as_drawn(x, space[x_name]), _as_drawn(y, space[y_name])).triangles
            filled = ax.tricontourf(Triangulation(x, y, triangles), done["shown"], levels=8, cmap="viridis",
                                    alpha=0.8)
        except (ValueError, RuntimeError):  # fewer than three trials, or all on one line: the dots only
            filled = None
    dots = ax.scatter(x, y, c=done["shown"], cmap="viridis", edgecolors="white", linewidths=0.8, zorder=3)
    fig.colorbar(filled if filled is not None else dots, ax=ax, label=_objective(metric))
    _hparam_axis(ax, x_name, space[x_name], "x")
    _hparam_axis(ax, y_name, space[y_name], "y")
    fig.suptitle(f"{title}: {_objective(metric)} over its two most important hyperparameters\n"
                 f"({len(done)} completed trials)", fontsize="medium")
    return fig


def scatter_figure(trials: pd.DataFrame, metric: str, space: Mapping[str, Distribution], title: str) -> Figure:
    """The objective against each hyperparameter (a panel each, at most three a row), coloured by trial number."""
    done = _completed(trials, metric)
    names = sorted(space)
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(1.6 + 2.6 * cols, 1.2 + 2.6 * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, sharey=True, squeeze=False).flat)
    dots = None
    for ax, name in zip(axes, names):
        dots = ax.scatter(_positions(done[name], space[name]), done["shown"], c=done["number"], cmap="viridis",
                          vmin=0, vmax=max(int(trials["number"].max()), 1), edgecolors="0.3", linewidths=0.5)
        _hparam_axis(ax, name, space[name])
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel(_objective(metric))
    fig.colorbar(dots, ax=axes[:len(names)], label="trial number")
    fig.suptitle(f"{title}: {_objective(metric)} against each searched hyperparameter", fontsize="medium")
    return fig


def search_figures(trials: pd.DataFrame, metric: str, space: Mapping[str, Distribution], title: str,
                   importances: Mapping[str, float] | None = None) -> dict[str, Figure]:
    """The search's figures by name, those its trials allow: none before a trial completes; importances and
    contour from two hyperparameters with their importances (which the caller estimates only from enough
    completed trials: :data:`harness.scheduling.search.MIN_TRIALS_FOR_IMPORTANCES`)."""
    if _completed(trials, metric).empty:
        return {}
    figures = {"history": history_figure(trials, metric, title)}
    if importances and len(space) >= 2:
        ranked = sorted(importances, key=lambda n: -importances[n])
        figures["importances"] = importances_figure(importances, metric, title, len(_completed(trials, metric)))
        figures["contour"] = contour_figure(trials, metric, space, ranked[:2], title)
    figures["scatter"] = scatter_figure(trials, metric, space, title)
    return figures


def search_plots(trials: pd.DataFrame, metric: str, space: Mapping[str, Distribution], folder: Path, title: str,
                 importances: Mapping[str, float] | None = None) -> list[Path]:
    """Write :func:`search_figures` into ``folder`` as ``<name>.png`` and return their paths."""
    return [save(fig, folder / f"{name}.png", ("png",))[0]
            for name, fig in search_figures(trials, metric, space, title, importances).items()]
