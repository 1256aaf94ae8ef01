"""Every method's trainable class weights, proxies and centres start as its authors' code starts them.

Each reference below is a small copy of the official layer (its parameter's shape, initialisation and
loss, ``.cuda()`` dropped). For each method we check the initial distribution against the reference's,
and that Adam at the recipes' lr_method (1e-2) turns the class vectors by the same angle in a few
steps as it turns the reference's: with Adam the step does not scale with the weights, so the init's
norm alone sets how fast the class directions move.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import Parameter

from harness.plugins.method import create_method
from harness.plugins.models import ModelOutput
from methods.nir import code_proxy_anchor

D, C = 32, 40
STEPS, LR = 15, 1e-2


# --- references: the authors' layers -------------------------------------------------------------

class CosineSoftmax(nn.Module):
    """YangLin122/JRD ``loss.py`` (JRD's and so AMSoftmax's class weights)."""

    def __init__(self, scale, M, dim, cN):
        super().__init__()
        self.scale, self.M, self.cN = scale, M, cN
        self.fc = Parameter(torch.Tensor(dim, cN))
        torch.nn.init.kaiming_uniform_(self.fc, a=math.sqrt(5))

    def forward(self, inputs, target):
        sim_class = inputs.matmul(F.normalize(self.fc, p=2, dim=0))
        margin = torch.zeros(target.size(0), self.cN).scatter_(1, target.view(-1, 1), self.M)
        return F.cross_entropy(self.scale * (sim_class - margin), target)

    def class_vectors(self):
        return self.fc.T


class InsightFaceArcFace(nn.Module):
    """deepinsight/insightface ``arcface_torch`` (9097cd7b): PartialFC_V2's weight and clamped cosines,
    CombinedMarginLoss(s, 1, m, 0)'s margin applied under ``no_grad``, softmax cross-entropy."""

    def __init__(self, dim, num_classes, s=64.0, m=0.5):
        super().__init__()
        self.s, self.m = s, m
        self.weight = Parameter(torch.normal(0, 0.01, (num_classes, dim)))

    def forward(self, embeddings, labels):
        logits = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1, 1)
        index = torch.where(labels != -1)[0]
        target_logit = logits[index, labels[index].view(-1)]
        with torch.no_grad():
            target_logit.arccos_()
            logits.arccos_()
            logits[index, labels[index].view(-1)] = target_logit + self.m
            logits.cos_()
        return F.cross_entropy(logits * self.s, labels)

    def class_vectors(self):
        return self.weight


class NormSoftmaxLoss(nn.Module):
    """azgo14/classification_metric_learning ``metric_learning/modules/losses.py``."""

    def __init__(self, dim, num_instances, temperature=0.05):
        super().__init__()
        self.weight = Parameter(torch.Tensor(num_instances, dim))
        stdv = 1. / math.sqrt(self.weight.size(1))
        self.weight.data.uniform_(-stdv, stdv)
        self.temperature = temperature

    def forward(self, embeddings, instance_targets):
        logits = F.linear(embeddings, F.normalize(self.weight, dim=1))
        return F.cross_entropy(logits / self.temperature, instance_targets)

    def class_vectors(self):
        return self.weight


class ProxyNCA(nn.Module):
    """The Proxy-Anchor code's ProxyNCA baseline: the PML ``ProxyNCALoss`` of its time (randn proxies)."""

    def __init__(self, num_classes, dim, scale):
        super().__init__()
        self.proxies = Parameter(torch.randn(num_classes, dim))
        self.scale = scale

    def forward(self, x, y):
        d = torch.cdist(F.normalize(x), F.normalize(self.proxies)).pow(2)
        return F.cross_entropy(-self.scale * d, y)

    def class_vectors(self):
        return self.proxies


