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
  shares the query's class. Every query counts; one with ``R = 0`` is never a hit.
* R-Precision (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020):
  ``(1/R) sum_{i <= R} rel(i)``.
* MAP@R (same paper): ``(1/R) sum_{i <= R} P(i) rel(i)`` with ``P(i) = (1/i) sum_{j <= i} rel(j)``.
  R-Precision and MAP@R are undefined for ``R = 0``: such queries are left out of their mean
  (NaN when every query has ``R = 0``).
* NMI (Manning et al., "Introduction to Information Retrieval", 2008, sec. 16.3):
  ``I(Y; C) / ((H(Y) + H(C)) / 2)`` between the query classes ``Y`` and a k-means clustering ``C``
  of the query embeddings (normalised first for the cosine metric) into as many clusters as there
  are query classes (scikit-learn ``KMeans``, k-means++ init, ``random_state=0``; the same
  clustering whatever the kNN backend; its cost grows with n x classes, so large sets may want
  ``include_nmi=False``), computed by ``sklearn.metrics.normalized_mutual_info_score``.

How it is computed, in one chunked pass over the gallery (memory ``O(n k_R + chunk x m)``,
never ``n x m``, on the embeddings' device; the float32 score blocks come from
``faiss.pairwise_distances`` with the faiss backend on the CPU, else from a torch matmul):

* MAP@R and R-Precision from each query's ``k_R = max R`` nearest neighbours, with the formulas of
  pytorch-metric-learning's ``AccuracyCalculator`` (``mean_average_precision_at_r``,
  ``r_precision``, ``k="max_bin_count"``; the test checks equality with it). PML itself is not
  called: it searched ``max(recall_ks)`` neighbours (1000 for SOP) and built several ``n x K``
  float64 and int64 tensors (8.2 GB peak on 60k x 512), and looped over every class in Python.
* Recall@K for every K from the rank of each query's first same-class neighbour: the best
  same-class item under the exact order, and the count of items ranked before it. No ``n x 1000``
  neighbour list is built.

Both follow :mod:`harness.engine.knn`'s exact order (float32 candidates, exact re-scoring of every
item whose float32 score is within the error bound of a decision, exhaustive exact rows when a
bound is exceeded), so every metric is identical for the faiss and torch backends.

NMI's clustering is :func:`harness.engine.kmeans.kmeans` (faiss Lloyd, greedy k-means++ seeding;
:func:`harness.engine.kmeans.kmeans_implementation` names it for the record), scored by
``sklearn.metrics.normalized_mutual_info_score`` as PML does.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score

