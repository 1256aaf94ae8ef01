"""Leaderboards computed from trial records alone: mean and std (ddof=1) over seeds per group.

A group is (dataset, method, backbone, embedding dim, recipe name + hash): trials trained under
different recipes never average into one row. A trial recorded in several experiments (same
trial id) counts once, its newest record. Failed trials count in ``n_failed`` and nowhere else.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness.results import ResultStore, atomic_write_text

GROUP_KEYS = ["dataset", "method", "backbone", "embedding_dim", "recipe", "recipe_hash"]
METRIC_ORDER = ("recall@", "map@r", "r_precision", "nmi")


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial: group keys, seed, status, hyperparameters (JSON) and every metric."""
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        cfg = record["config"]
        row = {
            "trial_id": record["trial_id"], "dataset": cfg["dataset"], "method": cfg["method"],
            "backbone": cfg["backbone"], "embedding_dim": cfg["embedding_dim"],
            "recipe": record["recipe"]["name"], "recipe_hash": record["recipe"]["hash"],
            "hparams": json.dumps(cfg.get("hparams", {}), sort_keys=True), "seed": cfg["seed"],
            "eval_split": cfg.get("eval_split", "test"), "status": record["status"],
            "finished_at": record.get("finished_at", ""), **record["metrics"],
        }
        previous = rows.get(row["trial_id"])
        if previous is None or str(row["finished_at"]) >= str(previous["finished_at"]):
            rows[row["trial_id"]] = row
    return pd.DataFrame(list(rows.values()))


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Metric columns in the literature's order: Recall@K by K, then MAP@R, R-Precision, NMI, others."""
    fixed = set(GROUP_KEYS) | {"trial_id", "hparams", "seed", "eval_split", "status", "finished_at"}
    names = [c for c in frame.columns if c not in fixed]

    def key(name: str) -> tuple:
        for rank, prefix in enumerate(METRIC_ORDER):
            if name.startswith(prefix):
                tail = name[len(prefix):]
                return (rank, int(tail) if tail.isdigit() else 0, name)
        return (len(METRIC_ORDER), 0, name)

    return sorted(names, key=key)


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1; NaN for one seed) and seed counts per group, test-split trials only."""
    if frame.empty:
        return pd.DataFrame(columns=GROUP_KEYS + ["n_seeds", "n_failed"])
    frame = frame[frame["eval_split"] == "test"]
    metrics = metric_columns(frame)
    out = []
    for keys, group in frame.groupby(GROUP_KEYS, sort=True, dropna=False):
        ok = group[group["status"] == "ok"]
        row = dict(zip(GROUP_KEYS, keys))
        row["hparams"] = ";".join(sorted(set(ok["hparams"]))) if len(ok) else ""
        row["n_seeds"] = int(len(ok))
        row["n_failed"] = int((group["status"] != "ok").sum())
        for m in metrics:
            values = ok[m].dropna().to_numpy(dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        out.append(row)
    return pd.DataFrame(out)


def write_leaderboards(store: ResultStore, out_dir: str | Path | None = None,
                       datasets: list[str] | None = None) -> dict[str, Path]:
    """Recompute ``<out_dir>/<dataset>.csv`` for every dataset with records; return the paths written."""
    out_dir = Path(out_dir) if out_dir else store.root / "leaderboards"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = records_frame(store.iter_records())
    for w in caught:
        print(f"warning: {w.message}")
    written = {}
    if frame.empty:
        return written
    for dataset, part in frame.groupby("dataset"):
        if datasets and dataset not in datasets:
            continue
        board = aggregate(part)
        if board.empty:
            continue
        path = out_dir / f"{dataset}.csv"
        atomic_write_text(path, board.to_csv(index=False, float_format="%.6f"))
        written[str(dataset)] = path
    return written


def format_table(board: pd.DataFrame, metrics: list[str] | None = None) -> str:
    """A plain-text table of "mean ± std" (in percent) for printing at the end of a run."""
    if board.empty:
        return "(no finished trials)"
    metrics = metrics or [c[:-5] for c in board.columns if c.endswith("_mean")]
    rows = []
    for _, r in board.iterrows():
        row = {"method": r["method"], "backbone": r["backbone"], "recipe": f"{r['recipe']}:{r['recipe_hash']}",
               "seeds": f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")}
        for m in metrics:
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            row[m] = "—" if pd.isna(mean) else (f"{100 * mean:.2f}" + ("" if pd.isna(std) else f" ± {100 * std:.2f}"))
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)
