"""Trial records as a table: one row per trial (its group, seed, split, status and metrics), and the
labels every leaderboard output and figure uses. Shared by the leaderboard modules
and :mod:`~harness.reporting.plots`.

What a row of a board may hold, decided here for every reader:

* **Each (configuration, seed) once.** A group (:data:`GROUP_KEYS`) includes the method's ``code``
  fingerprint: records of a method whose code differs (a plugin loss edited between runs) are
  different rows, and a record written before fingerprints were recorded is its own row, marked
  ``code not recorded`` (:data:`CODE_NOT_RECORDED`; its code cannot be shown to equal any other).
  Two records of one group and seed (another trial id: the same configuration resolved otherwise)
  never both count: the newer supersedes the older, and :func:`records_frame` says so (a warning,
  printed on stderr by the commands).
* **Diverged seeds are not averaged in.** A trial whose training diverged is recorded ``diverged``
  (a non-finite loss stops it). Readers apply one more rule to every record, old or new
  (:func:`mark_diverged`): a final Recall@1 below half the dataset's *pixel floor* (the mean
  Recall@1 of the raw-pixel method, family ``floor``, on the same dataset's test classes) is a
  collapsed run, not a worse one: it retrieves nearer to chance (about 0 with a DML test set's many
  classes: 1.1% on omniglot's 85) than to the images' own pixels. Below the floor itself is not
  enough: where pixels are strong (98.7% on digits) a model one epoch in is below them and has not
  collapsed. It is applied where records are read rather than in the trial because the floor
  is one measurement per dataset (re-measuring it in every trial would cost a raw-pixel kNN, 3.5 GB
  for CUB at 224 px); without a floor row on the dataset the rule does not apply. A seed that is
  merely worse (NIR's 67.00 beside 82.35 and 81.71 on omniglot) is not flagged: a rule relative to
  a row's other seeds would be outlier rejection chosen on test.
* **One evaluation per column.** Each trial row carries its evaluation's version per metric family
  (:mod:`harness.core.evaluation`); :func:`split_by_evaluation` gives a board one column per
  (metric, version) where its records were scored by several, so no value is ranked, averaged or
  tested against one scored otherwise.
"""
from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from harness.core.evaluation import FAMILIES, evaluation_id, evaluation_text, metric_family
from harness.core.metrics import format_metric, metric_sort_key
from harness.core.record import TrialRecord

GROUP_KEYS = ["dataset", "method", "backbone", "embedding_dim", "recipe", "recipe_hash", "hparams", "code"]
#: the ``code`` of a record written before records held their method's code fingerprint
CODE_NOT_RECORDED = "not recorded"
#: per metric family, the column holding the version of the evaluation that scored a trial
EVALUATION_COLUMNS = {family: f"evaluation.{family}" for family in FAMILIES}
#: the family of the method whose Recall@1 is a dataset's pixel floor (:func:`mark_diverged`)
FLOOR_FAMILY = "floor"
#: a finished trial whose Recall@1 is below this fraction of its dataset's pixel floor has collapsed (nearer
#: chance than the pixels: :func:`mark_diverged`)
COLLAPSE_FRACTION = 0.5
TRIAL_COLUMNS = ["experiment", "trial_id", *GROUP_KEYS, "family", "recipe_fields", "seed", "eval_split", "role", "status",
                 "status_reason", "finished_at", "git_commit", "device", "hardware", "versions",
                 *EVALUATION_COLUMNS.values(), "evaluation", "path"]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _trial_row(path: Path | str, record: TrialRecord, families: Mapping[str, str]) -> dict[str, Any]:
    cfg, env = record.spec, record.environment
    return {
        "experiment": record.placement.experiment, "trial_id": record.trial_id, "dataset": cfg.dataset,
        "method": cfg.method, "family": record.placement.method_family or families.get(cfg.method, "other"),
        "backbone": cfg.backbone, "embedding_dim": int(cfg.embedding_dim),
        "recipe": record.recipe_name, "recipe_hash": record.recipe_hash,
        "hparams": _json(record.hparams_changed), "code": cfg.code or CODE_NOT_RECORDED,
        "recipe_fields": _json({k: v for k, v in cfg.recipe.items() if k != "name"}),
        "seed": int(cfg.seed), "eval_split": cfg.eval_split, "role": cfg.role, "status": record.status,
        "status_reason": record.error or "", "finished_at": record.finished_at, "git_commit": str(env.get("git_commit", "unknown")),
        "device": str(env.get("device", "unknown")), "hardware": hardware_label(env.get("hardware")),
        "versions": _json(env.get("versions") or {}),
        **{column: evaluation_id(record.evaluation, family) for family, column in EVALUATION_COLUMNS.items()},
        "evaluation": _json(record.evaluation), "path": str(path), **record.metrics,
    }


