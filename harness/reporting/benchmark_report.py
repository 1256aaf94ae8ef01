"""A benchmark's report, from its records and its searches' outcomes (phase 3 of the fair protocol).

* ``leaderboard.{csv,md}``: the final test trials, mean ± std over seeds, each method's rank, and a
  paired t-test over seeds against the baseline with Holm's correction for the number of methods
  compared (statsmodels' ``multipletests``);
* ``hyperparameters.md``: the protocol in words, the configuration chosen for each method (an extension's
  inherited values named), its validation mean ± std over the re-measurement seeds (in percent, as every
  table shows a metric), the search's one-seed best beside it, and the budget (search and re-measurement
  trials), with failures per method and phase;
* ``candidates.md``: each search's re-measured top candidates, seed by seed;
* ``extensions.md``: each extension against its own baseline under the protocol (paired t-test over
  seeds, Holm over these comparisons);
* ``sensitivity_<method>.{png,pdf}``: an extension's validation score against its main own hyperparameter at
  its chosen values (0, its baseline, drawn on its own axis left of a log axis), mean ± std and each seed;
* ``budget.{png,pdf}``: best validation score against trials used, one line per method;
* ``critical_difference.{png,pdf}``: the Friedman test over seeds with the Nemenyi post-hoc test and
  its critical-difference diagram (autorank), when there are enough seeds;
* ``report.md``: all of it on one page.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness.core.metrics import format_metric, metric_scale
from harness.core.record import TrialRecord
from harness.core.store import atomic_write_text
from harness.reporting.selection import Candidate, SensitivityPoint
from harness.reporting.stats import paired_power, paired_pvalue, summarize

SIGNIFICANCE = 0.05


def format_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())) or "—"


def describe_protocol(protocol: str, baselines: Mapping[str, str], inherited: Mapping[str, Mapping[str, Any]],
                      trials: int) -> str:
    """The protocol in words, naming each extension, its baseline and (``nested``) the values it inherited."""
    if not baselines:
        return (f"Protocol **{protocol}**: no method here extends another, so every method searched its own "
                f"space with {trials} trials.")
    if protocol == "joint":
        pairs = ", ".join(f"{e} on {b}" for e, b in sorted(baselines.items()))
        return (f"Protocol **joint**: each extension ({pairs}) searched its own and its baseline's hyperparameters "
                f"together, with the same {trials} trials as every other method.")
    pairs = "; ".join(f"{e} trained at {b}'s chosen {format_params(inherited.get(e, {}))}"
                      for e, b in sorted(baselines.items()))
    return (f"Protocol **nested**: each baseline was searched first; each extension inherited its baseline's "
            f"chosen values and spent the same {trials} trials on its own hyperparameters only ({pairs}).")


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

    # autorank prints its choice of test and its rank table with verbose=False too: keep them off the console
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        result = autorank(data, alpha=SIGNIFICANCE, verbose=False, force_mode="nonparametric")
        axes = plot_stats(result, allow_insignificant=True)
    fig = axes.figure
    summary = (f"{result.omnibus} p = {result.pvalue:.3g} over {len(data)} seeds; post-hoc {result.posthoc}"
               + (f", critical difference {result.cd:.2f}" if result.cd is not None else ""))
    return save_figure(fig, stem), summary


def extensions_table(records: Iterable[TrialRecord], metric: str, baselines: Mapping[str, str]) -> pd.DataFrame:
    """One row per extension: its test ``metric`` minus its own baseline's over the seeds both finished (points,
    mean ± std of the paired differences), the paired t-test's p and Holm's adjustment over these comparisons."""
    values: dict[str, dict[int, float]] = {}
    for r in records:
        if r.ok and metric in r.metrics:
            values.setdefault(r.spec.method, {})[r.spec.seed] = r.metrics[metric]
    rows = []
    for extension, base in sorted(baselines.items()):
        a, b = values.get(extension, {}), values.get(base, {})
        differences = [100 * (a[s] - b[s]) for s in sorted(set(a) & set(b))]
        summary = summarize(differences)
        rows.append({"extension": extension, "baseline": base, "n_paired": len(differences),
                     "difference": summary.mean, "difference_std": summary.std, "p_paired": paired_pvalue(a, b)[0]})
    table = pd.DataFrame(rows, columns=["extension", "baseline", "n_paired", "difference", "difference_std", "p_paired"])
    table["p_holm"] = np.nan
    tested = table["p_paired"].notna()
    if tested.any():
        from statsmodels.stats.multitest import multipletests

        table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p_paired"], method="holm")[1]
    return table


def extensions_markdown(table: pd.DataFrame, metric: str, protocol: str) -> str:
    lines = [f"| extension | baseline | {metric} difference (points, paired seeds) | seeds | p (paired) | p (Holm) |",
             "|---|---|---|---|---|---|"]
    p = lambda v: "" if math.isnan(v) else f"{v:.3g}"  # noqa: E731
    for _, r in table.iterrows():
        diff = "—" if math.isnan(r["difference"]) else f"{r['difference']:+.2f} ± {0 if math.isnan(r['difference_std']) else r['difference_std']:.2f}"
        star = " *" if not math.isnan(r["p_holm"]) and r["p_holm"] < SIGNIFICANCE else ""
        lines.append(f"| {r['extension']} | {r['baseline']} | {diff}{star} | {int(r['n_paired'])} | {p(r['p_paired'])} "
                     f"| {p(r['p_holm'])} |")
    return (f"Each extension minus its own baseline under protocol {protocol}, test {metric} over the seeds both "
            f"finished; `*`: p < {SIGNIFICANCE} after Holm's correction over {int(table['p_paired'].notna().sum())} "
            "comparisons.\n\n" + "\n".join(lines))


def candidates_markdown(candidates: Mapping[str, list[Candidate]], objective: str) -> str:
    """Each search's re-measured top candidates, seed by seed, the chosen one (the best mean) first."""
    seeds = sorted({s for cs in candidates.values() for c in cs for s in c.seeds})
    lines = [f"| method | candidate | {' | '.join(f'seed {s}' for s in seeds)} | mean ± std | chosen |",
             "|---|---|" + "---|" * len(seeds) + "---|---|"]
    score = lambda v: format_metric(objective, v) if v is not None and math.isfinite(v) else "failed"  # noqa: E731
    for method in sorted(candidates):
        for i, c in enumerate(candidates[method]):
            cells = " | ".join(score(c.values.get(s)) for s in seeds)
            lines.append(f"| {method} | {format_params(c.params)} | {cells} | {mean_std(objective, c)} | "
                         f"{'**chosen**' if i == 0 else ''} |")
    return "\n".join(lines)


