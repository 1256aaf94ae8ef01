"""A static HTML site of a results folder, written from its records and files alone.

``index.html`` lists the experiments, the searches and the sweeps; ``<experiment>/index.html`` holds its
leaderboard as a sortable table (the measured rows beside the published ones, each with its selection
protocol, as :func:`~harness.reporting.board_text.paper_table` builds them for Markdown and LaTeX), the
significance tests of the long table (:func:`~harness.reporting.board_statistics.long_table`), the leaderboard
plots, links to every file of its board (CSV, Markdown, TeX, PDF, PNG; copied into ``<experiment>/files/``),
a benchmark's protocol and its report rendered as HTML with its figures (``<experiment>/benchmark/``), the
environment as tables and the list of trials; ``<experiment>/<trial>.html`` holds a trial's per-epoch curves
(inline SVG) and its resolved configuration (:mod:`harness.reporting.trial_page`); ``searches/<name>.html``
and ``sweeps/<experiment>.html`` a search's and a sweep's (:mod:`harness.reporting.search_pages`). Every
page is plain HTML with a few lines of inline JavaScript and CSS (no network): it works opened from disk.
Every text taken from a record is escaped.
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Mapping

import pandas as pd

from harness.core.metrics import metric_label, metric_sort_key
from harness.core.record import TrialRecord
from harness.core.store import TrialStore, atomic_write_text
from harness.reporting import html, plots
from harness.reporting.board_names import board_warning, leaderboard_names, leaderboard_title
from harness.reporting.board_options import load_options
from harness.reporting.board_statistics import (environment_summary, leaderboard_rows, load_records, long_table,
                                                read_records)
from harness.reporting.board_text import paper_table
from harness.reporting.published import ROW_KEYS, load_published, published_rows
from harness.reporting.search_pages import (TrialLink, find_searches, find_sweeps, search_page, search_summary,
                                           sweep_page)
from harness.reporting.stale_boards import BOARD_SUFFIXES
from harness.reporting.stats import SIGNIFICANCE
from harness.reporting.tables import GROUP_KEYS, distinct_labels
from harness.reporting.trial_page import points as _points
from harness.reporting.trial_page import trial_page
from harness.reporting.text_styles import PLAIN

def _significance(long: pd.DataFrame) -> pd.DataFrame:
    """The long table's tests against the baseline, one row per group and metric (metric by metric), in points;
    groups labelled as in the leaderboard table."""
    labels = distinct_labels(list(long.groupby(GROUP_KEYS, sort=True).groups), with_setup=False)
    tested = long[long["p_welch"].notna() | long["p_paired"].notna()]
    tested = tested.iloc[sorted(range(len(tested)), key=lambda i: (metric_sort_key(tested["metric"].iloc[i]),
                                                                     tested["method"].iloc[i]))]
    return pd.DataFrame({
        "Method": [labels[tuple(row)] for row in tested[GROUP_KEYS].itertuples(index=False)],
        "Metric": tested["metric"].map(metric_label),
        "Mean": [_points(v, m) for v, m in zip(tested["mean"], tested["metric"])],
        "p (Welch)": tested["p_welch"].map(lambda p: "—" if pd.isna(p) else f"{p:.3g}"),
        "p (paired)": tested["p_paired"].map(lambda p: "—" if pd.isna(p) else f"{p:.3g}"),
        "Paired seeds": tested["n_paired"].map(lambda n: "—" if pd.isna(n) else str(int(n))),
        "Detectable at 80% power": [_points(v, m) for v, m in zip(tested["detectable_paired"], tested["metric"])],
        "Seeds for 1 point": tested["seeds_for_1pt"].map(lambda n: "—" if pd.isna(n) else str(int(n))),
    })


def _benchmark_section(store: TrialStore, experiment: str, out: Path) -> str:
    """A benchmark's manifest (its protocol) and its report rendered as HTML, its figures and tables copied
    into ``out/benchmark/`` (where ``experiment`` is a benchmark), with links to every file of the report."""
    folder = store.benchmark_dir(experiment)
    manifest = folder / "manifest.yaml"
    if not manifest.is_file():
        return ""
    target = out / "benchmark"
    copies = [html.copy_file(manifest, target / manifest.name)]
    report = folder / "report"
    copies += [html.copy_file(p, target / p.name) for p in sorted(report.glob("*")) if p.is_file()]
    parts = ["<h2>Benchmark report</h2>"]
    searches = [s for s in find_searches(store) if s.benchmark == experiment]
    if searches:
        parts.append("<p>Each method's search (trials, figures, best and chosen values): " + ", ".join(
            f'<a href="../searches/{escape(s.name)}.html">{escape(s.name)}</a>' for s in searches) + "</p>")
    if (report / "report.md").is_file():
        parts.append(html.markdown((report / "report.md").read_text(), base="benchmark/"))
    parts += ["<h3>Files of the benchmark</h3>", html.file_links(copies, out),
              "<h2>Benchmark protocol (manifest)</h2>", f"<pre>{escape(manifest.read_text())}</pre>"]
    return "".join(parts)


def _board_files(store: TrialStore, name: str, out: Path) -> list[Path]:
    """The files the ``leaderboard`` command wrote for board ``name``, copied into ``out/files/``."""
    board = [store.leaderboard_dir / f"{name}{suffix}" for suffix in BOARD_SUFFIXES]
    return [html.copy_file(p, out / "files" / p.name) for p in board if p.is_file()]


def _environment(summary: Mapping[str, object]) -> str:
    """The environment summary as tables: trial counts per commit, device and hardware, and per library
    version (one row per package, its versions and their trial counts)."""
    def counts(title: str, data: object) -> str:
        frame = pd.DataFrame([{title: k, "Trials": v} for k, v in dict(data).items()])  # type: ignore[call-overload]
        return html.table(frame) if len(frame) else ""
    versions = pd.DataFrame([{"Package": package, "Version (trials)": ", ".join(f"{v} ({n})" for v, n in found.items())}
                             for package, found in sorted(dict(summary["versions"]).items())])  # type: ignore[call-overload]
    mixed = " (mixed: compare times with care)" if summary["mixed_hardware"] else ""
    return (f'<p class="muted">{summary["n_trials"]} test-split trials{mixed}.</p><div class="envs">'
            + counts("Harness commit", summary["git_commits"]) + counts("Device", summary["devices"])
            + counts("Hardware", summary["hardware"]) + (html.table(versions) if len(versions) else "") + "</div>")


def _experiment_page(store: TrialStore, experiment: str, dataset: str, name: str, part: pd.DataFrame,
                     records: list[TrialRecord], out: Path, not_comparable: str) -> tuple[str, pd.DataFrame]:
    """The experiment's page, and its long table (for the index); ``not_comparable``: its board's
    :func:`~harness.reporting.board_names.board_warning`."""
    options = load_options(store, experiment)
    long = long_table(part, options.baseline)
    metrics = sorted(long["metric"].unique(), key=metric_sort_key)
    published = load_published(options.published_csv) if options.published_csv else None
    refs = (published_rows(published, dataset, list(metrics)) if published is not None
            else pd.DataFrame(columns=ROW_KEYS))
    paper = paper_table(long, refs, PLAIN)
    classes = ["measured"] * paper.n_measured + ["published"] * (len(paper.table) - paper.n_measured)
    title = leaderboard_title(name, dataset, not_comparable)
    figures = plots.leaderboard_plots(long, name, out, ["png"], title=title)
    statuses = dict(zip(part["trial_id"], part["status"]))  # as the board counts it (a seed below the floor diverged)
    trials = pd.DataFrame([{
        "Trial": r.trial_id, "href": f"{r.trial_id}.html", "Method": r.spec.method, "Seed": r.spec.seed,
        "Status": statuses.get(r.trial_id, r.status), "Recall@1": _points(r.metrics.get("recall@1", float("nan")), "recall@1"),
        "Epochs": len(r.history), "Wall time (s)": f"{r.wall_time_s:.0f}"} for r in records])
    significance = _significance(long)
    body = [f'<p class="muted"><a href="../index.html">experiments</a> / {escape(name)}</p>',
            f"<h1>{escape(title)}</h1>",
            f'<p class="muted">Test classes; mean ± std over seeds, in percent; {escape("; ".join(paper.common))}. '
            + (f"† / ‡: p &lt; {SIGNIFICANCE} against {escape(options.baseline)} (Welch / paired t-test). "
               if options.baseline else "") + "Click a column to sort.</p>",
            "<h2>Leaderboard</h2>", html.table(paper.table, classes, table_id="leaderboard")]
    if paper.citations:
        body.append("<p class=\"muted\">" + "<br>".join(f"[{i}] {escape(c)}" for i, c in
                                                       enumerate(paper.citations, 1)) + "</p>")
    if paper.hparams:
        body.append(f'<p class="muted">Hyperparameters: {escape("; ".join(paper.hparams))}</p>')
    if len(significance):
        body += [f"<h2>Significance against the baseline, {escape(str(options.baseline))}</h2>",
                 '<p class="muted">Welch and paired t-tests over seeds; the smallest difference the paired seeds '
                 "detect at 80% power (points) and the seeds needed to detect one point.</p>",
                 html.table(significance, table_id="significance")]
    files = _board_files(store, name, out)
    body += ["<h2>Plots</h2>", '<div class="figs">'
             + "".join(f'<img src="{escape(p.name)}" alt="{escape(p.stem)}">' for p in figures) + "</div>",
             "<h2>Files of the board</h2>",
             html.file_links(files, out) if files else
             f'<p class="muted">None yet: <code>python -m harness leaderboard --results-dir {escape(str(store.root))}'
             "</code> writes them.</p>",
             _benchmark_section(store, experiment, out),
             "<h2>Environment</h2>", _environment(environment_summary(part)),
             "<h2>Trials</h2>", html.table(trials, links={0: "href"}, table_id="trials")]
    return html.page(title, "".join(body), "../index.html"), long


def write_site(store: TrialStore, out: str | Path, families: Mapping[str, str] | None = None) -> list[Path]:
    """Write the site of ``store``'s test-split records under ``out``; return the pages written. A record
    that carries no method family takes its method's from ``families``."""
    out = Path(out)
    known = read_records(store)
    frame = load_records(known, families)
    test = leaderboard_rows(frame)
    if test.empty:
        raise ValueError(f"no test-split trial records under {store.runs}")
    pages, cards = [], []
    for (experiment, dataset), name in sorted(leaderboard_names(test).items()):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        part = frame[(frame["experiment"] == experiment) & (frame["dataset"] == dataset)]
        ids = set(test[(test["experiment"] == experiment) & (test["dataset"] == dataset)]["trial_id"])
        records = sorted((r for _, r in store.known_records(experiment, known) if r.trial_id in ids), key=lambda r: r.trial_id)
        warning = board_warning(store, experiment, dataset, known)
        for record in records:
            path = folder / f"{record.trial_id}.html"
            crumb = f'<a href="../index.html">experiments</a> / <a href="index.html">{escape(name)}</a>'
            atomic_write_text(path, trial_page(record, crumb, "../index.html"))
            pages.append(path)
        path = folder / "index.html"
        page, long = _experiment_page(store, experiment, dataset, name, part, records, folder, warning)
        atomic_write_text(path, page)
        pages.append(path)
        best = long[(long["metric"] == "recall@1") & (long["rank"] == 1)]
        lead = "".join(f"best R@1: {escape(m)} {_points(v, 'recall@1')}<br>"
                       for m, v in zip(best["method"], best["mean"]))
        kind = "benchmark" if (store.benchmark_dir(experiment) / "manifest.yaml").is_file() else "experiment"
        cards.append(f'<div class="card"><h3><a href="{escape(name)}/index.html">{escape(name)}</a></h3>'
                     f'<div class="muted">{kind} on {escape(dataset)}: {part["method"].nunique()} methods, '
                     f"{len(records)} trials</div><div>{lead}</div>"
                     + (f'<div class="muted">{escape(warning)}</div>' if warning else "") + "</div>")
    def trial_writer(section: str) -> TrialLink:
        def write(record: TrialRecord, subfolder: str, crumb: str) -> str:
            path = out / section / subfolder / f"{record.trial_id}.html"
            atomic_write_text(path, trial_page(record, crumb, "../../index.html"))
            pages.append(path)
            return f"{subfolder}/{record.trial_id}.html"
        return write

    search_cards, sweep_cards = [], []
    for kind, name, render, summary in (
            [("search", s.name, lambda s=s: search_page(store, s, out, trial_writer("searches")), search_summary(s))
             for s in find_searches(store)]
            + [("sweep", e, lambda e=e: sweep_page(store, e, out, trial_writer("sweeps"), known), "sweep")
               for e in find_sweeps(store, known)]):
        folder = "searches" if kind == "search" else "sweeps"
        path = out / folder / f"{name}.html"
        atomic_write_text(path, render())
        pages.append(path)
        (search_cards if kind == "search" else sweep_cards).append(
            f'<div class="card"><h3><a href="{folder}/{escape(name)}.html">{escape(name)}</a></h3>'
            f'<div class="muted">{summary}</div></div>')
    body = ("<h1>Experiments</h1>"
            f'<p class="muted">{escape(str(store.root))}: every experiment with test-split records.</p>'
            f'<div class="cards" id="experiments">{"".join(cards)}</div>'
            + (f'<h1>Searches</h1><div class="cards">{"".join(search_cards)}</div>' if search_cards else "")
            + (f'<h1>Sweeps</h1><div class="cards">{"".join(sweep_cards)}</div>' if sweep_cards else ""))
    index = out / "index.html"
    atomic_write_text(index, html.page("dmlbench results", body, "index.html"))
    return [index, *pages]
