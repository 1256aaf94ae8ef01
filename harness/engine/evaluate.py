"""Retrieval evaluation of embeddings: Recall@K, MAP@R, R-Precision and NMI.

Two settings:

* **leave-one-out** (CUB, Cars, SOP): the test set is both query and gallery, and each query's own
  item is removed from its neighbours *by index*; other items identical to it still count.
* **query / gallery** (In-Shop): the queries are searched in a separate gallery; nothing is removed.

For a query ``q`` with class ``y_q``, let ``g_1, g_2, ...`` be its gallery neighbours ranked by
:mod:`harness.engine.knn` (cosine similarity or squared L2 distance, ties by gallery index),
``rel(i) = [y(g_i) = y_q]``, and ``R`` the number of gallery items of class ``y_q`` (the query
itself not counted in leave-one-out). Each metric is the mean over queries of:

* Recall@K (the DML usage, Song et al., "Deep Metric Learning via Lifted Structured Feature
  Embedding", CVPR 2016): ``max_{i <= K} rel(i)``, i.e. 1 when one of the K nearest neighbours
  shares the query's class. Every query counts; one with ``R = 0`` is never a hit. A K at or beyond
  the number of candidates (gallery size, minus one in leave-one-out) retrieves every candidate:
  its Recall@K is the share of queries with ``R > 0`` (reported, never dropped).
* R-Precision (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020):
  ``(1/R) sum_{i <= R} rel(i)``.
* MAP@R (same paper): ``(1/R) sum_{i <= R} P(i) rel(i)`` with ``P(i) = (1/i) sum_{j <= i} rel(j)``.
  R-Precision and MAP@R are undefined for ``R = 0``: such queries are left out of their mean
  (NaN when every query has ``R = 0``).
* NMI (Manning et al., "Introduction to Information Retrieval", 2008, sec. 16.3):
  ``I(Y; C) / ((H(Y) + H(C)) / 2)`` between the query classes ``Y`` and a k-means clustering ``C``
  of the query embeddings (normalised first for the cosine metric) into as many clusters as there
  are query classes (:func:`harness.engine.kmeans.kmeans`, the best of ``NMI_RESTARTS = 10`` runs
  from seed 0, see below; the same clustering whatever
  the kNN backend; its cost grows with n x classes: on SOP-sized data about 4 times the kNN
  search on 2 CPU cores, most of it the k-means++ seeding), computed by
  ``sklearn.metrics.normalized_mutual_info_score``.

How it is computed: from one list per query of its ``L = max(k_R, max K) + 8`` best float32
candidates (``k_R = max R``), searched in chunks of queries (a flat faiss index, or a torch matmul
and ``topk`` per block of ``chunk x m`` scores; memory ``O(chunk x L)`` or ``O(chunk x m)``, never
``n x m``, on the embeddings' device). The faiss search is the one a raw ``IndexFlatIP`` search
of ``max K + 1`` neighbours does, with 8 more; everything else works on the lists:

* MAP@R and R-Precision from each query's ``k_R`` nearest neighbours, with the formulas of
  pytorch-metric-learning's ``AccuracyCalculator`` (``mean_average_precision_at_r``,
  ``r_precision``, ``k="max_bin_count"``; the test checks equality with it). PML itself is not
  called: it searched ``max(recall_ks)`` neighbours (1000 for SOP) and built several ``n x K``
  float64 and int64 tensors (8.2 GB peak on 60k x 512), and looped over every class in Python.
* Recall@K for every K from the rank of each query's first same-class neighbour in its list: the
  best same-class item under the exact order, and the count of items ranked before it. A rank
  above ``max K`` is only bounded (every Recall@K is 0 for that query either way).

Both follow :mod:`harness.engine.knn`'s exact order: float32 candidates; exact re-scoring only of
the items whose float32 score is within twice the error bound ``tau`` of a decision (a neighbouring
candidate for the top ``k_R``; the best same-class item for Recall@K); exhaustive exact rows where
the list cannot decide (near-ties running past its end) or a bound is exceeded. So every metric is
identical for the faiss and torch backends and for any number of threads.

NMI's clustering is :func:`harness.engine.kmeans.kmeans` (faiss Lloyd, greedy k-means++ seeding;
:func:`harness.engine.kmeans.kmeans_implementation` names it for the record), the best (lowest
inertia) of ``NMI_RESTARTS = 10`` seeded runs, as the field computes NMI (scikit-learn's
``KMeans(n_init=10)``, the setting of the DML papers' evaluation code), scored by
``sklearn.metrics.normalized_mutual_info_score`` as PML does. One run (``n_init=1``) was the
harness's choice before: on the 1,700 omniglot28 test embeddings of a trained ``ms`` it gave NMI
83.4 ± 0.3 over k-means seeds where scikit-learn's ``n_init=10`` gives 85.0 ± 0.5, so a row's NMI
was about 1.5 points below the figure a paper computing it the usual way would print. Ten restarts
cost ten k-means (the seeding dominates): see ``benchmarks/evaluation_scale.py``.

**The evaluation's version.** Every record names the evaluation that scored it
(:func:`describe_evaluation`), one version per *metric family* (:data:`harness.core.evaluation.FAMILIES`)
beside the implementations in words (``knn``, ``kmeans``):

* ``retrieval`` (Recall@K, MAP@R, R-Precision): :data:`~harness.core.evaluation.RETRIEVAL_VERSION`,
  the version of their *definitions*. They are exact functions of the embeddings: the neighbour order
  is certified exact (:mod:`harness.engine.knn`), identical for faiss and torch and any thread count,
  and every metric is checked against a brute-force reference and PML in ``tests/test_evaluate.py``.
  So an implementation change that keeps the tests (a faster search, a smaller chunk) cannot move a
  value, and a fingerprint of the code would split every board at each refactor for no change of a
  number. A change of a definition bumps the version, and a test pins the definitions' values on a
  fixed input under it (``tests/test_evaluation_version.py``), so a change made without the bump fails.
* ``clustering`` (NMI): a fingerprint of the code that computes it (this module and
  :mod:`harness.engine.kmeans`, without docstrings and comments: :func:`code_fingerprint`) and of
  the k-means settings. k-means is a heuristic: any change to its seeding or Lloyd moves NMI on
  the same embeddings (the seeding's 3 candidates moved it by a point), so its identity is its code.

Per family rather than one version for everything, because the families change independently and a
board is read column by column: the k-means change of 2026-12 moved NMI by about a point and left
every Recall@K of the same embeddings at 0.0000 drift (issue 30); one version would have split or
invalidated the Recall@K columns of 96 committed records that are unchanged. A board never pools
values of one family scored by different versions (:mod:`harness.reporting.tables`);
``python -m harness evaluate --rescore`` re-scores kept embeddings under today's evaluation.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
import sys
from types import ModuleType
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score

from harness.core.evaluation import CLUSTERING, RETRIEVAL, RETRIEVAL_VERSION
from harness.engine import kmeans as kmeans_module
from harness.engine.kmeans import kmeans, kmeans_implementation
from harness.engine.knn import (
    CANDIDATE_MARGIN, Backend, ExactScorer, Metric, candidate_chunks, prepare, resolve_backend,
    select_exact_topk,
)

#: k-means runs whose lowest-inertia clustering NMI scores (scikit-learn's ``KMeans(n_init=10)``)
NMI_RESTARTS = 10
#: the seed of NMI's k-means: the same clustering of the same embeddings every time
NMI_SEED = 0


def evaluate_embeddings(
    query_emb: torch.Tensor | np.ndarray,
    query_labels: torch.Tensor | np.ndarray,
    gallery_emb: torch.Tensor | np.ndarray | None = None,
    gallery_labels: torch.Tensor | np.ndarray | None = None,
    recall_ks: Sequence[int] = (1, 2, 4, 8),
    metric: Metric = "cosine",
    backend: Backend = "auto",
    include_nmi: bool = True,
) -> dict[str, float]:
    """Retrieval metrics of ``(n, d)`` query embeddings with integer class labels.

    Without a gallery, leave-one-out over the query set; with one, the queries are searched in it
    (In-Shop). See the module docstring for the definitions.

    Returns ``{"recall@K": ... for K in recall_ks, "map@r", "r_precision", "nmi"}`` (``"nmi"``
    only with ``include_nmi``). A K larger than the number of candidate neighbours (gallery size,
    minus one in leave-one-out) retrieves them all (see the module docstring).
    """
    if (gallery_emb is None) != (gallery_labels is None):
        raise ValueError("pass both gallery_emb and gallery_labels, or neither")
    if any(int(k) != k or k < 1 for k in recall_ks):
        raise ValueError(f"recall_ks must be positive integers, got {tuple(recall_ks)}")
    query = torch.as_tensor(query_emb)
    leave_one_out = gallery_emb is None
    gallery = query if leave_one_out else torch.as_tensor(gallery_emb)
    label_arrays = [_as_label_array(query_labels, len(query))]
    if not leave_one_out:
        label_arrays.append(_as_label_array(gallery_labels, len(gallery)))
    num_candidates = len(gallery) - int(leave_one_out)
    if num_candidates < 1:
        raise ValueError("leave-one-out evaluation needs at least two embeddings")
    q, g = prepare(query, gallery, metric, leave_one_out)
    class_ids = torch.from_numpy(
        np.unique(np.concatenate(label_arrays), return_inverse=True)[1].reshape(-1)
    ).to(q.device)
    q_classes = class_ids[:len(q)]
    g_classes = q_classes if leave_one_out else class_ids[len(q):]
    relevant = torch.bincount(g_classes, minlength=len(class_ids))[q_classes] - int(leave_one_out)
    ks = sorted({int(k) for k in recall_ks})
    neighbours, first_match = _neighbours_and_first_match_rank(
        q, g, q_classes, g_classes, relevant, int(relevant.max()), min(max(ks, default=0), num_candidates), metric,
        leave_one_out, resolve_backend(backend, q.device))

    results = {f"recall@{k}": (first_match <= min(k, num_candidates)).double().mean().item() for k in ks}
    results.update(_map_at_r_and_r_precision(g_classes[neighbours] == q_classes[:, None], relevant))
    if include_nmi:
        clusters = kmeans(q, len(torch.unique(q_classes)), n_init=NMI_RESTARTS, seed=NMI_SEED)
        results["nmi"] = float(normalized_mutual_info_score(q_classes.cpu().numpy(),
                                                            clusters.cpu().numpy()))
    return results


def code_fingerprint(modules: Sequence[ModuleType], settings: dict) -> str:
    """A 16-hex fingerprint of ``modules``' code (their syntax trees with docstrings removed: comments,
    docstrings and layout never change it) and of ``settings`` (JSON)."""
    digest = hashlib.sha256()
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        digest.update(module.__name__.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def evaluation_fingerprints() -> dict[str, str]:
    """``{"retrieval": ..., "clustering": ...}``: the version of each metric family's evaluation as this
    code computes it: the retrieval definitions' version and the clustering code's fingerprint (see the
    module docstring)."""
    return {RETRIEVAL: RETRIEVAL_VERSION,
            CLUSTERING: code_fingerprint([sys.modules[__name__], kmeans_module],
                                         {"restarts": NMI_RESTARTS, "seed": NMI_SEED,
                                          "seeding_candidates": kmeans_module.SEEDING_CANDIDATES,
                                          "seeding_rounds": kmeans_module.SEEDING_ROUNDS,
                                          "max_iter": kmeans_module.MAX_ITER})}


def describe_evaluation(device: torch.device | str) -> dict[str, str]:
    """What a record names as its evaluation: each family's fingerprint
    (:func:`evaluation_fingerprints`) and, in words, the kNN and k-means that ran on ``device``."""
    return {**evaluation_fingerprints(),
            "knn": f"{resolve_backend('auto', torch.device(device))} candidates, near-ties re-scored exactly (float64)",
            "kmeans": kmeans_implementation(device, n_init=NMI_RESTARTS)}


def evaluate_saved(arrays: Mapping[str, np.ndarray], recall_ks: Sequence[int] = (1, 2, 4, 8),
                   include_nmi: bool = True) -> dict[str, float]:
    """:func:`evaluate_embeddings` of a trial's kept embeddings: the arrays of its ``embeddings.npz``
    (``query``, ``query_labels`` and, for In-Shop, ``gallery``, ``gallery_labels``)."""

    def tensor(name: str) -> torch.Tensor | None:
        return torch.from_numpy(arrays[name]) if name in arrays else None

    return evaluate_embeddings(tensor("query"), tensor("query_labels"), tensor("gallery"), tensor("gallery_labels"),
                               recall_ks=recall_ks, include_nmi=include_nmi)


def _map_at_r_and_r_precision(is_match: torch.Tensor, relevant: torch.Tensor) -> dict[str, float]:
    """MAP@R and R-Precision as PML computes them, from ``is_match[i, j]`` (the j-th neighbour of
    query i shares its class) and ``relevant[i] = R``; queries with ``R = 0`` are left out."""
    keep = relevant > 0
    if not keep.any():
        return {"map@r": float("nan"), "r_precision": float("nan")}
    is_match, r = is_match[keep], relevant[keep]
    within_r = torch.arange(is_match.shape[1], device=r.device) < r[:, None]
    hits = is_match & within_r
    precision = hits.cumsum(1).double() / torch.arange(1, hits.shape[1] + 1, device=r.device)
    average_precision = (precision * hits).sum(1) / r
    return {"map@r": average_precision.mean().item(),
            "r_precision": (hits.sum(1).double() / r).mean().item()}


def _neighbours_and_first_match_rank(
    q: torch.Tensor,
    g: torch.Tensor,
    q_classes: torch.Tensor,
    g_classes: torch.Tensor,
    relevant: torch.Tensor,
    k: int,
    max_rank: int,
    metric: Metric,
    exclude_self: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's ``k`` nearest gallery indices and the 1-based rank of its first same-class
    neighbour under the exact order of :mod:`harness.engine.knn`, from one list of the
    ``max(k, max_rank) + CANDIDATE_MARGIN`` best float32 candidates per query. A rank is exact up
    to ``max_rank``; a larger one is only known to be larger. A query without same-class gallery
    items (``relevant == 0``) gets ``num_candidates + 1``."""
    exact = ExactScorer(q, g, metric)
    num_candidates = len(g) - int(exclude_self)
    depth = min(max(k, max_rank) + CANDIDATE_MARGIN, num_candidates)
    width = min(k + CANDIDATE_MARGIN, depth)  # the part of the list that decides the top k
    neighbours = torch.empty(len(q), k, dtype=torch.long, device=q.device)
    first_match = torch.full((len(q),), num_candidates + 1, dtype=torch.long, device=q.device)
    for rows, scores32, indices in candidate_chunks(q, g, depth, metric, exclude_self, backend):
        if k:
            neighbours[rows] = select_exact_topk(
                scores32[:, :width], indices[:, :width], rows, k, exact,
                width == num_candidates, exclude_self)
        has_match = relevant[rows] > 0
        if not has_match.all():
            rows, scores32, indices = rows[has_match], scores32[has_match], indices[has_match]
        if len(rows):
            first_match[rows] = _first_match_rank(
                scores32, indices, rows, q_classes[rows], g_classes, exact, max_rank,
                depth == num_candidates, exclude_self)
    return neighbours, first_match


