"""Leaderboard figures (PNG, matplotlib's Agg canvas, byte-stable: fixed size, dpi and no metadata).

``<dataset>.recall_at_k.png``: Recall@K against K per group, error bars ± std over seeds.
``<dataset>.recall_at_1.png``: Recall@1 per group, error bars the 95% t-interval.
:func:`sensitivity_plot`: one metric against one hyperparameter, mean ± std over seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.reporting.leaderboard import GROUP_KEYS, full_group_label, group_label, metric_label, recall_ks, records_frame
from harness.reporting.stats import summarize

FIGSIZE = (6.4, 4.0)
DPI = 120


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG without the Software/time metadata, so equal figures give equal bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _labels(long: pd.DataFrame) -> dict[tuple, str]:
    """A legend label per group: the method (with hyperparameters), plus backbone and recipe where needed."""
    keys = list(long.groupby(GROUP_KEYS, sort=True).groups)
    short = {k: group_label(k[1], k[6]) for k in keys}
    taken = pd.Series(list(short.values())).value_counts()
    return {k: s if taken[s] == 1 else full_group_label(k) for k, s in short.items()}


def recall_at_k_plot(long: pd.DataFrame, dataset: str, path: str | Path) -> Path:
    """Recall@K (%) against K (log axis) per group of one dataset's long table, error bars ± std."""
    ks = recall_ks(long["metric"].unique())
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for key, label in _labels(long).items():
        rows = long[(long[GROUP_KEYS] == pd.Series(key, index=GROUP_KEYS)).all(axis=1)].set_index("metric")
        rows = rows.reindex([f"recall@{k}" for k in ks])
        ax.errorbar(ks, 100 * rows["mean"].astype(float), yerr=100 * rows["std"].astype(float).fillna(0),
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_title(f"{dataset}: Recall@K, mean ± std over seeds")
    ax.legend(fontsize="small")
    return save(fig, path)


def recall_at_1_plot(long: pd.DataFrame, dataset: str, path: str | Path) -> Path:
    """Bars of Recall@1 (%) per group of one dataset's long table, error bars the 95% t-interval."""
    labels = _labels(long)
    r1 = long[long["metric"] == "recall@1"].set_index(GROUP_KEYS).reindex(list(labels))
    mean = 100 * r1["mean"].astype(float).to_numpy()
    low = np.nan_to_num(mean - 100 * r1["ci_low"].astype(float).to_numpy())
    high = np.nan_to_num(100 * r1["ci_high"].astype(float).to_numpy() - mean)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    ax.bar(x, np.nan_to_num(mean), yerr=[low, high], capsize=4, color="tab:blue")
    ax.set_xticks(x, list(labels.values()), rotation=30, ha="right", fontsize="small")
    ax.set_ylabel("Recall@1 (%)")
    ax.set_title(f"{dataset}: Recall@1, mean and 95% t-interval over seeds")
    return save(fig, path)


def leaderboard_plots(long: pd.DataFrame, dataset: str, out_dir: str | Path) -> list[Path]:
    """The figures of one dataset's long table beside its CSVs (those its metrics allow)."""
    out_dir = Path(out_dir)
    metrics = set(long["metric"])
    written = []
    if recall_ks(metrics):
        written.append(recall_at_k_plot(long, dataset, out_dir / f"{dataset}.recall_at_k.png"))
    if "recall@1" in metrics:
        written.append(recall_at_1_plot(long, dataset, out_dir / f"{dataset}.recall_at_1.png"))
    return written


def sensitivity_plot(records: Iterable[dict[str, Any]], method: str, param: str, path: str | Path,
                     metric: str = "recall@1", eval_split: str = "test") -> Path:
    """``metric`` (%) against hyperparameter ``param`` of ``method``, mean ± std over seeds, one line per dataset.

    Pass the records of one sweep (one recipe, backbone and dimension): the finished ``eval_split``
    trials of ``method`` whose hyperparameters set ``param`` are averaged per value; the x axis
    is logarithmic when the values are positive and span two decades or more.
    """
    frame = records_frame(records)
    if frame.empty or metric not in frame.columns:
        raise ValueError(f"no trial records with metric {metric!r}")
    trials = frame[(frame["method"] == method) & (frame["status"] == "ok") & (frame["eval_split"] == eval_split)]
    trials = trials.assign(x=[json.loads(h).get(param) for h in trials["hparams"]]).dropna(subset=["x", metric])
    if trials.empty:
        raise ValueError(f"no finished {eval_split}-split {method!r} trials that set {param!r} and report {metric!r}")
    trials = trials.assign(x=trials["x"].astype(float))
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for dataset, part in trials.groupby("dataset", sort=True):
        points = [(x, summarize(g[metric].to_numpy(dtype=float))) for x, g in part.groupby("x", sort=True)]
        xs = [x for x, _ in points]
        ax.errorbar(xs, [100 * s.mean for _, s in points], yerr=[100 * np.nan_to_num(s.std) for _, s in points],
                    marker="o", capsize=3, label=str(dataset))
    xs = trials["x"]
    if (xs > 0).all() and xs.max() >= 100 * xs.min():
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric_label(metric)} (%)")
    ax.set_title(f"{method}: {metric_label(metric)} against {param}, mean ± std over seeds ({eval_split})")
    ax.legend(fontsize="small")
    return save(fig, path)
