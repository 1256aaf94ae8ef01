"""Additive-margin softmax, CosFace form (Wang, Cheng, Liu & Liu, "Additive Margin Softmax", SPL 2018;
Wang et al., "CosFace", CVPR 2018).

    L = −log( e^{s(cos θ_{y} − m)} / (e^{s(cos θ_{y} − m)} + Σ_{j≠y} e^{s cos θ_j}) ),
    cos θ_j = ⟨x/‖x‖, W_j/‖W_j‖⟩.

Defaults are the JRD paper's (Chu et al., ICML 2020), since AMSoftmax is JRD's base loss and its
α = 0 ablation: s = 20, m = 0.1 (the AM-Softmax paper uses s = 30, m = 0.35 for faces). Class
weights train at the recipe's ``lr_method`` (1e-2 in the JRD code). Built on pytorch-metric-learning's
``CosFaceLoss``, whose (d, C) weight matrix is initialised as the JRD code's ``CosineSoftmax.fc``
(same layout): ``kaiming_uniform_(a=√5)``, i.e. U(±1/√C) entries (fan-in of a (d, C) tensor is C),
not PML's default N(0, 1). With Adam the step does not scale with the weights, so the init's norm
sets how fast the class directions rotate (N(0, 1) weights of norm ≈ √d turn ~√(dC)/√d times slower).
"""
from __future__ import annotations

import math

from pytorch_metric_learning import losses
from pytorch_metric_learning.utils.common_functions import TorchInitWrapper
from torch import nn

from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method


@register_method("amsoftmax")
class AMSoftmax(PMLLossMethod):
    """Additive-margin (CosFace) softmax over learnable class weights (Wang et al., 2018)."""

    family = "classification"
    hparams = {
        "scale": Param(20.0, LogUniform(1.0, 100.0), "s, logit scale", valid="> 0"),
        "margin": Param(0.1, Uniform(0.0, 0.6), "m, additive cosine margin", valid="[0, 2]"),
    }

    def build_loss(self):
        return losses.CosFaceLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                  margin=self.config["margin"], scale=self.config["scale"],
                                  weight_init_func=TorchInitWrapper(nn.init.kaiming_uniform_, a=math.sqrt(5)))
