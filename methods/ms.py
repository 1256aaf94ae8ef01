"""Multi-similarity loss with its pair miner (Wang, Han, Huang, Dong & Scott, CVPR 2019).

    L = 1/m Σ_i [ 1/α · log(1 + Σ_{k∈P_i} e^{−α(S_ik − λ)}) + 1/β · log(1 + Σ_{k∈N_i} e^{β(S_ik − λ)}) ],
    S = cosine similarity; the miner keeps negatives with S_ik > min_{p} S_ip − ε and positives with
    S_ip < max_{n} S_in + ε.

The paper's values: α = 2, β = 50, λ = 0.5 (``base``), ε = 0.1. Built on pytorch-metric-learning's
``MultiSimilarityLoss`` and ``MultiSimilarityMiner``; batches are m-per-class.

Paper recipe: the Metrix code's MS training (``metrix_ms``, :mod:`methods.metrix_recipes`, with the
Metrix code's MS values α = 17.97, β = 75.66, λ = 0.77, ε = 0.39), the recipe of the paper that compares
against MS, so ``--recipe paper`` trains ``ms`` and ``metrix_ms`` alike. The MS paper's own training
(its authors' SGD/Adam configs per dataset) is not reproduced.
"""
from __future__ import annotations

from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method
from methods.metrix_recipes import METRIX_MS_RECIPE


@register_method("ms")
class MultiSimilarity(PMLLossMethod):
    """Multi-similarity loss and miner (Wang et al., CVPR 2019)."""

    family = "pair"
    hparams = {
        "alpha": Param(2.0, LogUniform(0.1, 20.0), "weight of positive similarities", valid="> 0"),
        "beta": Param(50.0, LogUniform(1.0, 100.0), "weight of negative similarities", valid="> 0"),
        "base": Param(0.5, Uniform(0.0, 1.0), "similarity offset λ", valid="[-1, 1]"),
        "epsilon": Param(0.1, Uniform(0.0, 0.5), "miner margin ε", valid=">= 0"),
    }
    sampler = "m_per_class"
    paper_recipe = METRIX_MS_RECIPE

    def build_loss(self):
        from pytorch_metric_learning import losses

        return losses.MultiSimilarityLoss(alpha=self.config["alpha"], beta=self.config["beta"], base=self.config["base"])

    def build_miner(self):
        from pytorch_metric_learning import miners

        return miners.MultiSimilarityMiner(epsilon=self.config["epsilon"])
