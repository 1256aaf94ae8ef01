"""Trial records as a table: one row per trial (its group, seed, split, status and metrics), and the
labels every leaderboard output and figure uses. Shared by the leaderboard modules
and :mod:`~harness.reporting.plots`.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from harness.core.metrics import metric_sort_key
from harness.core.record import TrialRecord

GROUP_KEYS = ["dataset", "method", "backbone", "embedding_dim", "recipe", "recipe_hash", "hparams"]
TRIAL_COLUMNS = ["experiment", "trial_id", *GROUP_KEYS, "family", "recipe_fields", "seed", "eval_split", "role", "status",
                 "finished_at", "git_commit", "device", "hardware", "versions", "path"]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _trial_row(path: Path | str, record: TrialRecord, families: Mapping[str, str]) -> dict[str, Any]:
    cfg, env = record.spec, record.environment
    return {
        "experiment": record.placement.experiment, "trial_id": record.trial_id, "dataset": cfg.dataset,
        "method": cfg.method, "family": record.placement.method_family or families.get(cfg.method, "other"),
        "backbone": cfg.backbone, "embedding_dim": int(cfg.embedding_dim),
        "recipe": record.recipe_name, "recipe_hash": record.recipe_hash,
        "hparams": _json(record.hparams_changed),
        "recipe_fields": _json({k: v for k, v in cfg.recipe.items() if k != "name"}),
        "seed": int(cfg.seed), "eval_split": cfg.eval_split, "role": cfg.role, "status": record.status,
        "finished_at": record.finished_at, "git_commit": str(env.get("git_commit", "unknown")),
        "device": str(env.get("device", "unknown")), "hardware": hardware_label(env.get("hardware")),
        "versions": _json(env.get("versions") or {}),
        "path": str(path), **record.metrics,
    }


def hardware_label(hardware: dict[str, Any] | None) -> str:
    """One line naming the hardware a record ran on (``not recorded`` for records older than the field)."""
    if not hardware:
        return "not recorded"
    gpu = f"{hardware['gpu']} (CUDA {hardware['cuda']}, cuDNN {hardware['cudnn']}) on " if hardware.get("gpu") else ""
    return f"{gpu}{hardware['cpu']} ({hardware['isa']}), {hardware['threads']} threads"


def records_frame(records: Iterable[tuple[Path | str, TrialRecord]],
                  families: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (experiment, trial id), its newest ``finished_at``: TRIAL_COLUMNS and every metric,
    from ``(path, record)`` pairs (:meth:`~harness.core.store.TrialStore.records`). A record that
    carries no method family (written before records did) takes its method's from ``families``."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for path, record in records:
        row = _trial_row(path, record, families or {})
        key = (row["experiment"], row["trial_id"])
        previous = rows.get(key)
        if previous is None or row["finished_at"] >= previous["finished_at"]:
            rows[key] = row
    return pd.DataFrame(list(rows.values()), columns=None if rows else TRIAL_COLUMNS)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Metric columns in the literature's order: Recall@K by K, then MAP@R, R-Precision, NMI, others
    (:func:`~harness.core.metrics.metric_sort_key`)."""
    return sorted((c for c in frame.columns if c not in TRIAL_COLUMNS and frame[c].notna().any()),
                  key=metric_sort_key)


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


def _same(a: Any, b: Any) -> bool:
    missing = pd.isna(a) if not isinstance(a, (list, dict)) else False
    return bool(missing and pd.isna(b)) if missing else a == b


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def recipe_labels(long: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``name:hash`` per recipe of a long table and, where one recipe name comes with several hashes, the fields
    in which each differs from the name's most used one, in words: ``cpu:7c34188a (epochs=2)``."""
    fields = sorted(c for c in long.columns if c.startswith("recipe."))
    groups = long.drop_duplicates(GROUP_KEYS)
    labels = {}
    for name, part in groups.groupby("recipe", sort=True):
        counts = part["recipe_hash"].value_counts()
        reference = part[part["recipe_hash"] == min(counts.index, key=lambda h: (-counts[h], h))].iloc[0]
        for _, row in part.drop_duplicates("recipe_hash").iterrows():
            differ = [f"{c.removeprefix('recipe.')}={_value_text(row[c])}" for c in fields
                      if not _same(row[c], reference[c])]
            labels[(name, row["recipe_hash"])] = f"{name}:{row['recipe_hash']}" + (
                f" ({', '.join(differ)})" if differ else "")
    return labels


#: a recipe field in words, where it has a shorter name than its own (the rest read ``<field> <value>``)
RECIPE_WORDS = {"epochs": "{} epochs", "batch_size": "batch {}", "optimizer": "{}", "image_size": "{} px",
                "lr_backbone": "lr {}", "augmentation": "augmentation: {}", "pooling": "{} pooling"}


def _recipe_field_words(field: str, value: Any) -> str:
    if field == "epochs" and _value_text(value) == "0":
        return "no training"
    return RECIPE_WORDS.get(field, field.replace("_", " ") + " {}").format(_value_text(value))


def recipe_words(long: pd.DataFrame) -> tuple[str, dict[tuple, str]]:
    """A board's recipes in words for a reader, not a hash: what every group's recipe shares (its name,
    epochs, batch size, optimizer: ``cpu: 12 epochs, batch 64, adamw``) and, per group key, what sets its
    recipe apart where the groups' recipes differ (``no training``, ``2 epochs``; empty where they agree)."""
    fields = [c.removeprefix("recipe.") for c in sorted(long.columns) if c.startswith("recipe.")]
    groups = long.drop_duplicates(GROUP_KEYS)
    differ = [f for f in fields if groups[f"recipe.{f}"].map(_value_text).nunique() > 1]
    names = groups["recipe"].nunique() > 1
    shared_fields = [f for f in ("epochs", "batch_size", "optimizer") if f in fields and f not in differ]
    first = groups.iloc[0] if len(groups) else None
    shared = "" if first is None else (
        ("" if names else f"{first['recipe']}: ")
        + ", ".join(_recipe_field_words(f, first[f"recipe.{f}"]) for f in shared_fields)).strip(": ")
    per_group = {tuple(row[k] for k in GROUP_KEYS): ", ".join(
        ([str(row["recipe"])] if names else []) + [_recipe_field_words(f, row[f"recipe.{f}"]) for f in differ])
        for _, row in groups.iterrows()}
    return shared, per_group


def distinct_labels(keys: list[tuple], with_setup: bool = True) -> dict[tuple, str]:
    """A label per group key: the method alone where that tells the groups apart, else with its
    hyperparameters (:func:`group_label`), else (``with_setup``) with backbone and recipe too."""
    labels = {k: k[1] for k in keys}
    namers = [lambda k: group_label(k[1], k[6])] + ([full_group_label] if with_setup else [])
    for name in namers:
        taken = Counter(labels.values())
        labels = {k: label if taken[label] == 1 else name(k) for k, label in labels.items()}
    return labels