def mean_std(objective: str, c: Candidate) -> str:
    if not c.values:
        return "—"
    return f"{format_metric(objective, c.mean)} ± {format_metric(objective, 0.0 if math.isnan(c.std) else c.std)}"


def sensitivity_plot(method: str, hparam: str, points: list[SensitivityPoint], chosen: Candidate | None,
                     baseline: tuple[str, Candidate] | None, objective: str, stem: Path) -> list[Path]:
    """Validation score against ``hparam``: mean ± std over seeds and each seed; value 0 (the baseline itself)
    on its own narrow axis left of a broken log axis when the other values span two decades or more; the
    chosen configuration starred; the baseline's own re-measured choice as a dashed line."""
    scale = metric_scale(objective)
    nonzero = [p for p in points if p.value != 0]
    zero = [p for p in points if p.value == 0]
    positive = [float(p.value) for p in nonzero]
    log = bool(positive) and min(positive) > 0 and max(positive) / min(positive) >= 100
    fig = Figure(figsize=(7.5, 4.2))
    if zero:
        grid = fig.add_gridspec(1, 2, width_ratios=(1, 7), wspace=0.06)
        ax0, ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
        ax.sharey(ax0)
    else:
        ax0, ax = None, fig.add_subplot()

    def draw(axis, pts: list[SensitivityPoint], xs: list[float]) -> None:
        means = [scale * summarize(list(p.values.values())).mean for p in pts]
        stds = [scale * np.nan_to_num(summarize(list(p.values.values())).std) for p in pts]
        axis.errorbar(xs, means, yerr=stds, color="C0", marker="o", capsize=3, label="mean ± std over seeds")
        for x, p in zip(xs, pts):
            axis.scatter([x] * len(p.values), [scale * v for v in p.values.values()], color="C0", alpha=0.35, s=12,
                         zorder=3)

    if nonzero:
        draw(ax, nonzero, positive)
    if log:
        ax.set_xscale("log")
    if chosen is not None and chosen.values and isinstance(chosen.params.get(hparam), (int, float)):
        ax.errorbar([chosen.params[hparam]], [scale * chosen.mean], yerr=[scale * np.nan_to_num(chosen.std)],
                    color="C3", marker="*", markersize=12, capsize=3, linestyle="none",
                    label=f"chosen ({format_params(chosen.params)})")
    if baseline is not None and baseline[1].values:
        for axis in (a for a in (ax0, ax) if a is not None):
            axis.axhline(scale * baseline[1].mean, color="0.4", linestyle="--", linewidth=0.9)
        ax.plot([], [], color="0.4", linestyle="--", label=f"{baseline[0]}'s own choice, re-measured")
    if ax0 is not None:
        draw(ax0, zero, [0.0] * len(zero))
        ax0.set_xticks([0.0], ["0"])
        ax0.set_xlim(-1, 1)
        ax0.spines["right"].set_visible(False)
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", left=False, labelleft=False)
        for axis, x in ((ax0, 1), (ax, 0)):  # the break marks
            axis.plot([x, x], [0, 0], transform=axis.transAxes, marker=[(-1, -2), (1, 2)], markersize=8,
                      color="k", linestyle="none", clip_on=False)
        ax0.set_xlabel(f"{hparam} = 0\n(the baseline)", fontsize="small")
        ax0.set_ylabel(f"{objective} (%)" if scale == 100 else objective)
    else:
        ax.set_ylabel(f"{objective} (%)" if scale == 100 else objective)
    ax.set_xlabel(f"{hparam}" + (" (log scale)" if log else ""))
    ax.set_title(f"{method}: validation score against {hparam} at its chosen values")
    for axis in (a for a in (ax0, ax) if a is not None):
        axis.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    return save_figure(fig, stem)


