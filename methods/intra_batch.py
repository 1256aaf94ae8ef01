"""Intra-batch connections (Seidenschwarz, Elezi & Leal-Taixé, "Learning Intra-Batch Connections for
Deep Metric Learning", ICML 2021; code dvl-tum/intra_batch), and its authors' training recipes.

The backbone's last feature map is pooled and projected to the embedding, f = Linear(2048 → 512)
(our embedding head, PyTorch's default init as the code's ``red = 4`` layer). The pooling is the
recipe's: the code's recipes below use global max pooling. During training a
message-passing network (MPN) refines the L2-normalised embeddings of the whole batch, seen as a
fully connected graph (self-loops included): an input Linear(d → d), then L Transformer-encoder
layers with H heads (post-norm, as the code's ``DotAttentionLayer``),

    h ← LayerNorm(h + Dropout(MHA(h, h, h))),   MHA: softmax(q·kᵀ/√(d/H)) over all batch samples,
                                                 dropout 0.1 on the attention weights;
    h ← LayerNorm(h + Dropout(W₂ Dropout(ReLU(W₁ h)))),   W₁: d → 4d (2048 for d = 512);

then BatchNorm1d (bias fixed at 0) and a bias-free linear classifier (the code's "neck"). Cars
classifies the concatenation of both layers' outputs (the code's ``cat: 1``). The loss is

    L = LSCE(W_b f / T, y) + w · LSCE(MPN(f / ‖f‖) / T, y),
    LSCE(z, y) = −1/B Σ_i Σ_c [(1 − ε)·[c = y_i] + ε/C] · log softmax(z_i)_c,   ε = 0.1, w = 1,

with W_b the backbone's classifier: a Linear with bias on the *unnormalised* embedding f (the
code's ResNet with ``neck: 0``; PyTorch's default ``nn.Linear`` init, as the code's ``self.fc``).
Inference uses the normalised embedding alone: the MPN and both classifiers live in the method,
never in the model, so ``model(images).embedding`` ignores them.

Per dataset (code configs): CUB L × H = 1 × 2, T = 0.2; Cars 2 × 8 (concatenated), T = 1/9;
SOP 1 × 8, T = 0.605; In-Shop 1 × 4, T = 0.186. Other datasets (omniglot, digits) take CUB's values.

Learning rates: the code trains every parameter at one rate (``trainer.py:89-94``: encoder and
GNN in one RAdam group at ``train_params.lr``), so the MPN and both classifiers train at the recipe's
``lr_backbone`` under every recipe (``param_groups``; ``lr_method`` is not used), the code's single rate
in the ``intra_batch*`` recipes. Under the ``cpu`` recipe that is 1e-3 (omniglot, 3 epochs: Recall@1
71.3 at 1e-3 for all of the method's parameters, 70.7 at 1e-4, 36.0 at 1e-2).
Schedule: the code sets the rate to lr/10 at the start of 1-based epochs 31 and 51
(``trainer.py:145, 151-158, 161-168``; the second sets the same lr/10 again), i.e. lr/10 from 0-based
epoch 30 to the end: ``lr_milestones=(30,)``.

Not reproduced: at epochs 31 and 51 the code reloads the checkpoint of best *test* Recall@1 before
dividing the learning rate; we never select on test data, so training simply continues. The code's
SOP config trains with the backbone's LSCE only (``fns: lsce``); we keep the paper's two terms
(set ``mpn_weight=0`` for the code's). Its augmentation (``GL_orig_RE`` in ``dataset/utils.py``:
RandomResizedCrop(227) + flip + RandomErasing(p = 0.5) / Resize(256) + CenterCrop(227)) is our
``rrc_flip_erase`` at 227 px; its normalisation (std 0.299 for red, a typo of 0.229) is the
backbone's own here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.core.hparams import Choice, IntUniform, LogUniform, Param, Uniform
from harness.plugins.method import Method, register_method
from harness.core.recipe import Recipe
from methods.paper_weights import RESNET50_IMAGENET

if TYPE_CHECKING:
    import torch
    from torch import nn

#: The code's per-dataset training (config/config_<dataset>_train.yaml): classes × samples per batch,
#: learning rate (backbone, embedding, MPN and classifiers alike) and weight decay.
_CODE_TRAINING = {
    "intra_batch": (6, 9, 1.563663718906821e-4, 6.059722614369727e-06),  # CUB
    "intra_batch_cars": (10, 7, 3.6683239911604993e-4, 2.551918610962277e-09),
    "intra_batch_sop": (15, 6, 2.472471515853406e-4, 2.7650277063275255e-13),
    "intra_batch_inshop": (14, 4, 1.1265974954242144e-4, 1.0554824926510768e-07),
}
#: the code's recipe per dataset, by recipe name
CODE_RECIPES = {_name: Recipe(
        # RAdam, 70 epochs, m-per-class batches, one learning rate for every parameter (the method's
        # parameters train at lr_backbone; lr_method is set to the same rate), BatchNorm statistics
        # updated (not frozen), fp32, global max pooling, 227 px crops with RandomErasing, lr/10 from
        # 0-based epoch 30 to the end (see the module docstring).
        name=_name, epochs=70, batch_size=_classes * _samples, sampler="m_per_class", samples_per_class=_samples,
        image_size=227, resize_size=256, augmentation="rrc_flip_erase", pooling="max", optimizer="radam",
        lr_backbone=_lr, lr_head=_lr, lr_method=_lr, weight_decay=_wd, lr_milestones=(30,), lr_decay_gamma=0.1,
        freeze_bn=False, amp=False, backbone="resnet50", pretrained_weights=RESNET50_IMAGENET,
    ) for _name, (_classes, _samples, _lr, _wd) in _CODE_TRAINING.items()}


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, temperature: float,
                           epsilon: float) -> torch.Tensor:
    """LSCE(z/T, y): cross-entropy against (1 − ε)·onehot(y) + ε/C, averaged over the batch."""
    import torch.nn.functional as F

    return F.cross_entropy(logits / temperature, labels, label_smoothing=epsilon)


@register_method("intra_batch")
class IntraBatch(Method):
    """Intra-batch connections: cross-entropy before and after attention over the batch (Seidenschwarz et al. 2021)."""

    family = "classification"
    hparams = {
        "num_layers": Param(1, IntUniform(1, 4), "L, message-passing layers", valid=">= 1"),
        "num_heads": Param(2, Choice((1, 2, 4, 8)), "H, attention heads (must divide the embedding size)",
                           valid=">= 1"),
        "temperature": Param(0.2, LogUniform(0.01, 1.0), "T, softmax temperature of both cross-entropies",
                             valid="> 0"),
        "label_smoothing": Param(0.1, Uniform(0.0, 0.5), "ε, label smoothing of both cross-entropies",
                                 valid="[0, 1]"),
        "dropout": Param(0.1, Uniform(0.0, 0.5), "dropout of attention weights, residuals and feed-forward",
                         valid="[0, 1)"),
        "concat_layers": Param(False, Choice((False, True)), "classify the concatenated outputs of all layers"),
        "mpn_weight": Param(1.0, Uniform(0.0, 2.0), "w, weight of the MPN's cross-entropy", valid=">= 0"),
    }
    taps = ("embedding", "pooled")
    sampler = "m_per_class"
    paper_recipe = CODE_RECIPES["intra_batch"]

    def __init__(self, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any):
        from torch import nn

        from methods.intra_batch_network import MessagePassingNetwork

        super().__init__(num_classes, embedding_dim, feature_dim, **hparams)
        c = self.config
        if embedding_dim % c["num_heads"]:
            raise ValueError(f"num_heads={c['num_heads']} does not divide the embedding size {embedding_dim}")
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.mpn = MessagePassingNetwork(embedding_dim, num_classes, c["num_layers"], c["num_heads"], c["dropout"],
                                         c["concat_layers"])

    def param_groups(self, recipe: Recipe) -> list[dict]:
        """The MPN and both classifiers at the backbone's rate: the code trains every parameter at one rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": recipe.lr_backbone,
                 "weight_decay": recipe.weight_decay, "name": "method"}]

    @classmethod
    def paper_recipe_for(cls, dataset: str) -> Recipe:
        """The code's recipe for ``dataset`` (CUB's for datasets it did not run)."""
        return CODE_RECIPES.get(f"intra_batch_{dataset}", CODE_RECIPES["intra_batch"])

    @classmethod
    def declared_recipes(cls) -> tuple[Recipe, ...]:
        return tuple(CODE_RECIPES.values())

    @classmethod
    def dataset_defaults(cls, dataset: str) -> dict[str, Any]:
        """The code's per-dataset layers × heads and temperature; CUB's (the class defaults) elsewhere."""
        return {
            "cars": {"num_layers": 2, "num_heads": 8, "temperature": 1 / 9, "concat_layers": True},
            "sop": {"num_heads": 8, "temperature": 0.6046908988578005},
            "inshop": {"num_heads": 4, "temperature": 0.18591347176280537},
        }.get(dataset, {})

    def features_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L from the unnormalised embeddings f (the head's output before L2 normalisation)."""
        import torch.nn.functional as F

        features = features.float()
        t, eps = self.config["temperature"], self.config["label_smoothing"]
        backbone = smoothed_cross_entropy(self.classifier(features), labels, t, eps)
        mpn = smoothed_cross_entropy(self.mpn(F.normalize(features, dim=-1)), labels, t, eps)
        return backbone + self.config["mpn_weight"] * mpn

    def training_loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L of one batch; f is recomputed from the pooled features by the model's head (one Linear)."""
        return self.features_loss(model.head(model(images)["pooled"]), labels)
