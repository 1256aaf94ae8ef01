"""Published reference figures: the papers' reported Recall@K / NMI, each row with its citation.

The packaged ``harness/reporting/reference/published.csv`` has one row per (source, method, dataset, metric)
with the value in percent as the paper prints it and how that figure was selected (``selection``):
``best test epoch`` where the authors' code evaluates the test classes during training and reports
the best (JRD tests every epoch; Proxy-Anchor, Metrix and NIR keep the best test Recall@1;
intra-batch reloads its best-test checkpoint), ``as quoted`` for another paper's figure quoted in
the cited table. Measured rows are the model after the last epoch. Dataset and metric names are mapped onto the
harness's (``cub``, ``cars``, ``sop``, ``inshop``; ``recall@K``, ``map@r``, ``r_precision``, ``nmi``).
These rows are shown beside measured ones and never enter a measured statistic.
"""
from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where rows are read, not with PUBLISHED_CSV (``--help``)
    import pandas as pd

COLUMNS = ["source", "citation", "method", "dataset", "backbone", "embedding_dim", "metric", "value_percent",
           "selection"]
ROW_KEYS = ["source", "citation", "method", "backbone", "embedding_dim", "selection"]
#: how a published figure may have been selected (see the module docstring)
SELECTIONS = ("best test epoch", "as quoted")

DATASET_ALIASES = {
    "cub200": "cub", "cub2002011": "cub", "cub": "cub",
    "cars196": "cars", "stanfordcars": "cars", "cars": "cars",
    "stanfordonlineproducts": "sop", "sop": "sop",
    "inshop": "inshop", "deepfashioninshop": "inshop",
}
METRIC_ALIASES = {"nmi": "nmi", "map@r": "map@r", "mapr": "map@r", "map_at_r": "map@r",
                  "r_precision": "r_precision", "rprecision": "r_precision", "rp": "r_precision"}
_RECALL = re.compile(r"^(?:r|recall)(?:@|_at_)(\d+)$")

#: the packaged copy of the published reference rows
PUBLISHED_CSV = Path(str(files("harness.reporting") / "reference" / "published.csv"))


def canonical_dataset(name: str) -> str:
    """``CUB-200-2011`` → ``cub``, ``Cars196`` → ``cars``, ``In-Shop`` → ``inshop``; unknown names lower-cased."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return DATASET_ALIASES.get(key, name.lower())


def canonical_metric(name: str) -> str:
    """``R@1`` / ``Recall@1`` / ``recall_at_1`` → ``recall@1``; ``NMI`` → ``nmi``; ``MAP@R`` → ``map@r``;
    ``RP`` / ``R-Precision`` → ``r_precision``."""
    key = name.strip().lower().replace("-", "")
    match = _RECALL.match(key)
    if match:
        return f"recall@{int(match.group(1))}"
    return METRIC_ALIASES.get(key, key)


def load_published(path: str | Path = PUBLISHED_CSV) -> pd.DataFrame:
    """The reference rows with canonical dataset and metric names; values kept as printed (text, percent)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame[COLUMNS].copy()
    frame["dataset"] = frame["dataset"].map(canonical_dataset)
    frame["metric"] = frame["metric"].map(canonical_metric)
    frame["embedding_dim"] = frame["embedding_dim"].astype(int)
    bad = pd.to_numeric(frame["value_percent"], errors="coerce").isna()
    if bad.any():
        lines = ", ".join(str(i + 2) for i in frame.index[bad])
        raise ValueError(f"{path}: non-numeric value_percent on line(s) {lines}")
    bad = ~frame["selection"].isin(SELECTIONS)
    if bad.any():
        lines = ", ".join(str(i + 2) for i in frame.index[bad])
        raise ValueError(f"{path}: selection must be one of {', '.join(SELECTIONS)} (line(s) {lines})")
    return frame


def published_rows(published: pd.DataFrame, dataset: str, metrics: list[str]) -> pd.DataFrame:
    """One row per (source, method, backbone, dim) on ``dataset`` with one column per metric (percent text).

    Rows keep the file's order; a metric a paper does not report is NaN; rows reporting none of
    ``metrics`` are left out.
    """
    import pandas as pd

    part = published[(published["dataset"] == dataset) & published["metric"].isin(metrics)]
    if part.empty:
        return pd.DataFrame(columns=ROW_KEYS + metrics)
    wide = part.pivot_table(index=ROW_KEYS, columns="metric", values="value_percent", aggfunc="first", sort=False)
    wide = wide.reindex(columns=metrics).reset_index()
    wide.columns.name = None
    return wide
