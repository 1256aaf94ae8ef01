"""Trial records as a table: one row per trial (its group, seed, split, status and metrics), and the
labels every leaderboard output and figure uses. Shared by :mod:`~harness.reporting.leaderboard`
and :mod:`~harness.reporting.plots`.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.core.record import TrialRecord

GROUP_KEYS = ["dataset", "method", "backbone", "embedding_dim", "recipe", "recipe_hash", "hparams"]
TRIAL_COLUMNS = ["experiment", "trial_id", *GROUP_KEYS, "recipe_fields", "seed", "eval_split", "role", "status", "finished_at",
                 "git_commit", "device", "versions", "path"]
METRIC_ORDER = ("recall@", "map@r", "r_precision", "nmi")
METRIC_LABELS = {"map@r": "MAP@R", "r_precision": "R-Precision", "nmi": "NMI"}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _trial_row(path: Path | str, record: TrialRecord) -> dict[str, Any]:
    cfg, env = record.config, record.environment
    return {
        "experiment": cfg.experiment, "trial_id": record.trial_id, "dataset": cfg.dataset, "method": cfg.method,
        "backbone": cfg.backbone, "embedding_dim": int(cfg.embedding_dim),
        "recipe": record.recipe_name, "recipe_hash": record.recipe_hash,
        "hparams": _json(record.hparams_changed),
        "recipe_fields": _json({k: v for k, v in cfg.recipe.items() if k != "name"}),
        "seed": int(cfg.seed), "eval_split": cfg.eval_split, "role": cfg.role, "status": record.status,
        "finished_at": record.finished_at, "git_commit": str(env.get("git_commit", "unknown")),
        "device": str(env.get("device", "unknown")), "versions": _json(env.get("versions") or {}),
        "path": str(path), **record.metrics,
    }


def records_frame(records: Iterable[tuple[Path | str, TrialRecord]]) -> pd.DataFrame:
    """One row per (experiment, trial id), its newest ``finished_at``: TRIAL_COLUMNS and every metric,
    from ``(path, record)`` pairs (:meth:`~harness.core.store.TrialStore.records`)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for path, record in records:
        row = _trial_row(path, record)
        key = (row["experiment"], row["trial_id"])
        previous = rows.get(key)
        if previous is None or row["finished_at"] >= previous["finished_at"]:
            rows[key] = row
    return pd.DataFrame(list(rows.values()), columns=None if rows else TRIAL_COLUMNS)


def metric_key(name: str) -> tuple:
    for rank, prefix in enumerate(METRIC_ORDER):
        if name.startswith(prefix):
            tail = name[len(prefix):]
            return (rank, int(tail) if tail.isdigit() else 0, name)
    return (len(METRIC_ORDER), 0, name)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Metric columns in the literature's order: Recall@K by K, then MAP@R, R-Precision, NMI, others."""
    return sorted((c for c in frame.columns if c not in TRIAL_COLUMNS and frame[c].notna().any()), key=metric_key)


def metric_label(metric: str) -> str:
    """The papers' column header: ``recall@4`` → ``R@4``, ``map@r`` → ``MAP@R``."""
    if metric.startswith("recall@"):
        return "R@" + metric[len("recall@"):]
    return METRIC_LABELS.get(metric, metric)


def recall_ks(metrics: Iterable[str]) -> list[int]:
    """The K of every ``recall@K`` metric, ascending."""
    return sorted(int(m[len("recall@"):]) for m in metrics if re.fullmatch(r"recall@\d+", m))


def group_label(method: str, hparams: str) -> str:
    """``jrd`` or, with hyperparameters, ``jrd (alpha=0.1, sigma=1)`` (floats to 4 significant digits)."""
    values = json.loads(hparams)
    shown = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return method + (f" ({', '.join(shown)})" if values else "")


def full_group_label(key: tuple) -> str:
    """A group's label with everything that tells it apart: ``ms [resnet50, 512-d, default:1a2b3c4d]``."""
    g = dict(zip(GROUP_KEYS, key))
    setup = f"{g['backbone']}, {g['embedding_dim']}-d, {g['recipe']}:{g['recipe_hash']}"
    return f"{group_label(g['method'], g['hparams'])} [{setup}]"


def distinct_labels(keys: list[tuple], with_setup: bool = True) -> dict[tuple, str]:
    """A label per group key: the method alone where that tells the groups apart, else with its
    hyperparameters (:func:`group_label`), else (``with_setup``) with backbone and recipe too."""
    labels = {k: k[1] for k in keys}
    namers = [lambda k: group_label(k[1], k[6])] + ([full_group_label] if with_setup else [])
    for name in namers:
        taken = Counter(labels.values())
        labels = {k: label if taken[label] == 1 else name(k) for k, label in labels.items()}
    return labels
