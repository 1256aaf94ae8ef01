"""Proxy-Anchor loss (Kim, Kim, Cho & Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020),
and its authors' training recipe.

    L = 1/|P⁺| Σ_{p∈P⁺} log(1 + Σ_{x∈X_p⁺} e^{−α(s(x,p) − δ)})
      + 1/|P|  Σ_{p∈P}  log(1 + Σ_{x∈X_p⁻} e^{ α(s(x,p) + δ)}),

s = cosine similarity, P all C proxies (one per class), P⁺ the proxies with a positive in the batch,
X_p⁺ / X_p⁻ the batch's samples of / not of p's class. The paper's values: α = 32, δ = 0.1.

Proxies train at the recipe's ``lr_method`` (``lr_multiplier`` 1). The authors give them 100× the
backbone's learning rate; the shared ``default`` recipe (lr_method 1e-2, lr_backbone 1e-4) and the
``proxyanchor`` recipe below both express exactly that ratio. Built on pytorch-metric-learning's
``ProxyAnchorLoss``, which follows the authors' code (proxies initialised Kaiming-normal, fan-out).
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from harness.core.hparams import LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method
from harness.core.recipe import Recipe

PROXY_ANCHOR_RECIPE = Recipe(
    # The authors' CUB command (tjddus9597/Proxy-Anchor-CVPR2020, README and code/train.py):
    # 512-d embedding (the trial's embedding_dim), 60 epochs, batches of 180 by plain shuffling,
    # AdamW (weight decay 1e-4) at lr 1e-4 for backbone and embedding, proxies ×100 = 1e-2,
    # ×0.5 every 10 epochs, BatchNorm frozen, 1 warm-up epoch training only the embedding and the
    # proxies (backbone frozen), RandomResizedCrop(224) + flip / Resize(256) + CenterCrop(224), fp32.
    # Cars uses a 20-epoch decay step; SOP/In-Shop use lr 6e-4, unfrozen BatchNorm and ×0.25 every
    # 20 epochs. Not reproduced: the code's gradient value clipping at 10.
    name="proxyanchor", epochs=60, batch_size=180, sampler="random", image_size=224, resize_size=256,
    augmentation="rrc_flip", optimizer="adamw", lr_backbone=1e-4, lr_head=1e-4, lr_method=1e-2,
    weight_decay=1e-4, lr_decay_epochs=10, lr_decay_gamma=0.5, freeze_bn=True, warmup_epochs=1, amp=False,
)


@register_method("proxyanchor")
class ProxyAnchor(PMLLossMethod):
    """Proxy-Anchor: each proxy pulls its class's samples and pushes all others (Kim et al., CVPR 2020)."""

    hparams = {
        "alpha": Param(32.0, LogUniform(1.0, 128.0), "α, scale of the similarities", valid="> 0"),
        "margin": Param(0.1, Uniform(0.0, 0.5), "δ, margin", valid=">= 0"),
    }
    paper_recipe = PROXY_ANCHOR_RECIPE

    def build_loss(self):
        return losses.ProxyAnchorLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                      margin=self.config["margin"], alpha=self.config["alpha"])
