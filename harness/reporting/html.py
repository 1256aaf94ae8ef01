"""The building blocks of the static site's pages (:mod:`harness.reporting.site`): the page frame with its
style sheet and table-sorting script, sortable tables, definition tables, Markdown rendered to HTML, per-epoch
curves as inline SVG, and files copied beside a page. Every text put on a page is escaped; Markdown is
rendered with raw HTML disabled (markdown-it-py, CommonMark with tables), so a page runs no script but its
own and needs no network.
"""
from __future__ import annotations

import math
import re
from html import escape
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from markdown_it import MarkdownIt
from matplotlib.ticker import MaxNLocator

from harness.core.metrics import base_metric, metric_label, metric_scale
from harness.core.store import atomic_write_binary

#: the style sheet of every page
CSS = """
*{box-sizing:border-box}body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;
background:#f6f8fa}
header{background:#24292f;color:#fff;padding:14px 32px}header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:1360px;margin:0 auto;padding:8px 28px 48px}h1{font-size:24px;margin:18px 0 4px}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid #d0d7de}h3{font-size:15px}
.muted{color:#57606a}td.wrap{white-space:normal}a{color:#0969da}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;margin:6px 0;font-size:13px}
th,td{padding:5px 9px;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}
th{background:#f0f3f6;position:sticky;top:0}th.sortable{cursor:pointer;user-select:none}
th.sortable:after{content:" \\2195";color:#8c959f}th.asc:after{content:" \\2191";color:#0969da}
th.desc:after{content:" \\2193";color:#0969da}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.published td{color:#57606a;font-style:italic}tbody tr:hover{background:#f6f8fa}
.scroll{overflow-x:auto}.figs{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
.figs img,.markdown img{max-width:100%;border:1px solid #d0d7de;background:#fff;margin:6px 0}
pre{background:#fff;border:1px solid #d0d7de;padding:10px;overflow-x:auto;font-size:12px}
.markdown table{display:block;overflow-x:auto;max-width:100%}.markdown h1{font-size:20px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;
padding:12px 16px;min-width:260px}.card h3{margin:0 0 4px;font-size:16px}svg{background:#fff;border:1px solid #d0d7de}
ul.files{columns:3;padding-left:18px}.envs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
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

#: CommonMark with tables; raw HTML in the source is shown as text, never passed through
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def page(title: str, body: str, home: str) -> str:
    """A whole HTML page: ``body`` under a header linking to the site's index at ``home``."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{CSS}</style></head><body>'
            f'<header><a href="{home}">dmlbench results</a></header><main>{body}</main>'
            f'<script>{SORT_JS}</script></body></html>\n')


def table(frame: pd.DataFrame, row_classes: list[str] | None = None, links: Mapping[int, str] | None = None,
          table_id: str = "") -> str:
    """A sortable HTML table of ``frame``'s cells (escaped); ``links[column index]`` names a column of
    hrefs that the cell links to (an empty href: no link)."""
    links = links or {}
    columns = [c for c in frame.columns if c not in links.values()]
    numeric = [frame[c].astype(str).str.match(r"^-?\d").any() for c in columns]
    head = "".join(f'<th class="{"num" if n else ""}">{escape(str(c))}</th>' for c, n in zip(columns, numeric))
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for j, (c, n) in enumerate(zip(columns, numeric)):
            text = escape(str(row[c]))
            if j in links and row[links[j]]:
                text = f'<a href="{escape(str(row[links[j]]))}">{text}</a>'
            cells.append(f'<td class="{"num" if n else ""}">{text}</td>')
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def definitions(data: Mapping[str, Any], caption: str = "") -> str:
    """A two-column table of ``data``: each key beside its value (escaped); a nested mapping becomes a
    table of its own inside the cell, so that no Python dict is printed."""
    rows = []
    for key, value in data.items():
        cell = definitions(value) if isinstance(value, Mapping) else escape(str(value))
        rows.append(f'<tr><th>{escape(str(key))}</th><td class="wrap">{cell}</td></tr>')
    head = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{head}{''.join(rows)}</table>"


def markdown(text: str, base: str = "") -> str:
    """``text`` (Markdown, e.g. a benchmark's report) as HTML: its tables as tables, its images as images,
    raw HTML escaped; a relative link or image is prefixed with ``base`` (the folder, relative to the page,
    that holds the files the Markdown sat beside)."""
    tokens = MARKDOWN.parse(text)
    for token in tokens:
        for child in token.children or []:
            attr = "src" if child.type == "image" else "href" if child.type == "link_open" else None
            target = str(child.attrGet(attr) or "") if attr else ""
            if target and not re.match(r"^([a-z][a-z0-9+.-]*:|/|#)", target, re.I):
                child.attrSet(attr, base + target)
    return f'<div class="markdown">{MARKDOWN.renderer.render(tokens, MARKDOWN.options, {})}</div>'


