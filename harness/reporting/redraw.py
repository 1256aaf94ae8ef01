"""Redraw a committed leaderboard's Markdown, LaTeX and figures from its ``<name>.long.csv`` and
``<name>.env.json`` alone (no records): ``python -m harness.reporting.redraw <name>.long.csv``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from harness.core.store import atomic_write_text
from harness.reporting import plots
from harness.reporting.board_names import leaderboard_title
from harness.reporting.board_statistics import read_long_table
from harness.reporting.board_text import render_latex, render_markdown
from harness.reporting.published import PUBLISHED_CSV, ROW_KEYS, load_published, published_rows
from harness.reporting.tables import GROUP_KEYS, full_group_label

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

    parser = argparse.ArgumentParser(prog="python -m harness.reporting.redraw",
                                     description="Redraw a leaderboard's Markdown, LaTeX and figures from its "
                                                 "<name>.long.csv and <name>.env.json (no records needed).")
    parser.add_argument("long_csv", type=Path, help="results/leaderboards/<name>.long.csv")
    for path in redraw_from_long(parser.parse_args().long_csv).values():
        print(f"leaderboard: {path}")
