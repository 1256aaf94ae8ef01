"""SoftTriple loss (Qian, Shang, Sun, Hu, Li & Jin, ICCV 2019).

    S'_{i,c} = Σ_k softmax_k(S_{i,c}^k / γ) · S_{i,c}^k      (K centres per class, S = cosine)
    L = −log( exp(λ(S'_{i,y_i} − δ)) / (exp(λ(S'_{i,y_i} − δ)) + Σ_{j≠y_i} exp(λ S'_{i,j})) )

    L_total = L + τ · Σ_c Σ_{k<k'} √(2 − 2⟨w_c^k, w_c^{k'}⟩) / (C·K·(K − 1))   (w normalised centres)

The paper's and the authors' code's values (idstcv/SoftTriple, ``train.py``): K = 10 centres per
class, λ = 20 (``la``), γ = 0.1, δ = 0.01 (``margin``), τ = 0.2 (``tau``, the centre-merging
regulariser, applied only when K > 1); centres train at lr 1e-2 beside a backbone at 1e-4 (the
recipes' ``lr_method``). Built on pytorch-metric-learning's ``SoftTripleLoss`` with its
``SparseCentersRegularizer`` as the weight regulariser (weight τ), which is the code's term (its
√ takes 2 + ε with ε the dtype's small value rather than the code's 1e-5). The centres start as in
the code and in PML: ``kaiming_uniform_(a=√5)`` on the (d, C·K) matrix, U(±1/√(C·K)) entries.
"""
from __future__ import annotations

from pytorch_metric_learning import losses, regularizers

from harness.core.hparams import IntUniform, LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method


@register_method("softtriple")
class SoftTriple(PMLLossMethod):
    """SoftTriple: softmax over K learnable centres per class (Qian et al., ICCV 2019)."""

    family = "proxy"
    hparams = {
        "centers_per_class": Param(10, IntUniform(1, 20), "K, centres per class", valid=">= 1"),
        "la": Param(20.0, LogUniform(1.0, 100.0), "λ, scale of the similarities", valid="> 0"),
        "gamma": Param(0.1, LogUniform(0.01, 1.0), "γ, temperature of the softmax over centres", valid="> 0"),
        "margin": Param(0.01, Uniform(0.0, 0.5), "δ, margin on the true class", valid=">= 0"),
        "tau": Param(0.2, Uniform(0.0, 1.0), "τ, weight of the centre-merging regulariser (0 = off)", valid=">= 0"),
    }

    def build_loss(self):
        k, tau = self.config["centers_per_class"], self.config["tau"]
        regularizer = (regularizers.SparseCentersRegularizer(num_classes=self.num_classes, centers_per_class=k)
                       if tau > 0 and k > 1 else None)
        return losses.SoftTripleLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                     centers_per_class=k, la=self.config["la"], gamma=self.config["gamma"],
                                     margin=self.config["margin"], weight_regularizer=regularizer,
                                     weight_reg_weight=tau)
