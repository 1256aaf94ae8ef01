"""Leaderboards computed from trial records alone: statistics over seeds per group, as CSV, Markdown, LaTeX.

A leaderboard is one experiment's records (``runs/<experiment>/``), one protocol: a default run, a
benchmark's final trials, a comparison. Its files are named after the experiment (``<experiment>.csv``
...; ``<experiment>@<dataset>.csv`` ... for an experiment that spans several datasets, :func:`board_name`), so two
protocols on one dataset (say, every method at its defaults, and each method at its searched best)
never mix into one table. A group is (dataset, method, backbone, embedding dim, recipe name + hash,
hyperparameters): trials trained under different recipes or hyperparameters never average into one
row. Only test-split trials enter (validation-split search trials are not test results). A trial
recorded twice in an experiment (same trial id) counts once, its newest record. Failed trials count in
``n_failed`` and nowhere else. Per group and metric: mean, std (ddof=1), 95% t-interval, rank (1 = best mean) and,
against a baseline method, Welch and paired t-test p-values (:mod:`harness.reporting.stats`). Published
reference rows (:mod:`harness.reporting.published`) are shown beside the measured ones, never mixed in.

Every output is a pure function of the records: sorted rows, fixed float formats, no timestamps.
"""
from __future__ import annotations

import glob
import json
import math
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from harness.core.metrics import format_metric, metric_label, metric_sort_key
from harness.reporting.published import PUBLISHED_CSV, ROW_KEYS, load_published, published_rows
from harness.core.store import TrialStore, atomic_write_text
from harness.reporting import plots
from harness.reporting.board_options import (FORMATS, STORED, Stored, load_options, published_option,
                                             remember_options)
from harness.reporting.stats import SIGNIFICANCE, paired_power, paired_pvalue, ranks, summarize, welch_pvalue
from harness.reporting.tables import (GROUP_KEYS, distinct_labels, full_group_label, group_label, metric_columns,
                                      recipe_labels, records_frame)

STAT_COLUMNS = ["n_seeds", "n_failed", "mean", "std", "ci_low", "ci_high", "rank",
                "baseline", "p_welch", "p_paired", "n_paired", "detectable_paired", "seeds_for_1pt"]
#: how a measured row was selected: the model after the last epoch, scored once on the test classes
MEASURED_SELECTION = "last epoch"
FLOAT_FORMAT = "%.6g"
#: the files of leaderboard ``<name>``: ``<name><suffix>``
BOARD_SUFFIXES = (".env.json", ".csv", ".long.csv", ".wide.csv", ".md", ".tex",
                  *(f".{figure}.{fmt}" for figure in plots.FIGURES for fmt in plots.PLOT_FORMATS))


def load_records(store: TrialStore, families: Mapping[str, str] | None = None) -> pd.DataFrame:
    """:func:`records_frame` of every record in ``store``; warnings about skipped records go to stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = records_frame(store.records(), families)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return frame


def leaderboard_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials a leaderboard counts: final trials on the test classes (never a search's or a sweep's)."""
    return frame[(frame["eval_split"] == "test") & (frame["role"] == "final")]


