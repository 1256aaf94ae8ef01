"""NIR: non-isotropy regularisation of Proxy-Anchor (Roth, Vinyals & Akata, "Non-isotropy
Regularization for Proxy-based Deep Metric Learning", CVPR 2022; code ExplainableML/NonIsotropicProxyDML,
``criteria/nir.py``), and the code's training recipe.

A conditional normalising flow f maps the L2-normalised embedding ψ, conditioned on the L2-normalised
proxy of its class ρ̂_y, to z = f(ψ; ρ̂_y); its negative log-likelihood under a standard normal (the
constant d/2·log 2π dropped) is

    NLL(ψ | ρ̂_y) = ½‖z‖² − log|det ∂f/∂ψ|.

Two ways of combining it with Proxy-Anchor (``form``):

    code (default):  L = mean_i exp(NLL_i) + w_align · L_PA^code     (``w_align``)
    paper:           L = L_PA + ω · mean_i NLL_i                      (ω = ``weight``)

The code form is the authors' ``criteria/nir.py`` line by line: it exponentiates the per-sample NLL
and weights the proxy term, w_align = 0.0075 (CUB), 0.01 (Cars, and the code's default,
``parameters.py:108``), 0.3 (SOP), the per-dataset defaults; every other dataset (omniglot) takes the
code's default 0.01. At a w_align around 1e4 the proxy term outweighs the NIR term about 8,000 to 1 at
initialisation and the method is Proxy-Anchor in practice (omniglot, ``cpu`` recipe, validation
classes, seed 0: val R@1 61.0 at 0.01, 94.0 at 1e4, 94.4 for Proxy-Anchor alone; the exp(NLL) term
collapses the embedding into the flow's densest region below ~1e3): no leaderboard row runs it.
Its proxy term is the code's own Proxy-Anchor, ``panc``:

    L_PA^code = mean_{i∈batch} log(1 + Σ_{j: y_j = y_i} e^{−α(s(x_j, p_{y_i}) − δ)})
              + mean_{c∈C}     log(1 + Σ_{j: y_j ≠ c}   e^{ α(s(x_j, p_c) + δ)}),

whose positive term averages over the batch's samples (each positive proxy weighted by its count
in the batch), not over the distinct positive proxies |P⁺| of the paper and of PML's
``ProxyAnchorLoss`` (which the paper form uses). As the flow fits, exp(NLL) → 0 and the proxy term
takes over; one sample with NLL > 88 overflows float32 and fails the trial (seen with the flow at
lr 1e-2).

The paper form never fades: ψ lies on the unit sphere, so a density in R^d can grow without limit
and the NLL is bounded below only by the couplings' clamp (NLL > −10·d with 5 blocks at clamp 2),
falling towards that bound. Its ω is not in the code and the paper's value was not available here:
ω = 0.01 is our choice. On Omniglot (small CNN, 512-d, ``cpu`` recipe) the paper form at ω = 0.01
reached test Recall@1 51.8 ± 5.7 over 3 seeds against Proxy-Anchor's 83.5 (with PML's Kaiming
proxies, before the code's init): the NLL dominates.

The flow (the code's ``NormFlow`` with ``cond_mode='dense'``, built with FrEIA): 5 blocks of
(``PermuteRandom`` with seed k, ``GLOWCouplingBlock`` with clamp 2.0); each coupling's two subnets are
MLPs of 8 linear layers, Linear(in, 128) → 6 × [ReLU, Linear(128, 128)] → ReLU → Linear(128, out), and
every subnet receives the proxy concatenated to its input. L_PA is :class:`ProxyAnchor` (α = 32,
δ = 0.1) on the same proxies, which therefore get gradients from both terms.

Learning rates, in recipe fields, relative to the backbone's as in the code (``criteria/nir.py:71-80``:
proxies at lr × ``loss_nir_proxy_lrmulti`` = 4000, flow and its condition network at lr ×
``loss_nir_lrmulti`` = 50, ``parameters.py:110-113``): the proxies train at ``lr_method`` (``lr_multiplier``
1; the ``nir`` recipe sets lr_method = 4000 × lr_backbone = 4e-2, the shared recipes their own proxy rate),
the flow at ``lr_backbone × flow_lr_multiplier``, 50 by default (its SOP command uses 1,
``nir_benchmark_runs.sh:72-74``, the SOP dataset default), under every recipe. Both groups take the
recipe's weight decay.

Initialisation: the proxies start as the code's ``torch.randn(C, d) / 8`` (N(0, 1/64) entries), the
flow's linear layers as PyTorch's default (the code's ``fc_init='none'``), the embedding head as the
recipe says.

Overflow: the code runs every step through ``torch.cuda.amp.GradScaler`` even in fp32 (``main.py:229,
280-282``), which skips a step whose gradients are not finite, so an exp(NLL) overflow costs the code one
step; it neither clips gradients nor clamps the NLL (``criteria/nir.py:111-113``). The harness fails the
trial on a non-finite loss instead. Under the ``cpu`` recipe (backbone lr 1e-3, a hundred times the code's
1e-5) the code's ×50 puts the flow at 5e-2 and exp(NLL) overflows at step 2 (×5: step 7). On omniglot
the flow's rate was therefore chosen on validation classes only (``python -m harness sweep --method nir
--param flow_lr_multiplier=50,5,0.5,0.05``, seed 0, records in ``results/runs/omniglot/nir-omniglot-val-*``,
plot ``results/sweeps/omniglot/nir.flow_lr_multiplier.png``): 50 and 5 fail, val R@1 61.3 at 0.5 and 59.7
at 0.05, so the omniglot row runs ``flow_lr_multiplier=0.5`` (the flow at 5e-4, the code's own absolute
flow rate for CUB/Cars), passed by ``--hparam``; the class default stays the code's 50. At the code's
``w_align`` = 0.01 the exp(NLL) term dominates and NIR trails Proxy-Anchor on omniglot; no ``w_align``
variant is registered (at 1e4 it is Proxy-Anchor, whose own row shows that).

Differences from the code: its criterion's optimiser groups carry no weight decay (here the recipe's);
the paper form uses PML's Proxy-Anchor (|P⁺| average), not ``panc``. Its ``baseline`` is ``proxyanchor``
(``alpha`` and ``margin`` are Proxy-Anchor's, the rest its own, ``w_align`` the main one),
whose paper recipe is its own authors' (AdamW, GAP + GMP, 60 epochs): ``--recipe paper`` refuses a run
with both, ``--recipe nir`` trains both alike.
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.hparams import Choice, LogUniform, Param
from harness.plugins.method import register_method
from harness.core.recipe import Recipe
from methods.paper_weights import RESNET50_IMAGENET
from methods.proxyanchor import ProxyAnchor

if TYPE_CHECKING:
    import FrEIA.framework as Ff
    import torch
    from torch import nn

    from harness.plugins.models import ModelOutput

NIR_RECIPE = Recipe(
    # The code's CUB/Cars runs (nir_benchmark_runs.sh, parameters.py, main.py): ResNet-50 with frozen
    # BatchNorm, 128-d normalised embedding (the trial's embedding_dim; 512 in its second setting),
    # 100 epochs, batches of 90 with 2 samples per class, Adam at lr 1e-5 for backbone and embedding
    # with L2 weight decay 4e-4, proxies ×4000 = lr_method 4e-2, flow ×50 (``flow_lr_multiplier``),
    # ×0.1 at epoch 100 (i.e. constant over the 100 epochs), 1 warm-up epoch with the backbone
    # frozen, RandomResizedCrop(224) + flip / Resize(256) + CenterCrop(224), fp32 (use_float16 off).
    # Its SOP runs use 300 epochs, 5 warm-up epochs and ×0.2 at epochs 140 and 230.
    name="nir", epochs=100, batch_size=90, sampler="m_per_class", samples_per_class=2, image_size=224,
    resize_size=256, augmentation="rrc_flip", optimizer="adam", lr_backbone=1e-5, lr_head=1e-5, lr_method=4e-2,
    weight_decay=4e-4, lr_decay_epochs=100, lr_decay_gamma=0.1, freeze_bn=True, warmup_epochs=1, amp=False,
    backbone="resnet50", pretrained_weights=RESNET50_IMAGENET,
)

#: ``w_align`` (weight of the proxy term in the code form) per dataset: the code's for CUB, Cars and SOP
#: (nir_benchmark_runs.sh); any other dataset takes the code's default (Cars's 0.01).
W_ALIGN: dict[str, float] = {"cub": 0.0075, "cars": 0.01, "sop": 0.3}


def init_proxies(proxies: torch.Tensor) -> None:
    """The code's proxy initialisation, ``torch.randn(C, d) / 8``, in place."""
    import torch

    with torch.no_grad():
        proxies.normal_(0.0, 1.0 / 8)


