"""Triplet loss with semi-hard mining (Schroff, Kalenichenko & Philbin, FaceNet, CVPR 2015).

    L = mean over mined triplets (a, p, n) of [d(a, p) − d(a, n) + margin]₊,  d = Euclidean distance
    on L2-normalised embeddings; semi-hard negatives satisfy d(a, p) < d(a, n) < d(a, p) + margin.

FaceNet uses margin α = 0.2. Built on pytorch-metric-learning's ``TripletMarginLoss`` and
``TripletMarginMiner``; batches are m-per-class so every anchor has positives.
"""
from __future__ import annotations

from harness.core.hparams import Choice, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method


@register_method("triplet")
class Triplet(PMLLossMethod):
    """Triplet margin loss with semi-hard negative mining (FaceNet, CVPR 2015)."""

    family = "pair"
    hparams = {
        "margin": Param(0.2, Uniform(0.01, 1.0), "triplet margin α", valid=">= 0"),
        "mining": Param("semihard", Choice(("semihard", "hard", "all")), "which triplets the miner keeps"),
    }
    sampler = "m_per_class"

    def build_loss(self):
        from pytorch_metric_learning import losses

        return losses.TripletMarginLoss(margin=self.config["margin"])

    def build_miner(self):
        from pytorch_metric_learning import miners

        return miners.TripletMarginMiner(margin=self.config["margin"], type_of_triplets=self.config["mining"])
