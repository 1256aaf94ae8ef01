"""SoftTriple loss (Qian, Shang, Sun, Hu, Li & Jin, ICCV 2019).

    S'_{i,c} = Σ_k softmax_k(S_{i,c}^k / γ) · S_{i,c}^k      (K centres per class, S = cosine)
    L = −log( exp(λ(S'_{i,y_i} − δ)) / (exp(λ(S'_{i,y_i} − δ)) + Σ_{j≠y_i} exp(λ S'_{i,j})) )

The paper's values: K = 10 centres per class, λ = 20 (``la``), γ = 0.1, δ = 0.01 (``margin``);
centres train at lr 1e-2 beside a backbone at 1e-4 (the recipes' ``lr_method``). We use
pytorch-metric-learning's ``SoftTripleLoss``, which does not implement the paper's optional
centre-merging regulariser (τ); the paper's CUB/Cars settings use τ = 0.2 with K = 10, so
this row is the τ = 0 variant.
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from harness.core.hparams import IntUniform, LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method


@register_method("softtriple")
class SoftTriple(PMLLossMethod):
    """SoftTriple: softmax over K learnable centres per class (Qian et al., ICCV 2019)."""

    hparams = {
        "centers_per_class": Param(10, IntUniform(1, 20), "K, centres per class", valid=">= 1"),
        "la": Param(20.0, LogUniform(1.0, 100.0), "λ, scale of the similarities", valid="> 0"),
        "gamma": Param(0.1, LogUniform(0.01, 1.0), "γ, temperature of the softmax over centres", valid="> 0"),
        "margin": Param(0.01, Uniform(0.0, 0.5), "δ, margin on the true class", valid=">= 0"),
        "tau": Param(0.2, Uniform(0.0, 1.0), "τ, weight of the centre-merging regulariser (0 = off)", valid=">= 0"),
    }

    def build_loss(self):
        return losses.SoftTripleLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                     centers_per_class=self.config["centers_per_class"], la=self.config["la"],
                                     gamma=self.config["gamma"], margin=self.config["margin"])
