"""The loss of :mod:`methods.arcface` as insightface's code computes it (commit 9097cd7b, ``CombinedMarginLoss``
on ``PartialFC_V2``'s cosines; that module's docstring gives the formula and the code followed), apart from
the method's declaration, which imports no torch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InsightFaceArcFaceLoss(nn.Module):
    """Softmax cross-entropy on insightface's margin logits: s·cos(θ_y + m) for the true class, s·cos θ_j
    otherwise, with the margin applied without gradient (see the module docstring). ``weight`` holds the
    (C, d) class vectors, N(0, 0.01²) entries as ``PartialFC_V2`` starts them."""

    def __init__(self, num_classes: int, embedding_dim: int, scale: float, margin: float):
        super().__init__()
        self.scale, self.margin = scale, margin
        self.weight = nn.Parameter(torch.normal(0.0, 0.01, (num_classes, embedding_dim)))

    def logits(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The (N, C) scaled logits of ``CombinedMarginLoss(s, 1, m, 0)``: the cosines, the target's angle
        shifted by the margin under ``no_grad`` (in place on a copy, as the code does on its logits)."""
        cosine = F.linear(F.normalize(embedding), F.normalize(self.weight)).clamp(-1, 1)
        rows = torch.arange(len(labels), device=labels.device)
        margin_logits = cosine.clone()
        with torch.no_grad():
            target = margin_logits[rows, labels].arccos_() + self.margin
            margin_logits.arccos_()
            margin_logits[rows, labels] = target
            margin_logits.cos_()
        return margin_logits * self.scale

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embedding, labels), labels)