class ProxyAnchor(nn.Module):
    """tjddus9597/Proxy-Anchor-CVPR2020 ``code/losses.py`` ``Proxy_Anchor``."""

    def __init__(self, nb_classes, sz_embed, mrg=0.1, alpha=32):
        super().__init__()
        self.proxies = Parameter(torch.randn(nb_classes, sz_embed))
        nn.init.kaiming_normal_(self.proxies, mode='fan_out')
        self.nb_classes, self.mrg, self.alpha = nb_classes, mrg, alpha

    def forward(self, X, T):
        cos = F.linear(F.normalize(X), F.normalize(self.proxies))
        P_one_hot = F.one_hot(T, self.nb_classes).float()
        pos_exp = torch.exp(-self.alpha * (cos - self.mrg))
        neg_exp = torch.exp(self.alpha * (cos + self.mrg))
        num_valid = (P_one_hot.sum(0) != 0).sum()
        P_sim_sum = torch.where(P_one_hot == 1, pos_exp, torch.zeros_like(pos_exp)).sum(dim=0)
        N_sim_sum = torch.where(P_one_hot == 0, neg_exp, torch.zeros_like(neg_exp)).sum(dim=0)
        return torch.log(1 + P_sim_sum).sum() / num_valid + torch.log(1 + N_sim_sum).sum() / self.nb_classes

    def class_vectors(self):
        return self.proxies


class SoftTriple(nn.Module):
    """idstcv/SoftTriple ``loss/SoftTriple.py`` (with its τ regulariser)."""

    def __init__(self, la, gamma, tau, margin, dim, cN, K):
        super().__init__()
        self.la, self.gamma, self.tau, self.margin, self.cN, self.K = la, 1. / gamma, tau, margin, cN, K
        self.fc = Parameter(torch.Tensor(dim, cN * K))
        self.weight = torch.zeros(cN * K, cN * K, dtype=torch.bool)
        for i in range(cN):
            for j in range(K):
                self.weight[i * K + j, i * K + j + 1:(i + 1) * K] = 1
        nn.init.kaiming_uniform_(self.fc, a=math.sqrt(5))

    def forward(self, input, target):
        centers = F.normalize(self.fc, p=2, dim=0)
        sim_struc = input.matmul(centers).reshape(-1, self.cN, self.K)
        prob = F.softmax(sim_struc * self.gamma, dim=2)
        sim_class = torch.sum(prob * sim_struc, dim=2)
        margin = torch.zeros(sim_class.shape)
        margin[torch.arange(0, margin.shape[0]), target] = self.margin
        loss = F.cross_entropy(self.la * (sim_class - margin), target)
        if self.tau > 0 and self.K > 1:
            sim_center = centers.t().matmul(centers)
            reg = torch.sum(torch.sqrt(2.0 + 1e-5 - 2. * sim_center[self.weight])) / (self.cN * self.K * (self.K - 1.))
            return loss + self.tau * reg
        return loss

    def class_vectors(self):
        return self.fc.T


class NIRProxies(nn.Module):
    """ExplainableML/NonIsotropicProxyDML ``criteria/nir.py``: proxies ``randn / 8`` and its ``panc``."""

    def __init__(self, num_proxies, embed_dim):
        super().__init__()
        self.proxies = Parameter(torch.randn(num_proxies, embed_dim) / 8)

    def forward(self, batch, labels):
        return code_proxy_anchor(batch, self.proxies, labels, 32.0, 0.1)

    def class_vectors(self):
        return self.proxies


# --- the methods' parameters and losses ----------------------------------------------------------

def method_vectors(method) -> torch.Tensor:
    """The method's class vectors (one row per class or centre)."""
    criterion = method.criterion
    for name in ("W", "fc"):
        if hasattr(criterion, name):
            return getattr(criterion, name).T
    if hasattr(criterion, "weight"):  # (C, d) already, as insightface's
        return criterion.weight
    return criterion.proxies


