"""The Metrix code's training recipes (billpsomas/metrix), shared by the Metrix rows and the baselines
the Metrix paper compares against (``contrastive``, ``ms``): a baseline's paper recipe is that of the paper
comparing against it, so ``--recipe paper`` trains each pair alike. See :mod:`methods.metrix`."""
from __future__ import annotations

from harness.core.recipe import Recipe
from methods.paper_weights import RESNET50_IMAGENET

#: The authors' hyperparameters for baseline and Metrix alike (billpsomas/metrix ``main.py``), per base loss.
CODE_HPARAMS: dict[str, dict[str, float]] = {
    "contrastive": {"neg_margin": 0.5},
    "ms": {"alpha": 17.97, "beta": 75.66, "base": 0.77, "epsilon": 0.39},
}


def metrix_recipe(name: str, epochs: int, lr_decay_gamma: float) -> Recipe:
    """The code's CUB training (billpsomas/metrix README, ``main.py``, ``train.py``, ``net/resnet.py``).

    ResNet-50, 512-d embedding (the trial's embedding_dim), batches of 100 by plain shuffling
    (SOP/In-Shop: 5 images per class), Adam (L2 weight decay 1e-4) at lr 1e-4 for backbone and
    embedding, proxies ×100 (lr_method 1e-2), ×``lr_decay_gamma`` every 10 epochs, BatchNorm
    statistics frozen, 5 warm-up epochs training only the embedding (and proxies),
    RandomResizedCrop(224) + flip / Resize(256) + CenterCrop(224), fp32, GAP + GMP pooling, embedding
    head Kaiming-normal (fan-out) with zero bias, gradient values clipped at 10 (model and proxies).
    As in the Proxy-Anchor code it derives from, the model freezes BatchNorm's γ and β but the warm-up
    re-enables every backbone parameter at its end, so they train afterwards (``freeze_bn_affine``
    False). The baselines' own commands differ (60 epochs, ×0.5 every 5 epochs for MS and
    Proxy-Anchor); the Metrix rows are the ones reproduced here.
    """
    return Recipe(
        name=name, epochs=epochs, batch_size=100, sampler="random", image_size=224, resize_size=256,
        augmentation="rrc_flip", pooling="avgmax", head_init="kaiming_normal_fan_out", optimizer="adam",
        lr_backbone=1e-4, lr_head=1e-4, lr_method=1e-2, weight_decay=1e-4, lr_decay_epochs=10,
        lr_decay_gamma=lr_decay_gamma, freeze_bn=True, freeze_bn_affine=False, warmup_epochs=5,
        grad_clip_value=10.0, amp=False, backbone="resnet50", pretrained_weights=RESNET50_IMAGENET,
        method_hparams={m: dict(CODE_HPARAMS[base]) for base in CODE_HPARAMS for m in (base, f"metrix_{base}")},
    )


#: Contrastive + Metrix/feature: 60 epochs, ×0.1; MS and Proxy-Anchor + Metrix/feature: 100 epochs, ×0.5.
METRIX_RECIPE = metrix_recipe("metrix", epochs=60, lr_decay_gamma=0.1)
METRIX_MS_RECIPE = metrix_recipe("metrix_ms", epochs=100, lr_decay_gamma=0.5)
METRIX_PROXY_ANCHOR_RECIPE = metrix_recipe("metrix_proxyanchor", epochs=100, lr_decay_gamma=0.5)