def group_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group of test-split trials: its recipe fields, ``n_seeds`` (ok) and ``n_failed``."""
    test = leaderboard_rows(frame)
    ok = (test["status"] == "ok").astype(int)
    return (test.assign(n_seeds=ok, n_failed=1 - ok)
            .groupby(GROUP_KEYS, sort=True)
            .agg(family=("family", "first"), recipe_fields=("recipe_fields", "first"), n_seeds=("n_seeds", "sum"),
                 n_failed=("n_failed", "sum"))
            .reset_index())


def _baseline_key(group: pd.Series, baselines: pd.DataFrame) -> tuple | None:
    """The baseline group to test ``group`` against: the baseline method's group with the same backbone,
    dimension, recipe and hash if exactly one, else its only group on the dataset, else none."""
    same_data = baselines[baselines["dataset"] == group["dataset"]]
    same = same_data
    for key in ("backbone", "embedding_dim", "recipe", "recipe_hash"):
        same = same[same[key] == group[key]]
    for pool in (same, same_data):
        if len(pool) == 1:
            return tuple(pool.iloc[0][GROUP_KEYS])
    return None


def long_table(frame: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per group × metric: GROUP_KEYS, the method's family, metric, STAT_COLUMNS, ``recipe.<field>``.

    ``n_seeds`` counts the values the statistics are over; ``rank`` is per (dataset, metric).
    With ``baseline`` (a method name), ``p_welch`` is Welch's t-test over seeds against the baseline
    group (see :func:`_baseline_key`) and ``p_paired`` the paired t-test over the ``n_paired``
    seeds both have; from the spread of their paired differences, ``detectable_paired`` is the smallest
    difference those seeds detect at 80% power and ``seeds_for_1pt`` the seeds needed to detect one
    point (0.01) (:func:`~harness.reporting.stats.paired_power`).
    """
    counts = group_counts(frame)
    metrics = metric_columns(frame)
    ok = leaderboard_rows(frame)
    ok = ok[ok["status"] == "ok"]
    trials = {key: part.set_index("seed") for key, part in ok.groupby(GROUP_KEYS, sort=True)}
    per_seed: dict[tuple, dict[int, float]] = {}
    rows = []
    for _, group in counts.iterrows():
        key = tuple(group[GROUP_KEYS])
        fields = {f"recipe.{k}": v for k, v in json.loads(group["recipe_fields"]).items()}
        for metric in metrics:
            values = trials[key][metric].dropna() if key in trials else pd.Series(dtype=float)
            per_seed[key + (metric,)] = {int(s): float(v) for s, v in values.items()}
            s = summarize(values.to_numpy(dtype=float))
            rows.append({**dict(zip(GROUP_KEYS, key)), "family": group["family"], "metric": metric, "n_seeds": s.n,
                         "n_failed": int(group["n_failed"]), "mean": s.mean, "std": s.std,
                         "ci_low": s.ci_low, "ci_high": s.ci_high, **fields})
    if not rows:
        return pd.DataFrame(columns=GROUP_KEYS + ["family", "metric"] + STAT_COLUMNS)
    long = pd.DataFrame(rows).assign(baseline=None, p_welch=math.nan, p_paired=math.nan,
                                     n_paired=pd.array([pd.NA] * len(rows), dtype="Int64"),
                                     detectable_paired=math.nan, seeds_for_1pt=math.nan)
    long["rank"] = long.groupby(["dataset", "metric"])["mean"].transform(ranks).astype("Int64")
    baselines = counts[counts["method"] == baseline]
    for i, row in long.iterrows():
        base = _baseline_key(row, baselines) if baseline else None
        if base is None or base == tuple(row[GROUP_KEYS]):
            continue
        mine, theirs = per_seed[tuple(row[GROUP_KEYS]) + (row["metric"],)], per_seed[base + (row["metric"],)]
        p_paired, n_paired = paired_pvalue(mine, theirs)
        long.loc[i, ["baseline", "p_welch", "p_paired", "n_paired", "detectable_paired", "seeds_for_1pt"]] = [
            full_group_label(base), welch_pvalue(list(mine.values()), list(theirs.values())), p_paired, n_paired,
            *paired_power(mine, theirs)]
    recipe_columns = sorted(c for c in long.columns if c.startswith("recipe."))
    return long[GROUP_KEYS + ["family", "metric"] + STAT_COLUMNS + recipe_columns]


