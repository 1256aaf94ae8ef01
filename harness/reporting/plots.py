"""Leaderboard figures a paper can print: PNG (byte-stable: fixed size, dpi, no metadata) and PDF (vector).

``<leaderboard>.recall_at_1.{png,pdf}``: Recall@1 per group as a dot with its 95% t-interval, one row per
group sorted by mean (best on top), the axis zoomed to the data, the mean printed at the right.
``<leaderboard>.recall_at_k.{png,pdf}``: one such panel per K, rows in the Recall@1 order.
In both, a group's colour and marker are its method's family (``Method.family``, carried by the
records into the long table's ``family`` column; :data:`FAMILY_STYLES`), the
family legend sits outside the axes, and the baseline (``--baseline``) is labelled and drawn as a
dashed line at its mean. :func:`sensitivity_plot`: one metric against one hyperparameter.

The figures are a pure function of the long table (``<leaderboard>.long.csv``), so they can be
redrawn from a committed table without the records (``python -m harness.reporting.redraw``).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.core.metrics import metric_label, metric_scale
from harness.core.store import atomic_write_binary
from harness.reporting.tables import (GROUP_KEYS, distinct_labels, diverged_suffix, full_group_label, recall_ks,
                                      records_frame)
from harness.reporting.stats import summarize

#: how a figure's file is written: ``write(path, fill)``, ``fill`` writing the bytes into a binary file object
WriteBinary = Callable[[Path, Callable[[Any], None]], None]

FIGSIZE = (6.4, 4.0)
DPI = 120
PLOT_FORMATS = ("png", "pdf")
#: a leaderboard's figures, ``<name>.<figure>.<format>`` (those its metrics allow)
FIGURES = ("recall_at_k", "recall_at_1")

#: colour (colour-blind-safe Okabe–Ito) and marker (for grey-scale print) of each family, in legend order
FAMILY_STYLES = {
    "pair": ("#0072B2", "o"), "proxy": ("#E69F00", "s"), "classification": ("#009E73", "^"),
    "JRD variants": ("#CC79A7", "D"), "floor": ("#555555", "X"), "other": ("#D55E00", "v"),
}


def family_style(family: str) -> tuple[str, str]:
    """The colour and marker of ``family``; a family without a style of its own is drawn as ``other``."""
    return FAMILY_STYLES.get(family, FAMILY_STYLES["other"])


def group_families(long: pd.DataFrame) -> dict[tuple, str]:
    """Each group's method family, as its records declared it (a long table without the column: ``other``)."""
    if "family" not in long.columns:
        return {}
    return {tuple(row[GROUP_KEYS]): row["family"] for _, row in long.drop_duplicates(GROUP_KEYS).iterrows()}


def save(fig: Figure, path: str | Path, formats: Sequence[str] = PLOT_FORMATS,
         write: WriteBinary = atomic_write_binary) -> list[Path]:
    """Write ``fig`` as ``path`` with each of ``formats`` as suffix (atomically, through ``write``: e.g. an
    :class:`~harness.core.store.AtomicFiles`'s, to land with other files), without creation metadata, so
    equal figures give equal bytes; return the paths written."""
    path = Path(path)
    FigureCanvasAgg(fig)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        metadata = {"Software": None} if fmt == "png" else {"Creator": None, "Producer": None, "CreationDate": None}
        write(target, lambda f: fig.savefig(f, format=fmt, dpi=DPI, metadata=metadata))
        written.append(target)
    return written


def _labels(long: pd.DataFrame) -> dict[tuple, str]:
    """A label per group (:func:`distinct_labels`: the tables give the hyperparameters), with the seeds
    left out of its statistics where there are any (``jrd_intra (1/3 diverged)``: a row is
    drawn from the seeds that count, never from a diverged one)."""
    labels = distinct_labels(list(long.groupby(GROUP_KEYS, sort=True).groups))
    if "n_diverged" not in long:
        return labels
    counts = long.drop_duplicates(GROUP_KEYS).set_index(GROUP_KEYS)
    return {key: label + diverged_suffix(*(int(counts.loc[key, c]) for c in ("n_seeds", "n_diverged", "n_failed")))
            for key, label in labels.items()}


