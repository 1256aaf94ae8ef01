"""A benchmark's report, from its records and its searches' outcomes (phase 3 of the fair protocol).

* ``leaderboard.{csv,md}``: the final test trials, mean ± std over seeds, each method's rank, and a
  paired t-test over seeds against the baseline with Holm's correction for the number of methods
  compared (statsmodels' ``multipletests``);
* ``hyperparameters.md``: the configuration each method's search chose, its validation score (in percent,
  as every table shows a metric) and the budget it spent, with failures per method and phase;
* ``budget.{png,pdf}``: best validation score against trials used, one line per method;
* ``critical_difference.{png,pdf}``: the Friedman test over seeds with the Nemenyi post-hoc test and
  its critical-difference diagram (autorank), when there are enough seeds;
* ``report.md``: all of it on one page.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness.core.metrics import format_metric, metric_scale
from harness.core.record import TrialRecord
from harness.core.store import atomic_write_text
from harness.reporting.stats import paired_power, paired_pvalue, summarize

SIGNIFICANCE = 0.05


def final_table(records: Iterable[TrialRecord], metric: str, baseline: str | None) -> pd.DataFrame:
    """One row per method: seeds, failures, mean and std of ``metric`` (%), rank, and against the
    baseline the paired p-value over seeds, its Holm-adjusted value, the smallest difference (points) the
    paired seeds detect at 80% power and the seeds needed to detect one point."""
    rows: dict[str, dict[str, Any]] = {}
    values: dict[str, dict[int, float]] = {}
    for r in records:
        row = rows.setdefault(r.spec.method, {"method": r.spec.method, "n_seeds": 0, "n_failed": 0})
        if r.ok and metric in r.metrics:
            row["n_seeds"] += 1
            values.setdefault(r.spec.method, {})[r.spec.seed] = r.metrics[metric]
        else:
            row["n_failed"] += 1
    for method, row in rows.items():
        summary = summarize(list(values.get(method, {}).values()))
        row.update(mean=100 * summary.mean, std=100 * summary.std)
    table = pd.DataFrame(list(rows.values()), columns=["method", "n_seeds", "n_failed", "mean", "std"])
    table["rank"] = table["mean"].rank(ascending=False, method="min")
    table["p_paired"] = np.nan
    table["detectable"], table["seeds_for_1pt"] = np.nan, np.nan
    if baseline in values:
        others = [m for m in table["method"] if m != baseline and m in values]
        for m in others:
            detectable, needed = paired_power(values[m], values[baseline])
            table.loc[table["method"] == m, ["p_paired", "detectable", "seeds_for_1pt"]] = [
                paired_pvalue(values[m], values[baseline])[0], 100 * detectable, needed]
        tested = table["p_paired"].notna()
        if tested.any():
            from statsmodels.stats.multitest import multipletests

            table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p_paired"], method="holm")[1]
    if "p_holm" not in table:
        table["p_holm"] = np.nan
    return table.sort_values(["rank", "method"]).reset_index(drop=True)


def markdown_table(table: pd.DataFrame, metric: str, baseline: str | None) -> str:
    head = (f"| method | {metric} (%) | seeds | failed | rank | p (paired) | p (Holm) | detectable at 80% power "
            "(points) | seeds for 1 point |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for _, r in table.iterrows():
        mean = "—" if math.isnan(r["mean"]) else f"{r['mean']:.2f} ± {0 if math.isnan(r['std']) else r['std']:.2f}"
        star = " *" if not math.isnan(r["p_holm"]) and r["p_holm"] < SIGNIFICANCE else ""
        name = f"**{r['method']}** (baseline)" if r["method"] == baseline else r["method"]
        p = lambda v: "" if math.isnan(v) else f"{v:.3g}"  # noqa: E731
        detectable = "" if math.isnan(r["detectable"]) else f"{r['detectable']:.2f}"
        needed = "" if math.isnan(r["seeds_for_1pt"]) else str(int(r["seeds_for_1pt"]))
        lines.append(f"| {name} | {mean}{star} | {int(r['n_seeds'])} | {int(r['n_failed'])} | {int(r['rank'])} | "
                     f"{p(r['p_paired'])} | {p(r['p_holm'])} | {detectable} | {needed} |")
    return "\n".join(lines)


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """PNG (byte-stable: no metadata) and PDF of a figure."""
    FigureCanvasAgg(fig)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return [png, pdf]


def budget_plot(histories: dict[str, list[float | None]], metric: str, stem: Path) -> list[Path]:
    """Best validation score so far against search trials used, per method."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for method in sorted(histories):
        best, curve = -math.inf, []
        for value in histories[method]:
            best = max(best, value if value is not None else -math.inf)
            curve.append(100 * best if math.isfinite(best) else np.nan)
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=method)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("search trials used")
    ax.set_ylabel(f"best {metric} so far (%)")
    ax.set_title("Search budget: best validation score against trials")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    return save_figure(fig, stem)


