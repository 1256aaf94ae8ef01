"""Proxy-Anchor loss (Kim, Kim, Cho & Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020),
and its authors' training recipe.

    L = 1/|P⁺| Σ_{p∈P⁺} log(1 + Σ_{x∈X_p⁺} e^{−α(s(x,p) − δ)})
      + 1/|P|  Σ_{p∈P}  log(1 + Σ_{x∈X_p⁻} e^{ α(s(x,p) + δ)}),

s = cosine similarity, P all C proxies (one per class), P⁺ the proxies with a positive in the batch,
X_p⁺ / X_p⁻ the batch's samples of / not of p's class. The paper's values: α = 32, δ = 0.1.

Proxies train at the recipe's ``lr_method`` (``lr_multiplier`` 1). The authors give them 100× the
backbone's learning rate; the shared ``default`` recipe (lr_method 1e-2, lr_backbone 1e-4) and the
``proxyanchor`` recipe below both express exactly that ratio. Built on pytorch-metric-learning's
``ProxyAnchorLoss``, which follows the authors' code, proxies included: ``kaiming_normal_(mode='fan_out')``
on the (C, d) matrix, N(0, 2/C) entries.
"""
from __future__ import annotations

from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method
from harness.core.recipe import Recipe
from methods.paper_weights import BN_INCEPTION_IMAGENET

PROXY_ANCHOR_RECIPE = Recipe(
    # The authors' CUB command (tjddus9597/Proxy-Anchor-CVPR2020, README and code/train.py,
    # code/net/bn_inception.py): 512-d embedding (the trial's embedding_dim), 60 epochs, batches of
    # 180 by plain shuffling, AdamW (weight decay 1e-4) at lr 1e-4 for backbone and embedding,
    # proxies ×100 = 1e-2, ×0.5 every 10 epochs, 1 warm-up epoch training only the embedding and the
    # proxies (backbone frozen), RandomResizedCrop(224) + flip / Resize(256) + CenterCrop(224), fp32;
    # GAP + GMP pooling (``avgmax``), embedding head Kaiming-normal (fan-out) with zero bias, every
    # gradient entry of model and proxies clipped to ±10 (``clip_grad_value_``).
    # BatchNorm: statistics frozen (``m.eval()`` every epoch). The model's constructor also sets
    # requires_grad False on BatchNorm's γ and β, but train.py's warm-up undoes that: at epoch
    # ``warm`` it sets requires_grad True on every parameter outside the embedding and the proxies,
    # BatchNorm's included, and every README command warms up (``--warm 1``, ResNet-50 ``--warm 5``).
    # So γ and β train from the end of warm-up on: ``freeze_bn_affine=False`` is the code's behaviour.
    # Cars uses a 20-epoch decay step; SOP/In-Shop use lr 6e-4, unfrozen BatchNorm and ×0.25 every
    # 20 epochs.
    name="proxyanchor", epochs=60, batch_size=180, sampler="random", image_size=224, resize_size=256,
    augmentation="rrc_flip", pooling="avgmax", head_init="kaiming_normal_fan_out", optimizer="adamw",
    lr_backbone=1e-4, lr_head=1e-4, lr_method=1e-2, weight_decay=1e-4, lr_decay_epochs=10, lr_decay_gamma=0.5,
    freeze_bn=True, freeze_bn_affine=False, warmup_epochs=1, grad_clip_value=10.0, amp=False,
    backbone="bninception", pretrained_weights=BN_INCEPTION_IMAGENET,  # code/net/bn_inception.py, ImageNet
)


@register_method("proxyanchor")
class ProxyAnchor(PMLLossMethod):
    """Proxy-Anchor: each proxy pulls its class's samples and pushes all others (Kim et al., CVPR 2020)."""

    family = "proxy"
    hparams = {
        "alpha": Param(32.0, LogUniform(1.0, 128.0), "α, scale of the similarities", valid="> 0"),
        "margin": Param(0.1, Uniform(0.0, 0.5), "δ, margin", valid=">= 0"),
    }
    paper_recipe = PROXY_ANCHOR_RECIPE

    def build_loss(self):
        from pytorch_metric_learning import losses

        return losses.ProxyAnchorLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                      margin=self.config["margin"], alpha=self.config["alpha"])
