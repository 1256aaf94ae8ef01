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
  float32, whose rounding differs between the two (and between thread counts) by an ulp or so,
  enough to break ties differently. The exact score (:class:`ExactScorer`) rounds the (normalised)
  embeddings to a fixed-point grid (``2^-26`` for unit vectors; ``2^-25`` of the largest norm for
  the euclidean metric, a change of at most about ``sqrt(d) * 1e-8`` in a score) and computes their
  inner products or squared distances in float64, where these integer sums are exact in any
  summation order, on any device. Candidates are ordered by that exact score.
* **Only near-ties are re-scored.** Every float32 score is within ``tau`` of its exact score (see
  the deviation below), so two candidates whose float32 scores differ by more than ``2 tau`` are in
  the same order exactly. A candidate is re-scored exactly only when its float32 score is within
  ``2 tau`` of the next or previous candidate's; the others keep their float32 order.
* **Ties are ordered by gallery index.** Among gallery items with equal exact score, the one with
  the smaller index ranks first, both inside the returned list and at its end: when the k-th and
  the (k+1)-th best items tie, the smaller indices are the ones kept.
* **Certified, else exhaustive.** Each backend returns ``k + 8`` float32 candidates. A row is kept
  when the chain of near-ties through its k-th candidate ends inside the list (then no item left out
  can enter the top k), and every re-scored candidate was within ``tau`` of its float32 score;
  otherwise the row is recomputed exhaustively with exact scores.
* **Self-match excluded by index** (``exclude_self=True``, leave-one-out): query ``i`` is gallery
  item ``i`` (the queries are the first ``len(query)`` gallery items) and only that item is removed.
  Other gallery items identical to the query (score equal to the self-score, distance 0) remain
  neighbours.