def _metric_rows(long: pd.DataFrame, metric: str, keys: list[tuple]) -> pd.DataFrame:
    """``mean``, ``ci_low``, ``ci_high`` in percent of ``metric`` per group, in the order of ``keys``."""
    rows = long[long["metric"] == metric].set_index(GROUP_KEYS).reindex(keys)
    return 100 * rows[["mean", "ci_low", "ci_high"]].astype(float)


def _ordered_groups(long: pd.DataFrame, metric: str) -> list[tuple]:
    """Group keys by ``metric``'s mean, best first (groups without a value last, by label)."""
    labels = _labels(long)
    means = _metric_rows(long, metric, list(labels))["mean"]
    return sorted(labels, key=lambda k: (math.isnan(means[k]), -np.nan_to_num(means[k]), labels[k]))


def _baselines(long: pd.DataFrame) -> set[str]:
    """Full labels of the baseline groups named in the long table's ``baseline`` column."""
    return set(long["baseline"].dropna().astype(str)) if "baseline" in long else set()


def _far_from_the_rest(means: pd.Series) -> pd.Series:
    """Tukey's fences: True for a mean below Q1 − 1.5·IQR or above Q3 + 1.5·IQR of the means (needs 4 or more)."""
    finite = means.dropna()
    if len(finite) < 4:
        return pd.Series(False, index=means.index)
    q1, q3 = np.percentile(finite, [25, 75])
    fence = 1.5 * (q3 - q1)
    return (means < q1 - fence) | (means > q3 + fence)


def _zoomed_limits(stats: pd.DataFrame) -> tuple[float, float]:
    """An axis range (percent) holding every mean and interval, padded by 6% of its span (at least 1 point)."""
    values = stats.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 100.0
    low, high = float(values.min()), float(values.max())
    pad = max(0.06 * (high - low), 1.0)
    return max(low - pad, 0.0), min(high + pad, 100.0)


def _dot_panel(ax: Axes, stats: pd.DataFrame, keys: list[tuple], baseline: tuple | None,
               families: dict[tuple, str] | None = None) -> None:
    """One dot per group (row ``i`` from the top) with its interval, coloured by family; the baseline's mean dashed.

    The axis is zoomed to the groups within Tukey's fences (:func:`_far_from_the_rest`), so that a
    floor or a collapsed method far below the others does not flatten their differences; such a
    group whose mean falls outside the zoomed axis is drawn as an arrow at the edge it lies beyond,
    with its mean written beside it (one inside the axis is drawn as every other group).
    """
    stats = stats.loc[keys]
    low, high = _zoomed_limits(stats[~_far_from_the_rest(stats["mean"])])
    far = (stats["mean"] < low) | (stats["mean"] > high)
    y = np.arange(len(keys))
    for i, key in enumerate(keys):
        row = stats.loc[key]
        if math.isnan(row["mean"]):
            continue
        colour, marker = family_style((families or {}).get(key, "other"))
        if far[key]:
            below = row["mean"] < low
            ax.plot([low if below else high], [y[i]], marker="<" if below else ">", color=colour, markersize=7,
                    clip_on=False)
            ax.annotate(f"{row['mean']:.1f}", (low if below else high, y[i]), xytext=(6 if below else -6, 0),
                        textcoords="offset points", ha="left" if below else "right", va="center",
                        fontsize="x-small", color=colour)
            continue
        err = [[np.nan_to_num(row["mean"] - row["ci_low"])], [np.nan_to_num(row["ci_high"] - row["mean"])]]
        ax.errorbar([row["mean"]], [y[i]], xerr=err, fmt=marker, color=colour, ecolor=colour, capsize=2.5,
                    markersize=5, elinewidth=1.2)
    if baseline is not None and not math.isnan(stats.loc[baseline, "mean"]) and not far[baseline]:
        ax.axvline(stats.loc[baseline, "mean"], color="0.35", linestyle="--", linewidth=0.9, zorder=0)
    ax.set_xlim(low, high)
    ax.set_ylim(len(keys) - 0.5, -0.5)
    ax.grid(axis="x", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)


def _row_labels(ax: Axes, keys: list[tuple], labels: dict[tuple, str], baseline: tuple | None) -> None:
    ax.set_yticks(np.arange(len(keys)), [labels[k] + (" (baseline)" if k == baseline else "") for k in keys],
                  fontsize="small")
    for key, tick in zip(keys, ax.get_yticklabels()):
        if key == baseline:
            tick.set_fontweight("bold")


