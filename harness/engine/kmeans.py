"""k-means for the NMI metric at the scale of SOP (60k points, 11k clusters) in minutes.

Lloyd's algorithm (Lloyd, "Least squares quantization in PCM", 1982) from faiss (``faiss.Kmeans``,
on the GPU with faiss-gpu and CUDA embeddings), seeded by D^2 sampling (Arthur & Vassilvitskii,
"k-means++: The Advantages of Careful Seeding", SODA 2007): the first centre uniformly, each next
centre ``x`` with probability ``D(x)^2 / sum D^2``, ``D(x)`` the distance to the nearest centre
chosen so far. The best of ``n_init`` runs (lowest sum of squared distances) is kept.

Deviations from scikit-learn's ``KMeans`` (the reference our NMI was computed with before):

* Seeding is scikit-learn's greedy k-means++ (``2 + ln k`` D^2-sampled candidates per centre, the
  one lowering the potential most is kept) but fills ``ceil(k / 1024)`` centres at a time from the
  same D^2 distribution (then updates D with one matrix product): 1024 rounds instead of ``k``
  sequential steps. The same algorithm as scikit-learn's for ``k <= 1024``; for SOP, 12 centres a round.
* At most ``max_iter = 20`` Lloyd iterations (PML's ``FaissKMeans`` default); faiss stops earlier
  once an iteration does not lower the objective (its ``early_stop_threshold`` 0: a fixed point),
  where scikit-learn stops at a relative centre shift of 1e-4. faiss handles empty clusters by
  splitting a large one instead of scikit-learn's relocation.
* ``n_init`` runs (default 1, scikit-learn's default for k-means++).

The seeding reads the points once a round (the distances that score the candidates also update D),
in row blocks with no n × d temporary, and bounds them by D in place in float32 (exact: D holds
float32 distances) before the potentials' float64 sums. At SOP size (60k × 512, 12k clusters) on 2
CPU cores NMI adds about 130 s to an evaluation (most of it the seeding; Lloyd reaches its fixed point
in 3 iterations) and keeps its peak at 2.2 GB, where earlier versions added 160 s (a float64
n x candidates temporary a round), and before that 237 s and 10.8 GB
(``benchmarks/evaluation_scale.py --nmi``). faiss 1.14's own k-means++ (``init_method``, one candidate
per centre) was measured as a replacement: 51 s for the whole k-means at that size, NMI 0.82425
against 0.82596, but on 100 separated blobs its NMI was 0.989 where scikit-learn's is 1.0, outside the
0.01 the tests allow, so the greedy seeding stays. Tests check the seeds against the algorithm
written out point by point in float64, and NMI against scikit-learn on well-separated blobs (within
0.01).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from harness.engine.knn import faiss, faiss_gpu_available, rows_per_chunk

SEEDING_ROUNDS = 1024
MAX_ITER = 20


def kmeans_implementation(device: torch.device | str, n_init: int = 1) -> str:
    """What :func:`kmeans` runs for embeddings on ``device``, for the trial record."""
    where = "gpu" if torch.device(device).type == "cuda" and faiss_gpu_available() else "cpu"
    return (f"faiss-{where} {faiss.__version__} Kmeans, batched k-means++ seeding "
            f"({SEEDING_ROUNDS} rounds), at most {MAX_ITER} iterations, best of {n_init}")


def kmeans_plus_plus_seeds(x: torch.Tensor, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``num_clusters`` distinct seed points by greedy D^2 sampling in batches.

    Each round fills ``ceil(num_clusters / SEEDING_ROUNDS)`` slots; each slot draws ``2 + ln k``
    candidates from the D^2 distribution and keeps the one that lowers the potential
    ``sum_x min(D(x)^2, |x - c|^2)`` most (scikit-learn's greedy k-means++, slots of one round
    judged against the same D). One pass over ``x`` per round: the distances to the candidates
    that score them also update D for the ones kept.
    """
    n = len(x)
    batch = math.ceil(num_clusters / SEEDING_ROUNDS)
    trials = 2 + int(math.log(num_clusters))
    squared_norms = (x * x).sum(1)
    first = torch.randint(n, (1,), generator=generator).to(x.device)
    seeds = [first]
    nearest = _squared_distances_to(x, squared_norms, first).min(1).values  # D^2, float32
    chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
    chosen[first] = True
    nearest[chosen] = 0
    while (remaining := num_clusters - int(chosen.sum())) > 0:
        slots = min(batch, remaining)
        positive = int((nearest > 0).sum())
        if positive < slots:  # fewer distinct points than clusters left: any unchosen point
            weights, trials_now = (~chosen).double(), 1
        else:
            weights, trials_now = nearest.double(), min(trials, positive // slots)
        candidates = torch.multinomial(weights.cpu(), slots * trials_now, replacement=False,
                                       generator=generator).to(x.device)
        # min(D^2, |x - c|^2), in place in float32 (exact: both are float32 values); a candidate's
        # potential is its column's sum, in float64.
        bounded = _squared_distances_to(x, squared_norms, candidates)
        torch.minimum(bounded, nearest[:, None], out=bounded)
        potential = bounded.sum(0, dtype=torch.float64)
        columns = potential.view(slots, trials_now).argmin(1) + torch.arange(slots, device=x.device) * trials_now
        seeds.append(candidates[columns])
        chosen[seeds[-1]] = True
        nearest = bounded[:, columns].min(1).values
        nearest[chosen] = 0
    return torch.cat(seeds)


def _squared_distances_to(x: torch.Tensor, squared_norms: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(n, len(centres))`` (float32) from every point of ``x`` to ``x[centres]``, a
    block of rows at a time, without an n × d temporary."""
    c, c_sq = x[centres], squared_norms[centres]
    out = torch.empty(len(x), len(centres), dtype=x.dtype, device=x.device)
    step = rows_per_chunk(len(centres))
    for start in range(0, len(x), step):
        part = slice(start, start + step)
        torch.addmm(squared_norms[part, None] + c_sq, x[part], c.T, alpha=-2, out=out[part])
    return out.clamp_min_(0)


def kmeans(x: torch.Tensor, num_clusters: int, n_init: int = 1, seed: int = 0) -> torch.Tensor:
    """Cluster ids ``(n,)`` (int64, on ``x.device``) of the best of ``n_init`` seeded k-means runs."""
    if not 1 <= num_clusters <= len(x):
        raise ValueError(f"cannot make {num_clusters} clusters of {len(x)} points")
    points = x.detach().float()
    data = np.ascontiguousarray(points.cpu().numpy())
    generator = torch.Generator().manual_seed(seed)
    best_objective, best_assignment = math.inf, None
    for run in range(n_init):
        seeds = kmeans_plus_plus_seeds(points, num_clusters, generator).cpu().numpy()
        model = faiss.Kmeans(data.shape[1], num_clusters, niter=MAX_ITER, seed=seed + run,
                             gpu=points.is_cuda and faiss_gpu_available(),
                             max_points_per_centroid=len(data), min_points_per_centroid=1)
        model.train(data, init_centroids=np.ascontiguousarray(data[seeds]))
        distances, assignment = model.index.search(data, 1)
        objective = float(distances.sum(dtype=np.float64))
        if objective < best_objective:
            best_objective, best_assignment = objective, assignment[:, 0]
    return torch.from_numpy(best_assignment.astype(np.int64)).to(x.device)
