"""Metrix: mixup for deep metric learning (Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos &
Avrithis, "It Takes Two to Tango: Mixup for Deep Metric Learning", ICLR 2022; code billpsomas/metrix).

Generic loss. An anchor a sees a set of examples u with binary targets y(u) = [class(u) = class(a)]:

    ℓ(a) = ρ⁺( Σ_u y(u) · e⁺(a, u) ) + ρ⁻( Σ_u (1 − y(u)) · e⁻(a, u) ).

Metrix feeds the same loss mixed examples v = mix_λ(x, x') = λx + (1 − λ)x' with interpolated targets
t(v) = mix_λ(y, y') = λy + (1 − λ)y', λ ~ Beta(α, α) once per batch (α = 2), and minimises

    E = ℓ_clean + w · ℓ_mixed        (w = 0.4).

The clean loss is the base loss of pytorch-metric-learning; the mixed loss, with soft targets t:

* contrastive:  avg_{(a,v)} t·[d(a,v) − m⁺]₊  +  avg_{(a,v)} (1 − t)·[m⁻ − d(a,v)]₊,
  d the Euclidean distance of normalised embeddings, m⁺ and m⁻ the baseline's, each average over its
  non-zero terms (PML's ``AvgNonZeroReducer``, as the clean ``ContrastiveLoss``);
* multi-similarity (α, β, b and the miner's ε the baseline's, s the cosine similarity; the paper's
  formulation):
  1/B Σ_a [ 1/α · log(1 + Σ_v t·e^{−α(s(a,v) − b)}) + 1/β · log(1 + Σ_v (1 − t)·e^{β(s(a,v) − b)}) ];
* Proxy-Anchor (α = 32, δ = 0.1): the C proxies are the anchors and every mixed example is in each
  proxy's set, t_c(v) = λ[y = c] + (1 − λ)[y' = c]; C⁺ the proxies with some t_c > 0:
  1/|C⁺| Σ_{c∈C⁺} log(1 + Σ_v t_c·e^{−α(s(v,c) − δ)}) + 1/C Σ_c log(1 + Σ_v (1 − t_c)·e^{α(s(v,c) + δ)}).

Pairs mixed (one kind per iteration, drawn at random among the kinds the batch has):

* positive–negative: for each anchor a, positive p and negative n of a, v = mix_λ(p, n), t = λ;
* anchor–negative: for each anchor a without a positive in the batch and negative n, v = mix_λ(a, n),
  t = λ (only plain-shuffled batches have such anchors);
* Proxy-Anchor: v = mix_λ(x_i, x_j) for every pair of samples of different classes.

Positive and negative pairs are all pairs for contrastive and Proxy-Anchor, the MS miner's for MS.
Under the shared protocol contrastive and MS batches are m-per-class (so every anchor has a positive
and only positive–negative mixing happens); the ``metrix`` recipe shuffles plainly, as the code does
on CUB and Cars, and Proxy-Anchor always does.
``hard_negatives = k`` keeps each anchor's k negatives most similar to it (clean embeddings).
Mixing happens at ``mix_at``: ``input`` (pixels; an extra forward pass of the mixed images),
``feature`` (the backbone's last feature map, then pooling and head: the paper's default "Metrix")
or ``embed`` (the normalised embeddings). Clean anchors are always the clean embeddings.

Registered: ``metrix_contrastive``, ``metrix_ms``, ``metrix_proxyanchor`` (one per base loss).

A Metrix row differs from its baseline row (``contrastive``, ``ms``, ``proxyanchor``) only by the
mixing: its own hyperparameters (``own_hparams``) are ``weight`` (the main one), ``mix_at``, ``mix_alpha`` and
``hard_negatives``; every other is the baseline's, which it inherits with their defaults (a ``nested``
benchmark: with the baseline's chosen values), its sampler and, like every
method, takes pooling, BatchNorm freezing and head init from the recipe. At ``weight = 0`` (or a λ
that makes every mixed example clean) the loss is the baseline's. The authors run baseline and
Metrix with the same values, which differ from the baselines' papers: contrastive m⁻ = 0.5; MS
α = 17.97, β = 75.66, b = 0.77, miner ε = 0.39 (``main.py``; :data:`methods.metrix_recipes.CODE_HPARAMS`). The Metrix
recipes carry them for the baseline and its Metrix row alike (``Recipe.method_hparams``), so
``--recipe metrix_ms --methods ms,metrix_ms`` reproduces the authors' pair and stays a fair comparison.

Paper recipes (``metrix`` for contrastive, ``metrix_ms``, ``metrix_proxyanchor``): the README's CUB
commands for the Metrix/feature rows; see :func:`methods.metrix_recipes.metrix_recipe`. They are also the
paper recipes of the baselines ``contrastive`` and ``ms`` (the paper that compares against them), so
``--recipe paper`` trains each Metrix row and its baseline alike. ``proxyanchor`` keeps its own authors'
recipe (AdamW, 60 epochs), so ``--recipe paper`` refuses a run with both ``proxyanchor`` and
``metrix_proxyanchor``; ``--recipe metrix_proxyanchor`` trains them alike.

Where we follow the code rather than the paper:

* contrastive: d not squared, the averages over non-zero terms;
* embeddings mixed at ``embed`` are renormalised (the code's PML distances normalise);
* input mixing mixes each anchor's hardest negative only (the code's ``top_k=1``): ``hard_negatives``
  defaults to 1 at ``input`` and to all negatives at ``feature`` and ``embed``;
* α = 2, w = 0.4 everywhere (the code uses 0.3 for anchor–negative mixing at ``embed``).

Where we follow the paper rather than the code:

* every positive of an anchor is mixed (the code's feature/embed loops reuse the anchor's first
  positive for each of its positive pairs);
* multi-similarity: the code's variant (``embed`` only) puts λ·(1 + clean sum) + 0.4·(1 + mixed sum)
  inside one log (1 − λ for negatives), uses λ only as a mask of the mixed pairs, and writes the mixed
  negatives' mask into the clean mask, so its mixed negative term is always masked out;
* the pair kind is drawn among the kinds present (the code draws one of two regardless, and fails on
  an empty one).

The code we read trains Proxy-Anchor without mixing only; ``metrix_proxyanchor`` applies the paper's
generic form above, with Proxy-Anchor's anchors (proxies) and pairs of the batch. Its proxies start
as the code's criterion, PML's ``ProxyAnchorLoss``: ``kaiming_normal_(mode='fan_out')``, as ``proxyanchor``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.core.hparams import Choice, LogUniform, Param, Uniform
from harness.plugins.method import PMLLossMethod, register_method
from methods.contrastive import Contrastive
from methods.metrix_recipes import METRIX_MS_RECIPE, METRIX_PROXY_ANCHOR_RECIPE, METRIX_RECIPE
from methods.ms import MultiSimilarity

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.plugins.models import ModelOutput

MIX_AT = ("input", "feature", "embed")

@dataclass(frozen=True)
class MixPlan:
    """Mixed examples v_k = mix_λ(x[first_k], x[second_k]); ``relation[a, k]``: anchor a's loss sees v_k."""

    first: torch.Tensor
    second: torch.Tensor
    relation: torch.Tensor


