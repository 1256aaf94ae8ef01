"""Re-scoring a trial from its kept embeddings under today's evaluation, without training
(``python -m harness evaluate --rescore``).

A record whose evaluation version (:mod:`harness.core.evaluation`, per metric family) differs from
today's (:func:`harness.engine.evaluate.evaluation_fingerprints`) holds numbers a board must not
pool with today's. Where the trial kept its embeddings (``embeddings.npz``, written by every trial
that saves its model), the evaluation's metrics are computed again from them, exactly as a trial
computes them, and the record takes them with today's evaluation; the versions it had are kept in
``evaluation["rescored_from"]`` and the time in ``evaluation["rescored_at"]``. The optional metrics
(a plugin's, ``utilization``) belong to no family and are kept as recorded. The embeddings are the
trained model's, so a re-scored record is what the trial would record today, without retraining.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from harness.core.evaluation import FAMILIES, evaluation_id, metric_family
from harness.core.record import TrialRecord, now
from harness.core.store import EMBEDDINGS_FILE, TrialFolder
from harness.engine.evaluate import describe_evaluation, evaluate_saved, evaluation_fingerprints


def stale_families(record: TrialRecord) -> list[str]:
    """The metric families whose version in ``record`` is not today's (empty: nothing to re-score)."""
    today = evaluation_fingerprints()
    return [family for family in FAMILIES if evaluation_id(record.evaluation, family) != today[family]]


def rescore(record: TrialRecord, arrays: dict[str, np.ndarray]) -> TrialRecord:
    """``record`` with its evaluation's metrics recomputed from its embeddings ``arrays`` (as
    :meth:`~harness.core.store.TrialFolder.embeddings` reads them) under today's evaluation, at the
    record's own Recall@K; see the module docstring."""
    ks = sorted(int(m.removeprefix("recall@")) for m in record.metrics if m.startswith("recall@"))
    scores = evaluate_saved(arrays, recall_ks=ks or (1, 2, 4, 8), include_nmi="nmi" in record.metrics)
    kept = {name: value for name, value in record.metrics.items() if metric_family(name) is None}
    before = ", ".join(f"{family}={evaluation_id(record.evaluation, family)}" for family in FAMILIES)
    evaluation = {**describe_evaluation("cpu"), "rescored_from": before, "rescored_at": now()}
    return replace(record, metrics={**scores, **kept}, evaluation=evaluation)


@dataclass(frozen=True)
class Rescored:
    """What :func:`rescore_folder` did with one trial folder: ``state`` is ``"not finished"`` (its record is not
    ``ok``), ``"current"`` (scored by today's evaluation already), ``"no embeddings"`` (stale but it kept no
    embeddings: re-run it instead) or ``"rescored"`` (``again`` is the rewritten record); ``stale`` the metric
    families whose version was not today's."""

    record: TrialRecord
    state: str
    stale: list[str]
    again: TrialRecord | None = None


def rescore_folder(folder: TrialFolder) -> Rescored:
    """Re-score ``folder``'s record from its embeddings where its evaluation is not today's, rewriting the
    record (:meth:`~harness.core.store.TrialFolder.rewrite_record`); see :class:`Rescored`."""
    record = folder.record
    stale = stale_families(record)
    if not record.ok:
        return Rescored(record, "not finished", stale)
    if not stale:
        return Rescored(record, "current", stale)
    if not (folder.path / EMBEDDINGS_FILE).is_file():
        return Rescored(record, "no embeddings", stale)
    again = rescore(record, folder.embeddings())
    folder.rewrite_record(again)
    return Rescored(record, "rescored", stale, again)