def critical_difference(records: Iterable[TrialRecord], metric: str, stem: Path) -> tuple[list[Path], str]:
    """autorank's Friedman + Nemenyi test over seeds (blocks) and its critical-difference diagram; or why not."""
    frame = pd.DataFrame([{"method": r.spec.method, "seed": r.spec.seed, "value": r.metrics[metric]}
                          for r in records if r.ok and metric in r.metrics])
    if frame.empty or frame["method"].nunique() < 3:
        return [], "needs at least three methods"
    data = frame.pivot(index="seed", columns="method", values="value").dropna()
    if len(data) < 5:
        return [], f"needs at least 5 seeds every method finished, has {len(data)}"
    from autorank import autorank, plot_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = autorank(data, alpha=SIGNIFICANCE, verbose=False, force_mode="nonparametric")
        axes = plot_stats(result, allow_insignificant=True)
    fig = axes.figure
    summary = (f"{result.omnibus} p = {result.pvalue:.3g} over {len(data)} seeds; post-hoc {result.posthoc}"
               + (f", critical difference {result.cd:.2f}" if result.cd is not None else ""))
    return save_figure(fig, stem), summary


def write_report(folder: Path, *, name: str, dataset: str, records: list[TrialRecord], metric: str,
                 baseline: str | None, chosen: dict[str, dict[str, Any]], chosen_value: dict[str, float],
                 histories: dict[str, list[float | None]], search_failures: dict[str, int], objective: str,
                 wall_time_s: float) -> list[Path]:
    """Write the benchmark's report files into ``folder``; return them."""
    folder.mkdir(parents=True, exist_ok=True)
    table = final_table(records, metric, baseline)
    atomic_write_text(folder / "leaderboard.csv", table.to_csv(index=False, float_format="%.6g"))
    leaderboard = markdown_table(table, metric, baseline)
    atomic_write_text(folder / "leaderboard.md", leaderboard + "\n")
    unit = " (%)" if metric_scale(objective) == 100 else ""
    hp_lines = [f"| method | chosen hyperparameters | {objective}{unit} | search trials | failed (search) | failed (final) |",
                "|---|---|---|---|---|---|"]
    final_failed = dict(zip(table["method"], table["n_failed"]))
    for method in sorted(histories):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(chosen.get(method, {}).items())) or "—"
        score = format_metric(objective, chosen_value[method]) if method in chosen_value else "—"
        hp_lines.append(f"| {method} | {params} | {score} | {len(histories[method])} | {search_failures.get(method, 0)} "
                        f"| {int(final_failed.get(method, 0))} |")
    hyper = "\n".join(hp_lines)
    atomic_write_text(folder / "hyperparameters.md", hyper + "\n")
    files = [folder / "leaderboard.csv", folder / "leaderboard.md", folder / "hyperparameters.md"]
    files += budget_plot(histories, objective, folder / "budget")
    cd_files, cd_summary = critical_difference(records, metric, folder / "critical_difference")
    files += cd_files
    report = [f"# Benchmark {name} on {dataset}", "",
              f"Test {metric} of each method's best configuration (chosen on validation classes only), mean ± std "
              f"over seeds; `*`: different from the baseline at p < {SIGNIFICANCE} after Holm's correction over "
              f"{max(0, int(table['p_paired'].notna().sum()))} comparisons. Wall time {wall_time_s / 3600:.2f} h.", "",
              leaderboard, "", "## Chosen hyperparameters and budget", "", hyper, "",
              "![budget](budget.png)", "", "## Critical difference", "",
              (f"{cd_summary}.\n\n![critical difference](critical_difference.png)" if cd_files
               else f"Not drawn: {cd_summary}."), ""]
    atomic_write_text(folder / "report.md", "\n".join(report))
    return [*files, folder / "report.md"]