def _family_legend(fig: Figure, keys: list[tuple], baseline: tuple | None, families: dict[tuple, str]) -> None:
    """The families present (and the baseline line), outside the axes, below them."""
    present = {family if family in FAMILY_STYLES else "other" for family in (families.get(k, "other") for k in keys)}
    handles = [Line2D([], [], color=c, marker=m, linestyle="none", label=f) for f, (c, m) in FAMILY_STYLES.items()
               if f in present]
    if baseline is not None:
        handles.append(Line2D([], [], color="0.35", linestyle="--", linewidth=0.9, label="baseline mean"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize="small",
               frameon=False)


def _rows_figure(n_rows: int, width: float, n_panels: int = 1) -> tuple[Figure, list[Axes]]:
    height = 1.5 + 0.24 * max(n_rows, 3)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, n_panels, sharey=True, squeeze=False)[0]
    return fig, list(axes)


def _baseline_key(long: pd.DataFrame, keys: list[tuple]) -> tuple | None:
    names = _baselines(long)
    found = [k for k in keys if full_group_label(k) in names]
    return found[0] if len(found) == 1 else None


def _suptitle(fig: Figure, text: str) -> None:
    """A figure's title, wrapped to the figure's width (a board's title may name what its rows do not share)."""
    fig.suptitle(textwrap.fill(text, width=max(40, int(fig.get_figwidth() * 12))), fontsize="medium")


def recall_at_1_plot(long: pd.DataFrame, title: str, path: str | Path,
                     formats: Sequence[str] = PLOT_FORMATS, write: WriteBinary = atomic_write_binary) -> list[Path]:
    """Recall@1 (%) per group of one leaderboard's long table (titled ``title``): mean and 95% t-interval,
    sorted by mean."""
    labels = _labels(long)
    keys = _ordered_groups(long, "recall@1")
    stats = _metric_rows(long, "recall@1", keys)
    baseline = _baseline_key(long, keys)
    fig, (ax,) = _rows_figure(len(keys), 7.2)
    families = group_families(long)
    _dot_panel(ax, stats, keys, baseline, families)
    _row_labels(ax, keys, labels, baseline)
    for i, key in enumerate(keys):
        mean = stats.loc[key, "mean"]
        ax.annotate("—" if math.isnan(mean) else f"{mean:.1f}", (1.01, i), xycoords=("axes fraction", "data"),
                    va="center", fontsize="x-small", color="0.25")
    ax.set_xlabel("Recall@1 (%)")  # short: long row labels leave the axes narrow, and a long label ran off the figure
    _suptitle(fig, f"{title}: Recall@1 on the test classes, mean and 95% t-interval over seeds")
    _family_legend(fig, keys, baseline, families)
    return save(fig, path, formats, write)


def recall_at_k_plot(long: pd.DataFrame, title: str, path: str | Path,
                     formats: Sequence[str] = PLOT_FORMATS, write: WriteBinary = atomic_write_binary) -> list[Path]:
    """Recall@K (%) per group, one panel per K (each zoomed to its data), rows sorted by Recall@1 (else the first K)."""
    ks = recall_ks(long["metric"].unique())
    labels = _labels(long)
    keys = _ordered_groups(long, f"recall@{1 if 1 in ks else ks[0]}")
    baseline = _baseline_key(long, keys)
    fig, axes = _rows_figure(len(keys), 2.6 + 1.9 * len(ks), len(ks))
    families = group_families(long)
    for ax, k in zip(axes, ks):
        _dot_panel(ax, _metric_rows(long, f"recall@{k}", keys), keys, baseline, families)
        ax.set_title(f"R@{k}", fontsize="small")
        ax.tick_params(axis="x", labelsize="x-small")
    _row_labels(axes[0], keys, labels, baseline)
    _suptitle(fig, f"{title}: Recall@K (%) on the test classes, mean and 95% t-interval over seeds; rows by Recall@1")
    _family_legend(fig, keys, baseline, families)
    return save(fig, path, formats, write)