def mixed_targets(anchor_labels: torch.Tensor, first_labels: torch.Tensor, second_labels: torch.Tensor,
                  lam: float) -> torch.Tensor:
    """(A, M) targets mix_λ(y, y') = λ·[y_a = y(first_k)] + (1 − λ)·[y_a = y(second_k)]."""
    same_first = (anchor_labels[:, None] == first_labels[None]).float()
    same_second = (anchor_labels[:, None] == second_labels[None]).float()
    return lam * same_first + (1 - lam) * same_second


def hardest_negatives(neg_mask: torch.Tensor, similarity: torch.Tensor, k: int) -> torch.Tensor:
    """``neg_mask`` restricted to each row's k negatives of highest similarity (k = 0: all)."""
    import torch

    if k == 0 or k >= neg_mask.shape[1]:
        return neg_mask
    top = similarity.masked_fill(~neg_mask, -math.inf).topk(k, dim=1).indices
    return torch.zeros_like(neg_mask).scatter_(1, top, True) & neg_mask


def positive_negative_plan(pos_mask: torch.Tensor, neg_mask: torch.Tensor) -> MixPlan | None:
    """v = mix(p, n) for every anchor a, positive p and negative n of a; None when there is none."""
    triples = pos_mask[:, :, None] & neg_mask[:, None, :]
    first, second = triples.any(0).nonzero(as_tuple=True)
    if not len(first):
        return None
    return MixPlan(first, second, triples[:, first, second])