def _first_match_rank(
    scores32: torch.Tensor,
    indices: torch.Tensor,
    rows: torch.Tensor,
    classes: torch.Tensor,
    g_classes: torch.Tensor,
    exact: ExactScorer,
    max_rank: int,
    complete: bool,
    exclude_self: bool,
) -> torch.Tensor:
    """Rank of the first same-class item of queries ``rows`` (each with one) under the exact order,
    exact up to ``max_rank``, from their float32 candidates ``(scores32, indices)`` (sorted by
    score, descending; ``complete`` when they are the whole gallery).

    With ``b`` the best float32 score of a same-class item in the list (or, when there is none,
    the list's last score, which bounds every item left out), the exact best same-class item
    scores at most ``b + tau``, so every item above ``b + 2 tau`` precedes it. When the list
    reaches below ``b - 2 tau``, the best same-class item is the exactly re-scored best of those
    within ``2 tau`` of ``b``, and the items between ``tau`` below its exact score and
    ``b + 2 tau`` are re-scored and counted when the exact order puts them first (only in rows
    where that band holds more than the item itself). Otherwise the count above ``b + 2 tau`` is a
    lower bound, final where it exceeds ``max_rank``. The remaining rows, and rows where a
    re-scored item was further than ``tau`` from its float32 score, are redone with exact scores.
    """
    same = g_classes[indices] == classes[:, None]
    keys = scores32.double()
    best32 = keys.masked_fill(~same, float("-inf")).max(1).values
    last = torch.full_like(best32, float("-inf")) if complete else keys[:, -1]
    upper = torch.maximum(best32, last) + 2 * exact.tau
    ranks = 1 + (keys > upper[:, None]).sum(1)
    in_list = best32 - 2 * exact.tau > last
    redo = ~in_list & (ranks <= max_rank)

    listed = (in_list & (ranks <= max_rank)).nonzero()[:, 0]
    near_rows, near_cols = (same[listed] & (keys[listed] >= best32[listed, None] - 2 * exact.tau)
                            ).nonzero(as_tuple=True)
    near_rows = listed[near_rows]
    candidates = exact.pairs(rows[near_rows], indices[near_rows, near_cols])
    best = torch.full_like(best32, float("-inf")).scatter_reduce_(0, near_rows, candidates, "amax")
    at_best = candidates == best[near_rows]
    best_index = torch.full_like(ranks, len(exact.g)).scatter_reduce_(
        0, near_rows[at_best], indices[near_rows, near_cols][at_best], "amin")
    redo[near_rows[(keys[near_rows, near_cols] - candidates).abs() > exact.tau]] = True

    in_band = ((keys[listed] >= (best[listed] - exact.tau)[:, None])
               & (keys[listed] <= upper[listed, None]))
    crowded = (in_band.sum(1) > 1).nonzero()[:, 0]
    band_rows, band_cols = in_band[crowded].nonzero(as_tuple=True)
    band_rows = listed[crowded[band_rows]]
    band = exact.pairs(rows[band_rows], indices[band_rows, band_cols])
    before = (band > best[band_rows]) | ((band == best[band_rows])
                                         & (indices[band_rows, band_cols] < best_index[band_rows]))
    ranks.index_add_(0, band_rows, before.long())
    redo[band_rows[(keys[band_rows, band_cols] - band).abs() > exact.tau]] = True
    if redo.any():
        again = redo.nonzero()[:, 0]
        ranks[again] = _exact_first_match_rank(rows[again], classes[again], g_classes, exact,
                                               exclude_self)
    return ranks