def read_long_table(path: str | Path) -> pd.DataFrame:
    """A long table read back from its CSV (``<name>.long.csv``), typed as :func:`long_table` returns it,
    so that figures and tables can be redrawn from a committed leaderboard without its records."""
    text = {key: str for key in GROUP_KEYS if key != "embedding_dim"}
    long = pd.read_csv(path, dtype={**text, "family": str, "metric": str, "baseline": str, "embedding_dim": int,
                                    "rank": "Int64", "n_paired": "Int64"}, keep_default_na=False,
                       na_values={c: [""] for c in ("baseline", "mean", "std", "ci_low", "ci_high", "rank",
                                                     "p_welch", "p_paired", "n_paired", "detectable_paired",
                                                     "seeds_for_1pt")})
    missing = [c for c in GROUP_KEYS + ["metric"] + STAT_COLUMNS if c not in long.columns]
    if missing:
        raise ValueError(f"{path}: not a long leaderboard table (missing column(s) {', '.join(missing)})")
    return long


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Per group: ``n_seeds``, ``n_failed``, ``<metric>_mean``, ``<metric>_std`` (std ddof=1; NaN for one seed)."""
    counts = group_counts(frame).drop(columns=["recipe_fields", "family"])
    long = long_table(frame)
    if long.empty:
        return counts
    stats = long.pivot(index=GROUP_KEYS, columns="metric", values=["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for stat, metric in stats.columns]
    order = [f"{m}_{s}" for m in sorted(long["metric"].unique(), key=metric_sort_key) for s in ("mean", "std")]
    return counts.merge(stats[order].reset_index(), on=GROUP_KEYS, how="left")


# ---- renderings -------------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], text)


@dataclass(frozen=True)
class Style:
    """How one output writes emphasis, ±, the significance marks, a missing value, text and math;
    ``spread`` writes the "± std" that follows a mean."""

    bold: Callable[[str], str]
    pm: str
    welch: str
    paired: str
    missing: str
    escape: Callable[[str], str]
    math: Callable[[str], str]
    spread: Callable[[str], str]


PLAIN = Style(lambda s: s, " ± ", "†", "‡", "—", lambda s: s, lambda s: s, lambda s: f" ± {s}")
MARKDOWN = Style(lambda s: f"**{s}**", " ± ", "†", "‡", "—", lambda s: s.replace("|", r"\|"), lambda s: s,
                 lambda s: f" ± {s}")
LATEX = Style(lambda s: rf"\textbf{{{s}}}", r" $\pm$ ", r"$^\dagger$", r"$^\ddagger$", "--", latex_escape,
              lambda s: f"${s}$", lambda s: rf"{{\scriptsize${{\pm}}${s}}}")

#: columns a paper table drops when every row has the same value, and how its caption then says that value
COMMON_PHRASES = {"Source": "all rows {}", "Backbone": "backbone {}", "Dim": "{}-d embeddings",
                  "Recipe": "recipe {}", "Seeds": "{} seeds per row", "Selection": "selection: {}"}


def mean_std_text(mean: float, std: float, style: Style = PLAIN, metric: str = "recall@1") -> str:
    """``100·mean ± 100·std`` with two decimals (just the mean for one seed; ``missing`` for none); a
    metric not declared in percent (:class:`~harness.core.metrics.MetricSpec`) as it is, with four."""
    if pd.isna(mean):
        return style.missing
    return format_metric(metric, mean) + ("" if pd.isna(std) else style.spread(format_metric(metric, std)))


def _cell(row: pd.Series, style: Style) -> str:
    text = mean_std_text(row["mean"], row["std"], style, metric=str(row.name))
    if pd.isna(row["mean"]):
        return text
    if row["rank"] == 1:
        text = style.bold(text)
    marks = [m for m, p in ((style.welch, row["p_welch"]), (style.paired, row["p_paired"]))
             if pd.notna(p) and p < SIGNIFICANCE]
    return text + "".join(marks)


def wide_table(long: pd.DataFrame, style: Style = PLAIN, labels: dict[tuple, str] | None = None) -> pd.DataFrame:
    """The papers' layout: one row per group, one "mean ± std" column per metric in percent.

    The best mean per column is emphasised (``style.bold``); ``style.welch`` / ``style.paired`` mark
    p < SIGNIFICANCE against the baseline. Rows are labelled ``labels[group key]`` (default: the method
    with its hyperparameters).
    """
    metrics = sorted(long["metric"].unique(), key=metric_sort_key)
    recipes = recipe_labels(long)
    rows = []
    for key, group in long.groupby(GROUP_KEYS, sort=True):
        g = dict(zip(GROUP_KEYS, key))
        by_metric = group.set_index("metric")
        n_seeds, n_failed = int(by_metric["n_seeds"].max()), int(by_metric["n_failed"].iloc[0])
        label = labels[key] if labels else group_label(g["method"], g["hparams"])
        row = {"Method": style.escape(label), "Backbone": style.escape(g["backbone"]),
               "Dim": str(g["embedding_dim"]), "Recipe": style.escape(recipes[(g["recipe"], g["recipe_hash"])]),
               "Seeds": f"{n_seeds}" + (f" ({n_failed} failed)" if n_failed else "")}
        row.update({metric_label(m): _cell(by_metric.loc[m], style) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows, columns=["Method", "Backbone", "Dim", "Recipe", "Seeds", *map(metric_label, metrics)])


def _right_aligned(column: str) -> bool:
    """Numbers (dimension, seeds, metrics) align right in the Markdown and LaTeX tables."""
    return column not in ("Source", "Method", "Backbone", "Recipe", "Selection")


@dataclass(frozen=True)
class PaperTable:
    """A leaderboard as a paper prints it: ``table`` holds the columns that vary (measured rows, then
    published ones); ``common`` the phrases for the columns every row shares; ``hparams`` the
    hyperparameters the short row labels leave out; ``citations`` the published rows' sources."""

    table: pd.DataFrame
    n_measured: int
    common: list[str]
    hparams: list[str]
    citations: list[str]


