"""The proxy baselines: paper defaults, optimizer groups, agreement with the papers' formulas, training."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.plugins.method import create_method, get_method_class
from harness.plugins.models import EmbeddingModel, ModelOutput, create_backbone
from harness.plugins.method import find_recipe
from harness.engine.train import build_optimizer

PROXY_METHODS = ["proxyanchor", "proxynca", "normsoftmax", "arcface"]


def outputs(embedding: torch.Tensor) -> ModelOutput:
    return ModelOutput(embedding=embedding, pooled=embedding, feature_map=embedding[:, :, None, None])


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """10 normalised 6-d embeddings of classes 0-2 (of 4: class 3 has no sample in the batch)."""
    g = torch.Generator().manual_seed(1)
    return F.normalize(torch.randn(10, 6, generator=g), dim=-1), torch.tensor([0, 0, 1, 1, 1, 2, 0, 2, 1, 2])


def test_paper_defaults_and_recipe():
    config = {name: create_method(name, num_classes=5, embedding_dim=8, feature_dim=8).config for name in PROXY_METHODS}
    assert config == {"proxyanchor": {"alpha": 32.0, "margin": 0.1}, "proxynca": {"scale": 9.0},
                      "normsoftmax": {"temperature": 0.05}, "arcface": {"scale": 64.0, "margin": 0.5}}
    assert get_method_class("proxyanchor").paper_recipe.name == "proxyanchor"
    r = find_recipe("proxyanchor")
    assert (r.optimizer, r.lr_backbone, r.lr_head, r.lr_method, r.weight_decay) == ("adamw", 1e-4, 1e-4, 1e-2, 1e-4)
    assert (r.batch_size, r.sampler, r.warmup_epochs, r.image_size, r.epochs) == (180, "random", 1, 224, 60)
    assert r.lr_method / r.lr_backbone == pytest.approx(100)
    assert (r.pooling, r.head_init, r.grad_clip_value, r.freeze_bn, r.freeze_bn_affine, r.lr_decay_gamma) == \
        ("avgmax", "kaiming_normal_fan_out", 10.0, True, False, 0.5)


@pytest.mark.parametrize("name", PROXY_METHODS)
def test_proxies_reach_their_optimizer_group_at_lr_method(name):
    recipe = find_recipe("default")
    model = EmbeddingModel(create_backbone("small_cnn", in_chans=1), embedding_dim=8)
    method = create_method(name, num_classes=5, embedding_dim=8, feature_dim=model.feature_dim)
    optimizer = build_optimizer(model, method, recipe)
    (group,) = [g for g in optimizer.param_groups if g["name"] == "method"]
    assert group["lr"] == pytest.approx(recipe.lr_method)
    assert {id(p) for p in group["params"]} == {id(p) for p in method.parameters()}
    assert sum(p.numel() for p in group["params"]) == 5 * 8
    others = {id(p) for g in optimizer.param_groups if g["name"] != "method" for p in g["params"]}
    assert not others & {id(p) for p in method.parameters()}


def test_proxyanchor_equals_the_paper_formula():
    x, y = tiny_batch()
    method = create_method("proxyanchor", num_classes=4, embedding_dim=6, feature_dim=6)
    alpha, delta = 32.0, 0.1
    p = F.normalize(method.criterion.proxies.detach(), dim=-1)
    pos_terms, neg_terms = [], []
    for c in range(4):
        s = [float(x[i] @ p[c]) for i in range(len(y))]
        positives = [s[i] for i in range(len(y)) if y[i] == c]
        negatives = [s[i] for i in range(len(y)) if y[i] != c]
        if positives:
            pos_terms.append(math.log(1 + sum(math.exp(-alpha * (v - delta)) for v in positives)))
        neg_terms.append(math.log(1 + sum(math.exp(alpha * (v + delta)) for v in negatives)))
    expected = sum(pos_terms) / len(pos_terms) + sum(neg_terms) / 4
    assert len(pos_terms) == 3
    assert method.loss(outputs(x), y).item() == pytest.approx(expected, rel=1e-5)


def insightface_arcface_gradients(x: torch.Tensor, weight: torch.Tensor, y: torch.Tensor, s: float, m: float):
    """The slow reference, written from insightface 9097cd7b: ``PartialFC_V2`` (``linear(normalize(x),
    normalize(W)).clamp(-1, 1)``), ``CombinedMarginLoss.forward`` (``losses.py:27-58``, m1 = 1, m3 = 0: the
    margin added to the target's arccos under ``no_grad``, then ``cos``, ×s) and the mean cross-entropy, one
    sample and one class at a time in float64; its gradient by hand: the margin passes no gradient, so
    ∂L/∂cos_ij = s·(p_ij − 1[j = y_i]) / N, then the chain rule through the clamp and both normalisations.
    Returns (loss, ∂L/∂x, ∂L/∂W)."""
    x, weight = x.double(), weight.double()
    n, c, y = len(y), len(weight), y.tolist()
    xn = [x[i] / x[i].norm() for i in range(n)]
    wn = [weight[j] / weight[j].norm() for j in range(c)]
    loss, grad_x, grad_w = 0.0, torch.zeros_like(x), torch.zeros_like(weight)
    for i in range(n):
        cos = [min(max(float(xn[i] @ wn[j]), -1.0), 1.0) for j in range(c)]
        logits = [s * (math.cos(math.acos(cos[j]) + m) if j == y[i] else math.cos(math.acos(cos[j])))
                  for j in range(c)]
        top = max(logits)
        total = sum(math.exp(v - top) for v in logits)
        loss += -(logits[y[i]] - top - math.log(total)) / n
        for j in range(c):
            raw = float(xn[i] @ wn[j])
            if not -1.0 <= raw <= 1.0:
                continue  # the clamp passes no gradient
            d_cos = s * (math.exp(logits[j] - top) / total - (j == y[i])) / n
            # cos = x̂·ŵ: ∂/∂x = (ŵ − cos·x̂)/‖x‖, ∂/∂w = (x̂ − cos·ŵ)/‖w‖
            grad_x[i] += d_cos * (wn[j] - raw * xn[i]) / x[i].norm()
            grad_w[j] += d_cos * (xn[i] - raw * wn[j]) / weight[j].norm()
    return loss, grad_x, grad_w


def arcface_gradients(criterion, x: torch.Tensor, y: torch.Tensor):
    """(loss, ∂L/∂x, ∂L/∂W) of a loss module holding class weights ``weight`` (C, d) or ``W`` (d, C)."""
    x = x.clone().requires_grad_(True)
    loss = criterion(x, y, None) if hasattr(criterion, "W") else criterion(x, y)
    weights = criterion.weight if hasattr(criterion, "weight") else criterion.W
    grad_x, grad_w = torch.autograd.grad(loss, [x, weights])
    return loss.item(), grad_x, grad_w if hasattr(criterion, "weight") else grad_w.T


def arcface_batch(far: bool = False):
    """A fixed batch of 12 raw 6-d embeddings of 4 classes and the method's class weights; with ``far``, half
    the targets' angles above π − m (each embedding pointing away from its class vector)."""
    torch.manual_seed(3)
    method = create_method("arcface", num_classes=4, embedding_dim=6, feature_dim=6, margin=0.5, scale=64.0)
    g = torch.Generator().manual_seed(2)
    y = torch.tensor([0, 1, 2, 3] * 3)
    x = torch.randn(12, 6, generator=g) * 3
    if far:
        x[::2] = -F.normalize(method.criterion.weight.detach()[y[::2]]) * 5 + 0.3 * torch.randn(6, 6, generator=g)
    return method, x, y


def test_arcface_gradient_follows_insightface_on_a_fixed_batch():
    method, x, y = arcface_batch()
    loss, grad_x, grad_w = arcface_gradients(method.criterion, x, y)
    ref_loss, ref_x, ref_w = insightface_arcface_gradients(x, method.criterion.weight.detach(), y, 64.0, 0.5)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert torch.allclose(grad_x.double(), ref_x, rtol=1e-4, atol=1e-7)
    assert torch.allclose(grad_w.double(), ref_w, rtol=1e-4, atol=1e-7)
    # the test has teeth: the loss the method followed before (insightface 2e2e8c97 = PML's ArcFaceLoss, the
    # chain rule through cos(θ + m)) has the same loss on this batch and another gradient
    from pytorch_metric_learning import losses
    pml = losses.ArcFaceLoss(num_classes=4, embedding_size=6, margin=math.degrees(0.5), scale=64.0)
    with torch.no_grad():
        pml.W.copy_(method.criterion.weight.T)
    old_loss, old_x, _ = arcface_gradients(pml, x, y)
    assert old_loss == pytest.approx(ref_loss, rel=1e-5)
    assert (old_x.double() - ref_x).norm() / ref_x.norm() > 0.05


def test_arcface_has_no_fallback_past_pi_minus_m():
    """For target angles above π − m the logit is cos(θ_y + m), as in today's insightface (the older code and
    PML switch to cos θ_y − m·sin m there)."""
    method, x, y = arcface_batch(far=True)
    cos = F.linear(F.normalize(x), F.normalize(method.criterion.weight.detach()))
    theta_y = cos[torch.arange(len(y)), y].clamp(-1, 1).acos()
    assert (theta_y[::2] > math.pi - 0.5).all()
    logits = cos.clone()
    logits[torch.arange(len(y)), y] = torch.cos(theta_y + 0.5)
    expected = F.cross_entropy(64.0 * logits, y)
    fallback = cos.clone()
    fallback[torch.arange(len(y)), y] = torch.where(theta_y > math.pi - 0.5, cos[torch.arange(len(y)), y]
                                                    - 0.5 * math.sin(0.5), torch.cos(theta_y + 0.5))
    assert method.loss(outputs(x), y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(F.cross_entropy(64.0 * fallback, y).item() - expected.item()) > 1.0
    ref_loss, ref_x, _ = insightface_arcface_gradients(x, method.criterion.weight.detach(), y, 64.0, 0.5)
    assert method.loss(outputs(x), y).item() == pytest.approx(ref_loss, rel=1e-5)


def test_proxynca_and_normsoftmax_formulas():
    x, y = tiny_batch()
    nca = create_method("proxynca", num_classes=4, embedding_dim=6, feature_dim=6)
    p = F.normalize(nca.criterion.proxies.detach(), dim=-1)
    expected = F.cross_entropy(-9.0 * torch.cdist(x, p) ** 2, y)  # positive proxy in the denominator
    assert nca.loss(outputs(x), y).item() == pytest.approx(expected.item(), rel=1e-5)
    ns = create_method("normsoftmax", num_classes=4, embedding_dim=6, feature_dim=6)
    expected = F.cross_entropy(x @ F.normalize(ns.criterion.W.detach(), dim=0) / 0.05, y)
    assert ns.loss(outputs(x), y).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", PROXY_METHODS)
def test_loss_decreases_when_training_on_fixed_data(name, loss_before_and_after_training):
    first, last = loss_before_and_after_training(name)
    assert math.isfinite(first) and first > 0
    assert last < 0.7 * first, f"{name}: loss {first:.4f} -> {last:.4f}"
