"""Exact k-nearest-neighbour search for retrieval evaluation, with a faiss and a torch backend.

Metrics (``metric``):

* ``"cosine"`` (default): both sets are L2-normalised, then ranked by inner product
  ``s(q, g) = <q/|q|, g/|g|>``, highest first. The returned values are these similarities.
* ``"euclidean"``: ranked by squared L2 distance ``d(q, g) = |q - g|^2``, lowest first. The returned
  values are these squared distances.

Contract shared by both backends, so that every metric computed from the neighbour lists is a
function of the embeddings alone, not of the backend:

* **Exact search.** ``faiss.IndexFlatIP`` / ``IndexFlatL2`` (CPU, or GPU when
  ``faiss.get_num_gpus() > 0`` and the query is on CUDA), or a chunked matmul + ``topk`` in torch
  (CPU or CUDA).
* **Ties are ordered by gallery index.** Among gallery items with equal score, the one with the
  smaller index ranks first, both inside the returned list and at its end: when the k-th and the
  (k+1)-th best items tie, the smaller indices are the ones kept. Neither faiss nor ``torch.topk``
  guarantees this, so the candidates they return are re-sorted, and the rows where a tie straddles
  the k-th position are recomputed exactly (for faiss: by the torch backend, on those rows only).
* **Self-match excluded by index** (``exclude_self=True``, leave-one-out): query ``i`` is gallery
  item ``i`` (the queries are the first ``len(query)`` gallery items) and only that item is removed.
  Other gallery items identical to the query (score equal to the self-score, distance 0) remain
  neighbours.
"""
from __future__ import annotations

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
        (descending) or squared L2 distances (ascending), and int64 gallery indices.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) embeddings, got {tuple(query.shape)} and "
                         f"{tuple(gallery.shape)}")
    if exclude_self and len(query) > len(gallery):
        raise ValueError("exclude_self needs the queries to be the first rows of the gallery")
    n_candidates = len(gallery) - int(exclude_self)
    if not 1 <= k <= n_candidates:
        raise ValueError(f"k={k} but each query has {n_candidates} candidate neighbours")
    device = query.device
    q = query.detach().float()
    g = gallery.detach().float().to(device)
    if not (torch.isfinite(q).all() and torch.isfinite(g).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
    if resolve_backend(backend, device) == "faiss":
        scores, indices = _faiss_knn(q, g, k, metric, exclude_self)
    else:
        self_index = torch.arange(len(q), device=device) if exclude_self else None
        scores, indices = _torch_knn(q, g, k, metric, self_index)
    values = scores if metric == "cosine" else -scores
    return values.to(device), indices.to(device)


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


def _scores(q: torch.Tensor, g: torch.Tensor, metric: Metric) -> torch.Tensor:
    """``(n, m)`` scores, higher = nearer: inner products, or negated squared L2 distances."""
    inner = q @ g.T
    if metric == "cosine":
        return inner
    sq_dist = (q * q).sum(1, keepdim=True) + (g * g).sum(1) - 2 * inner
    return -sq_dist.clamp_min_(0)


def _order_ties_by_index(
    scores: torch.Tensor, indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score, descending; equal scores by gallery index, ascending."""
    indices, perm = indices.sort(dim=1)
    scores = scores.gather(1, perm)
    order = scores.sort(dim=1, descending=True, stable=True).indices
    return scores.gather(1, order), indices.gather(1, order)


def _exact_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row where, among items tied with the k-th score, the lowest indices win."""
    kth = scores.topk(k, dim=1).values[:, -1:]
    above = scores > kth
    at = scores == kth
    take = above | (at & (at.cumsum(1) <= k - above.sum(1, keepdim=True)))
    indices = take.nonzero()[:, 1].view(-1, k)
    return scores.gather(1, indices), indices


def _torch_knn(
    q: torch.Tensor, g: torch.Tensor, k: int, metric: Metric, self_index: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k scores and indices by chunked matmul; ``self_index[i]`` is excluded for row i."""
    rows_per_chunk = max(1, _MAX_CHUNK_ELEMENTS // len(g))
    all_scores, all_indices = [], []
    for start in range(0, len(q), rows_per_chunk):
        scores = _scores(q[start:start + rows_per_chunk], g, metric)
        if self_index is not None:
            rows = torch.arange(len(scores), device=scores.device)
            scores[rows, self_index[start:start + rows_per_chunk]] = float("-inf")
        top_scores, top_indices = scores.topk(k, dim=1)
        kth = top_scores[:, -1:]
        # topk chose arbitrarily among items tied with the k-th score: redo those rows exactly.
        straddling = (scores == kth).sum(1) > (top_scores == kth).sum(1)
        if straddling.any():
            top_scores[straddling], top_indices[straddling] = _exact_topk(scores[straddling], k)
        top_scores, top_indices = _order_ties_by_index(top_scores, top_indices)
        all_scores.append(top_scores)
        all_indices.append(top_indices)
    return torch.cat(all_scores), torch.cat(all_indices)


def _faiss_knn(
    q: torch.Tensor, g: torch.Tensor, k: int, metric: Metric, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k with a flat faiss index; returns CPU scores (higher = nearer) and indices.

    Searches ``k + 1`` (``k + 2`` with ``exclude_self``) neighbours so that a tie between the k-th
    and the next item can be seen; such rows are recomputed by :func:`_torch_knn`.
    """
    n, d = q.shape
    k_search = min(k + 1 + int(exclude_self), len(g))
    index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if q.is_cuda and faiss_gpu_available() and k_search <= _FAISS_GPU_MAX_K:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(g.cpu().numpy(), dtype=np.float32))
    found, indices = index.search(np.ascontiguousarray(q.cpu().numpy(), dtype=np.float32), k_search)
    scores = torch.from_numpy(found if metric == "cosine" else -found)
    indices = torch.from_numpy(indices).long()
    if exclude_self:
        # Drop the self-match by index; where it is not among the results (k_search items tie with
        # it or beat it), drop the last result instead, keeping the k_search - 1 best others.
        is_self = indices == torch.arange(n).unsqueeze(1)
        is_self[~is_self.any(1), -1] = True
        scores = scores[~is_self].view(n, -1)
        indices = indices[~is_self].view(n, -1)
    if scores.shape[1] > k:
        straddling = scores[:, k - 1] == scores[:, k]
    else:  # every candidate was returned: no item is left out, so no tie is cut
        straddling = torch.zeros(n, dtype=torch.bool)
    scores, indices = _order_ties_by_index(scores[:, :k], indices[:, :k])
    if straddling.any():
        rows = straddling.nonzero()[:, 0]
        rows_here = rows.to(q.device)
        exact_scores, exact_indices = _torch_knn(
            q[rows_here], g, k, metric, rows_here if exclude_self else None
        )
        scores[rows], indices[rows] = exact_scores.cpu(), exact_indices.cpu()
    return scores, indices