Deviation from a proof: ``tau`` is 8 times the largest float32 error we measured (faiss and torch,
``d`` = 8, 64, 512, 2000 queries x 50 neighbours: at most ``1.05 u sqrt(d)``, ``u = 2^-24``), not the
worst-case bound ``d u``, which would make almost every row at ``k = 1000`` exhaustive. A row whose
re-scored candidates exceed ``tau`` is recomputed exhaustively, so a larger error is caught there;
an error above ``tau`` on a candidate that was not re-scored (no near-tie) would go unnoticed.
"""
from __future__ import annotations

import math
from typing import Iterator, Literal

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
# A faiss search returns at most this many (query, candidate) pairs at once: the re-scoring and tie
# ordering of a chunk hold about a dozen chunk x width copies, so 4M pairs keep an evaluation at SOP's
# shape (60k x 512, k = 1001) at 1.73 GB peak RSS where 16M reached 2.19 GB, at the same speed.
_FAISS_CHUNK_ELEMENTS = 1 << 22
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

    ``q`` and ``g`` are the float32 embeddings as searched (already normalised for cosine). Rows are
    rounded when scored, to integers ``a = round(q * 2^b / s)``, ``c = round(g * 2^b / s)``
    (``s = 1`` for cosine; for euclidean the power of two at or above the largest norm), and
    scored as ``a.c * (s / 2^b)^2`` or ``-|a - c|^2 * (s / 2^b)^2`` in float64, exactly.

    ``tau`` bounds ``|float32 score - exact score|``: float32 rounding plus the fixed-point rounding.
    """

    def __init__(self, q: torch.Tensor, g: torch.Tensor, metric: Metric):
        self.q, self.g, self.metric = q, g, metric
        d = q.shape[1]
        if metric == "cosine":
            bits, max_norm = _COSINE_BITS, 1.0
        else:
            bits = _EUCLIDEAN_BITS
            max_norm = max(float(q.norm(dim=1).max()), float(g.norm(dim=1).max()), 2.0 ** -126)
        self.step = 2.0 ** (math.ceil(math.log2(max_norm)) - bits)
        fixed_point = math.sqrt(d) * self.step  # bound on |rounding error vector| (half a step per entry, x2)
        span = 2.0 * max_norm if metric == "euclidean" else max_norm
        self.tau = (_FLOAT32_ERROR_FACTOR * _U32 * math.sqrt(d) * span * span
                    + 2.0 * span * fixed_point + fixed_point * fixed_point)
        self._gallery: torch.Tensor | None = None

    def _fixed(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the fixed-point grid, as float64 integers."""
        return torch.round(x.double() / self.step)

    def _score(self, inner: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Scores from the integer inner products ``inner`` of query ``a`` and gallery ``c`` rows
        (``a`` broadcast against the trailing dimension of ``inner``)."""
        if self.metric == "euclidean":
            inner = 2 * inner - (a * a).sum(-1, keepdim=True) - (c * c).sum(-1)
        return inner * (self.step * self.step)

    def pairs(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Exact float64 scores of query ``rows[i]`` against gallery ``cols[i, j]``, shaped like
        ``cols``: ``(p,)`` for ``p`` pairs, or ``(p, w)`` for ``w`` gallery items per query."""
        grid = cols[:, None] if cols.ndim == 1 else cols
        out = torch.empty(grid.shape, dtype=torch.float64, device=self.q.device)
        step = max(1, _MAX_CHUNK_ELEMENTS // (4 * self.q.shape[1] * max(1, grid.shape[1])))
        for start in range(0, len(grid), step):
            r, c = rows[start:start + step], grid[start:start + step]
            a = self._fixed(self.q.index_select(0, r))
            c = self._fixed(self.g.index_select(0, c.reshape(-1))).view(*c.shape, -1)
            out[start:start + step] = self._score(torch.bmm(c, a.unsqueeze(2)).squeeze(2), a, c)
        return out.view(cols.shape)

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Exact float64 scores of the queries ``rows`` against the whole gallery, ``(len(rows), m)``
        (the rounded gallery is kept after the first call)."""
        if self._gallery is None:
            self._gallery = self._fixed(self.g)
        a = self._fixed(self.q[rows])
        return self._score(a @ self._gallery.T, a, self._gallery)


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
    width = min(k + CANDIDATE_MARGIN, n_candidates)
    indices = torch.cat([
        select_exact_topk(scores32, found, rows, k, exact, width == n_candidates, exclude_self)
        for rows, scores32, found in candidate_chunks(q, g, width, metric, exclude_self,
                                                      resolve_backend(backend, q.device))])
    rows = torch.arange(len(q), device=q.device)
    scores = exact.pairs(rows, indices)
    values = scores if metric == "cosine" else -scores
    return values.float(), indices


def prepare(
    query: torch.Tensor, gallery: torch.Tensor, metric: Metric, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float32 query and gallery on the query's device, normalised for cosine; one tensor
    when ``gallery is query``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) embeddings, got {tuple(query.shape)} and "
                         f"{tuple(gallery.shape)}")
    if exclude_self and len(query) > len(gallery):
        raise ValueError("exclude_self needs the queries to be the first rows of the gallery")
    same = gallery is query
    q = query.detach().float()
    g = q if same else gallery.detach().float().to(q.device)
    if not (torch.isfinite(q).all() and (same or torch.isfinite(g).all())):
        raise ValueError("embeddings contain NaN or infinite values")
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = q if same else torch.nn.functional.normalize(g, dim=1)
    return q, g


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
) -> torch.Tensor:
    """Gallery indices of the exact top-k of the queries ``rows`` against the whole gallery, from
    exact scores only."""
    all_indices = []
    for start in range(0, len(rows), rows_per_chunk(len(exact.g))):
        chunk = rows[start:start + rows_per_chunk(len(exact.g))]
        scores = exact.rows(chunk)
        if exclude_self:
            scores[torch.arange(len(chunk), device=scores.device), chunk] = float("-inf")
        all_indices.append(exact_topk(scores, k)[1])
    return torch.cat(all_indices)


