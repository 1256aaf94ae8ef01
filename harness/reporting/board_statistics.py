"""What a leaderboard counts and its statistics over seeds, computed from trial records alone.

A group is (dataset, method, backbone, embedding dim, recipe name + hash, hyperparameters, the method's
code fingerprint): trials trained under different recipes, hyperparameters or code never average into
one row. Only test-split trials enter (validation-split search trials are not test results). Each
(group, seed) counts once: a newer record supersedes an older one, saying so
(:func:`~harness.reporting.tables.records_frame`). Diverged trials count in ``n_diverged``, failed ones
in ``n_failed``, and neither anywhere else. A metric whose trials were scored by several evaluation
versions is one metric per version (:func:`~harness.reporting.tables.split_by_evaluation`). Per group
and metric (the long table): mean, std (ddof=1), 95% t-interval, rank (1 = best mean) and, against a
baseline method, Welch and paired t-test p-values (:mod:`harness.reporting.stats`).
"""
from __future__ import annotations

import json
import math
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

from harness.core.metrics import metric_sort_key
from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from harness.reporting.stats import paired_power, paired_pvalue, ranks, summarize, welch_pvalue
from harness.reporting.tables import (CODE_NOT_RECORDED, GROUP_KEYS, full_group_label, metric_columns, records_frame,
                                      split_by_evaluation)

STAT_COLUMNS = ["n_seeds", "n_diverged", "n_failed", "mean", "std", "ci_low", "ci_high", "rank",
                "baseline", "p_welch", "p_paired", "n_paired", "detectable_paired", "seeds_for_1pt"]


def read_records(store: TrialStore) -> dict[Path, TrialRecord]:
    """Every readable record in ``store`` by its file, read once (hand it on as ``known``:
    :meth:`~harness.core.store.TrialStore.records` then reads none of them again); warnings about skipped
    records go to stderr."""
    with _warnings_on_stderr():
        return dict(store.records())


def load_records(records: Mapping[Path, TrialRecord], families: Mapping[str, str] | None = None) -> pd.DataFrame:
    """:func:`records_frame` of ``records`` (:func:`read_records`); its warnings (a superseded record) go to
    stderr."""
    with _warnings_on_stderr():
        return records_frame(records.items(), families)


@contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """Run the body collecting its warnings, then print each on stderr as one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


def leaderboard_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials a leaderboard counts: final trials on the test classes (never a search's or a sweep's)."""
    return frame[(frame["eval_split"] == "test") & (frame["role"] == "final")]


def group_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group of test-split trials: its recipe fields, ``n_seeds`` (ok), ``n_diverged`` and
    ``n_failed`` (failed or pruned)."""
    test = leaderboard_rows(frame)
    ok, diverged = (test["status"] == "ok").astype(int), (test["status"] == "diverged").astype(int)
    return (test.assign(n_seeds=ok, n_diverged=diverged, n_failed=1 - ok - diverged)
            .groupby(GROUP_KEYS, sort=True)
            .agg(family=("family", "first"), recipe_fields=("recipe_fields", "first"), n_seeds=("n_seeds", "sum"),
                 n_diverged=("n_diverged", "sum"), n_failed=("n_failed", "sum"))
            .reset_index())


def _baseline_key(group: pd.Series, baselines: pd.DataFrame) -> tuple | None:
    """The baseline group to test ``group`` against: among the baseline method's groups with the same backbone,
    dimension, recipe and hash (else among its groups on the dataset), the only one; where there are several
    (the baseline at its defaults and at tuned values), the most specific one whose changed hyperparameters
    ``group`` shares, each at the same value: an extension trained at its baseline's chosen margin and scale is
    tested against the baseline at those values, any other row against the baseline at its defaults. None
    where that does not name one group."""
    same_data = baselines[baselines["dataset"] == group["dataset"]]
    same = same_data
    for key in ("backbone", "embedding_dim", "recipe", "recipe_hash"):
        same = same[same[key] == group[key]]
    mine = json.loads(group["hparams"])
    for pool in (same, same_data):
        if len(pool) == 1:
            return tuple(pool.iloc[0][GROUP_KEYS])
        changed = [(json.loads(base["hparams"]), tuple(base[GROUP_KEYS])) for _, base in pool.iterrows()]
        shared = [(len(theirs), key) for theirs, key in changed
                  if all(name in mine and mine[name] == value for name, value in theirs.items())]
        if shared:
            most = max(size for size, _ in shared)
            keys = [key for size, key in shared if size == most]
            return keys[0] if len(keys) == 1 else None
    return None


def long_table(frame: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per group × metric: GROUP_KEYS, the method's family, metric, STAT_COLUMNS, ``recipe.<field>``.

    ``n_seeds`` counts the values the statistics are over; ``rank`` is per (dataset, metric). A metric
    scored by several evaluation versions is split first (:func:`split_by_evaluation`).
    With ``baseline`` (a method name), ``p_welch`` is Welch's t-test over seeds against the baseline
    group (see :func:`_baseline_key`) and ``p_paired`` the paired t-test over the ``n_paired``
    seeds both have; from the spread of their paired differences, ``detectable_paired`` is the smallest
    difference those seeds detect at 80% power and ``seeds_for_1pt`` the seeds needed to detect one
    point (0.01) (:func:`~harness.reporting.stats.paired_power`).
    """
    frame = split_by_evaluation(frame)[0]
    counts = group_counts(frame)
    metrics = metric_columns(frame)
    ok = leaderboard_rows(frame)
    ok = ok[ok["status"] == "ok"]
    trials = {key: part.set_index("seed") for key, part in ok.groupby(GROUP_KEYS, sort=True)}
    per_seed: dict[tuple, dict[int, float]] = {}
    rows = []
    for _, group in counts.iterrows():
        key = tuple(group[GROUP_KEYS])
        fields = {f"recipe.{k}": v for k, v in json.loads(group["recipe_fields"]).items()}
        for metric in metrics:
            values = trials[key][metric].dropna() if key in trials else pd.Series(dtype=float)
            per_seed[key + (metric,)] = {int(s): float(v) for s, v in values.items()}
            s = summarize(values.to_numpy(dtype=float))
            rows.append({**dict(zip(GROUP_KEYS, key)), "family": group["family"], "metric": metric, "n_seeds": s.n,
                         "n_diverged": int(group["n_diverged"]), "n_failed": int(group["n_failed"]), "mean": s.mean, "std": s.std,
                         "ci_low": s.ci_low, "ci_high": s.ci_high, **fields})
    if not rows:
        return pd.DataFrame(columns=GROUP_KEYS + ["family", "metric"] + STAT_COLUMNS)
    long = pd.DataFrame(rows).assign(baseline=None, p_welch=math.nan, p_paired=math.nan,
                                     n_paired=pd.array([pd.NA] * len(rows), dtype="Int64"),
                                     detectable_paired=math.nan, seeds_for_1pt=math.nan)
    long["rank"] = long.groupby(["dataset", "metric"])["mean"].transform(ranks).astype("Int64")
    baselines = counts[counts["method"] == baseline]
    for i, row in long.iterrows():
        base = _baseline_key(row, baselines) if baseline else None
        if base is None or base == tuple(row[GROUP_KEYS]):
            continue
        mine, theirs = per_seed[tuple(row[GROUP_KEYS]) + (row["metric"],)], per_seed[base + (row["metric"],)]
        p_paired, n_paired = paired_pvalue(mine, theirs)
        long.loc[i, ["baseline", "p_welch", "p_paired", "n_paired", "detectable_paired", "seeds_for_1pt"]] = [
            full_group_label(base), welch_pvalue(list(mine.values()), list(theirs.values())), p_paired, n_paired,
            *paired_power(mine, theirs)]
    recipe_columns = sorted(c for c in long.columns if c.startswith("recipe."))
    return long[GROUP_KEYS + ["family", "metric"] + STAT_COLUMNS + recipe_columns]