def _exact_first_match_rank(
    rows: torch.Tensor, classes: torch.Tensor, g_classes: torch.Tensor, exact: ExactScorer,
    exclude_self: bool,
) -> torch.Tensor:
    """:func:`_first_match_rank` from exact scores against the whole gallery (always exact)."""
    scores = exact.rows(rows)
    same = classes[:, None] == g_classes
    if exclude_self:
        scores[torch.arange(len(rows), device=rows.device), rows] = float("-inf")
        same[torch.arange(len(rows), device=rows.device), rows] = False
    best = scores.masked_fill(~same, float("-inf")).max(1, keepdim=True).values
    gallery_index = torch.arange(scores.shape[1], device=rows.device)
    best_index = torch.where(same & (scores == best), gallery_index,
                             scores.shape[1]).min(1, keepdim=True).values
    return 1 + ((scores > best) | ((scores == best) & (gallery_index < best_index))).sum(1)


def _as_label_array(labels: torch.Tensor | np.ndarray, num_embeddings: int) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.shape != (num_embeddings,):
        raise ValueError(f"expected {num_embeddings} labels (one per embedding), got shape "
                         f"{array.shape}")
    return array


def embed(
    model: torch.nn.Module, loader: Iterable, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and labels of every ``(images, labels)`` batch of ``loader``, in loader order.

    Runs ``model(images)["embedding"]`` in eval mode under ``torch.inference_mode()`` and restores
    the model's train/eval mode afterwards. Returns float32 ``(N, d)`` embeddings on ``device`` and
    the ``(N,)`` labels on the CPU, as ordinary (non-inference) tensors.
    """
    was_training = model.training
    model.eval()
    embeddings, labels = [], []
    try:
        with torch.inference_mode():
            for images, batch_labels in loader:
                output = model(images.to(device, non_blocking=True))
                embeddings.append(output["embedding"].float())
                labels.append(torch.as_tensor(batch_labels).cpu())
    finally:
        model.train(was_training)
    if not embeddings:
        raise ValueError("the loader yielded no batches")
    # Concatenating outside inference mode gives tensors that later code may modify in place.
    return torch.cat(embeddings), torch.cat(labels)
