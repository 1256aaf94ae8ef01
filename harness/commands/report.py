"""``python -m harness report``: write a static HTML site of a results folder from its records alone."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.locations import leaderboard_roots, site_dir
from harness.core.store import TrialStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a static HTML site of the results (works offline, from disk)",
                       description="Write a static HTML site from the trial records alone: an index of the "
                                   "experiments; per experiment its leaderboard as a sortable table with the "
                                   "published rows and their selection protocol, the significance tests, the "
                                   "plots, a benchmark's manifest and report and the environment; per trial its "
                                   "per-epoch curves and resolved configuration. Open <out>/index.html in a "
                                   "browser; no network is needed.")
    p.add_argument("--results-dir", help="results root holding runs/ (default: your results folder, "
                                         "$DMLBENCH_RESULTS or ~/.local/share/dmlbench/results, where it exists, "
                                         "else the committed reference results of a source checkout)")
    p.add_argument("--out", help=f"folder the site goes to (default: site/ beside your results folder, "
                                 f"now {site_dir()})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import harness.engine  # noqa: F401  (registers the optional metrics: the pages use their labels and units)
    from harness.plugins.method import method_families  # these import torch and pandas: only when it runs
    from harness.reporting.site import write_site

    roots = leaderboard_roots(args.results_dir)
    if not roots or not (roots[0] / "runs").is_dir():
        raise ValueError(f"no results folder with runs/ at {args.results_dir or 'the default locations'}")
    out = Path(args.out) if args.out else site_dir()
    pages = write_site(TrialStore(roots[0]), out, families=method_families())
    print(f"site: {pages[0]} ({len(pages)} pages from {roots[0]})")
    return 0
