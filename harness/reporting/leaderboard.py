"""Leaderboard files: each experiment's records as CSV, Markdown, LaTeX and figures, one board per protocol.

A leaderboard is one experiment's records (``runs/<experiment>/``), one protocol: a default run, a
benchmark's final trials, a comparison. Its files are named after the experiment (``<experiment>.csv``
...; ``<experiment>@<dataset>.csv`` ... for an experiment that spans several datasets,
:func:`~harness.reporting.board_names.board_name`), so two
protocols on one dataset (say, every method at its defaults, and each method at its searched best)
never mix into one table. What a board counts and its statistics are
:mod:`harness.reporting.board_statistics`'s, its text :mod:`harness.reporting.board_text`'s. Published
reference rows (:mod:`harness.reporting.published`) are shown beside the measured ones, never mixed in.

Every output is a pure function of the records: sorted rows, fixed float formats, no timestamps.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from harness.core.record import TrialRecord
from harness.core.store import AtomicFiles, TrialStore
from harness.reporting import plots
from harness.reporting.board_names import board_warning, leaderboard_names, leaderboard_title
from harness.reporting.board_options import (COLUMN_METRICS, FORMATS, STORED, Stored, given_options, load_options,
                                             remember_options)
from harness.reporting.board_statistics import (aggregate, environment_summary, leaderboard_rows, load_records,
                                                long_table, read_records)
from harness.reporting.board_text import (render_column_latex, render_latex, render_markdown,
                                          wide_table)
from harness.reporting.published import ROW_KEYS, load_published, published_rows
from harness.reporting.tables import records_frame
from harness.reporting.stale_boards import remove_stale_boards

FLOAT_FORMAT = "%.6g"


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format=FLOAT_FORMAT)


def write_leaderboard(frame: pd.DataFrame, dataset: str, out_dir: Path, baseline: str | None = None,
                  formats: Iterable[str] = FORMATS, published: pd.DataFrame | None = None,
                  name: str | None = None, column_metrics: tuple[str, ...] = COLUMN_METRICS,
                  not_comparable: str = "") -> dict[str, Path]:
    """Write one leaderboard of ``dataset``'s records in ``frame`` as ``<name>.*`` (default: the dataset's
    name; see :func:`write_leaderboards`), every file saying ``not_comparable``
    (:func:`~harness.reporting.board_names.board_warning`) where given; return {file name: path}."""

    formats = set(formats)
    name = name or dataset
    title = leaderboard_title(name, dataset, not_comparable)
    long = long_table(frame, baseline)
    env = {"dataset": dataset, **environment_summary(frame), **({"not_comparable": not_comparable} if not_comparable else {})}
    refs = (published_rows(published, dataset, list(long["metric"].unique())) if published is not None
            else pd.DataFrame(columns=ROW_KEYS))
    texts = {".env.json": json.dumps(env, indent=2, sort_keys=True) + "\n"}
    if "csv" in formats:
        tables = {".csv": aggregate(frame), ".long.csv": long, ".wide.csv": wide_table(long)}
        texts.update({suffix: _csv(table.assign(not_comparable=not_comparable) if not_comparable else table)
                      for suffix, table in tables.items()})
    if "md" in formats:
        texts[".md"] = render_markdown(name, title, long, refs, env, baseline)
    if "tex" in formats:
        texts[".tex"] = render_latex(name, title, long, refs, env, baseline)
        if len(long):  # a board whose every trial diverged or failed has no value to rank
            texts[".column.tex"] = render_column_latex(name, title, long, baseline, column_metrics)
    written = {}
    figures = [f for f in plots.PLOT_FORMATS if f in formats]
    with AtomicFiles() as files:  # all of the board's files, or (a full disk) none: never a mix of old and new
        for suffix, text in sorted(texts.items()):
            path = out_dir / f"{name}{suffix}"
            files.write_text(path, text)
            written[path.name] = path
        if figures:
            written.update({p.name: p for p in plots.leaderboard_plots(long, name, out_dir, figures, title=title,
                                                                       write=files.write_binary)})
    return dict(sorted(written.items()))


def write_leaderboards(store: TrialStore, out_dir: str | Path | None = None, datasets: list[str] | None = None,
                       baseline: str | None | Stored = STORED, formats: Iterable[str] | Stored = STORED,
                       published_csv: str | Path | None | Stored = STORED,
                       experiments: list[str] | None = None,
                       families: Mapping[str, str] | None = None,
                       column_metrics: Iterable[str] | Stored = STORED,
                       records: Iterable[tuple[Path, TrialRecord]] | None = None) -> dict[str, Path]:
    """:func:`write_experiment_boards`, its files in one mapping {file name: path}."""
    by_experiment = write_experiment_boards(store, out_dir, datasets, baseline, formats, published_csv, experiments,
                                            families, column_metrics, records)
    return dict(sorted((name, path) for files in by_experiment.values() for name, path in files.items()))


def write_experiment_boards(store: TrialStore, out_dir: str | Path | None = None, datasets: list[str] | None = None,
                            baseline: str | None | Stored = STORED, formats: Iterable[str] | Stored = STORED,
                            published_csv: str | Path | None | Stored = STORED,
                            experiments: list[str] | None = None,
                            families: Mapping[str, str] | None = None,
                            column_metrics: Iterable[str] | Stored = STORED,
                            records: Iterable[tuple[Path, TrialRecord]] | None = None) -> dict[str, dict[str, Path]]:
    """Recompute every experiment's leaderboard under ``out_dir`` (default ``<results>/leaderboards``).

    Per experiment with test-split records (only ``experiments`` if given, only those on ``datasets`` if
    given), named as :func:`leaderboard_names` says: ``<name>.csv`` (per-group
    ``<metric>_mean``/``_std``, ``n_seeds``, ``n_failed``), ``.long.csv``, ``.wide.csv`` (csv), ``.md``,
    ``.tex`` and ``.column.tex`` (tex: the one-column table of ``column_metrics``), ``.recall_at_k`` and
    ``.recall_at_1`` figures (png, pdf), and always ``.env.json``. ``baseline``, ``formats``, ``published_csv``
    (None: no published rows) and ``column_metrics`` not given are the experiment's
    stored options (:mod:`harness.reporting.board_options`); given ones are stored with it. A record that
    carries no method family (written before records did) takes its method's from ``families`` (the commands
    pass every registered method's). ``records``: the (path, record) pairs of ``experiments`` that the command
    read already (default: every record in ``store``, read here). Returns {experiment: {file name: path}} of the
    files written.
    """
    given = given_options(baseline, formats, published_csv, column_metrics)
    out_dir = Path(out_dir) if out_dir else store.leaderboard_dir
    known = dict(records) if records is not None else read_records(store)
    frame = load_records(known, families) if records is None else records_frame(known.items(), families)
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
    written: dict[str, dict[str, Path]] = {experiment: {} for experiment, _ in chosen}
    for (experiment, dataset), name in chosen.items():
        part = frame[(frame["experiment"] == experiment) & (frame["dataset"] == dataset)]
        board = options[experiment]
        written[experiment].update(write_leaderboard(part, dataset, out_dir, board.baseline, board.formats, published[experiment],
                                         name=name, column_metrics=board.column_metrics,
                                         not_comparable=board_warning(store, experiment, dataset, known)))
    for experiment in sorted({experiment for experiment, _ in chosen}):
        remove_stale_boards(out_dir, experiment, leaderboard_names(test))
    if any(value is not STORED for value in given.values()):
        for experiment, board in options.items():
            remember_options(store, experiment, board)
    return written