def paper_table(long: pd.DataFrame, refs: pd.DataFrame, style: Style) -> PaperTable:
    """Measured rows (labelled by method alone where that tells them apart) then published rows, with a
    Source column; the columns that every row shares move into :attr:`PaperTable.common`."""
    labels = distinct_labels(list(long.groupby(GROUP_KEYS, sort=True).groups), with_setup=False)
    measured = wide_table(long, style, labels)
    measured.insert(0, "Source", "measured")
    measured.insert(measured.columns.get_loc("Seeds") + 1, "Selection", MEASURED_SELECTION)
    citations = list(dict.fromkeys(refs["citation"]))
    metrics = [c for c in refs.columns if c in set(long["metric"])]
    published = pd.DataFrame({
        "Source": [f"published [{citations.index(c) + 1}]" for c in refs["citation"]],
        "Method": refs["method"].map(style.escape), "Backbone": refs["backbone"].map(style.escape),
        "Dim": refs["embedding_dim"].astype(str), "Recipe": style.missing, "Seeds": style.missing,
        "Selection": refs["selection"],
        **{metric_label(m): refs[m].fillna(style.missing) for m in metrics},
    }, columns=measured.columns).fillna(style.missing)
    table = pd.concat([measured, published], ignore_index=True)
    shared = [c for c in COMMON_PHRASES if table[c].nunique() == 1]
    common = [COMMON_PHRASES[c].format(table[c].iloc[0]) for c in shared]
    hparams = [f"{style.escape(label)}: {style.escape(group_label('', key[6]).strip(' ()'))}"
               for key, label in labels.items() if key[6] != "{}" and label == key[1]]
    return PaperTable(table.drop(columns=shared), len(measured), common, hparams, citations)