def copy_file(source: Path, target: Path) -> Path:
    """``source``'s bytes written (atomically) to ``target``: a figure or table placed beside a page."""
    atomic_write_binary(target, lambda f: f.write(source.read_bytes()))
    return target


def file_links(paths: Sequence[Path], relative_to: Path) -> str:
    """A list of links to ``paths`` (files of the site), each named by its file name."""
    items = "".join(f'<li><a href="{escape(p.relative_to(relative_to).as_posix())}">{escape(p.name)}</a></li>'
                    for p in paths)
    return f'<ul class="files">{items}</ul>'


def _series_label(name: str) -> tuple[str, float]:
    """A history series' chart title and the factor its values are shown with: a validation metric in the
    leaderboards' units (``val_recall@1`` → ``validation R@1 (%)``, × 100), anything else (loss, steps/s) as
    recorded."""
    split, metric = base_metric(name)
    if split is None:
        return name, 1.0
    scale = metric_scale(name)
    return f"{'validation' if split == 'val' else split} {metric_label(metric)}{' (%)' if scale == 100 else ''}", scale


def _ticks(low: float, high: float, integer: bool = False) -> list[float]:
    """Round tick values (matplotlib's ``MaxNLocator``, at most 5 intervals) spanning ``low``..``high``."""
    return [float(t) for t in MaxNLocator(nbins=5, integer=integer).tick_values(low, high)]


def curves_svg(history: list[dict[str, Any]], width: int = 520, height: int = 240) -> str:
    """Each per-epoch series of ``history`` (loss, validation metrics) as a line in one small SVG chart of
    its own: a y axis with round, labelled ticks and grid lines spanning the series (a constant series gets
    a small band around its value), an x axis of whole epochs spanning the epochs recorded (one epoch sits
    in the middle); empty where the trial has no epochs."""
    epochs = [h.get("epoch", i + 1) if isinstance(h, Mapping) else i + 1 for i, h in enumerate(history)]
    rows = [h if isinstance(h, Mapping) else {} for h in history]
    names = sorted({k for h in rows for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))
                    and not isinstance(v, bool)})
    charts = []
    for i, name in enumerate(names):
        title, scale = _series_label(name)
        points = [(float(e), scale * h[name]) for e, h in zip(epochs, rows)
                  if isinstance(e, (int, float)) and isinstance(h.get(name), (int, float))
                  and math.isfinite(h[name]) and math.isfinite(e)]
        if not points:
            continue
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1 = min(xs), max(xs)
        if x0 == x1:
            x0, x1 = x0 - 0.5, x1 + 0.5
        low, high = min(ys), max(ys)
        if low == high:
            pad = 0.05 * abs(low) or 0.5
            low, high = low - pad, high + pad
        yticks = _ticks(low, high)
        y0, y1 = yticks[0], yticks[-1]
        whole = range(math.ceil(x0), math.floor(x1) + 1)  # epochs are whole: every one while they are few
        xticks = [float(t) for t in whole] if len(whole) <= 8 else [t for t in _ticks(x0, x1, integer=True)
                                                                      if x0 <= t <= x1]
        left, top, right, bottom = 58, 24, width - 14, height - 34

        def x_at(e: float) -> float:
            return left + (e - x0) / (x1 - x0) * (right - left)

        def y_at(v: float) -> float:
            return bottom - (v - y0) / (y1 - y0) * (bottom - top)
        colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        grid = "".join(
            f'<line x1="{left}" y1="{y_at(t):.1f}" x2="{right}" y2="{y_at(t):.1f}" stroke="#eaeef2"/>'
            f'<text x="{left - 5}" y="{y_at(t) + 4:.1f}" font-size="11" text-anchor="end">{t:g}</text>'
            for t in yticks)
        xaxis = "".join(
            f'<line x1="{x_at(t):.1f}" y1="{bottom}" x2="{x_at(t):.1f}" y2="{bottom + 4}" stroke="#8c959f"/>'
            f'<text x="{x_at(t):.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle">{t:g}</text>'
            for t in xticks)
        line = " ".join(f"{x_at(e):.1f},{y_at(v):.1f}" for e, v in points)
        charts.append(
            f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">'
            f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>{grid}'
            f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#8c959f"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#8c959f"/>{xaxis}'
            f'<text x="{(left + right) / 2:.0f}" y="{height - 4}" font-size="11" text-anchor="middle">epoch</text>'
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>'
            + "".join(f'<circle cx="{x_at(e):.1f}" cy="{y_at(v):.1f}" r="2.5" fill="{colour}"/>' for e, v in points)
            + "</svg>")
    return "\n".join(charts) or '<p class="muted">No per-epoch history.</p>'