def select_exact_topk(
    scores32: torch.Tensor,
    indices: torch.Tensor,
    rows: torch.Tensor,
    k: int,
    exact: ExactScorer,
    complete: bool,
    exclude_self: bool,
) -> torch.Tensor:
    """Gallery indices ``(len(rows), k)`` of the exact top-k of queries ``rows``, from float32
    candidates ``(scores32, indices)`` sorted by score, descending (self-match already removed).

    Candidates within ``2 tau`` of a neighbour in that order are re-scored exactly; the list is
    then ordered by exact score where re-scored, float32 score elsewhere, then index (see the
    module docstring). ``complete`` says the candidates are all the gallery items. Rows the
    candidates cannot certify are recomputed exhaustively.
    """
    keys = scores32.double()
    linked = keys[:, :-1] - keys[:, 1:] <= 2 * exact.tau
    near = torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    near[:, 1:] |= linked
    near[:, :-1] |= linked
    near_rows, near_cols = near.nonzero(as_tuple=True)
    rescored = exact.pairs(rows[near_rows], indices[near_rows, near_cols])
    certified = torch.ones(len(rows), dtype=torch.bool, device=keys.device)
    certified[near_rows[(keys[near_rows, near_cols] - rescored).abs() > exact.tau]] = False
    if not complete:  # some gap wider than 2 tau at or after the k-th candidate
        certified &= ~linked[:, k - 1:].all(1)
    keys[near_rows, near_cols] = rescored
    top_indices = order_ties_by_index(keys, indices)[1][:, :k]
    if not certified.all():
        redo = (~certified).nonzero()[:, 0]
        top_indices[redo] = exhaustive_exact_topk(rows[redo], k, exact, exclude_self)
    return top_indices


def candidate_chunks(
    q: torch.Tensor, g: torch.Tensor, width: int, metric: Metric, exclude_self: bool, backend: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The ``width`` best float32 candidates of every query, in chunks of queries:
    ``(rows, scores32, indices)``, scores higher = nearer, each row sorted by score, descending,
    the self-match removed by index, on ``q.device``. Memory per chunk: ``O(chunk x m)`` (torch)
    or ``O(chunk x width)`` (faiss), never ``n x m``.

    ``backend="faiss"`` searches a flat faiss index (on the GPU with faiss-gpu, CUDA embeddings and
    ``width`` within faiss-gpu's limit), ``"torch"`` takes ``topk`` of chunked matmul scores.
    """
    if backend == "faiss":
        yield from _faiss_candidates(q, g, width, metric, exclude_self)
    else:
        yield from _torch_candidates(q, g, width, metric, exclude_self)


def _torch_candidates(
    q: torch.Tensor, g: torch.Tensor, width: int, metric: Metric, exclude_self: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`candidate_chunks` by chunked matmul and ``topk``."""
    q_sq, g_sq = (q * q).sum(1, keepdim=True), (g * g).sum(1)
    for start in range(0, len(q), rows_per_chunk(len(g))):
        rows = torch.arange(start, min(start + rows_per_chunk(len(g)), len(q)), device=q.device)
        scores = q[rows] @ g.T
        if metric == "euclidean":
            scores = -(q_sq[rows] + g_sq - 2 * scores).clamp_min_(0)
        if exclude_self:
            scores[torch.arange(len(rows), device=q.device), rows] = float("-inf")
        yield rows, *scores.topk(width, dim=1)


def _faiss_candidates(
    q: torch.Tensor, g: torch.Tensor, width: int, metric: Metric, exclude_self: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`candidate_chunks` from a flat faiss index, ``width + 1`` searched per query in
    leave-one-out so that the self-match can be dropped by index."""
    d = q.shape[1]
    k_search = min(width + int(exclude_self), len(g))
    index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if q.is_cuda and faiss_gpu_available() and k_search <= _FAISS_GPU_MAX_K:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(g.cpu().numpy(), dtype=np.float32))
    queries = q.cpu().numpy()
    chunk = max(1, _FAISS_CHUNK_ELEMENTS // k_search)
    for start in range(0, len(q), chunk):
        found, indices = index.search(np.ascontiguousarray(queries[start:start + chunk]), k_search)
        scores = torch.from_numpy(found if metric == "cosine" else -found)
        indices = torch.from_numpy(indices)
        rows = torch.arange(start, start + len(scores))
        if exclude_self:
            # Drop the self-match by index; where it is not among the results (k_search items tie
            # with it or beat it), drop the last result instead: the others are still the best found.
            is_self = indices == rows.unsqueeze(1)
            is_self[~is_self.any(1), -1] = True
            scores = scores[~is_self].view(len(rows), -1)
            indices = indices[~is_self].view(len(rows), -1)
        yield rows.to(q.device), scores.to(q.device), indices.to(q.device)