def sensitivity_markdown(method: str, hparam: str, points: list[SensitivityPoint], objective: str) -> str:
    seeds = sorted({s for p in points for s in p.values})
    lines = [f"| {hparam} | {' | '.join(f'seed {s}' for s in seeds)} | mean ± std |", "|---|" + "---|" * (len(seeds) + 1)]
    for p in points:
        c = Candidate(params={}, values=p.values, seeds=seeds)
        cells = " | ".join(format_metric(objective, p.values[s]) if s in p.values else "failed" for s in seeds)
        value = f"{p.value:.4g}" if isinstance(p.value, float) else str(p.value)
        lines.append(f"| {value}{' (= baseline)' if p.value == 0 else ''} | {cells} | {mean_std(objective, c)} |")
    return "\n".join(lines)


def write_report(folder: Path, *, name: str, dataset: str, records: list[TrialRecord], metric: str,
                 baseline: str | None, chosen: dict[str, dict[str, Any]], histories: dict[str, list[float | None]],
                 search_failures: dict[str, int], objective: str, wall_time_s: float, protocol: str,
                 baselines: Mapping[str, str], inherited: Mapping[str, Mapping[str, Any]],
                 candidates: Mapping[str, list[Candidate]], sensitivity: Mapping[str, list[SensitivityPoint]],
                 sensitivity_axes: Mapping[str, str]) -> list[Path]:
    """Write the benchmark's report files into ``folder``; return them. ``baselines`` maps each extension in
    the benchmark to its baseline, ``candidates`` each method to its re-measured top candidates (the chosen
    one first), ``sensitivity`` each extension to its sweep of its main own hyperparameter
    (``sensitivity_axes``)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = final_table(records, metric, baseline)
    atomic_write_text(folder / "leaderboard.csv", table.to_csv(index=False, float_format="%.6g"))
    leaderboard = markdown_table(table, metric, baseline)
    atomic_write_text(folder / "leaderboard.md", leaderboard + "\n")
    unit = " (%)" if metric_scale(objective) == 100 else ""
    trials = max((len(h) for h in histories.values()), default=0)
    words = describe_protocol(protocol, baselines, inherited, trials)
    hp_lines = [f"| method | chosen hyperparameters | inherited from its baseline | {objective}{unit}, mean ± std "
                "over the re-measurement seeds | search's best (one seed) | search trials | re-measurement trials "
                "| failed (search) | failed (final) |", "|---|---|---|---|---|---|---|---|---|"]
    final_failed = dict(zip(table["method"], table["n_failed"]))
    for method in sorted(histories):
        ranked = candidates.get(method, [])
        best = max((v for v in histories[method] if v is not None), default=None)
        extra = sum(len(c.seeds) - 1 for c in ranked)
        hp_lines.append(f"| {method} | {format_params(chosen.get(method, {}))} | "
                        f"{format_params(inherited[method]) if method in inherited else ''} | "
                        f"{mean_std(objective, ranked[0]) if ranked else '—'} | "
                        f"{format_metric(objective, best) if best is not None else '—'} | {len(histories[method])} | "
                        f"{extra} | {search_failures.get(method, 0)} | {int(final_failed.get(method, 0))} |")
    hyper = words + "\n\n" + "\n".join(hp_lines)
    atomic_write_text(folder / "hyperparameters.md", hyper + "\n")
    candidate_text = candidates_markdown(candidates, objective)
    atomic_write_text(folder / "candidates.md", candidate_text + "\n")
    extension_text = extensions_markdown(extensions_table(records, metric, baselines), metric, protocol)
    atomic_write_text(folder / "extensions.md", extension_text + "\n")
    files = [folder / "leaderboard.csv", folder / "leaderboard.md", folder / "hyperparameters.md",
             folder / "candidates.md", folder / "extensions.md"]
    sensitivity_text = []
    for method in sorted(sensitivity):
        hparam, base = sensitivity_axes[method], baselines.get(method)
        files += sensitivity_plot(method, hparam, sensitivity[method], (candidates.get(method) or [None])[0],
                                  (base, candidates[base][0]) if candidates.get(base) else None, objective,
                                  folder / f"sensitivity_{method}")
        sensitivity_text += [f"### {method}: {hparam}", "", sensitivity_markdown(method, hparam, sensitivity[method],
                                                                                  objective), "",
                             f"![sensitivity of {method}](sensitivity_{method}.png)", ""]
    files += budget_plot(histories, objective, folder / "budget")
    cd_files, cd_summary = critical_difference(records, metric, folder / "critical_difference")
    files += cd_files
    report = [f"# Benchmark {name} on {dataset}", "", words, "",
              f"Test {metric} of each method's chosen configuration (chosen on validation classes only: the best "
              f"mean of its search's re-measured top candidates), mean ± std over seeds; `*`: different from the "
              f"baseline at p < {SIGNIFICANCE} after Holm's correction over "
              f"{max(0, int(table['p_paired'].notna().sum()))} comparisons. Wall time {wall_time_s / 3600:.2f} h.", "",
              leaderboard, "", "## Each extension against its baseline", "", extension_text, "",
              "## Chosen hyperparameters and budget", "", hyper, "",
              "## Re-measured top candidates", "",
              "Each search's best distinct candidates trained again on more validation seeds (the search's own "
              "trial answers for its seed); the best mean is chosen.", "", candidate_text, "",
              "## Sensitivity of each extension to its added term", "",
              *(sensitivity_text or ["No sweep was run (sensitivity_points is 0)." if baselines
                                     else "No extension in this benchmark.", ""]),
              "![budget](budget.png)", "", "## Critical difference", "",
              (f"{cd_summary}.\n\n![critical difference](critical_difference.png)" if cd_files
               else f"Not drawn: {cd_summary}."), ""]
    atomic_write_text(folder / "report.md", "\n".join(report))
    return [*files, folder / "report.md"]
