"""Exact k-nearest-neighbour search for retrieval evaluation, with a faiss and a torch backend.

Metrics (``metric``):

* ``"cosine"`` (default): both sets are L2-normalised, then ranked by inner product
  ``s(q, g) = <q/|q|, g/|g|>``, highest first. The returned values are these similarities.
* ``"euclidean"``: ranked by squared L2 distance ``d(q, g) = |q - g|^2``, lowest first. The returned
  values are these squared distances.

Contract shared by both backends, so that every metric computed from the neighbour lists is a
function of the embeddings alone, not of the backend:

* **Exact scores decide the order.** faiss (``IndexFlatIP`` / ``IndexFlatL2``, on the GPU when
  faiss-gpu is installed and the query is on CUDA) or a chunked torch matmul finds candidates in
  float32, whose rounding differs between the two by an ulp or so, enough to break ties differently.
  Every candidate is then re-scored exactly (:class:`ExactScorer`): the (normalised) embeddings
  are rounded to a fixed-point grid (``2^-26`` for unit vectors; ``2^-25`` of the largest norm for
  the euclidean metric, a change of at most about ``sqrt(d) * 1e-8`` in a score) and their inner
  products or squared distances are computed in float64, where these integer sums are exact in
  any summation order, on any device. Candidates are ordered by that exact score.
* **Ties are ordered by gallery index.** Among gallery items with equal exact score, the one with
  the smaller index ranks first, both inside the returned list and at its end: when the k-th and
  the (k+1)-th best items tie, the smaller indices are the ones kept.
* **Certified, else exhaustive.** Each backend returns ``k + 8`` float32 candidates. A row is kept
  when its exact k-th score beats the float32 score of every item left out by more than the float32
  error bound ``tau`` (:class:`ExactScorer`), and every re-scored candidate was within ``tau`` of its
  float32 score; otherwise the row is recomputed exhaustively with exact scores.
* **Self-match excluded by index** (``exclude_self=True``, leave-one-out): query ``i`` is gallery
  item ``i`` (the queries are the first ``len(query)`` gallery items) and only that item is removed.
  Other gallery items identical to the query (score equal to the self-score, distance 0) remain
  neighbours.

Deviation from a proof: ``tau`` is 8 times the largest float32 error we measured (faiss and torch,
``d`` = 8, 64, 512, 2000 queries x 50 neighbours: at most ``1.05 u sqrt(d)``, ``u = 2^-24``), not the
worst-case bound ``d u``, which would make almost every row at ``k = 1000`` exhaustive. A row whose
re-scored candidates exceed ``tau`` is recomputed exhaustively, so a larger error is caught there.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

try:
    import faiss
except ImportError:  # the torch backend needs nothing more
    faiss = None

Metric = Literal["cosine", "euclidean"]
Backend = Literal["auto", "faiss", "torch"]

METRICS: tuple[str, ...] = ("cosine", "euclidean")
BACKENDS: tuple[str, ...] = ("auto", "faiss", "torch")

# Largest k faiss GPU indexes support (faiss/gpu/utils/DeviceDefs.cuh); above it, faiss runs on CPU.
_FAISS_GPU_MAX_K = 2048
# The torch backend scores at most this many (query, gallery) pairs at once.
_MAX_CHUNK_ELEMENTS = 1 << 24
# Float32 candidates beyond the k-th, so that a row is rarely left uncertified.
CANDIDATE_MARGIN = 8
# tau / (u * sqrt(d)) for the float32 scores; see the module docstring.
_FLOAT32_ERROR_FACTOR = 8.0
_U32 = 2.0 ** -24
# Fixed-point bits: unit vectors (cosine), and vectors of norm at most 1 (euclidean, after scaling).
# |a|, |c| <= 2^bits + sqrt(d)/2 keeps every partial sum of a.c (cosine) and of |a|^2 + |c|^2 - 2a.c
# (euclidean) below 2^53, where float64 integers are exact.
_COSINE_BITS = 26
_EUCLIDEAN_BITS = 25


def faiss_gpu_available() -> bool:
    """Whether faiss is importable and can use a GPU (faiss-gpu build and a visible device)."""
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_backend(backend: Backend, device: torch.device) -> Literal["faiss", "torch"]:
    """The backend that ``backend`` means for embeddings on ``device``.

    ``"auto"`` is faiss when it is importable, except for CUDA tensors without faiss-gpu, where the
    torch backend (on the GPU) is faster than copying to a faiss CPU index.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown kNN backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "faiss" and faiss is None:
        raise ImportError("backend='faiss' but faiss is not installed (pip install faiss-cpu)")
    if backend == "auto":
        if faiss is None or (device.type == "cuda" and not faiss_gpu_available()):
            return "torch"
        return "faiss"
    return backend


