"""Normalized softmax (Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019).

    L = −log( e^{cos θ_y / τ} / Σ_j e^{cos θ_j / τ} ),   cos θ_j = ⟨x/‖x‖, W_j/‖W_j‖⟩,

the cross-entropy of temperature-scaled cosine logits over learnable class weights, without bias;
the paper's temperature τ = 0.05. Built on pytorch-metric-learning's ``NormalizedSoftmaxLoss``
with the class weights initialised as the authors' code (azgo14/classification_metric_learning,
``NormSoftmaxLoss``: "initialization from nn.Linear", U(±1/√d) entries, d the embedding size), not
PML's default N(0, 1). PML's loss is the loss alone: the paper's other ingredients (layer
normalisation of the pooled feature, its batch sampling, subsampled softmax for many classes) are
not part of this row. Class weights train at the recipe's ``lr_method``.

Checked against the code (azgo14/classification_metric_learning at 6c90cec): the loss and init equal
``metric_learning/modules/losses.py:17-20`` (weights (C, d), U(±1/√d)) and ``:26-30`` (normalised weights,
logits / τ, cross-entropy); PML stores the weights as (d, C), the same distribution. Deviations: the code's
featurizer (``modules/featurizer.py:16-32``) puts a LayerNorm without affine between GAP and the embedding
layer, which has no bias; here the recipe's head (a Linear with bias, no LayerNorm). Its recipe
(``train_classification.py:170-172, 211``: SGD, momentum 0.9, weight decay 1e-4, one pretraining epoch of
the new layers, ×0.1 every ``epochs_per_step``) has no paper recipe here: the recipes have no SGD.
"""
from __future__ import annotations

import math

from harness.core.hparams import LogUniform, Param
from harness.plugins.method import PMLLossMethod, register_method


@register_method("normsoftmax")
class NormSoftmax(PMLLossMethod):
    """Normalized softmax: cross-entropy on cosine logits / τ (Zhai & Wu, BMVC 2019)."""

    family = "classification"
    hparams = {
        "temperature": Param(0.05, LogUniform(0.01, 1.0), "τ, temperature of the cosine logits", valid="> 0"),
    }

    def build_loss(self):
        from pytorch_metric_learning import losses
        from pytorch_metric_learning.utils.common_functions import TorchInitWrapper
        from torch import nn

        bound = 1 / math.sqrt(self.embedding_dim)
        return losses.NormalizedSoftmaxLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                            temperature=self.config["temperature"],
                                            weight_init_func=TorchInitWrapper(nn.init.uniform_, a=-bound, b=bound))
