"""A leaderboard's long table as text: the wide table, the paper table (measured then published rows) in
Markdown and LaTeX with caption and notes, the one-column LaTeX table of a two-column paper, and the plain
table a run prints."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from harness.core.metrics import metric_label, metric_sort_key
from harness.reporting.board_options import COLUMN_METRICS
from harness.reporting.stats import SIGNIFICANCE
from harness.reporting.tables import (CODE_NOT_RECORDED, GROUP_KEYS, distinct_labels, diverged_suffix, group_label,
                                      recipe_labels, recipe_words, seeds_text)
from harness.reporting.text_styles import LATEX, MARKDOWN, PLAIN, Style, latex_escape, mean_std_text

#: how a measured row was selected: the model after the last epoch, scored once on the test classes
MEASURED_SELECTION = "last epoch"
#: columns a paper table drops when every row has the same value, and how its caption then says that value
COMMON_PHRASES = {"Source": "all rows {}", "Backbone": "backbone {}", "Dim": "{}-d embeddings",
                  "Recipe": "recipe {}", "Seeds": "{} seeds per row", "Selection": "selection: {}"}


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
        counts = by_metric.iloc[0]
        label = labels[key] if labels else group_label(g["method"], g["hparams"])
        row = {"Method": style.escape(label), "Backbone": style.escape(g["backbone"]),
               "Dim": str(g["embedding_dim"]), "Recipe": style.escape(recipes[(g["recipe"], g["recipe_hash"])]),
               "Seeds": seeds_text(int(by_metric["n_seeds"].max()), int(counts["n_diverged"]),
                                   int(counts["n_failed"]))}
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
                     f"and recipe, else its only group; of several, the one at the hyperparameters the row shares: "
                     f"the baseline column of {style.escape(name)}.long.csv), "
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
    if env.get("not_comparable"):
        warning = env["not_comparable"]
        notes.append(f"{style.escape(warning[:1].upper() + warning[1:])}; the experiment was run with "
                     "--incomparable-rows, so part of a difference between rows may be their training's, not their "
                     "methods'.")
    hardware = env.get("hardware", {})
    notes.append(f"Environment (from the trial records; versions in {style.escape(name)}.env.json): "
                 f"harness commit(s) {style.escape(', '.join(env['git_commits']))}; "
                 f"device(s) {style.escape(', '.join(env['devices']))}; "
                 f"hardware {style.escape('; '.join(hardware) or 'not recorded')}.")
    notes += _evaluation_notes(env.get("evaluations", {}), style)
    if env.get("code_not_recorded"):
        notes.append(f"{env['code_not_recorded']} of the {env['n_trials']} trials were recorded before records "
                     f"held their method's code fingerprint ({CODE_NOT_RECORDED!r} in {style.escape(name)}.long.csv): "
                     "their code cannot be shown to equal any other, so they never share a row with a trial that "
                     "has one.")
    if env.get("mixed_hardware"):
        notes.append(f"The seeds ran on {len(hardware)} different kinds of hardware (trials per kind in "
                     f"{style.escape(name)}.env.json): the same trial can give different numbers on another "
                     f"processor or thread count, so part of a difference between rows may be the hardware's.")
    return notes


#: what each metric family's evaluation scores, in a board's notes
FAMILY_METRICS = {"retrieval": "Recall@K, MAP@R and R-Precision are", "clustering": "NMI is"}


def _evaluation_notes(evaluations: dict[str, dict[str, dict[str, Any]]], style: Style) -> list[str]:
    """What scored each metric family (its version and implementation), and, for a family whose trials
    were scored by several versions, why its columns are split."""
    notes, single = [], []
    for family, versions in sorted(evaluations.items()):
        described = [f"{style.escape(v)}: {style.escape(info['text'])} ({info['n_trials']} trials)"
                     for v, info in sorted(versions.items())]
        if len(versions) == 1:
            single.append(f"{FAMILY_METRICS[family]} scored by {family} evaluation {described[0]}")
            continue
        notes.append(f"{FAMILY_METRICS[family]} split by the evaluation that scored them, one column per "
                     f"version ({'; '.join(described)}). Values scored by different evaluations are not "
                     "comparable (another k-means or kNN gives other numbers on the same embeddings), so each "
                     "column is ranked and tested on its own; to put every row in one column, re-score the "
                     "trials that kept their embeddings (python -m harness evaluate --rescore) or re-run them.")
    if single:
        notes.insert(0, "Evaluation (from the records): " + "; ".join(single) + ".")
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


#: LaTeX in a one-column table: the "± std" at the size of the mean (8 pt under \footnotesize), never smaller
COLUMN_LATEX = replace(LATEX, spread=lambda s: rf"$\,\pm\,${s}")


def render_column_latex(name: str, title: str, long: pd.DataFrame, baseline: str | None = None,
                        metrics: tuple[str, ...] = COLUMN_METRICS) -> str:
    r"""Leaderboard ``name``'s measured rows as a one-column ``table`` for a two-column paper: ``metrics`` (the
    first ranks the rows, best first), each row its method (with what sets its hyperparameters or recipe apart,
    in words), the recipe every row shares in the caption, at most two lines of notes (the rest is in
    ``<name>.md`` and ``<name>.csv``). It is ``\footnotesize`` (8 pt in a 10 pt article) and never scaled:
    a ``tabularx`` of ``\columnwidth`` whose method column wraps; a row identical over its seeds (a method that
    does not train) shows its mean without ``± 0.00``. ``ValueError`` if the board lacks one of ``metrics``.
    """
    present = set(long["metric"])
    missing = [m for m in metrics if m not in present]
    if missing:
        raise ValueError(f"leaderboard {name} has no {', '.join(missing)} for its one-column table; "
                         f"valid: {', '.join(sorted(present, key=metric_sort_key))}")
    keys = list(long.groupby(GROUP_KEYS, sort=True).groups)
    labels = distinct_labels(keys, with_setup=False)
    shared, words = recipe_words(long)
    usual = max(sorted(set(words.values())), key=list(words.values()).count) if words else ""
    by_group = {key: group.set_index("metric") for key, group in long.groupby(GROUP_KEYS, sort=True)}
    main = metrics[0]
    ranked = sorted(keys, key=lambda k: (-by_group[k].loc[main, "mean"] if pd.notna(by_group[k].loc[main, "mean"])
                                         else float("inf"), labels[k]))
    rows = []
    for key in ranked:
        first = by_group[key].iloc[0]
        label = (labels[key] + (f" ({words[key]})" if words.get(key, usual) != usual else "")
                 + diverged_suffix(int(by_group[key]["n_seeds"].max()), int(first["n_diverged"]),
                                   int(first["n_failed"])))
        cells = []
        for metric in metrics:
            row = by_group[key].loc[metric].copy()
            if row["std"] == 0:  # deterministic: every seed gave the same value
                row["std"] = float("nan")
            row.name = metric
            cells.append(_cell(row, COLUMN_LATEX))
        rows.append(" & ".join([COLUMN_LATEX.escape(label), *cells]) + r" \\")
    seeds = sorted({int(g["n_seeds"].max()) for g in by_group.values()})
    recipe = ", ".join(part for part in (shared, usual) if part)
    caption = (f"{latex_escape(title)}: {', '.join(metric_label(m) for m in metrics)} on the test classes, "
               f"mean{COLUMN_LATEX.pm}std over {seeds[0] if len(seeds) == 1 else 'up to ' + str(seeds[-1])} seeds "
               rf"(\%), ranked by {metric_label(main)}; recipe {latex_escape(recipe)}; selection: {MEASURED_SELECTION}.")
    notes = ["Bold: best."]
    if baseline:
        notes.append(f"{LATEX.welch}/{LATEX.paired}: {LATEX.math(f'p<{SIGNIFICANCE:g}')} against "
                     f"{latex_escape(baseline)} (Welch/paired t-test).")
    notes.append(f"Details: {latex_escape(name)}.md, .csv.")
    align = r">{\raggedright\arraybackslash}X" + "r" * len(metrics)
    lines = [f"% {latex_escape(title)}: one-column leaderboard from the trial records (python -m harness "
             r"leaderboard); needs \usepackage{booktabs,tabularx}",
             r"\begin{table}[t]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{caption}}}", rf"\label{{tab:leaderboard-{name}-column}}",
             rf"\begin{{tabularx}}{{\columnwidth}}{{{align}}}", r"\toprule",
             " & ".join(["Method", *(metric_label(m) for m in metrics)]) + r" \\", r"\midrule",
             *rows, r"\bottomrule", r"\end{tabularx}", "",
             r"\smallskip\raggedright " + " ".join(notes), r"\end{table}"]
    return "\n".join(lines) + "\n"


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
               "seeds": seeds_text(int(r["n_seeds"]), int(r["n_diverged"]), int(r["n_failed"]))}
        row.update({m: mean_std_text(r[f"{m}_mean"], r[f"{m}_std"], metric=m) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)