def hardware_label(hardware: dict[str, Any] | None) -> str:
    """One line naming the hardware a record ran on (``not recorded`` for records older than the field)."""
    if not hardware:
        return "not recorded"
    gpu = f"{hardware['gpu']} (CUDA {hardware['cuda']}, cuDNN {hardware['cudnn']}) on " if hardware.get("gpu") else ""
    return f"{gpu}{hardware['cpu']} ({hardware['isa']}), {hardware['threads']} threads"


def records_frame(records: Iterable[tuple[Path | str, TrialRecord]],
                  families: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (experiment, group, resolved hyperparameters, seed, split, role), its newest
    ``finished_at`` (a failed record names no changed hyperparameters, its resolved ones tell it apart): TRIAL_COLUMNS and
    every metric, from ``(path, record)`` pairs (:meth:`~harness.core.store.TrialStore.records`), each
    superseded record named in a warning; then :func:`mark_diverged`. A record that carries no method
    family (written before records did) takes its method's from ``families``."""
    rows: dict[tuple, dict[str, Any]] = {}
    for path, record in records:
        row = _trial_row(path, record, families or {})
        key = (row["experiment"], *(row[k] for k in GROUP_KEYS), _json(record.spec.hparams), row["seed"],
               row["eval_split"], row["role"])
        previous = rows.get(key)
        if previous is not None:
            newer, older = (row, previous) if row["finished_at"] >= previous["finished_at"] else (previous, row)
            warnings.warn(f"{newer['path']} supersedes {older['path']} (the same configuration and seed "
                          f"{row['seed']} in experiment {row['experiment']}, finished {older['finished_at']}): "
                          f"a row counts each seed once", stacklevel=2)
            row = newer
        rows[key] = row
    frame = pd.DataFrame(list(rows.values()), columns=None if rows else TRIAL_COLUMNS)
    return mark_diverged(frame) if rows else frame


def pixel_floors(frame: pd.DataFrame) -> dict[str, float]:
    """Per dataset, its pixel floor: the mean Recall@1 of the finished final test trials of the raw-pixel
    method (family :data:`FLOOR_FAMILY`); datasets without such trials have none."""
    if "recall@1" not in frame.columns:
        return {}
    floor = frame[(frame["family"] == FLOOR_FAMILY) & (frame["status"] == "ok") & (frame["eval_split"] == "test")
                  & (frame["role"] == "final")]
    return {str(d): float(v) for d, v in floor.groupby("dataset")["recall@1"].mean().dropna().items()}


def mark_diverged(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every finished test trial whose Recall@1 is below :data:`COLLAPSE_FRACTION` of its
    dataset's pixel floor (:func:`pixel_floors`) given status ``diverged`` and the reason (see the module docstring); its
    metrics stay in the frame, and no statistic counts them."""
    floors = pixel_floors(frame)
    if not floors:
        return frame
    floor = frame["dataset"].map(floors)
    below = ((frame["status"] == "ok") & (frame["eval_split"] == "test") & (frame["family"] != FLOOR_FAMILY)
             & floor.notna() & (frame["recall@1"] < COLLAPSE_FRACTION * floor))
    frame = frame.copy()
    frame.loc[below, "status"] = "diverged"
    frame.loc[below, "status_reason"] = [
        f"Recall@1 {format_metric('recall@1', r)} below half the pixel floor {format_metric('recall@1', f)} "
        f"of {d} (the raw-pixel method's mean)"
        for r, f, d in zip(frame.loc[below, "recall@1"], floor[below], frame.loc[below, "dataset"])]
    return frame


def evaluated_metric(metric: str, version: str) -> str:
    """The column of ``metric`` as scored by evaluation ``version`` where a board holds several:
    ``nmi[unversioned-1a2b3c4d]``."""
    return f"{metric}[{version}]"


def split_by_evaluation(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, Any]]]]:
    """``frame`` (one board's trials) with each metric of a family whose counted (ok) test trials were scored
    by several evaluation versions split into one column per version (:func:`evaluated_metric`; the
    other versions' cells empty), and ``{family: {version: {"text": its implementation in words,
    "n_trials": trials scored by it, "split": whether its columns were split}}}`` for the board's notes."""
    counted = frame[(frame["eval_split"] == "test") & (frame["role"] == "final") & (frame["status"] == "ok")]
    versions: dict[str, dict[str, dict[str, Any]]] = {}
    for family, column in EVALUATION_COLUMNS.items():
        found = counted.groupby(column)["evaluation"].agg(["first", "size"]) if len(counted) else None
        if found is None or found.empty:
            continue
        split = len(found) > 1
        versions[family] = {str(v): {"text": evaluation_text(json.loads(first), family), "n_trials": int(n),
                                     "split": split} for v, (first, n) in found.iterrows()}
        if not split:
            continue
        frame = frame.copy()
        for metric in [c for c in metric_columns(frame) if metric_family(c) == family]:
            for version in found.index:
                frame[evaluated_metric(metric, version)] = frame[metric].where(frame[column] == version)
            frame = frame.drop(columns=metric)
    return frame, versions


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


def code_label(code: str) -> str:
    """``code 1a2b3c4d5e6f`` (a method's code fingerprint, shortened), or ``code not recorded``."""
    return f"code {code if code == CODE_NOT_RECORDED else code[-16:][:12]}"


def seeds_text(n_seeds: int, n_diverged: int, n_failed: int) -> str:
    """A row's seeds: ``3``, or where some did not count, ``2 of 3 seeds; 1 diverged`` (``…, 1 failed``)."""
    if not n_diverged and not n_failed:
        return str(n_seeds)
    left_out = ", ".join(f"{n} {what}" for n, what in ((n_diverged, "diverged"), (n_failed, "failed")) if n)
    return f"{n_seeds} of {n_seeds + n_diverged + n_failed} seeds; {left_out}"


def diverged_suffix(n_seeds: int, n_diverged: int, n_failed: int) -> str:
    """What a short row label (a figure's, the one-column table's) adds where seeds diverged:
    `` (1/3 diverged)``; empty where none did."""
    return f" ({n_diverged}/{n_seeds + n_diverged + n_failed} diverged)" if n_diverged else ""


def full_group_label(key: tuple) -> str:
    """A group's label with everything that tells it apart:
    ``ms [resnet50, 512-d, default:1a2b3c4d, code 0123456789ab]``."""
    g = dict(zip(GROUP_KEYS, key))
    setup = f"{g['backbone']}, {g['embedding_dim']}-d, {g['recipe']}:{g['recipe_hash']}, {code_label(g['code'])}"
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
    hyperparameters (:func:`group_label`), else with its code (:func:`code_label`), else
    (``with_setup``) with backbone and recipe too."""
    labels = {k: k[1] for k in keys}
    namers = [lambda k: group_label(k[1], k[6]),
              lambda k: f"{group_label(k[1], k[6])} [{code_label(k[7])}]"] + ([full_group_label] if with_setup else [])
    for name in namers:
        taken = Counter(labels.values())
        labels = {k: label if taken[label] == 1 else name(k) for k, label in labels.items()}
    return labels
