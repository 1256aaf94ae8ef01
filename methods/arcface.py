"""ArcFace: additive angular margin loss (Deng, Guo, Xue & Zafeiriou, CVPR 2019), as today's insightface
code computes it.

    L = −log( e^{s·cos(θ_y + m)} / (e^{s·cos(θ_y + m)} + Σ_{j≠y} e^{s·cos θ_j}) ),
    cos θ_j = clamp(⟨x/‖x‖, W_j/‖W_j‖⟩, −1, 1).

The paper's values: s = 64, m = 0.5 rad (28.6°); the ``margin`` hyperparameter is in radians, as in the paper.

Followed code: deepinsight/insightface ``recognition/arcface_torch``, commit 9097cd7b (the last change to
``losses.py``; it fixes the ``ArcFace`` class's ``self.scale`` of 657ae30e "fixed arcface impl", which
``forward`` read as ``self.s``). The training script builds ``CombinedMarginLoss(s, 1.0, m, 0.0)``
(``losses.py:27-58``, the same steps as ``ArcFace.forward``, ``losses.py:74-85``) on the clamped cosines of
``PartialFC_V2`` (``partial_fc_v2.py``: ``linear(normalize(x), normalize(W)).clamp(-1, 1)``, ``W`` of
shape (C, d) drawn ``torch.normal(0, 0.01)``), then softmax cross-entropy (``DistCrossEntropy``). Two
consequences of that code, both kept here:

* the margin is applied under ``torch.no_grad()`` (``arccos_``, add m to the target angle, ``cos_``), so
  the forward value is s·cos(θ_y + m) but the gradient reaches the cosines as if the margin were not there:
  ∂L/∂cos θ_j = s·(p_j − 1[j = y]) (a straight-through margin), not the chain rule through cos(θ + m);
* there is no fallback where θ_y + m passes π: the target logit is cos(θ_y + m) for every angle.

Difference from what this module followed before (insightface 2e2e8c97 ``losses.py:4-32``, which equals
pytorch-metric-learning's ``ArcFaceLoss``): that code differentiated through cos(θ_y + m) and, for
θ_y > π − m, used cos θ_y − m·sin m instead. The loss is equal wherever θ_y ≤ π − m; the gradient is not
(``tests/test_proxy_methods.py`` compares both on a fixed batch). Records of ``arcface`` written before
this change trained with the older loss (their code fingerprint differs).

Deviation: no paper recipe; the code's training is face recognition (SGD, polynomial decay, partial FC
sampling of the classes, which at these class counts samples all of them), not a DML protocol, so ArcFace
runs under the shared recipes only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import Method, register_method

if TYPE_CHECKING:
    import torch

    from harness.plugins.models import ModelOutput


@register_method("arcface")
class ArcFace(Method):
    """ArcFace: additive angular margin on the true class's angle (Deng et al., CVPR 2019; insightface code)."""

    family = "classification"
    hparams = {
        "scale": Param(64.0, LogUniform(1.0, 128.0), "s, logit scale", valid="> 0"),
        "margin": Param(0.5, Uniform(0.0, 1.0), "m, additive angular margin in radians (0.5 rad = 28.6°)",
                        valid="[0, 3.141592653589793)"),
    }

    def __init__(self, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any):
        from methods.arcface_loss import InsightFaceArcFaceLoss

        super().__init__(num_classes, embedding_dim, feature_dim, **hparams)
        self.criterion = InsightFaceArcFaceLoss(num_classes, embedding_dim, self.config["scale"], self.config["margin"])

    def loss(self, outputs: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        return self.criterion(outputs["embedding"].float(), labels)
