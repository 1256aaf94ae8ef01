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

MAP@R, R-Precision and NMI come from pytorch-metric-learning's ``AccuracyCalculator``; Recall@K
is added to it as custom ``calculate_recall_at_<K>`` metrics, and its kNN search is
:class:`harness.engine.knn.KNN`, so the backend (faiss or torch) and the tie and self-match rules apply
to every metric.
"""
from __future__ import annotations

from functools import partial
from typing import Iterable, Sequence

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.cluster import KMeans

from harness.engine.knn import KNN, Backend, Metric, resolve_backend

_PML_METRICS = {"mean_average_precision_at_r": "map@r", "r_precision": "r_precision"}


def kmeans_cluster_labels(embeddings: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Cluster ids from scikit-learn k-means (k-means++ init, ``random_state=0``, one run)."""
    x = embeddings.detach().float().cpu().numpy()
    assignment = KMeans(n_clusters=num_clusters, n_init=1, random_state=0).fit_predict(x)
    return torch.from_numpy(assignment).to(embeddings.device)


class RetrievalAccuracyCalculator(AccuracyCalculator):
    """PML's ``AccuracyCalculator`` with Recall@K, for each K in ``recall_ks``, as metric
    ``recall_at_<K>``, and at least ``max(recall_ks)`` neighbours retrieved.

    Pass ``k="max_bin_count"`` (as :func:`evaluate_embeddings` does) for MAP@R and R-Precision.
    """

    def __init__(self, recall_ks: Iterable[int] = (), **kwargs):
        self.recall_ks = tuple(recall_ks)
        # PML collects the metrics from the attributes named calculate_<metric> at __init__.
        for k in self.recall_ks:
            setattr(self, f"calculate_recall_at_{k}", partial(self._recall_at_k, k=k))
        super().__init__(**kwargs)

    def requires_knn(self) -> list[str]:
        return super().requires_knn() + [f"recall_at_{k}" for k in self.recall_ks]

    def determine_k(
        self, bin_counts: torch.Tensor, num_reference_embeddings: int, ref_includes_query: bool
    ) -> int:
        k = super().determine_k(bin_counts, num_reference_embeddings, ref_includes_query)
        return max(k, *self.recall_ks, 1)

    @staticmethod
    def _recall_at_k(knn_labels: torch.Tensor, query_labels: torch.Tensor, k: int, **_) -> float:
        hits = (knn_labels[:, :k] == query_labels.unsqueeze(1)).any(dim=1)
        return hits.double().mean().item()


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
    query = torch.as_tensor(query_emb).detach().float()
    leave_one_out = gallery_emb is None
    if leave_one_out:
        gallery = query
    else:
        gallery = torch.as_tensor(gallery_emb).detach().float().to(query.device)
    if metric == "cosine":
        query = torch.nn.functional.normalize(query, dim=1)
        gallery = query if leave_one_out else torch.nn.functional.normalize(gallery, dim=1)
    label_arrays = [_as_label_array(query_labels, len(query))]
    if not leave_one_out:
        label_arrays.append(_as_label_array(gallery_labels, len(gallery)))
    # Labels as 0..C-1: PML casts labels to float32, which merges ids above 2**24.
    class_ids = torch.from_numpy(
        np.unique(np.concatenate(label_arrays), return_inverse=True)[1].reshape(-1)
    )
    num_candidates = len(gallery) - int(leave_one_out)
    if num_candidates < 1:
        raise ValueError("leave-one-out evaluation needs at least two embeddings")
    ks = sorted({int(k) for k in recall_ks if k <= num_candidates})

    nmi = ("NMI",) if include_nmi else ()
    calculator = RetrievalAccuracyCalculator(
        recall_ks=ks,
        include=tuple(_PML_METRICS) + tuple(f"recall_at_{k}" for k in ks) + nmi,
        k="max_bin_count",
        device=query.device,
        knn_func=KNN(metric, resolve_backend(backend, query.device)),
        kmeans_func=kmeans_cluster_labels,
    )
    if leave_one_out:
        accuracy = calculator.get_accuracy(query, class_ids)
    else:
        accuracy = calculator.get_accuracy(
            query, class_ids[:len(query)], gallery, class_ids[len(query):], ref_includes_query=False
        )
    results = {f"recall@{k}": float(accuracy[f"recall_at_{k}"]) for k in ks}
    results.update({name: float(accuracy[pml_name]) for pml_name, name in _PML_METRICS.items()})
    if include_nmi:
        results["nmi"] = float(accuracy["NMI"])
    return results


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
