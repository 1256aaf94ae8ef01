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


def test_arcface_margin_is_given_in_radians_and_the_loss_is_arcface():
    method = create_method("arcface", num_classes=4, embedding_dim=6, feature_dim=6, margin=0.3, scale=10.0)
    assert method.criterion.margin == pytest.approx(0.3)  # PML's degrees, converted back to radians by PML
    assert create_method("arcface", num_classes=4, embedding_dim=6, feature_dim=6).criterion.margin \
        == pytest.approx(math.radians(28.6479), abs=1e-4)
    x, y = tiny_batch()
    cos = x @ F.normalize(method.criterion.W.detach(), dim=0)
    theta_y = torch.acos(cos[torch.arange(len(y)), y])
    assert (theta_y < math.pi - 0.3).all()
    logits = cos.clone()
    logits[torch.arange(len(y)), y] = torch.cos(theta_y + 0.3)
    expected = F.cross_entropy(10.0 * logits, y)
    assert method.loss(outputs(x), y).item() == pytest.approx(expected.item(), rel=1e-5)


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
