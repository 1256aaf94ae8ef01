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

Paper recipe (``softtriple``): the code's ``train.py`` (idstcv/SoftTriple at cc1c32d) and its README
command (``--dim 64 --freeze_BN``): Adam with eps 0.01 (``train.py:46, 84-86``), model lr 1e-4 for
backbone and embedding alike, centre lr 1e-2, weight decay 1e-4 (``train.py:38-43``), batches of 32 by
plain shuffling, each epoch's last partial batch kept (``train.py:106-108``: no ``drop_last``), 50 epochs, ×0.1 when (epoch + 1) % 20 == 0 before the epoch
(``train.py:124, 176-180``), i.e. at the start of 0-based epochs 19 and 39, frozen BatchNorm statistics
(``train.py:136-141``), GAP then a linear embedding L2-normalised (``net/bninception.py:487-494``),
RandomResizedCrop(224) + flip / Resize(256) + CenterCrop(224). Deviations: the 64-d embedding is the
trial's ``embedding_dim`` (``--embedding-dim 64``; a recipe does not set it); the code feeds BGR
images scaled to 0-255 minus a per-channel mean (Caffe's BN-Inception layout), here the backbone's own
normalisation; its Adam also decays the centres (as here: every group takes the recipe's weight decay).
"""
from __future__ import annotations

from harness.core.hparams import IntUniform, LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method
from harness.core.recipe import Recipe
from methods.paper_weights import BN_INCEPTION_IMAGENET

SOFTTRIPLE_RECIPE = Recipe(
    # idstcv/SoftTriple train.py and README (see the module docstring for file:line).
    name="softtriple", epochs=50, batch_size=32, sampler="random", image_size=224, resize_size=256,
    augmentation="rrc_flip", pooling="avg", optimizer="adam", lr_backbone=1e-4, lr_head=1e-4, lr_method=1e-2,
    weight_decay=1e-4, adam_eps=0.01, lr_milestones=(19, 39), lr_decay_gamma=0.1, freeze_bn=True, amp=False,
    backbone="bninception", pretrained_weights=BN_INCEPTION_IMAGENET,  # net/bninception.py, ImageNet
    drop_last=False,  # train.py:106-108: a DataLoader without drop_last keeps each epoch's last partial batch
)


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
    paper_recipe = SOFTTRIPLE_RECIPE

    def build_loss(self):
        from pytorch_metric_learning import losses, regularizers

        k, tau = self.config["centers_per_class"], self.config["tau"]
        regularizer = (regularizers.SparseCentersRegularizer(num_classes=self.num_classes, centers_per_class=k)
                       if tau > 0 and k > 1 else None)
        return losses.SoftTripleLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                     centers_per_class=k, la=self.config["la"], gamma=self.config["gamma"],
                                     margin=self.config["margin"], weight_regularizer=regularizer,
                                     weight_reg_weight=tau)