def read_long_table(path: str | Path) -> pd.DataFrame:
    """A long table read back from its CSV (``<name>.long.csv``), typed as :func:`long_table` returns it,
    so that figures and tables can be redrawn from a committed leaderboard without its records."""
    text = {key: str for key in GROUP_KEYS if key != "embedding_dim"}
    long = pd.read_csv(path, dtype={**text, "family": str, "metric": str, "baseline": str, "embedding_dim": int,
                                    "rank": "Int64", "n_paired": "Int64"}, keep_default_na=False,
                       na_values={c: [""] for c in ("baseline", "mean", "std", "ci_low", "ci_high", "rank",
                                                     "p_welch", "p_paired", "n_paired", "detectable_paired",
                                                     "seeds_for_1pt")})
    missing = [c for c in GROUP_KEYS + ["metric"] + STAT_COLUMNS if c not in long.columns]
    if missing:
        raise ValueError(f"{path}: not a long leaderboard table (missing column(s) {', '.join(missing)})")
    return long


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Per group: ``n_seeds``, ``n_diverged``, ``n_failed``, ``<metric>_mean``, ``<metric>_std`` (std ddof=1; NaN for one seed)."""
    counts = group_counts(frame).drop(columns=["recipe_fields", "family"])
    long = long_table(frame)
    if long.empty:
        return counts
    stats = long.pivot(index=GROUP_KEYS, columns="metric", values=["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for stat, metric in stats.columns]
    order = [f"{m}_{s}" for m in sorted(long["metric"].unique(), key=metric_sort_key) for s in ("mean", "std")]
    return counts.merge(stats[order].reset_index(), on=GROUP_KEYS, how="left")



def environment_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """How many of the test-split trials ran under each harness commit, device and library version, and
    were scored by each evaluation version per metric family (``evaluations``:
    :func:`~harness.reporting.tables.split_by_evaluation`'s versions, in words)."""
    test = leaderboard_rows(frame)
    versions: dict[str, dict[str, int]] = {}
    for text, n in sorted(test["versions"].value_counts().items()):
        for package, version in json.loads(text).items():
            versions.setdefault(package, {})
            versions[package][version] = versions[package].get(version, 0) + int(n)

    def counts(column: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in sorted(test[column].value_counts().items())}

    hardware = counts("hardware")
    return {"n_trials": int(len(test)), "git_commits": counts("git_commit"), "devices": counts("device"),
            "hardware": hardware, "mixed_hardware": len(hardware) > 1, "versions": versions,
            "evaluations": split_by_evaluation(frame)[1],
            "code_not_recorded": int((test["code"] == CODE_NOT_RECORDED).sum())}
