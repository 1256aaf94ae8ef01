"""Leaderboard names: a board's file stem and heading from its experiment and dataset (and, where its methods
trained differently, the words that say its rows are not comparable)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Mapping

import pandas as pd

from harness.core.protocol import board_differences
from harness.core.record import TrialRecord
from harness.core.store import TrialStore

#: joins an experiment's name to a dataset's in the name of a board of an experiment that spans several datasets:
#: a character no experiment or dataset name may hold (:mod:`harness.core.names`), so no two boards' names collide
#: (with ``.``, experiment ``ec``'s digits board and experiment ``ec.digits``'s were one file)
DATASET_SEPARATOR = "@"


def board_name(experiment: str, dataset: str, several_datasets: bool) -> str:
    """A board's file stem: the experiment's name, or ``<experiment>@<dataset>`` where the experiment holds
    trials on several datasets."""
    return f"{experiment}{DATASET_SEPARATOR}{dataset}" if several_datasets else experiment


def leaderboard_title(name: str, dataset: str, not_comparable: str = "") -> str:
    """A board's heading from its :func:`board_name`: the experiment's name, with the dataset where the
    name does not say it (``ec@digits`` → ``ec (digits)``), then ``not_comparable``'s words where its methods
    trained differently (:func:`board_warning`)."""
    experiment = name.split(DATASET_SEPARATOR)[0]
    title = experiment if experiment == dataset else f"{experiment} ({dataset})"
    return f"{title}: {not_comparable}" if not_comparable else title


def board_warning(store: TrialStore, experiment: str, dataset: str,
                  known: Mapping[Path, TrialRecord] | None = None) -> str:
    """What every board, table and plot of ``experiment`` on ``dataset`` says when its methods trained
    differently (``--incomparable-rows``, :func:`harness.core.protocol.board_differences`); ``""`` if not.
    ``known``: the readable records the caller read already, the experiment's among them; only those are looked
    at (a record that could not be read was warned about once, when the caller read the store)."""
    records = store.known_records(experiment, known) if known is not None else store.records(experiment)
    return board_differences(r.spec for _, r in records
                             if r.spec.dataset == dataset and r.spec.role == "final" and r.spec.eval_split == "test")


def leaderboard_names(test: pd.DataFrame) -> dict[tuple[str, str], str]:
    """{(experiment, dataset): :func:`board_name`} for the test-split trials in ``test``."""
    pairs = sorted(set(zip(test["experiment"], test["dataset"])))
    spans = Counter(e for e, _ in pairs)
    return {(e, d): board_name(e, d, spans[e] > 1) for e, d in pairs}