def _notes(name: str, env: dict[str, Any], baseline: str | None, paper: PaperTable, style: Style) -> list[str]:
    notes = [f"Test classes; mean{style.pm}std over seeds (std with ddof=1), in percent; "
             f"best measured mean per column in bold."]
    if paper.hparams:
        notes.append("Hyperparameters (those set away from the method's declared defaults): "
                     + "; ".join(paper.hparams) + ".")
    if baseline:
        notes.append(f"{style.welch} Welch t-test, {style.paired} paired t-test over matching seeds, "
                     f"against baseline {style.escape(baseline)} (its group with the same backbone, dimension "
                     f"and recipe, else its only group: the baseline column of {style.escape(name)}.long.csv), "
                     f"two-sided {style.math(f'p < {SIGNIFICANCE:g}')}; p-values in the same file.")
    notes.append(f"Selection: measured rows score the model after the {MEASURED_SELECTION}, once, on the test classes.")
    if paper.citations:
        notes.append("Published rows: the papers' reported figures, not measured here and not part of any statistic. "
                     "Their selection differs from ours: best test epoch = the best test Recall@1 over the epochs "
                     "of training (the JRD code tests every epoch; Proxy-Anchor, Metrix and NIR keep the best test "
                     "Recall@1; intra-batch reloads its best-test checkpoint), an epoch chosen on the test classes, "
                     "which favours the published figure over a last-epoch one; as quoted = another paper's "
                     "figure quoted in the cited table, selected as that paper did.")
        notes += [f"[{i}] {style.escape(c)}" for i, c in enumerate(paper.citations, 1)]
    hardware = env.get("hardware", {})
    notes.append(f"Environment (from the trial records; versions in {style.escape(name)}.env.json): "
                 f"harness commit(s) {style.escape(', '.join(env['git_commits']))}; "
                 f"device(s) {style.escape(', '.join(env['devices']))}; "
                 f"hardware {style.escape('; '.join(hardware) or 'not recorded')}.")
    if env.get("mixed_hardware"):
        notes.append(f"The seeds ran on {len(hardware)} different kinds of hardware (trials per kind in "
                     f"{style.escape(name)}.env.json): the same trial can give different numbers on another "
                     f"processor or thread count, so part of a difference between rows may be the hardware's.")
    return notes


def _caption(title: str, paper: PaperTable, style: Style) -> str:
    """``title: test classes, mean ± std over seeds (%)``, then what every row shares."""
    common = "".join(f"; {style.escape(phrase)}" for phrase in paper.common)
    return f"{style.escape(title)}: test classes, mean{style.pm}std over seeds ({style.escape('%')}){common}."


def render_markdown(name: str, title: str, long: pd.DataFrame, refs: pd.DataFrame, env: dict[str, Any],
                    baseline: str | None = None) -> str:
    """Leaderboard ``name``'s wide table (plus published rows) as a Markdown table headed ``title``, its
    columns those that vary (what every row shares is said above it), with footnote paragraphs."""
    paper = paper_table(long, refs, MARKDOWN)
    table = paper.table
    lines = [f"## {title}", "", _caption(title, paper, MARKDOWN), "", "| " + " | ".join(table.columns) + " |",
             "| " + " | ".join("---:" if _right_aligned(c) else "---" for c in table.columns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in table.itertuples(index=False)]
    for note in _notes(name, env, baseline, paper, MARKDOWN):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def render_latex(name: str, title: str, long: pd.DataFrame, refs: pd.DataFrame, env: dict[str, Any],
                 baseline: str | None = None) -> str:
    """Leaderboard ``name``'s wide table (plus published rows) as a booktabs ``table*`` captioned ``title``
    and what every row shares, its columns those that vary, with footnotes below it.

    ``table*`` spans both columns of a two-column paper and is a plain float in a one-column one; the
    tabular is scaled down to the line width only where it would be wider (graphicx's ``\\resizebox``).
    """
    paper = paper_table(long, refs, LATEX)
    table = paper.table
    align = "".join("r" if _right_aligned(c) else "l" for c in table.columns)
    body = [" & ".join(row) + r" \\" for row in table.itertuples(index=False)]
    if paper.n_measured < len(body):
        body.insert(paper.n_measured, r"\midrule")
    lines = [f"% {latex_escape(title)} leaderboard from the trial records (python -m harness leaderboard); "
             r"needs \usepackage{booktabs,graphicx}",
             r"\begin{table*}[t]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
             rf"\caption{{{_caption(title, paper, LATEX)}}}",
             rf"\label{{tab:leaderboard-{name}}}",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(table.columns) + r" \\", r"\midrule",
             *body, r"\bottomrule", r"\end{tabular}}", "", r"\smallskip\raggedright",
             r" \\ ".join(_notes(name, env, baseline, paper, LATEX)), r"\end{table*}"]
    return "\n".join(lines) + "\n"


def environment_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """How many of the test-split trials ran under each harness commit, device and library version."""
    test = leaderboard_rows(frame)
    versions: dict[str, dict[str, int]] = {}
    for text, n in sorted(test["versions"].value_counts().items()):
        for package, version in json.loads(text).items():
            versions.setdefault(package, {})
            versions[package][version] = versions[package].get(version, 0) + int(n)

    def counts(column: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in sorted(test[column].value_counts().items())}

    hardware = counts("hardware")
    return {"n_trials": int(len(test)), "git_commits": counts("git_commit"), "devices": counts("device"),
            "hardware": hardware, "mixed_hardware": len(hardware) > 1, "versions": versions}


# ---- files --------------------------------------------------------------------------------------------------

def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format=FLOAT_FORMAT)