def masked_log1p_sum_exp(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """log(1 + Σ_{mask} e^{logits}) along ``dim``, 0 where the mask is empty (the code's ``masked_logsumexp``)."""
    import torch

    masked = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    zeros = torch.zeros_like(masked.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([masked, zeros], dim=dim), dim=dim).masked_fill(~mask.any(dim), 0)


def code_proxy_anchor(embedding: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, alpha: float,
                      margin: float) -> torch.Tensor:
    """The code's Proxy-Anchor (``Criterion.panc``): positive term averaged over the batch's samples."""
    import torch
    import torch.nn.functional as F

    x, p = F.normalize(embedding, dim=-1), F.normalize(proxies, dim=-1)
    same = labels[:, None] == labels[None]                                     # (B, B): x_j of p_{y_i}'s class
    positive = masked_log1p_sum_exp(-alpha * (x @ p[labels].T - margin), same, dim=0)
    other = labels[:, None] != torch.arange(len(p), device=labels.device)[None]  # (B, C)
    negative = masked_log1p_sum_exp(alpha * (x @ p.T + margin), other, dim=0)
    return positive.mean() + negative.mean()


def subnet(dims_in: int, dims_out: int, width: int, depth: int) -> nn.Sequential:
    """The coupling subnet: ``depth`` linear layers of ``width`` units with ReLUs between them."""
    from torch import nn

    layers: list[nn.Module] = [nn.Linear(dims_in, width)]
    for _ in range(depth - 2):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    layers += [nn.ReLU(), nn.Linear(width, dims_out)]
    return nn.Sequential(*layers)


def conditional_flow(dim: int, blocks: int = 5, width: int = 128, depth: int = 8, clamp: float = 2.0) -> Ff.SequenceINN:
    """``blocks`` × (fixed random permutation, GLOW affine coupling) on ``dim``-d inputs, every coupling
    conditioned on one ``dim``-d condition (index 0). numpy's global RNG, which ``PermuteRandom``
    reseeds, is left as it was."""
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    state = np.random.get_state()
    flow = Ff.SequenceINN(dim)
    for k in range(blocks):
        flow.append(Fm.PermuteRandom, seed=k)
        flow.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(dim,), clamp=clamp,
                    subnet_constructor=partial(subnet, width=width, depth=depth))
    np.random.set_state(state)
    return flow


