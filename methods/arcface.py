"""ArcFace: additive angular margin loss (Deng, Guo, Xue & Zafeiriou, CVPR 2019).

    L = −log( e^{s·cos(θ_y + m)} / (e^{s·cos(θ_y + m)} + Σ_{j≠y} e^{s·cos θ_j}) ),
    cos θ_j = ⟨x/‖x‖, W_j/‖W_j‖⟩.

The paper's values: s = 64, m = 0.5 rad (28.6°). The ``margin`` hyperparameter is in RADIANS, as in
the paper; pytorch-metric-learning's ``ArcFaceLoss`` (used here) takes degrees, so it is converted.
PML differs from the paper's formula where θ_y + m would pass π: for θ_y > π − m it uses
cos θ_y − m·sin m instead (the fallback of the authors' code, keeping the logit monotonic).
Class weights train at the recipe's ``lr_method``; they start as in the authors' PyTorch code
(deepinsight/insightface, ``recognition/arcface_torch/partial_fc_v2.py``:
``torch.normal(0, 0.01, (C, d))``), N(0, 0.01²) entries, not PML's default N(0, 1).

Checked against the code (``recognition/arcface_torch/losses.py``, class ``ArcFace``, lines 7-32): cos(θ_y + m)
where cos θ_y > cos(π − m), else cos θ_y − m·sin(π − m) = cos θ_y − m·sin m (``easy_margin`` False), then ×s:
the same as PML's ``ArcFaceLoss``. Deviation: no paper recipe; the code's training is face recognition (SGD,
polynomial decay, partial FC), not a DML protocol, so ArcFace runs under the shared recipes only.
"""
from __future__ import annotations

import math

from pytorch_metric_learning import losses
from pytorch_metric_learning.utils.common_functions import TorchInitWrapper
from torch import nn

from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method


@register_method("arcface")
class ArcFace(PMLLossMethod):
    """ArcFace: additive angular margin on the true class's angle (Deng et al., CVPR 2019)."""

    family = "classification"
    hparams = {
        "scale": Param(64.0, LogUniform(1.0, 128.0), "s, logit scale", valid="> 0"),
        "margin": Param(0.5, Uniform(0.0, 1.0), "m, additive angular margin in radians (0.5 rad = 28.6°)",
                        valid="[0, 3.141592653589793)"),
    }

    def build_loss(self):
        return losses.ArcFaceLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                  margin=math.degrees(self.config["margin"]), scale=self.config["scale"],
                                  weight_init_func=TorchInitWrapper(nn.init.normal_, std=0.01))