def leaderboard_plots(long: pd.DataFrame, name: str, out_dir: str | Path,
                      formats: Sequence[str] = PLOT_FORMATS, title: str | None = None,
                      write: WriteBinary = atomic_write_binary) -> list[Path]:
    """The figures of one leaderboard's long table beside its CSVs as ``<name>.<figure>.<format>`` (those
    its metrics allow), in ``formats``, titled ``title`` (default ``name``), each file written by ``write``."""
    out_dir, title = Path(out_dir), title or name
    metrics = set(long["metric"])
    written = []
    at_k, at_1 = FIGURES
    if recall_ks(metrics):
        written += recall_at_k_plot(long, title, out_dir / f"{name}.{at_k}.png", formats, write)
    if "recall@1" in metrics:
        written += recall_at_1_plot(long, title, out_dir / f"{name}.{at_1}.png", formats, write)
    return written


def sweep_points(records: Iterable[Any], method: str, param: str, metric: str = "recall@1",
                 eval_split: str = "test") -> pd.DataFrame:
    """One row per (dataset, value of ``param``): ``n``, ``mean`` and ``std`` of ``metric`` over seeds.

    From ``(path, record)`` pairs as :func:`records_frame` takes them: the finished ``eval_split`` trials
    of ``method``, each at the value of ``param`` in its resolved hyperparameters (``spec.hparams``,
    so a trial at the declared default counts too, though its ``hparams_changed`` is empty).
    """
    records = list(records)
    swept = {record.trial_id: record.spec.hparams.get(param) for _, record in records}
    frame = records_frame(records)
    if frame.empty or metric not in frame.columns:
        raise ValueError(f"no trial records with metric {metric!r}")
    trials = frame[(frame["method"] == method) & (frame["status"] == "ok") & (frame["eval_split"] == eval_split)]
    trials = trials.assign(x=trials["trial_id"].map(swept)).dropna(subset=["x", metric])
    if trials.empty:
        raise ValueError(f"no finished {eval_split}-split {method!r} trials that set {param!r} and report {metric!r}")
    rows = [{"dataset": dataset, "x": float(x), **vars(summarize(g[metric].to_numpy(dtype=float)))}
            for (dataset, x), g in trials.assign(x=trials["x"].astype(float)).groupby(["dataset", "x"], sort=True)]
    return pd.DataFrame(rows)[["dataset", "x", "n", "mean", "std"]]


def sensitivity_plot(records: Iterable[Any], method: str, param: str, path: str | Path,
                     metric: str = "recall@1", eval_split: str = "test", log: bool = False) -> Path:
    """Write :func:`sensitivity_figure` to ``path`` (PNG) and a PDF beside it; return ``path``."""
    return save(sensitivity_figure(records, method, param, metric, eval_split, log), path)[0]


def sensitivity_figure(records: Iterable[Any], method: str, param: str, metric: str = "recall@1",
                       eval_split: str = "test", log: bool = False) -> Figure:
    """``metric`` (in percent where declared so) against hyperparameter ``param`` of ``method``, mean ± std over seeds, one line per dataset.

    Pass the records of one sweep (one recipe, backbone and dimension); every value it ran is plotted
    (:func:`sweep_points`); the x axis is logarithmic where ``param`` is log-distributed (``log``: its
    declared search distribution is log-uniform) or its values are positive and span two decades or more;
    a log axis that must show 0 (an ablation: α = 0, 0.01, 0.1, 1) is linear from 0 to the smallest
    positive value and logarithmic above it.
    """
    points = sweep_points(records, method, param, metric, eval_split)
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    for dataset, part in points.groupby("dataset", sort=True):
        scale = metric_scale(metric)
        ax.errorbar(part["x"], scale * part["mean"], yerr=scale * part["std"].fillna(0.0),
                    marker="o", capsize=3, label=str(dataset))
    xs = points["x"]
    positive = xs[xs > 0]
    if (xs > 0).all() and (log or xs.max() >= 100 * xs.min()):
        ax.set_xscale("log")
    elif log and (xs >= 0).all() and len(positive):
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
    ax.set_xlabel(param)
    ax.set_ylabel(metric_label(metric) + (" (%)" if metric_scale(metric) == 100 else ""))
    ax.set_title(f"{method}: {metric_label(metric)} against {param}, mean ± std over seeds ({eval_split})",
                 fontsize="medium")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize="small", frameon=False)
    return fig

