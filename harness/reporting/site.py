"""A static HTML site of a results folder, written from its records alone.

``index.html`` lists the experiments; ``<experiment>/index.html`` holds its leaderboard as a sortable table
(the measured rows beside the published ones, each with its selection protocol, as
:func:`~harness.reporting.board_text.paper_table` builds them for Markdown and LaTeX), the significance
tests of the long table (:func:`~harness.reporting.board_statistics.long_table`), the leaderboard plots, a
benchmark's manifest and report, the environment and the list of trials; ``<experiment>/<trial>.html``
holds a trial's per-epoch curves (inline SVG) and its resolved configuration. Every page is plain HTML with
a few lines of inline JavaScript and CSS (no network): it works opened from disk. Every text taken from a
record is escaped.
"""
from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from harness.core.metrics import metric_label, metric_sort_key, metric_spec
from harness.core.record import TrialRecord
from harness.core.store import TrialStore, atomic_write_binary, atomic_write_text
from harness.reporting import plots
from harness.reporting.board_names import leaderboard_names, leaderboard_title
from harness.reporting.board_options import load_options
from harness.reporting.board_statistics import environment_summary, leaderboard_rows, load_records, long_table
from harness.reporting.board_text import paper_table
from harness.reporting.published import ROW_KEYS, load_published, published_rows
from harness.reporting.stats import SIGNIFICANCE
from harness.reporting.tables import GROUP_KEYS, distinct_labels
from harness.reporting.text_styles import PLAIN

#: the style sheet of every page
CSS = """
*{box-sizing:border-box}body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;
background:#f6f8fa}
header{background:#24292f;color:#fff;padding:14px 32px}header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:1360px;margin:0 auto;padding:8px 28px 48px}h1{font-size:24px;margin:18px 0 4px}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
.muted{color:#57606a}td.wrap{white-space:normal}a{color:#0969da}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;margin:6px 0;font-size:13px}
th,td{padding:5px 9px;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}
th{background:#f0f3f6;position:sticky;top:0}th.sortable{cursor:pointer;user-select:none}
th.sortable:after{content:" \\2195";color:#8c959f}th.asc:after{content:" \\2191";color:#0969da}
th.desc:after{content:" \\2193";color:#0969da}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.published td{color:#57606a;font-style:italic}tbody tr:hover{background:#f6f8fa}
.scroll{overflow-x:auto}.figs img{max-width:100%;border:1px solid #d0d7de;background:#fff;margin:6px 0}
pre{background:#fff;border:1px solid #d0d7de;padding:10px;overflow-x:auto;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;
padding:12px 16px;min-width:260px}.card h3{margin:0 0 4px;font-size:16px}svg{background:#fff;border:1px solid #d0d7de}
"""