class ExactScorer:
    """Exact scores of (query, gallery) pairs, higher = nearer, identical on every backend and device.

    ``q`` and ``g`` are the float32 embeddings as searched (already normalised for cosine). They are
    rounded to integers ``a = round(q * 2^b / s)``, ``c = round(g * 2^b / s)`` (``s = 1`` for cosine;
    for euclidean the power of two at or above the largest norm) and scored as
    ``a.c * (s / 2^b)^2`` or ``-|a - c|^2 * (s / 2^b)^2`` in float64, exactly.

    ``tau`` bounds ``|float32 score - exact score|``: float32 rounding plus the fixed-point rounding.
    """

    def __init__(self, q: torch.Tensor, g: torch.Tensor, metric: Metric):
        self.metric = metric
        d = q.shape[1]
        if metric == "cosine":
            bits, max_norm = _COSINE_BITS, 1.0
        else:
            bits = _EUCLIDEAN_BITS
            max_norm = max(float(q.norm(dim=1).max()), float(g.norm(dim=1).max()), 2.0 ** -126)
        step = 2.0 ** (math.ceil(math.log2(max_norm)) - bits)
        self.a = torch.round(q.double() / step)
        self.c = torch.round(g.double() / step)
        self.step_sq = step * step
        if metric == "euclidean":
            self.a_sq = (self.a * self.a).sum(1)
            self.c_sq = (self.c * self.c).sum(1)
        fixed_point = math.sqrt(d) * step  # bound on |rounding error vector| (half a step per entry, x2)
        span = 2.0 * max_norm if metric == "euclidean" else max_norm
        self.tau = (_FLOAT32_ERROR_FACTOR * _U32 * math.sqrt(d) * span * span
                    + 2.0 * span * fixed_point + fixed_point * fixed_point)

    def pairs(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Exact float64 scores of the pairs ``(query rows[i], gallery cols[i])``."""
        out = torch.empty(len(rows), dtype=torch.float64, device=self.a.device)
        step = max(1, _MAX_CHUNK_ELEMENTS // (4 * self.a.shape[1]))
        for start in range(0, len(rows), step):
            r, c = rows[start:start + step], cols[start:start + step]
            inner = (self.a[r] * self.c[c]).sum(1)
            if self.metric == "euclidean":
                inner = 2 * inner - self.a_sq[r] - self.c_sq[c]
            out[start:start + step] = inner * self.step_sq
        return out

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Exact float64 scores of the queries ``rows`` against the whole gallery, ``(len(rows), m)``."""
        inner = self.a[rows] @ self.c.T
        if self.metric == "euclidean":
            inner = 2 * inner - self.a_sq[rows, None] - self.c_sq
        return inner * self.step_sq


@torch.no_grad()
def knn(
    query: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    metric: Metric = "cosine",
    exclude_self: bool = False,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest gallery items of each query, best first, ties ordered by gallery index.

    Args:
        query: ``(n, d)`` embeddings.
        gallery: ``(m, d)`` embeddings. With ``exclude_self``, its first ``n`` rows are the queries.
        k: neighbours per query; at most ``m`` (``m - 1`` with ``exclude_self``).
        metric: ``"cosine"`` or ``"euclidean"`` (squared L2); see the module docstring.
        exclude_self: leave-one-out: drop gallery item ``i`` from the neighbours of query ``i``
            (by index; duplicates of the query are kept).
        backend: ``"faiss"``, ``"torch"`` or ``"auto"`` (see :func:`resolve_backend`).

    Returns:
        ``(values, indices)``, both ``(n, k)`` on ``query.device``: float32 cosine similarities
        (descending) or squared L2 distances (ascending) from the exact scores, and int64 gallery
        indices. Identical for both backends.
    """
    q, g = prepare(query, gallery, metric, exclude_self)
    n_candidates = len(g) - int(exclude_self)
    if not 1 <= k <= n_candidates:
        raise ValueError(f"k={k} but each query has {n_candidates} candidate neighbours")
    exact = ExactScorer(q, g, metric)
    if resolve_backend(backend, q.device) == "faiss":
        scores32, indices = _faiss_candidates(q, g, k, metric, exclude_self)
    else:
        scores32, indices = _torch_candidates(q, g, k, metric, exclude_self)
    complete = scores32.shape[1] == n_candidates
    scores, indices = select_exact_topk(scores32.to(q.device), indices.to(q.device),
                                        torch.arange(len(q), device=q.device), k, exact,
                                        complete, exclude_self)
    values = scores if metric == "cosine" else -scores
    return values.float(), indices


def prepare(
    query: torch.Tensor, gallery: torch.Tensor, metric: Metric, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float32 query and gallery on the query's device, normalised for cosine."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) embeddings, got {tuple(query.shape)} and "
                         f"{tuple(gallery.shape)}")
    if exclude_self and len(query) > len(gallery):
        raise ValueError("exclude_self needs the queries to be the first rows of the gallery")
    q = query.detach().float()
    g = gallery.detach().float().to(q.device)
    if not (torch.isfinite(q).all() and torch.isfinite(g).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
    return q, g


class KNN:
    """:func:`knn` as a pytorch-metric-learning ``knn_func`` (``AccuracyCalculator(knn_func=...)``).

    PML calls ``knn_func(query, k, reference, ref_includes_query)`` and expects ``k`` neighbours
    with the self-match already removed when ``ref_includes_query``; this does so by index.
    """

    def __init__(self, metric: Metric = "cosine", backend: Backend = "auto"):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown kNN backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.metric = metric
        self.backend = backend

    def __call__(
        self,
        query: torch.Tensor,
        k: int,
        reference: torch.Tensor,
        ref_includes_query: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return knn(query, reference, k, self.metric, ref_includes_query, self.backend)


def score_block(q: torch.Tensor, g: torch.Tensor, metric: Metric, backend: str) -> torch.Tensor:
    """``(n, m)`` float32 scores, higher = nearer: inner products, or negated squared L2 distances.

    ``backend="faiss"`` computes them with ``faiss.pairwise_distances`` (CPU tensors only).
    """
    if backend == "faiss" and not q.is_cuda:
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        found = torch.from_numpy(faiss.pairwise_distances(
            np.ascontiguousarray(q.numpy()), np.ascontiguousarray(g.numpy()), faiss_metric))
        return found if metric == "cosine" else found.neg_()
    inner = q @ g.T
    if metric == "cosine":
        return inner
    sq_dist = (q * q).sum(1, keepdim=True) + (g * g).sum(1) - 2 * inner
    return -sq_dist.clamp_min_(0)


def rows_per_chunk(num_gallery: int) -> int:
    """Query rows per score block, so that a block holds at most ``_MAX_CHUNK_ELEMENTS`` scores."""
    return max(1, _MAX_CHUNK_ELEMENTS // num_gallery)


def order_ties_by_index(
    scores: torch.Tensor, indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score, descending; equal scores by gallery index, ascending."""
    indices, perm = indices.sort(dim=1)
    scores = scores.gather(1, perm)
    order = scores.sort(dim=1, descending=True, stable=True).indices
    return scores.gather(1, order), indices.gather(1, order)


def exact_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row of exact scores, ordered by score then index (lowest indices win ties)."""
    kth = scores.topk(k, dim=1).values[:, -1:]
    above = scores > kth
    at = scores == kth
    take = above | (at & (at.cumsum(1) <= k - above.sum(1, keepdim=True)))
    indices = take.nonzero()[:, 1].view(-1, k)
    return order_ties_by_index(scores.gather(1, indices), indices)


def exhaustive_exact_topk(
    rows: torch.Tensor, k: int, exact: ExactScorer, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of the queries ``rows`` against the whole gallery, from exact scores only."""
    all_scores, all_indices = [], []
    for start in range(0, len(rows), rows_per_chunk(len(exact.c))):
        chunk = rows[start:start + rows_per_chunk(len(exact.c))]
        scores = exact.rows(chunk)
        if exclude_self:
            scores[torch.arange(len(chunk), device=scores.device), chunk] = float("-inf")
        top_scores, top_indices = exact_topk(scores, k)
        all_scores.append(top_scores)
        all_indices.append(top_indices)
    return torch.cat(all_scores), torch.cat(all_indices)


def select_exact_topk(
    scores32: torch.Tensor,
    indices: torch.Tensor,
    rows: torch.Tensor,
    k: int,
    exact: ExactScorer,
    complete: bool,
    exclude_self: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact top-k of queries ``rows`` from float32 candidates ``(scores32, indices)``.

    The candidates (self-match already removed) are re-scored exactly and ordered by exact score,
    then index. ``complete`` says the candidates are all the gallery items. Rows whose result the
    candidates cannot certify (see the module docstring) are recomputed exhaustively.

    Returns float64 exact scores (higher = nearer) and int64 indices, ``(len(rows), k)``.
    """
    exact_scores = torch.empty(scores32.shape, dtype=torch.float64, device=scores32.device)
    step = max(1, _MAX_CHUNK_ELEMENTS // (4 * exact.a.shape[1] * max(1, scores32.shape[1])))
    for start in range(0, len(rows), step):
        block = indices[start:start + step]
        exact_scores[start:start + step] = exact.pairs(
            rows[start:start + step, None].expand_as(block).reshape(-1), block.reshape(-1)
        ).view_as(block)
    within_tau = ((scores32.double() - exact_scores).abs() <= exact.tau).all(1)
    lowest32 = scores32.min(1).values.double()
    top_scores, top_indices = order_ties_by_index(exact_scores, indices)
    top_scores, top_indices = top_scores[:, :k], top_indices[:, :k]
    certified = within_tau if complete else within_tau & (top_scores[:, -1] > lowest32 + exact.tau)
    if not certified.all():
        redo = (~certified).nonzero()[:, 0]
        top_scores[redo], top_indices[redo] = exhaustive_exact_topk(rows[redo], k, exact,
                                                                    exclude_self)
    return top_scores, top_indices


def _torch_candidates(
    q: torch.Tensor, g: torch.Tensor, k: int, metric: Metric, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k + CANDIDATE_MARGIN`` best float32 scores and indices per query, by chunked matmul."""
    n_keep = min(k + CANDIDATE_MARGIN, len(g) - int(exclude_self))
    all_scores, all_indices = [], []
    for start in range(0, len(q), rows_per_chunk(len(g))):
        scores = score_block(q[start:start + rows_per_chunk(len(g))], g, metric, "torch")
        if exclude_self:
            rows = torch.arange(len(scores), device=scores.device)
            scores[rows, rows + start] = float("-inf")
        top_scores, top_indices = scores.topk(n_keep, dim=1)
        all_scores.append(top_scores)
        all_indices.append(top_indices)
    return torch.cat(all_scores), torch.cat(all_indices)


def _faiss_candidates(
    q: torch.Tensor, g: torch.Tensor, k: int, metric: Metric, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k + CANDIDATE_MARGIN`` best float32 scores (higher = nearer) and indices per query
    from a flat faiss index, on the CPU, the self-match removed by index."""
    n, d = q.shape
    k_search = min(k + CANDIDATE_MARGIN + int(exclude_self), len(g))
    index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if q.is_cuda and faiss_gpu_available() and k_search <= _FAISS_GPU_MAX_K:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(g.cpu().numpy(), dtype=np.float32))
    found, indices = index.search(np.ascontiguousarray(q.cpu().numpy(), dtype=np.float32), k_search)
    scores = torch.from_numpy(found if metric == "cosine" else -found)
    indices = torch.from_numpy(indices).long()
    if exclude_self:
        # Drop the self-match by index; where it is not among the results (k_search items tie with
        # it or beat it), drop the last result instead: the others are still the best found.
        is_self = indices == torch.arange(n).unsqueeze(1)
        is_self[~is_self.any(1), -1] = True
        scores = scores[~is_self].view(n, -1)
        indices = indices[~is_self].view(n, -1)
    return scores, indices