def anchor_negative_plan(pos_mask: torch.Tensor, neg_mask: torch.Tensor) -> MixPlan | None:
    """v = mix(a, n) for every anchor a without a positive and negative n of a; None when there is none."""
    import torch

    first, second = (neg_mask & ~pos_mask.any(1, keepdim=True)).nonzero(as_tuple=True)
    if not len(first):
        return None
    anchors = torch.arange(len(pos_mask), device=first.device)
    return MixPlan(first, second, anchors[:, None] == first[None])


def _log1p_weighted_sum_exp(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Row-wise log(1 + Σ_k w_k e^{z_k}) for weights w ≥ 0, computed as a log-sum-exp."""
    import torch

    terms = torch.where(weights > 0, logits + weights.log(), -math.inf)
    return torch.logsumexp(torch.cat([torch.zeros_like(terms[:, :1]), terms], dim=1), dim=1)


def _avg_nonzero(terms: torch.Tensor) -> torch.Tensor:
    """Mean of the positive entries of a non-negative tensor (0 when none), as PML's AvgNonZeroReducer."""
    return terms.sum() / (terms > 0).sum().clamp_min(1)


def soft_contrastive(distance: torch.Tensor, targets: torch.Tensor, relation: torch.Tensor,
                     pos_margin: float, neg_margin: float) -> torch.Tensor:
    """avg t·[d − m⁺]₊ + avg (1 − t)·[m⁻ − d]₊ over the related (anchor, example) pairs."""
    import torch.nn.functional as F

    pos = targets * F.relu(distance - pos_margin)
    neg = (1 - targets) * F.relu(neg_margin - distance)
    return _avg_nonzero(pos[relation]) + _avg_nonzero(neg[relation])


def soft_multi_similarity(similarity: torch.Tensor, targets: torch.Tensor, relation: torch.Tensor,
                          alpha: float, beta: float, base: float) -> torch.Tensor:
    """Mean over anchors of 1/α log(1 + Σ t e^{−α(s − b)}) + 1/β log(1 + Σ (1 − t) e^{β(s − b)})."""
    pos = _log1p_weighted_sum_exp(-alpha * (similarity - base), targets * relation) / alpha
    neg = _log1p_weighted_sum_exp(beta * (similarity - base), (1 - targets) * relation) / beta
    return (pos + neg).mean()


def soft_proxy_anchor(similarity: torch.Tensor, targets: torch.Tensor, alpha: float, margin: float) -> torch.Tensor:
    """Proxy-Anchor on (C, M) proxy–example similarities with soft targets t_c (see the module docstring)."""
    pos = _log1p_weighted_sum_exp(-alpha * (similarity - margin), targets)
    neg = _log1p_weighted_sum_exp(alpha * (similarity + margin), 1 - targets)
    with_positives = targets.sum(1) > 0
    return pos[with_positives].sum() / with_positives.sum().clamp_min(1) + neg.mean()


class Metrix(PMLLossMethod):
    """Base of the Metrix methods: clean base loss (:meth:`loss`) + w · the same loss on mixed examples."""

    hparams: ClassVar[dict[str, Param]] = {
        "mix_at": Param("feature", Choice(MIX_AT), "where to mix: input (pixels), feature (last feature map), "
                                                   "embed (normalised embeddings)"),
        "weight": Param(0.4, Uniform(0.0, 2.0), "w, weight of the mixed loss", valid=">= 0"),
        "mix_alpha": Param(2.0, LogUniform(0.1, 10.0), "α of λ ~ Beta(α, α)", valid="> 0"),
        "hard_negatives": Param(None, None, "mix each anchor's k most similar negatives only; 0 = all; "
                                            "None = the code's choice: 1 at input, all at feature and embed",
                                valid=">= 0", kind=(type(None), int)),
    }
    taps = ("embedding", "feature_map")
    sampler = "m_per_class"
    paper_recipe = METRIX_RECIPE
    own_hparams = ("weight", "mix_at", "mix_alpha", "hard_negatives")
    baseline_at_zero = True  # at w = 0 the loss is the clean base loss

    def __init__(self, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any):
        super().__init__(num_classes, embedding_dim, feature_dim, **hparams)
        if self.config["mix_at"] not in MIX_AT:
            raise ValueError(f"mix_at={self.config['mix_at']!r}; valid: {', '.join(MIX_AT)}")

    @property
    def hard_negatives(self) -> int:
        """k of :func:`hardest_negatives` (0 = all negatives)."""
        k = self.config["hard_negatives"]
        if k is None:
            return 1 if self.config["mix_at"] == "input" else 0
        return int(k)

    def pair_masks(self, embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, B) masks of the base loss's positive and negative pairs (the miner's, or all pairs)."""
        import torch
        from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

        a1, p, a2, n = self.miner(embedding, labels) if self.miner is not None else lmu.get_all_pairs_indices(labels)
        pos = torch.zeros(len(labels), len(labels), dtype=torch.bool, device=labels.device)
        neg = torch.zeros_like(pos)
        pos[a1, p] = True
        neg[a2, n] = True
        return pos, neg

    def mixing_plan(self, embedding: torch.Tensor, labels: torch.Tensor) -> MixPlan | None:
        """Positive–negative or anchor–negative mixing, drawn at random among the kinds the batch has."""
        import torch

        pos, neg = self.pair_masks(embedding, labels)
        neg = hardest_negatives(neg, embedding @ embedding.T, self.hard_negatives)
        plans = [plan for plan in (positive_negative_plan(pos, neg), anchor_negative_plan(pos, neg))
                 if plan is not None]
        return plans[int(torch.randint(len(plans), ()))] if plans else None

    def anchors(self, embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed loss's anchors and their labels: the clean embeddings."""
        return embedding, labels

    def soft_loss(self, anchors: torch.Tensor, mixed: torch.Tensor, targets: torch.Tensor,
                  relation: torch.Tensor) -> torch.Tensor:
        """The base loss of normalised anchors against normalised mixed embeddings with soft targets."""
        raise NotImplementedError

    def mix(self, model: nn.Module, images: torch.Tensor, outputs: ModelOutput, plan: MixPlan,
            lam: float) -> torch.Tensor:
        """Embeddings of v_k = λ·x[first_k] + (1 − λ)·x[second_k], x the images, feature maps or embeddings.

        The mixing is one float32 product (M, B) × (B, ·): its backward, unlike that of gathering
        x[first] with repeated indices, sums in a fixed order (bitwise reproducible on CPU).
        """
        import torch

        weights = torch.zeros(len(plan.first), len(images), device=images.device)
        rows = torch.arange(len(plan.first), device=images.device)
        weights[rows, plan.first] = lam
        weights[rows, plan.second] = 1 - lam

        def interpolate(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=x.device.type, enabled=False):
                mixed = weights @ x.float().flatten(1)
            return mixed.view(-1, *x.shape[1:]).to(x.dtype)

        if self.config["mix_at"] == "input":
            return model(interpolate(images))["embedding"]
        if self.config["mix_at"] == "feature":
            return model.forward_head(interpolate(outputs["feature_map"]))["embedding"]
        return interpolate(outputs["embedding"])

    def mixed_loss(self, embedding: torch.Tensor, labels: torch.Tensor, mixed: torch.Tensor, plan: MixPlan,
                   lam: float) -> torch.Tensor:
        """ℓ_mixed from clean and mixed embeddings (normalised here, in float32 with autocast off)."""
        import torch
        import torch.nn.functional as F

        with torch.autocast(device_type=labels.device.type, enabled=False):
            anchors, anchor_labels = self.anchors(F.normalize(embedding.float(), dim=-1), labels)
            targets = mixed_targets(anchor_labels, labels[plan.first], labels[plan.second], lam)
            return self.soft_loss(anchors, F.normalize(mixed.float(), dim=-1), targets, plan.relation)

    def training_loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """ℓ_clean + w · ℓ_mixed, λ ~ Beta(α, α) drawn once for the batch."""
        import torch
        import torch.nn.functional as F

        outputs = model(images)
        clean = self.loss(outputs, labels)
        embedding = outputs["embedding"]
        plan = self.mixing_plan(F.normalize(embedding.detach().float(), dim=-1), labels)
        if plan is None:
            return clean
        alpha = self.config["mix_alpha"]
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        mixed = self.mix(model, images, outputs, plan, lam)
        return clean + self.config["weight"] * self.mixed_loss(embedding, labels, mixed, plan, lam)