#: sorts a table by a header click: numbers by their leading value ("83.51 ± 0.19"), text otherwise
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th, col){
    th.classList.add("sortable");
    th.addEventListener("click", function(){
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row){var t = row.cells[col].textContent, n = parseFloat(t); return isNaN(n) ? t : n;}
      rows.sort(function(a, b){
        var x = key(a), y = key(b), xn = typeof x === "number", yn = typeof y === "number";
        if (xn !== yn) return xn ? -1 : 1;  /* a missing value ("—") goes last either way */
        var c = xn ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""

#: the colours of the curves of a trial page
CURVE_COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#57606a"]


def _page(title: str, body: str, home: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{CSS}</style></head><body>'
            f'<header><a href="{home}">dmlbench results</a></header><main>{body}</main>'
            f'<script>{SORT_JS}</script></body></html>\n')


def _table(frame: pd.DataFrame, row_classes: list[str] | None = None, links: Mapping[int, str] | None = None,
           table_id: str = "") -> str:
    """A sortable HTML table of ``frame``'s cells (escaped); ``links[column index]`` names a column of
    hrefs that the cell links to."""
    links = links or {}
    columns = [c for c in frame.columns if c not in links.values()]
    numeric = [frame[c].astype(str).str.match(r"^-?\d").any() for c in columns]
    head = "".join(f'<th class="{"num" if n else ""}">{escape(str(c))}</th>' for c, n in zip(columns, numeric))
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for j, (c, n) in enumerate(zip(columns, numeric)):
            text = escape(str(row[c]))
            if j in links:
                text = f'<a href="{escape(str(row[links[j]]))}">{text}</a>'
            cells.append(f'<td class="{"num" if n else ""}">{text}</td>')
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _points(value: Any, metric: str) -> str:
    """A metric value as the leaderboards print it: percent (points) for a percent metric."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.2f}" if metric_spec(metric).percent else f"{value:.4f}"


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


def _definitions(data: Mapping[str, Any]) -> str:
    """Nested mappings as a definition table (escaped)."""
    rows = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            inner = ", ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in value.items())
            rows.append(f'<tr><th>{escape(str(key))}</th><td class="wrap">{inner}</td></tr>')
        else:
            rows.append(f'<tr><th>{escape(str(key))}</th><td class="wrap">{escape(str(value))}</td></tr>')
    return f"<table>{''.join(rows)}</table>"


def curves_svg(history: list[dict[str, float]], width: int = 520, height: int = 240) -> str:
    """Each per-epoch series of ``history`` (loss, validation metrics) as a line in one small SVG chart of
    its own, scaled to its own range; empty where the trial has no epochs."""
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    names = sorted({k for h in history for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))})
    charts = []
    for i, name in enumerate(names):
        points = [(e, h[name]) for e, h in zip(epochs, history) if isinstance(h.get(name), (int, float))
                  and math.isfinite(h[name])]
        if not points:
            continue
        (x0, x1), (y0, y1) = ((min(p[k] for p in points), max(p[k] for p in points)) for k in (0, 1))
        x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
        left, top, right, bottom = 56, 24, width - 12, height - 30

        def xy(e: float, v: float) -> str:
            return (f"{left + (e - x0) / (x1 - x0) * (right - left):.1f},"
                    f"{bottom - (v - y0) / (y1 - y0) * (bottom - top):.1f}")
        line = " ".join(xy(e, v) for e, v in points)
        colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        charts.append(
            f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(name)}">'
            f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(name)}</text>'
            f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#8c959f"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#8c959f"/>'
            f'<text x="{left - 4}" y="{top + 4}" font-size="11" text-anchor="end">{y1:.4g}</text>'
            f'<text x="{left - 4}" y="{bottom}" font-size="11" text-anchor="end">{y0:.4g}</text>'
            f'<text x="{left}" y="{bottom + 16}" font-size="11">{x0:g}</text>'
            f'<text x="{right}" y="{bottom + 16}" font-size="11" text-anchor="end">epoch {x1:g}</text>'
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>'
            + "".join(f'<circle cx="{xy(e, v).split(",")[0]}" cy="{xy(e, v).split(",")[1]}" r="2.5" '
                      f'fill="{colour}"/>' for e, v in points)
            + "</svg>")
    return "\n".join(charts) or '<p class="muted">No per-epoch history.</p>'


def _trial_page(record: TrialRecord, experiment: str) -> str:
    spec = record.spec
    metrics = {metric_label(m): _points(v, m) for m, v in sorted(record.metrics.items(),
                                                                  key=lambda kv: metric_sort_key(kv[0]))}
    body = (f'<p class="muted"><a href="index.html">{escape(experiment)}</a> / trial</p>'
            f"<h1>{escape(record.trial_id)}</h1>"
            f'<p class="muted">{escape(spec.method)} on {escape(spec.dataset)}, seed {spec.seed}, '
            f"status {escape(record.status)}, {record.wall_time_s:.0f} s</p>"
            + (f"<pre>{escape(record.error)}</pre>" if record.error else "")
            + "<h2>Metrics (test classes, %)</h2>" + _definitions(metrics)
            + "<h2>Per-epoch curves</h2>" + curves_svg(record.history)
            + "<h2>Resolved configuration</h2>"
            + f"<pre>{escape(json.dumps(record.trial.to_dict(), indent=2, sort_keys=True, default=str))}</pre>"
            + "<h2>Environment</h2>"
            + f"<pre>{escape(json.dumps(record.environment, indent=2, sort_keys=True, default=str))}</pre>")
    return _page(record.trial_id, body, "../index.html")


def _benchmark_section(store: TrialStore, experiment: str, out: Path) -> str:
    """A benchmark's manifest (its protocol) and its report's figures and text, where ``experiment`` is one."""
    folder = store.benchmark_dir(experiment)
    manifest = folder / "manifest.yaml"
    if not manifest.is_file():
        return ""
    html = ["<h2>Benchmark protocol (manifest)</h2>", f"<pre>{escape(manifest.read_text())}</pre>"]
    report = folder / "report"
    for png in sorted(report.glob("*.png")):
        atomic_write_binary(out / f"benchmark.{png.name}", lambda f, png=png: f.write(png.read_bytes()))
        html.append(f'<div class="figs"><img src="benchmark.{escape(png.name)}" alt="{escape(png.stem)}"></div>')
    if (report / "report.md").is_file():
        html += ["<h2>Benchmark report</h2>", f"<pre>{escape((report / 'report.md').read_text())}</pre>"]
    return "".join(html)


def _experiment_page(store: TrialStore, experiment: str, dataset: str, name: str, part: pd.DataFrame,
                     records: list[TrialRecord], out: Path) -> tuple[str, pd.DataFrame]:
    """The experiment's page, and its long table (for the index)."""
    options = load_options(store, experiment)
    long = long_table(part, options.baseline)
    metrics = sorted(long["metric"].unique(), key=metric_sort_key)
    published = load_published(options.published_csv) if options.published_csv else None
    refs = (published_rows(published, dataset, list(metrics)) if published is not None
            else pd.DataFrame(columns=ROW_KEYS))
    paper = paper_table(long, refs, PLAIN)
    classes = ["measured"] * paper.n_measured + ["published"] * (len(paper.table) - paper.n_measured)
    title = leaderboard_title(name, dataset)
    figures = plots.leaderboard_plots(long, name, out, ["png"], title=title)
    trials = pd.DataFrame([{
        "Trial": r.trial_id, "href": f"{r.trial_id}.html", "Method": r.spec.method, "Seed": r.spec.seed,
        "Status": r.status, "Recall@1": _points(r.metrics.get("recall@1", float("nan")), "recall@1"),
        "Epochs": len(r.history), "Wall time (s)": f"{r.wall_time_s:.0f}"} for r in records])
    significance = _significance(long)
    body = [f'<p class="muted"><a href="../index.html">experiments</a> / {escape(name)}</p>',
            f"<h1>{escape(title)}</h1>",
            f'<p class="muted">Test classes; mean ± std over seeds, in percent; {escape("; ".join(paper.common))}. '
            + (f"† / ‡: p &lt; {SIGNIFICANCE} against {escape(options.baseline)} (Welch / paired t-test). "
               if options.baseline else "") + "Click a column to sort.</p>",
            "<h2>Leaderboard</h2>", _table(paper.table, classes, table_id="leaderboard")]
    if paper.citations:
        body.append("<p class=\"muted\">" + "<br>".join(f"[{i}] {escape(c)}" for i, c in
                                                       enumerate(paper.citations, 1)) + "</p>")
    if paper.hparams:
        body.append(f'<p class="muted">Hyperparameters: {escape("; ".join(paper.hparams))}</p>')
    if len(significance):
        body += [f"<h2>Significance against the baseline, {escape(str(options.baseline))}</h2>",
                 '<p class="muted">Welch and paired t-tests over seeds; the smallest difference the paired seeds '
                 "detect at 80% power (points) and the seeds needed to detect one point.</p>",
                 _table(significance, table_id="significance")]
    body += ["<h2>Plots</h2>", '<div class="figs">'
             + "".join(f'<img src="{escape(p.name)}" alt="{escape(p.stem)}">' for p in figures) + "</div>",
             _benchmark_section(store, experiment, out),
             "<h2>Environment</h2>", _definitions(environment_summary(part)),
             "<h2>Trials</h2>", _table(trials, links={0: "href"}, table_id="trials")]
    return _page(title, "".join(body), "../index.html"), long


def write_site(store: TrialStore, out: str | Path, families: Mapping[str, str] | None = None) -> list[Path]:
    """Write the site of ``store``'s test-split records under ``out``; return the pages written. A record
    that carries no method family takes its method's from ``families``."""
    out = Path(out)
    frame = load_records(store, families)
    test = leaderboard_rows(frame)
    if test.empty:
        raise ValueError(f"no test-split trial records under {store.runs}")
    pages, cards = [], []
    for (experiment, dataset), name in sorted(leaderboard_names(test).items()):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        part = frame[(frame["experiment"] == experiment) & (frame["dataset"] == dataset)]
        ids = set(test[(test["experiment"] == experiment) & (test["dataset"] == dataset)]["trial_id"])
        records = sorted((r for _, r in store.records(experiment) if r.trial_id in ids), key=lambda r: r.trial_id)
        for record in records:
            path = folder / f"{record.trial_id}.html"
            atomic_write_text(path, _trial_page(record, name))
            pages.append(path)
        path = folder / "index.html"
        page, long = _experiment_page(store, experiment, dataset, name, part, records, folder)
        atomic_write_text(path, page)
        pages.append(path)
        best = long[(long["metric"] == "recall@1") & (long["rank"] == 1)]
        lead = "".join(f"best R@1: {escape(m)} {_points(v, 'recall@1')}<br>"
                       for m, v in zip(best["method"], best["mean"]))
        kind = "benchmark" if (store.benchmark_dir(experiment) / "manifest.yaml").is_file() else "experiment"
        cards.append(f'<div class="card"><h3><a href="{escape(name)}/index.html">{escape(name)}</a></h3>'
                     f'<div class="muted">{kind} on {escape(dataset)}: {part["method"].nunique()} methods, '
                     f"{len(records)} trials</div><div>{lead}</div></div>")
    body = ("<h1>Experiments</h1>"
            f'<p class="muted">{escape(str(store.root))}: every experiment with test-split records.</p>'
            f'<div class="cards">{"".join(cards)}</div>')
    index = out / "index.html"
    atomic_write_text(index, _page("dmlbench results", body, "index.html"))
    return [index, *pages]
