"""The evaluation a record was scored with, per metric family, as readers of records see it.

An evaluation has a version per *metric family*: ``retrieval`` (Recall@K, MAP@R, R-Precision, from
the exact kNN order) and ``clustering`` (NMI, from a k-means). A record's ``evaluation`` mapping
holds each family's version under the family's name (written by
:func:`harness.engine.evaluate.describe_evaluation`, which argues why the version is per family and
what each is), beside the implementations in words (``knn``, ``kmeans``). Two values of one metric
are comparable only when their family's versions are equal.

Records written before the versions were recorded name their evaluation in words only; their
version is read from those words (:func:`evaluation_id`). A k-means is known only by its words:
``unversioned-`` and a hash of the text, so records whose words agree share a version and a record
whose k-means was described otherwise (the seeding drew ``2 + ln k`` candidates, then 3) does not.
The retrieval metrics of a record whose kNN says it re-scored near-ties exactly were computed under
the exact-order contract whose definitions are :data:`RETRIEVAL_VERSION` (the words appear with
that contract, 12a809c; the one definition changed since, d055cb4, is Recall@K for a K at or beyond
the number of candidates, which no committed board uses: 1,700 test embeddings, K at most 8).
Optional metrics (a plugin's, ``utilization``) belong to no family: their code is their own.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

from harness.core.metrics import base_metric

RETRIEVAL = "retrieval"
CLUSTERING = "clustering"
#: each family and the record field that describes its implementation in words
FAMILIES = {RETRIEVAL: "knn", CLUSTERING: "kmeans"}
#: a metric's family, by its name without a split prefix
_FAMILY_OF = {"map@r": RETRIEVAL, "r_precision": RETRIEVAL, "nmi": CLUSTERING}
UNVERSIONED = "unversioned-"
#: the version of the retrieval metrics' definitions (:mod:`harness.engine.evaluate`); bumped with any
#: change to a definition or to the neighbour order (``tests/test_evaluation_version.py`` pins its values)
RETRIEVAL_VERSION = "exact-knn-1"
#: how a record's ``knn`` words say it ran under the exact-order contract
_EXACT_KNN_WORDS = "near-ties re-scored exactly"


def metric_family(metric: str) -> str | None:
    """The family of ``metric`` (``recall@4``, ``val_map@r`` ...), None for an optional metric."""
    name = base_metric(metric)[1]
    if name.startswith("recall@"):
        return RETRIEVAL
    return _FAMILY_OF.get(name)


def evaluation_id(evaluation: Mapping[str, Any], family: str) -> str:
    """The version of ``family`` a record's ``evaluation`` mapping names; for a record older than the
    versions, read from its words (see the module docstring): :data:`RETRIEVAL_VERSION` for an exact kNN,
    else ``unversioned-`` and 8 hex of the implementation's description."""
    recorded = evaluation.get(family)
    if isinstance(recorded, str) and recorded:
        return recorded
    text = str(evaluation.get(FAMILIES[family], "not recorded"))
    if family == RETRIEVAL and _EXACT_KNN_WORDS in text:
        return RETRIEVAL_VERSION
    return UNVERSIONED + hashlib.sha1(text.encode()).hexdigest()[:8]


def evaluation_text(evaluation: Mapping[str, Any], family: str) -> str:
    """``family``'s implementation in the record's words (``not recorded`` where it has none)."""
    return str(evaluation.get(FAMILIES[family]) or "not recorded")