def write_leaderboard(frame: pd.DataFrame, dataset: str, out_dir: Path, baseline: str | None = None,
                  formats: Iterable[str] = FORMATS, published: pd.DataFrame | None = None,
                  name: str | None = None) -> dict[str, Path]:
    """Write one leaderboard of ``dataset``'s records in ``frame`` as ``<name>.*`` (default: the dataset's
    name; see :func:`write_leaderboards`); return {file name: path}."""

    formats = set(formats)
    name = name or dataset
    title = leaderboard_title(name, dataset)
    long = long_table(frame, baseline)
    env = {"dataset": dataset, **environment_summary(frame)}
    refs = (published_rows(published, dataset, list(long["metric"].unique())) if published is not None
            else pd.DataFrame(columns=ROW_KEYS))
    texts = {".env.json": json.dumps(env, indent=2, sort_keys=True) + "\n"}
    if "csv" in formats:
        texts.update({".csv": _csv(aggregate(frame)), ".long.csv": _csv(long), ".wide.csv": _csv(wide_table(long))})
    if "md" in formats:
        texts[".md"] = render_markdown(name, title, long, refs, env, baseline)
    if "tex" in formats:
        texts[".tex"] = render_latex(name, title, long, refs, env, baseline)
    written = {}
    for suffix, text in sorted(texts.items()):
        path = out_dir / f"{name}{suffix}"
        atomic_write_text(path, text)
        written[path.name] = path
    figures = [f for f in plots.PLOT_FORMATS if f in formats]
    if figures:
        written.update({p.name: p for p in plots.leaderboard_plots(long, name, out_dir, figures, title=title)})
    return dict(sorted(written.items()))


#: joins an experiment's name to a dataset's in the name of a board of an experiment that spans several datasets:
#: a character no experiment or dataset name may hold (:mod:`harness.core.names`), so no two boards' names collide
#: (with ``.``, experiment ``ec``'s digits board and experiment ``ec.digits``'s were one file)
DATASET_SEPARATOR = "@"


def board_name(experiment: str, dataset: str, several_datasets: bool) -> str:
    """A board's file stem: the experiment's name, or ``<experiment>@<dataset>`` where the experiment holds
    trials on several datasets."""
    return f"{experiment}{DATASET_SEPARATOR}{dataset}" if several_datasets else experiment


def leaderboard_title(name: str, dataset: str) -> str:
    """A board's heading from its :func:`board_name`: the experiment's name, with the dataset where the
    name does not say it (``ec@digits`` → ``ec (digits)``)."""
    experiment = name.split(DATASET_SEPARATOR)[0]
    return experiment if experiment == dataset else f"{experiment} ({dataset})"


