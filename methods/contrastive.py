"""Contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006).

    L = mean over positive pairs of [d(a, p) − m_pos]₊  +  mean over negative pairs of [m_neg − d(a, n)]₊,
    d = Euclidean distance on L2-normalised embeddings.

Hadsell et al. use m_pos = 0 and margin m_neg = 1. Built on pytorch-metric-learning's
``ContrastiveLoss`` over all pairs of an m-per-class batch.

Paper recipe: the Metrix code's contrastive training (``metrix``, :mod:`methods.metrix_recipes`, with its
m⁻ = 0.5), the recipe of the paper that compares against it, so ``--recipe paper`` trains
``contrastive`` and ``metrix_contrastive`` alike.
"""
from __future__ import annotations

from harness.core.hparams import Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method
from methods.metrix_recipes import METRIX_RECIPE


@register_method("contrastive")
class Contrastive(PMLLossMethod):
    """Contrastive pair loss with positive and negative margins (Hadsell et al., CVPR 2006)."""

    family = "pair"
    hparams = {
        "pos_margin": Param(0.0, Uniform(0.0, 1.0), "distance below which positives cost nothing", valid=">= 0"),
        "neg_margin": Param(1.0, Uniform(0.1, 2.0), "distance beyond which negatives cost nothing", valid=">= 0"),
    }
    sampler = "m_per_class"
    paper_recipe = METRIX_RECIPE

    def build_loss(self):
        from pytorch_metric_learning import losses

        return losses.ContrastiveLoss(pos_margin=self.config["pos_margin"], neg_margin=self.config["neg_margin"])
