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

Paper recipe: the JRD code's (``JRD_CODE_RECIPE``, named ``jrd``), since AM-Softmax is JRD's α = 0 ablation,
trained by the very same script (YangLin122/JRD ``train.py``), so ``--recipe paper`` trains ``jrd`` and
``amsoftmax`` alike. The AM-Softmax paper's own training (face recognition, SGD) is not reproduced.
"""
from __future__ import annotations

import math

from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method
from harness.core.recipe import Recipe
from methods.paper_weights import BN_INCEPTION_IMAGENET

JRD_CODE_RECIPE = Recipe(
    # The JRD code's training (YangLin122/JRD at 7c41828: args.py:25-49, train.py:64-70, 86-87, 113-117,
    # 198-201, batch.py): 512-d embedding (the trial's embedding_dim), batches of 100 by plain shuffling,
    # Adam (eps 0.01, L2 weight decay 1e-4), lr 1e-4 for backbone and embedding, 1e-2 for the class
    # weights, 50 epochs, ×0.1 at the start of 0-based epochs 19 and 39 (``adjust_learning_rate`` runs
    # before each epoch and decays when (epoch + 1) % 20 == 0: 19, 20 and 11 epochs at 1, 0.1, 0.01),
    # BatchNorm statistics frozen, RandomResizedCrop(224) + flip / Resize(256) + CenterCrop(224),
    # GAP (``avg``), fp32 throughout as in the code (amp off). ImageNet-pretrained BN-Inception (``net.py``:
    # Cadene's ``bninception``, ``bn_inception-52deb4733.pth``). The last partial batch of each epoch is kept
    # (``batch.py:134-139``: a DataLoader without ``drop_last``; CUB's 5,864 training images make 59 steps
    # an epoch, 58 of 100 and one of 64). Deviation: the code feeds BGR images scaled to 0-255 minus a
    # per-channel mean (``batch.py:104-123``), here the backbone's own normalisation.
    name="jrd", epochs=50, batch_size=100, sampler="random", image_size=224, resize_size=256,
    augmentation="rrc_flip", optimizer="adam", lr_backbone=1e-4, lr_head=1e-4, lr_method=1e-2,
    weight_decay=1e-4, adam_eps=0.01, lr_milestones=(19, 39), lr_decay_gamma=0.1, freeze_bn=True, amp=False,
    backbone="bninception", pretrained_weights=BN_INCEPTION_IMAGENET, drop_last=False,
)


@register_method("amsoftmax")
class AMSoftmax(PMLLossMethod):
    """Additive-margin (CosFace) softmax over learnable class weights (Wang et al., 2018)."""

    family = "classification"
    hparams = {
        "scale": Param(20.0, LogUniform(1.0, 100.0), "s, logit scale", valid="> 0"),
        "margin": Param(0.1, Uniform(0.0, 0.6), "m, additive cosine margin", valid="[0, 2]"),
    }
    paper_recipe = JRD_CODE_RECIPE

    def build_loss(self):
        from pytorch_metric_learning import losses
        from pytorch_metric_learning.utils.common_functions import TorchInitWrapper
        from torch import nn

        return losses.CosFaceLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                  margin=self.config["margin"], scale=self.config["scale"],
                                  weight_init_func=TorchInitWrapper(nn.init.kaiming_uniform_, a=math.sqrt(5)))