@register_method("metrix_contrastive")
class MetrixContrastive(Metrix, Contrastive):
    """Metrix on the contrastive loss (Venkataramanan et al., ICLR 2022), the paper's main setting."""

    hparams = {
        **Metrix.hparams,
        **Contrastive.hparams,
    }
    baseline = "contrastive"

    def soft_loss(self, anchors, mixed, targets, relation):
        import torch

        return soft_contrastive(torch.cdist(anchors, mixed), targets, relation,
                                self.config["pos_margin"], self.config["neg_margin"])


@register_method("metrix_ms")
class MetrixMS(Metrix, MultiSimilarity):
    """Metrix on the multi-similarity loss and miner (Venkataramanan et al., ICLR 2022)."""

    hparams = {**Metrix.hparams, **MultiSimilarity.hparams}
    paper_recipe = METRIX_MS_RECIPE
    baseline = "ms"

    def soft_loss(self, anchors, mixed, targets, relation):
        return soft_multi_similarity(anchors @ mixed.T, targets, relation,
                                     self.config["alpha"], self.config["beta"], self.config["base"])


@register_method("metrix_proxyanchor")
class MetrixProxyAnchor(Metrix):
    """Metrix on Proxy-Anchor (Venkataramanan et al., ICLR 2022): proxies are the mixed loss's anchors."""

    family = "proxy"
    hparams = {
        **Metrix.hparams,
        "alpha": Param(32.0, LogUniform(1.0, 128.0), "α, scale of the similarities", valid="> 0"),
        "margin": Param(0.1, Uniform(0.0, 0.5), "δ, margin", valid=">= 0"),
    }
    sampler = "random"
    paper_recipe = METRIX_PROXY_ANCHOR_RECIPE
    baseline = "proxyanchor"

    def build_loss(self) -> nn.Module:
        from pytorch_metric_learning import losses

        return losses.ProxyAnchorLoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                      margin=self.config["margin"], alpha=self.config["alpha"])

    def mixing_plan(self, embedding: torch.Tensor, labels: torch.Tensor) -> MixPlan | None:
        """v = mix(x_i, x_j) for pairs of different classes (j among i's hardest negatives); every proxy sees all."""
        import torch

        neg = hardest_negatives(labels[:, None] != labels[None], embedding @ embedding.T, self.hard_negatives)
        first, second = neg.nonzero(as_tuple=True)
        if not len(first):
            return None
        return MixPlan(first, second, torch.ones(self.num_classes, len(first), dtype=torch.bool, device=labels.device))

    def anchors(self, embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised proxies and their classes 0..C−1."""
        import torch
        import torch.nn.functional as F

        proxies = self.criterion.proxies
        return F.normalize(proxies.float(), dim=-1), torch.arange(len(proxies), device=labels.device)

    def soft_loss(self, anchors, mixed, targets, relation):
        return soft_proxy_anchor(anchors @ mixed.T, targets, self.config["alpha"], self.config["margin"])