def leaderboard_names(test: pd.DataFrame) -> dict[tuple[str, str], str]:
    """{(experiment, dataset): :func:`board_name`} for the test-split trials in ``test``."""
    pairs = sorted(set(zip(test["experiment"], test["dataset"])))
    spans = Counter(e for e, _ in pairs)
    return {(e, d): board_name(e, d, spans[e] > 1) for e, d in pairs}


def write_leaderboards(store: TrialStore, out_dir: str | Path | None = None, datasets: list[str] | None = None,
                       baseline: str | None | Stored = STORED, formats: Iterable[str] | Stored = STORED,
                       published_csv: str | Path | None | Stored = STORED,
                       experiments: list[str] | None = None,
                       families: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Recompute every experiment's leaderboard under ``out_dir`` (default ``<results>/leaderboards``).

    Per experiment with test-split records (only ``experiments`` if given, only those on ``datasets`` if
    given), named as :func:`leaderboard_names` says: ``<name>.csv`` (per-group
    ``<metric>_mean``/``_std``, ``n_seeds``, ``n_failed``), ``.long.csv``, ``.wide.csv`` (csv), ``.md``,
    ``.tex``, ``.recall_at_k`` and ``.recall_at_1`` figures (png, pdf), and always ``.env.json``.
    ``baseline``, ``formats`` and ``published_csv`` (None: no published rows) not given are the experiment's
    stored options (:mod:`harness.reporting.board_options`); given ones are stored with it. A record that
    carries no method family (written before records did) takes its method's from ``families`` (the commands
    pass every registered method's). Returns {file name: path} of the files written.
    """
    given = {"baseline": baseline, "formats": formats, "published": published_option(published_csv)}
    out_dir = Path(out_dir) if out_dir else store.leaderboard_dir
    frame = load_records(store, families)
    test = leaderboard_rows(frame)
    chosen = {key: name for key, name in leaderboard_names(test).items()
              if (not experiments or key[0] in experiments) and (not datasets or key[1] in datasets)}
    options = {e: load_options(store, e).given(**given) for e in sorted({e for e, _ in chosen})}
    if isinstance(baseline, str) and chosen:
        mine = test[[key in chosen for key in zip(test["experiment"], test["dataset"])]]
        if baseline not in set(mine["method"]):
            raise ValueError(f"baseline method {baseline!r} has no test-split trials in "
                             f"{', '.join(sorted(set(chosen.values())))}")
    published = {e: load_published(o.published_csv) if o.published_csv else None for e, o in options.items()}
    written: dict[str, Path] = {}
    for (experiment, dataset), name in chosen.items():
        part = frame[(frame["experiment"] == experiment) & (frame["dataset"] == dataset)]
        board = options[experiment]
        written.update(write_leaderboard(part, dataset, out_dir, board.baseline, board.formats, published[experiment],
                                         name=name))
    for experiment in sorted({experiment for experiment, _ in chosen}):
        remove_stale_boards(out_dir, experiment, leaderboard_names(test))
    if any(value is not STORED for value in given.values()):
        for experiment, board in options.items():
            remember_options(store, experiment, board)
    return written


def stale_boards(out_dir: Path, experiment: str, current: set[str]) -> list[str]:
    """The names of ``experiment``'s leaderboards in ``out_dir`` that are no longer any leaderboard's
    (not in ``current``): ``<experiment>`` once it spans several datasets, ``<experiment>@<dataset>``
    once it no longer does, or no longer holds ``dataset``, and ``<experiment>.<dataset>``, the name such a
    board had before :data:`DATASET_SEPARATOR`, unless a board has it now. A board is known by its ``.env.json``."""
    stale = []
    for env_file in sorted(out_dir.glob(f"{glob.escape(experiment)}*.env.json")):
        name = env_file.name.removesuffix(".env.json")
        if name in current:
            continue
        try:
            dataset = json.loads(env_file.read_text()).get("dataset")
        except (OSError, ValueError, AttributeError):
            continue
        if name in (experiment, board_name(experiment, dataset, True), f"{experiment}.{dataset}"):
            stale.append(name)
    return stale


def remove_stale_boards(out_dir: Path, experiment: str, names: dict[tuple[str, str], str]) -> None:
    """Delete the files of ``experiment``'s :func:`stale_boards` given every leaderboard's ``names``
    (:func:`leaderboard_names`; its records rebuild them), saying so on stderr."""
    boards = sorted(name for (owner, _), name in names.items() if owner == experiment)
    for name in stale_boards(out_dir, experiment, set(names.values())):
        for suffix in BOARD_SUFFIXES:
            (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
        print(f"removed the stale leaderboard {out_dir / name}.* (experiment {experiment} now has "
              f"{', '.join(boards)})", file=sys.stderr)


def format_table(board: pd.DataFrame, metrics: list[str] | None = None,
                 recipes: dict[tuple[str, str], str] | None = None) -> str:
    """A plain-text table of :func:`aggregate`'s "mean ± std" (in percent) for printing at the end of a run;
    ``recipes`` labels each (recipe, hash) (:func:`~harness.reporting.tables.recipe_labels`: what differs, in
    words), else ``name:hash``."""
    if board.empty:
        return "(no finished trials)"
    metrics = metrics or [c[:-5] for c in board.columns if c.endswith("_mean")]
    rows = []
    for _, r in board.iterrows():
        recipe = (r["recipe"], r["recipe_hash"])
        row = {"method": group_label(r["method"], r["hparams"]), "backbone": r["backbone"],
               "recipe": (recipes or {}).get(recipe, f"{recipe[0]}:{recipe[1]}"),
               "seeds": f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")}
        row.update({m: mean_std_text(r[f"{m}_mean"], r[f"{m}_std"], metric=m) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def redraw_from_long(long_csv: str | Path, published_csv: str | Path | None = PUBLISHED_CSV,
                     formats: Iterable[str] = ("md", "tex", "png", "pdf")) -> dict[str, Path]:
    """Rewrite a leaderboard's Markdown, LaTeX and figures from its committed ``<name>.long.csv`` and
    ``<name>.env.json`` alone (no records), beside them; the baseline is the long table's."""

    long_csv = Path(long_csv)
    long = read_long_table(long_csv)
    datasets = sorted(set(long["dataset"]))
    if len(datasets) != 1:
        raise ValueError(f"{long_csv}: expected one dataset, found {', '.join(datasets) or 'none'}")
    dataset, out_dir = datasets[0], long_csv.parent
    name = long_csv.name.removesuffix(".long.csv")
    title = leaderboard_title(name, dataset)
    env = json.loads((out_dir / f"{name}.env.json").read_text())
    named = set(long["baseline"].dropna())
    baselines = sorted({key[1] for key in long.groupby(GROUP_KEYS).groups if full_group_label(key) in named})
    baseline = baselines[0] if len(baselines) == 1 else None
    refs = (published_rows(load_published(published_csv), dataset, list(long["metric"].unique()))
            if published_csv else pd.DataFrame(columns=ROW_KEYS))
    texts = {".md": render_markdown(name, title, long, refs, env, baseline) if "md" in formats else None,
             ".tex": render_latex(name, title, long, refs, env, baseline) if "tex" in formats else None}
    written = {}
    for suffix, text in texts.items():
        if text is not None:
            atomic_write_text(out_dir / f"{name}{suffix}", text)
            written[f"{name}{suffix}"] = out_dir / f"{name}{suffix}"
    figures = [f for f in plots.PLOT_FORMATS if f in formats]
    if figures:
        written.update({p.name: p for p in plots.leaderboard_plots(long, name, out_dir, figures, title=title)})
    return dict(sorted(written.items()))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harness.reporting.leaderboard",
                                     description="Redraw a leaderboard's Markdown, LaTeX and figures from its "
                                                 "<name>.long.csv and <name>.env.json (no records needed).")
    parser.add_argument("long_csv", type=Path, help="results/leaderboards/<name>.long.csv")
    for path in redraw_from_long(parser.parse_args().long_csv).values():
        print(f"leaderboard: {path}")
