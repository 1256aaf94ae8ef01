"""Utilization of the embedding space (Venkataramanan et al., "It Takes Two to Tango: Mixup for
Deep Metric Learning", ICLR 2022, its "utilization" metric).

    u(Q) = 1/|Q| Σ_{q∈Q} min_{x∈X} ‖f(q) − f(x)‖²,

the mean squared distance from each test query q to its nearest training embedding x: how far the
test classes lie from the regions the training samples occupy (lower = better utilized).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.core.metrics import EvaluationInputs, register_metric

if TYPE_CHECKING:
    import torch


def utilization(query_emb: torch.Tensor | np.ndarray, train_emb: torch.Tensor | np.ndarray,
                chunk_size: int = 1024) -> float:
    """u(Q) of ``(n, d)`` query embeddings against ``(m, d)`` training embeddings, by exhaustive search.

    Queries go ``chunk_size`` at a time (memory ``chunk_size × m``). Each query's nearest training
    embedding is found with ‖q‖² + ‖x‖² − 2⟨q, x⟩, then its squared distance is recomputed as
    ‖q − x‖² directly, free of that expansion's cancellation error.
    """
    import torch  # here: registering the metric (``import harness.engine``) imports no torch

    query = torch.as_tensor(query_emb).detach().float()
    train = torch.as_tensor(train_emb).detach().float().to(query.device)
    if query.ndim != 2 or train.ndim != 2 or query.shape[1] != train.shape[1] or not len(query) or not len(train):
        raise ValueError(f"need non-empty (n, d) and (m, d) embeddings, "
                         f"got {tuple(query.shape)} and {tuple(train.shape)}")
    train_sq = train.pow(2).sum(1)
    nearest = torch.cat([(train_sq - 2 * chunk @ train.T).argmin(1) for chunk in query.split(chunk_size)])
    return (query - train[nearest]).pow(2).sum(1).double().mean().item()


@register_metric("utilization", label="u(Q)", percent=False)
def utilization_metric(inputs: EvaluationInputs) -> float:
    """u(Q) of a trial's evaluation queries against its training split (``--extra-metrics utilization``)."""
    return utilization(inputs.query, inputs.train_embeddings())