@register_method("nir")
class NIR(ProxyAnchor):
    """Proxy-Anchor + non-isotropy regularisation by a proxy-conditioned normalising flow (Roth et al., CVPR 2022)."""

    hparams = {
        **ProxyAnchor.hparams,
        "form": Param("code", Choice(("paper", "code")),
                      "paper: L_PA + weight·mean NLL; code: mean exp(NLL) + w_align·L_PA"),
        "weight": Param(0.01, LogUniform(1e-4, 10.0), "ω, weight of the mean NLL (paper form; our default)",
                        valid=">= 0"),
        "w_align": Param(W_ALIGN["cars"], LogUniform(1e-4, 1.0), "weight of the Proxy-Anchor term (code form)",
                         valid=">= 0"),
        "flow_lr_multiplier": Param(50.0, LogUniform(0.1, 100.0), "learning rate of the flow / that of the backbone",
                                    valid=">= 0"),
        "blocks": Param(5, None, "coupling blocks of the flow", valid=">= 1"),
        "width": Param(128, None, "width of the coupling subnets", valid=">= 1"),
        "depth": Param(8, None, "linear layers per coupling subnet", valid=">= 2"),
        "clamp": Param(2.0, None, "soft clamp of the coupling's log-scales", valid="> 0"),
    }
    paper_recipe = NIR_RECIPE
    baseline = "proxyanchor"
    #: the main one is the code form's w_align (the default form), the Proxy-Anchor term's weight beside the
    #: flow's exp(NLL): no value of it is Proxy-Anchor alone (``baseline_at_zero`` stays False)
    own_hparams = ("w_align", "weight", "form", "flow_lr_multiplier", "blocks", "width", "depth", "clamp")

    def __init__(self, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any):
        super().__init__(num_classes, embedding_dim, feature_dim, **hparams)
        init_proxies(self.criterion.proxies)
        self.flow = conditional_flow(embedding_dim, self.config["blocks"], self.config["width"],
                                     self.config["depth"], self.config["clamp"])

    @classmethod
    def dataset_defaults(cls, dataset: str) -> dict[str, Any]:
        defaults: dict[str, Any] = {"w_align": W_ALIGN[dataset]} if dataset in W_ALIGN else {}
        if dataset == "sop":
            defaults["flow_lr_multiplier"] = 1.0
        return defaults

    def param_groups(self, recipe: Recipe) -> list[dict]:
        """Proxies at ``lr_method × lr_multiplier``, the flow at ``lr_backbone × flow_lr_multiplier`` (the code's)."""
        flow = [p for p in self.flow.parameters() if p.requires_grad]
        return [
            {"params": [self.criterion.proxies], "lr": recipe.lr_method * self.lr_multiplier,
             "weight_decay": recipe.weight_decay, "name": "proxies"},
            {"params": flow, "lr": recipe.lr_backbone * self.config["flow_lr_multiplier"],
             "weight_decay": recipe.weight_decay, "name": "flow"},
        ]

    def nll(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample ½‖z‖² − log|det J| of the normalised embeddings given their classes' normalised proxies."""
        import torch
        import torch.nn.functional as F

        proxies = self.criterion.proxies
        with torch.autocast(embedding.device.type, enabled=False):
            psi = F.normalize(embedding.to(proxies.dtype), dim=-1)
            proxies = F.normalize(proxies, dim=-1)[labels]
            z, log_det = self.flow(psi, c=[proxies])
            return 0.5 * z.pow(2).sum(dim=1) - log_det

    def loss(self, outputs: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        embedding = outputs["embedding"]
        nll = self.nll(embedding, labels)
        if self.config["form"] == "code":
            proxy_anchor = code_proxy_anchor(embedding.float(), self.criterion.proxies, labels,
                                             self.config["alpha"], self.config["margin"])
            return nll.exp().mean() + self.config["w_align"] * proxy_anchor
        return super().loss(outputs, labels) + self.config["weight"] * nll.mean()
