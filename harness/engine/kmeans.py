"""k-means for the NMI metric at the scale of SOP (60k points, 11k clusters), on the embeddings' device.

Lloyd's algorithm (Lloyd, "Least squares quantization in PCM", 1982), seeded by D^2 sampling (Arthur &
Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007): the first centre uniformly,
each next centre ``x`` with probability ``D(x)^2 / sum D^2``, ``D(x)`` the distance to the nearest
centre chosen so far. The best of ``n_init`` runs (lowest sum of squared distances) is kept.

Where it runs (:func:`lloyd_backend`, named in the record by :func:`kmeans_implementation`): the
seeding always runs in torch on the embeddings' device; Lloyd runs in faiss (``faiss.Kmeans``) on the
CPU, in faiss-gpu for CUDA embeddings where faiss-gpu is installed, and otherwise in
:func:`torch_lloyd`, a chunked torch Lloyd on the embeddings' device (CUDA without faiss-gpu, or no
faiss at all). So on a GPU the whole k-means stays there; the issue measured 27 s for NMI at SOP's
shape on an H200 with faiss-cpu's Lloyd behind a GPU seeding.

Deviations from scikit-learn's ``KMeans`` (the reference our NMI was computed with before):

* Seeding is scikit-learn's greedy k-means++ (D^2-sampled candidates per centre, the one lowering the
  potential most is kept) with ``SEEDING_CANDIDATES = 3`` candidates where scikit-learn draws
  ``2 + ln k`` (11 for SOP), and it fills ``ceil(k / 1024)`` centres at a time from the same D^2
  distribution (then updates D with one matrix product): 1024 rounds instead of ``k`` sequential
  steps, 12 centres a round for SOP. The seeding's cost is ``n x k x candidates`` distances, so 3
  candidates cost 3.7 times less than 11 at SOP's shape; on separated blobs (10 points a blob, 16
  dimensions) their NMI was 1.0000, 0.9978 and 0.9989 for 10, 100 and 300 blobs (scikit-learn: 1.0000,
  1.0000, 0.9994; 11 candidates: 1.0000, 1.0000, 0.9995; one candidate, plain k-means++: 0.9620,
  0.9935, 0.9898, outside the 0.01 the tests allow).
* At most ``max_iter = 20`` Lloyd iterations (PML's ``FaissKMeans`` default); faiss stops earlier
  once an iteration does not lower the objective, :func:`torch_lloyd` once the assignment no longer
  changes (a fixed point either way), where scikit-learn stops at a relative centre shift of 1e-4.
  faiss handles empty clusters by splitting a large one; :func:`torch_lloyd` moves them to the points
  farthest from their centres, as scikit-learn does.
* ``n_init`` runs (default 1, scikit-learn's default for k-means++).

The seeding reads the points once a round (the distances that score the candidates also update D),
in row blocks with no n × d temporary, and bounds them by D in place in float32 (exact: D holds
float32 distances) before the potentials' float64 sums. At SOP size (60k × 512, 12k clusters) on 2
CPU cores NMI added about 130 s to an evaluation with 11 candidates (most of it the seeding; Lloyd
reaches its fixed point in 3 iterations), and adds about 35 s with 3 (29 s seeding, 11 s faiss Lloyd);
with the seeding's buffers allocated once the evaluation with NMI peaks at 1.71 GB, below the 1.76 GB of
the evaluation without it (``benchmarks/evaluation_scale.py --nmi``). faiss 1.14's own k-means++
(``init_method``, one candidate per centre) was measured as a replacement: 51 s for the whole k-means
at that size, NMI 0.82425 against 0.82596, but on 100 separated blobs its NMI was 0.989 where
scikit-learn's is 1.0. Tests check the seeds against the algorithm written out point by point in
float64, :func:`torch_lloyd` against Lloyd written out plainly, and NMI against scikit-learn on
well-separated blobs (within 0.01) through both Lloyds on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from harness.engine.knn import faiss, faiss_gpu_available, rows_per_chunk

SEEDING_ROUNDS = 1024
#: D^2-sampled candidates per centre in the greedy seeding (scikit-learn: 2 + ln k)
SEEDING_CANDIDATES = 3
MAX_ITER = 20
LLOYDS = ("auto", "faiss", "torch")


def lloyd_backend(device: torch.device | str, lloyd: str = "auto") -> str:
    """The Lloyd that :func:`kmeans` runs for embeddings on ``device``: ``"faiss"`` (faiss-gpu for CUDA
    embeddings, faiss-cpu for CPU ones) or ``"torch"`` (:func:`torch_lloyd` on ``device``); ``auto``
    keeps a k-means of CUDA embeddings on the GPU (faiss-gpu where installed, else torch)."""
    if lloyd not in LLOYDS:
        raise ValueError(f"lloyd={lloyd!r}, valid: {', '.join(LLOYDS)}")
    if lloyd != "auto":
        return lloyd
    if faiss is None:
        return "torch"
    return "torch" if torch.device(device).type == "cuda" and not faiss_gpu_available() else "faiss"


def kmeans_implementation(device: torch.device | str, n_init: int = 1, lloyd: str = "auto") -> str:
    """What :func:`kmeans` runs for embeddings on ``device``, and where, for the trial record."""
    where = "gpu" if torch.device(device).type == "cuda" else "cpu"
    if lloyd_backend(device, lloyd) == "faiss":
        runs = f"faiss-{'gpu' if where == 'gpu' and faiss_gpu_available() else 'cpu'} {faiss.__version__} Kmeans"
    else:
        runs = f"torch Lloyd on the {where.upper()}"
    return (f"{runs}, batched greedy k-means++ seeding on the {where.upper()} ({SEEDING_ROUNDS} rounds, "
            f"{SEEDING_CANDIDATES} candidates), at most {MAX_ITER} iterations, best of {n_init}")


def kmeans_plus_plus_seeds(x: torch.Tensor, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``num_clusters`` distinct seed points by greedy D^2 sampling in batches.

    Each round fills ``ceil(num_clusters / SEEDING_ROUNDS)`` slots; each slot draws
    ``min(SEEDING_CANDIDATES, 2 + ln k)`` candidates from the D^2 distribution and keeps the one that lowers the potential
    ``sum_x min(D(x)^2, |x - c|^2)`` most (scikit-learn's greedy k-means++, slots of one round
    judged against the same D). One pass over ``x`` per round: the distances to the candidates
    that score them also update D for the ones kept.

    Every round writes into buffers allocated once: rounds that each allocated and freed their own
    ``n x candidates`` blocks (float32 distances, their float64 copy for the potentials) fragmented
    glibc's heap, and the peak RSS of SOP's 1,000 rounds grew by 0.8 to 3 GB over the data.
    """
    n = len(x)
    batch = math.ceil(num_clusters / SEEDING_ROUNDS)
    trials = min(SEEDING_CANDIDATES, 2 + int(math.log(num_clusters)))
    squared_norms = (x * x).sum(1)
    distances = torch.empty(n * batch * trials, dtype=x.dtype, device=x.device)
    distances64 = torch.empty(n * batch * trials, dtype=torch.float64, device=x.device)
    kept_distances = torch.empty(n * batch, dtype=x.dtype, device=x.device)
    weights = torch.empty(n, dtype=torch.float64)  # on the CPU, for torch.multinomial's generator
    first = torch.randint(n, (1,), generator=generator).to(x.device)
    nearest = _squared_distances_to(x, squared_norms, first, out=distances[:n].view(n, 1))[:, 0].clone()  # D^2
    seeds = torch.empty(num_clusters, dtype=torch.int64, device=x.device)
    seeds[0] = first
    chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
    chosen[first] = True
    nearest.masked_fill_(chosen, 0)
    filled = 1
    while filled < num_clusters:
        slots = min(batch, num_clusters - filled)
        positive = int((nearest > 0).sum())
        if positive < slots:  # fewer distinct points than clusters left: any unchosen point
            weights.copy_(~chosen)
            trials_now = 1
        else:
            weights.copy_(nearest)
            trials_now = min(trials, positive // slots)
        candidates = torch.multinomial(weights, slots * trials_now, replacement=False,
                                       generator=generator).to(x.device)
        # min(D^2, |x - c|^2), in place in float32 (exact: both are float32 values); a candidate's
        # potential is its column's sum, in float64.
        width = slots * trials_now
        bounded = _squared_distances_to(x, squared_norms, candidates, out=distances[:n * width].view(n, width))
        torch.minimum(bounded, nearest[:, None], out=bounded)
        potential = distances64[:n * width].view(n, width).copy_(bounded).sum(0)
        columns = potential.view(slots, trials_now).argmin(1) + torch.arange(slots, device=x.device) * trials_now
        kept = candidates[columns]
        seeds[filled:filled + slots] = kept
        filled += slots
        chosen[kept] = True
        torch.amin(torch.index_select(bounded, 1, columns, out=kept_distances[:n * slots].view(n, slots)), 1,
                   out=nearest)
        nearest.masked_fill_(chosen, 0)
    return seeds


def _squared_distances_to(x: torch.Tensor, squared_norms: torch.Tensor, centres: torch.Tensor,
                          out: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(n, len(centres))`` (float32, written into ``out``) from every point of
    ``x`` to ``x[centres]``, a block of rows at a time, without an n × d or n × len(centres) temporary."""
    c, c_sq = x[centres], squared_norms[centres]
    step = rows_per_chunk(len(centres))
    for start in range(0, len(x), step):
        part = slice(start, start + step)
        torch.add(squared_norms[part, None], c_sq, out=out[part]).addmm_(x[part], c.T, alpha=-2)
    return out.clamp_min_(0)


def torch_lloyd(x: torch.Tensor, centres: torch.Tensor, max_iter: int = MAX_ITER) -> tuple[torch.Tensor, float]:
    """Lloyd's iterations from ``centres`` on ``x``'s device; the cluster of every point and the sum
    of squared distances to its centre.

    Stops at a fixed point (no point changes cluster) or after ``max_iter`` updates; a cluster left
    empty takes the point farthest from its centre (scikit-learn's relocation), one point each,
    farthest first. Distances in row blocks of at most ``rows_per_chunk(k)`` rows, never n × k."""
    squared_norms = (x * x).sum(1)
    centres = centres.clone()
    assignment, distances = _nearest_centres(x, squared_norms, centres)
    for _ in range(max_iter):
        counts = torch.bincount(assignment, minlength=len(centres))
        empty = (counts == 0).nonzero()[:, 0]
        if len(empty):
            farthest = distances.topk(len(empty)).indices
            assignment[farthest] = empty
            counts = torch.bincount(assignment, minlength=len(centres))
        sums = torch.zeros_like(centres).index_add_(0, assignment, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None].to(x.dtype), centres)
        previous = assignment
        assignment, distances = _nearest_centres(x, squared_norms, centres)
        if torch.equal(assignment, previous):
            break
    return assignment, float(distances.sum(dtype=torch.float64))


def _nearest_centres(x: torch.Tensor, squared_norms: torch.Tensor, centres: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest centre of every point (ties: the lower index) and its squared distance, float32,
    a block of rows at a time."""
    centre_norms = (centres * centres).sum(1)
    assignment = torch.empty(len(x), dtype=torch.int64, device=x.device)
    distances = torch.empty(len(x), dtype=x.dtype, device=x.device)
    step = rows_per_chunk(len(centres))
    for start in range(0, len(x), step):
        part = slice(start, start + step)
        block = torch.addmm(centre_norms, x[part], centres.T, alpha=-2)
        best = block.min(1)
        assignment[part] = best.indices
        distances[part] = (best.values + squared_norms[part]).clamp_min_(0)
    return assignment, distances


def _faiss_lloyd(points: torch.Tensor, seeds: torch.Tensor, seed: int) -> tuple[torch.Tensor, float]:
    """faiss's Lloyd (faiss-gpu for CUDA points where installed) from ``points[seeds]``."""
    data = np.ascontiguousarray(points.cpu().numpy())
    model = faiss.Kmeans(data.shape[1], len(seeds), niter=MAX_ITER, seed=seed,
                         gpu=points.is_cuda and faiss_gpu_available(),
                         max_points_per_centroid=len(data), min_points_per_centroid=1)
    model.train(data, init_centroids=np.ascontiguousarray(data[seeds.cpu().numpy()]))
    distances, assignment = model.index.search(data, 1)
    return torch.from_numpy(assignment[:, 0].astype(np.int64)), float(distances.sum(dtype=np.float64))


def kmeans(x: torch.Tensor, num_clusters: int, n_init: int = 1, seed: int = 0, lloyd: str = "auto") -> torch.Tensor:
    """Cluster ids ``(n,)`` (int64, on ``x.device``) of the best of ``n_init`` seeded k-means runs;
    ``lloyd`` picks the Lloyd (:func:`lloyd_backend`)."""
    if not 1 <= num_clusters <= len(x):
        raise ValueError(f"cannot make {num_clusters} clusters of {len(x)} points")
    backend = lloyd_backend(x.device, lloyd)
    points = x.detach().float()
    generator = torch.Generator().manual_seed(seed)
    best_objective, best_assignment = math.inf, None
    for run in range(n_init):
        seeds = kmeans_plus_plus_seeds(points, num_clusters, generator)
        if backend == "faiss":
            assignment, objective = _faiss_lloyd(points, seeds, seed + run)
        else:
            assignment, objective = torch_lloyd(points, points[seeds])
        if objective < best_objective:
            best_objective, best_assignment = objective, assignment
    return best_assignment.to(x.device)
