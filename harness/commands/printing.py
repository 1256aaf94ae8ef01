"""What the training commands print when their trials are done: the leaderboard of those trials."""
from __future__ import annotations

import time
from pathlib import Path

from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from harness.core.trial import Trial


def print_leaderboard(store: TrialStore, held: list[tuple[Path, TrialRecord]], trials: list[Trial],
                      start: float) -> None:
    """Rewrite the leaderboard files of the experiment of ``trials`` from ``held`` (the (path, record) pairs of
    that experiment the command read and wrote: nothing is read again) and print the table of ``trials``
    (failures counted)."""
    import pandas as pd  # these import torch and pandas: only when a command has run trials

    from harness.plugins.method import method_families
    from harness.reporting.board_names import board_warning, leaderboard_title
    from harness.reporting.board_statistics import aggregate, long_table
    from harness.reporting.board_text import format_table
    from harness.reporting.leaderboard import write_leaderboards
    from harness.reporting.tables import recipe_labels, records_frame

    dataset, experiment = trials[0].spec.dataset, trials[0].placement.experiment
    written = write_leaderboards(store, experiments=[experiment], families=method_families(), records=held)
    ids = {t.trial_id for t in trials}
    frame = records_frame((path, r) for path, r in held if r.trial_id in ids and r.placement.experiment == experiment)
    board = aggregate(frame) if not frame.empty else pd.DataFrame()
    warning = board_warning(store, experiment, dataset, dict(held))
    print(f"\n{leaderboard_title(experiment, dataset)}: {len(trials)} trial{'s' if len(trials) != 1 else ''} in "
          f"{time.time() - start:.0f} s (test classes; mean ± std over seeds, %){': ' + warning if warning else ''}")
    print(format_table(board, recipes=recipe_labels(long_table(frame)) if not frame.empty else None))
    for path in written.values():
        print(f"leaderboard: {path}")