def method_loss(name: str, method, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "nir":  # its proxy term alone: the flow is tested against the authors' loss in test_nir.py
        return code_proxy_anchor(x, method.criterion.proxies, y, 32.0, 0.1)
    return method.loss(ModelOutput(embedding=x, pooled=x, feature_map=x[:, :, None, None]), y)


#: method → (reference layer, expected distribution: ("uniform", bound) or ("normal", std))
CASES = {
    "amsoftmax": (lambda: CosineSoftmax(20.0, 0.1, D, C), ("uniform", 1 / math.sqrt(C))),
    "jrd": (lambda: CosineSoftmax(20.0, 0.1, D, C), ("uniform", 1 / math.sqrt(C))),
    "arcface": (lambda: InsightFaceArcFace(D, C), ("normal", 0.01)),
    "normsoftmax": (lambda: NormSoftmaxLoss(D, C), ("uniform", 1 / math.sqrt(D))),
    "proxynca": (lambda: ProxyNCA(C, D, 9.0), ("normal", 1.0)),
    "proxyanchor": (lambda: ProxyAnchor(C, D), ("normal", math.sqrt(2 / C))),
    "metrix_proxyanchor": (lambda: ProxyAnchor(C, D), ("normal", math.sqrt(2 / C))),
    "softtriple": (lambda: SoftTriple(20.0, 0.1, 0.2, 0.01, D, C, 10), ("uniform", 1 / math.sqrt(10 * C))),
    "nir": (lambda: NIRProxies(C, D), ("normal", 1 / 8)),
}


def build(name: str):
    torch.manual_seed(0)
    method = create_method(name, num_classes=C, embedding_dim=D, feature_dim=D)
    # arcface starts both from one draw: its margin passes no gradient (insightface's straight-through), so its
    # class vectors turn by 52-92 degrees in STEPS steps depending on the draw alone (seeds 0-3)
    torch.manual_seed(0 if name == "arcface" else 1)
    return method, CASES[name][0]()


@pytest.mark.parametrize("name", sorted(CASES))
def test_initial_distribution_is_the_official_layers(name):
    method, reference = build(name)
    ours, theirs = method_vectors(method).detach(), reference.class_vectors().detach()
    assert ours.shape == theirs.shape
    kind, scale = CASES[name][1]
    for w in (ours, theirs):
        if kind == "uniform":
            assert w.abs().max() <= scale and w.abs().max() > 0.99 * scale
            assert w.std().item() == pytest.approx(scale / math.sqrt(3), rel=0.06)
        else:
            assert w.std().item() == pytest.approx(scale, rel=0.06)
            assert w.mean().abs().item() < 0.1 * scale
    assert ours.norm(dim=1).mean().item() == pytest.approx(theirs.norm(dim=1).mean().item(), rel=0.06)


def mean_rotation_degrees(vectors, module: nn.Module, loss_fn, x, y) -> float:
    """Mean angle (degrees) each of ``vectors()`` turns in STEPS Adam steps at LR on ``module``'s
    trainable parameters, minimising ``loss_fn(x, y)`` on a fixed batch."""
    start = vectors().detach().clone()
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=LR)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss_fn(x, y).backward()
        optimizer.step()
    cos = F.cosine_similarity(start, vectors().detach(), dim=1).clamp(-1, 1)
    return torch.rad2deg(cos.arccos()).mean().item()


@pytest.fixture(scope="module")
def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(2 * C, D, generator=g), dim=-1), torch.arange(C).repeat(2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_early_rotation_matches_the_official_layer(name, fixed_batch):
    x, y = fixed_batch
    method, reference = build(name)
    if name == "nir":
        method.flow.requires_grad_(False)
    ours = mean_rotation_degrees(lambda: method_vectors(method), method,
                                 lambda x, y: method_loss(name, method, x, y), x, y)
    theirs = mean_rotation_degrees(reference.class_vectors, reference, reference, x, y)
    assert ours > 0.5
    assert ours == pytest.approx(theirs, rel=0.1)


def test_pml_default_init_would_rotate_far_slower(fixed_batch):
    """The test has teeth: PML's default N(0, 1) class weights turn much less than the JRD code's."""
    from pytorch_metric_learning import losses
    x, y = fixed_batch
    torch.manual_seed(0)
    pml_default = losses.CosFaceLoss(num_classes=C, embedding_size=D, margin=0.1, scale=20.0)
    method, _ = build("amsoftmax")
    slow = mean_rotation_degrees(lambda: pml_default.W.T, pml_default, pml_default, x, y)
    ours = mean_rotation_degrees(lambda: method_vectors(method), method,
                                 lambda x, y: method_loss("amsoftmax", method, x, y), x, y)
    assert ours > 5 * slow