from harness.engine.kmeans import kmeans
from harness.engine.knn import (
    CANDIDATE_MARGIN, Backend, ExactScorer, Metric, prepare, resolve_backend, rows_per_chunk,
    score_block, select_exact_topk,
)


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
    minus one in leave-one-out) has no ``recall@K`` entry.
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
    neighbours, first_match = _neighbours_and_first_match_rank(
        q, g, q_classes, g_classes, int(relevant.max()), metric, leave_one_out,
        resolve_backend(backend, q.device))

    results = {f"recall@{k}": (first_match <= k).double().mean().item()
               for k in sorted({int(k) for k in recall_ks if k <= num_candidates})}
    results.update(_map_at_r_and_r_precision(g_classes[neighbours] == q_classes[:, None], relevant))
    if include_nmi:
        clusters = kmeans(q, len(torch.unique(q_classes)))
        results["nmi"] = float(normalized_mutual_info_score(q_classes.cpu().numpy(),
                                                            clusters.cpu().numpy()))
    return results


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
    k: int,
    metric: Metric,
    exclude_self: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's ``k`` nearest gallery indices and the 1-based rank of its first same-class
    neighbour (``num_candidates + 1`` when it has none), under the exact order of
    :mod:`harness.engine.knn`, from float32 score blocks of ``rows_per_chunk`` queries."""
    exact = ExactScorer(q, g, metric)
    num_candidates = len(g) - int(exclude_self)
    n_keep = min(k + CANDIDATE_MARGIN, num_candidates)
    neighbours = torch.empty(len(q), k, dtype=torch.long, device=q.device)
    first_match = torch.empty(len(q), dtype=torch.long, device=q.device)
    for start in range(0, len(q), rows_per_chunk(len(g))):
        rows = torch.arange(start, min(start + rows_per_chunk(len(g)), len(q)), device=q.device)
        scores = score_block(q[rows], g, metric, backend).to(q.device)
        same = q_classes[rows, None] == g_classes
        if exclude_self:
            scores[torch.arange(len(rows), device=q.device), rows] = float("-inf")
            same[torch.arange(len(rows), device=q.device), rows] = False
        if k:
            top_scores, top_indices = scores.topk(n_keep, dim=1)
            neighbours[rows] = select_exact_topk(top_scores, top_indices, rows, k, exact,
                                                 n_keep == num_candidates, exclude_self)[1]
        ranks, uncertain = _first_match_rank(scores, same, rows, exact, exact.tau)
        if uncertain.any():
            redo = uncertain.nonzero()[:, 0]
            exact_scores = exact.rows(rows[redo])
            if exclude_self:
                exact_scores[torch.arange(len(redo), device=q.device), rows[redo]] = float("-inf")
            ranks[redo] = _first_match_rank(exact_scores, same[redo], rows[redo], exact, 0.0)[0]
        ranks[~same.any(1)] = num_candidates + 1
        first_match[rows] = ranks
    return neighbours, first_match


def _first_match_rank(
    scores: torch.Tensor, same: torch.Tensor, rows: torch.Tensor, exact: ExactScorer, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of each row's first same-class item under the exact order, from ``scores`` within
    ``tau`` of the exact scores (float32 with ``exact.tau``, or the exact scores with 0).

    The best same-class item is the exactly re-scored best of those whose score is within
    ``2 tau`` of the row's best same-class score; it is preceded by every item scored above it by
    more than ``tau`` and by the items within ``tau`` that the exact order puts first. Returns the
    ranks and the rows where a re-scored item was further than ``tau`` from its score (to be redone
    with exact scores). Rows without a same-class item get meaningless ranks.
    """
    n = len(rows)
    best32 = scores.masked_fill(~same, float("-inf")).max(1).values.double()
    best_rows, best_cols = (same & (scores >= _round_down(best32 - 2 * tau, scores.dtype)[:, None])
                            ).nonzero().T
    candidates = exact.pairs(rows[best_rows], best_cols)
    best = torch.full((n,), float("-inf"), dtype=torch.float64, device=scores.device)
    best.scatter_reduce_(0, best_rows, candidates, "amax")
    at_best = candidates == best[best_rows]
    best_index = torch.full((n,), len(exact.c), dtype=torch.long, device=scores.device)
    best_index.scatter_reduce_(0, best_rows[at_best], best_cols[at_best], "amin")

    upper = _round_up(best + tau, scores.dtype)[:, None]
    above = (scores > upper).sum(1)
    band_rows, band_cols = ((scores >= _round_down(best - tau, scores.dtype)[:, None])
                            & (scores <= upper) & same.any(1, keepdim=True)).nonzero().T
    band = exact.pairs(rows[band_rows], band_cols)
    before = (band > best[band_rows]) | ((band == best[band_rows]) & (band_cols < best_index[band_rows]))
    ranks = 1 + above + torch.zeros(n, dtype=torch.long, device=scores.device).index_add_(
        0, band_rows, before.long())
    uncertain = torch.zeros(n, dtype=torch.bool, device=scores.device)
    for r, c, value in ((best_rows, best_cols, candidates), (band_rows, band_cols, band)):
        uncertain[r[(scores[r, c].double() - value).abs() > tau]] = True
    return ranks, uncertain


def _round_up(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype``, rounded towards +inf, so that ``s > result`` implies ``s > x``."""
    return x if dtype == x.dtype else torch.nextafter(x.to(dtype), x.new_tensor(float("inf"), dtype=dtype))


def _round_down(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype``, rounded towards -inf, so that ``s < result`` implies ``s < x``."""
    return x if dtype == x.dtype else torch.nextafter(x.to(dtype), x.new_tensor(float("-inf"), dtype=dtype))


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
