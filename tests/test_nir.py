"""NIR: the conditional flow (invertibility, log-determinant, NLL), the two loss forms, gradients,
optimizer groups, recipe and per-dataset defaults, and training on fixed data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian

import methods.nir  # noqa: F401
from harness.plugins.method import create_method, get_method_class
from harness.plugins.models import EmbeddingModel, ModelOutput, create_backbone
from harness.plugins.method import find_recipe
from harness.core.recipe import Recipe
from harness.engine.train import build_optimizer
from methods.nir import W_ALIGN, conditional_flow

D = 8


def outputs(embedding: torch.Tensor) -> ModelOutput:
    return ModelOutput(embedding=embedding, pooled=embedding, feature_map=embedding[:, :, None, None])


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(12, D, generator=g), dim=-1), torch.arange(4).repeat(3)


def nir(**hparams):
    torch.manual_seed(0)
    return create_method("nir", num_classes=4, embedding_dim=D, feature_dim=D, **hparams)


def test_flow_is_the_codes_architecture():
    flow = conditional_flow(D)
    couplings = [m for m in flow if m.__class__.__name__ == "GLOWCouplingBlock"]
    assert len(flow) == 10 and len(couplings) == 5
    for block in couplings:
        assert block.clamp == 2.0
        for net in (block.subnet1, block.subnet2):
            linears = [m for m in net if isinstance(m, nn.Linear)]
            assert len(linears) == 8 and sum(isinstance(m, nn.ReLU) for m in net) == 7
            assert linears[0].in_features == D // 2 + D  # half the input + the proxy (dense conditioning)
            assert {lin.out_features for lin in linears[:-1]} == {128}


def test_building_the_flow_leaves_numpys_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    conditional_flow(D)
    assert np.random.rand() == expected


def test_flow_inverts_and_its_log_determinant_matches_autograd(batch):
    method = nir().double()
    x, y = (t.double() if t.is_floating_point() else t for t in batch)
    cond = F.normalize(method.criterion.proxies, dim=-1)[y].detach()
    z, log_det = method.flow(x, c=[cond])
    x_back, _ = method.flow(z, c=[cond], rev=True)
    torch.testing.assert_close(x_back, x)
    for i in range(3):
        jac = jacobian(lambda v: method.flow(v[None], c=[cond[i:i + 1]])[0][0], x[i])
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(log_det[i], logabsdet)
        # the NLL by hand: ½‖z‖² − log|det J|, J from autograd
        torch.testing.assert_close(method.nll(x[i:i + 1], y[i:i + 1])[0], 0.5 * z[i].pow(2).sum() - logabsdet)


def test_paper_and_code_forms(batch):
    x, y = batch
    paper, code = nir(weight=0.5, w_align=0.2, form="paper"), nir(weight=0.5, w_align=0.2)
    code.load_state_dict(paper.state_dict())
    proxy_anchor = get_method_class("proxyanchor").loss(paper, outputs(x), y)
    nll = paper.nll(x, y)
    torch.testing.assert_close(paper.loss(outputs(x), y), proxy_anchor + 0.5 * nll.mean())
    code_proxy_anchor = authors_panc(x, code.criterion.proxies, y)
    torch.testing.assert_close(code.loss(outputs(x), y), nll.exp().mean() + 0.2 * code_proxy_anchor)
    assert not torch.isclose(paper.loss(outputs(x), y), code.loss(outputs(x), y))


# The authors' loss (ExplainableML/NonIsotropicProxyDML, criteria/nir.py), transcribed with its
# defaults (loss_oproxy_pos_alpha = neg_alpha = 32, pos_delta = 0.1, neg_delta = -0.1, no noise,
# cond_mode 'dense': the normalised class proxy conditions every block). Only the flow is ours: its
# architecture and log-determinant are tested above.

def masked_logsumexp(sims, dim=0, mask=None):
    if mask is not None:
        sims = sims.masked_fill(~mask, torch.finfo(sims.dtype).min)
    dims = list(sims.shape)
    dims[dim] = 1
    zeros = torch.zeros(dims, dtype=sims.dtype, device=sims.device)
    sims = torch.cat([sims, zeros], dim=dim)
    logsumexp_sims = torch.logsumexp(sims, dim=dim, keepdim=True)
    if mask is not None:
        logsumexp_sims = logsumexp_sims.masked_fill(~torch.any(mask, dim=dim, keepdim=True), 0)
    return logsumexp_sims


def authors_panc(batch, proxies, labels, dim=0):
    proxies = torch.nn.functional.normalize(proxies, dim=-1)
    batch = torch.nn.functional.normalize(batch, dim=-1)
    labels = labels.unsqueeze(1)
    u_labels = labels.view(-1)
    same_labels = (labels.T == u_labels.view(-1, 1)).to(batch.device).T
    diff_labels = (torch.arange(len(proxies)).unsqueeze(1) != labels.T).to(torch.float).to(batch.device).T
    w_pos_sims = -32 * (batch.mm(proxies[u_labels].T) - 0.1)
    w_neg_sims = 32 * (batch.mm(proxies.T) - (-0.1))
    pos_s = masked_logsumexp(w_pos_sims, mask=same_labels.type(torch.bool), dim=dim)
    neg_s = masked_logsumexp(w_neg_sims, mask=diff_labels.type(torch.bool), dim=dim)
    return pos_s.mean() + neg_s.mean()


def authors_nir_loss(batch, labels, proxies, normflow, w_align):
    proxy_align_loss = authors_panc(batch, proxies, labels)
    proxies = torch.nn.functional.normalize(proxies, dim=-1)[labels]
    mul = torch.from_numpy(np.ones(len(proxies))).to(batch.device)
    nf_latent, log_jac_det = normflow(batch, c=[proxies])
    loss = mul * (0.5 * torch.sum(nf_latent ** 2, dim=(1,)) - log_jac_det)
    return torch.mean(torch.exp(loss)) + w_align * proxy_align_loss


def test_code_form_is_the_authors_loss_on_a_fixed_batch():
    g = torch.Generator().manual_seed(3)
    x = F.normalize(torch.randn(10, D, generator=g), dim=-1)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 0, 2])  # unequal class counts: the pos term's batch mean matters
    method = create_method("nir", num_classes=6, embedding_dim=D, feature_dim=D, w_align=0.3)  # 2 classes unseen
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    for _ in range(3):  # move the proxies and flow off their init so every term is non-trivial
        optimizer.zero_grad()
        method.loss(outputs(x), y).backward()
        optimizer.step()
    ours = method.loss(outputs(x), y)
    assert torch.isfinite(ours) and 0.3 * authors_panc(x, method.criterion.proxies, y) < ours
    theirs = authors_nir_loss(x, y, method.criterion.proxies, method.flow, 0.3)
    torch.testing.assert_close(ours, theirs.float())
    grads = torch.autograd.grad(ours, [method.criterion.proxies])[0]
    torch.testing.assert_close(grads, torch.autograd.grad(theirs.float(), [method.criterion.proxies])[0])


def test_proxies_start_as_the_codes():
    torch.manual_seed(0)
    proxies = create_method("nir", num_classes=200, embedding_dim=128, feature_dim=128).criterion.proxies
    assert proxies.std().item() == pytest.approx(1 / 8, rel=0.02)


def test_defaults_and_per_dataset_weights_are_the_codes():
    cls = get_method_class("nir")
    assert cls.dataset_defaults("cub") == {"w_align": 0.0075}
    assert cls.dataset_defaults("cars") == {"w_align": 0.01}
    assert cls.dataset_defaults("sop") == {"w_align": 0.3, "flow_lr_multiplier": 1.0}
    assert cls.dataset_defaults("omniglot") == {} and "omniglot" not in W_ALIGN  # the code's default 0.01
    config = nir().config
    assert (config["form"], config["weight"], config["w_align"], config["flow_lr_multiplier"]) == \
        ("code", 0.01, 0.01, 50.0)
    assert (config["alpha"], config["margin"], config["blocks"], config["width"], config["depth"], config["clamp"]) \
        == (32.0, 0.1, 5, 128, 8, 2.0)


def test_gradients_reach_proxies_and_flow(batch):
    x, y = batch
    method = nir()
    method.nll(x, y).mean().backward()  # the NIR term alone reaches the proxies through the condition
    assert method.criterion.proxies.grad.abs().sum() > 0
    method.zero_grad()
    method.loss(outputs(x), y).backward()
    trainable = [p for p in method.flow.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert method.criterion.proxies.grad.abs().sum() > 0


def test_recipe_and_optimizer_groups():
    recipe = find_recipe("nir")
    assert get_method_class("nir").paper_recipe.name == "nir"
    assert (recipe.optimizer, recipe.lr_backbone, recipe.lr_head, recipe.batch_size, recipe.sampler,
            recipe.samples_per_class, recipe.warmup_epochs) == ("adam", 1e-5, 1e-5, 90, "m_per_class", 2, 1)
    model = EmbeddingModel(create_backbone("small_cnn", in_chans=1), embedding_dim=D)
    method = create_method("nir", num_classes=4, embedding_dim=D, feature_dim=model.feature_dim)
    groups = {g["name"]: g for g in build_optimizer(model, method, recipe).param_groups}
    assert set(groups) == {"backbone", "head", "proxies", "flow"}
    assert groups["backbone"]["lr"] == groups["head"]["lr"] == pytest.approx(1e-5)
    assert groups["proxies"]["lr"] == pytest.approx(4000 * 1e-5)  # the code's proxy multiplier
    assert groups["flow"]["lr"] == pytest.approx(50 * 1e-5)  # the code's flow multiplier
    assert groups["proxies"]["params"] == [method.criterion.proxies]
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    in_groups = [id(p) for name in ("proxies", "flow") for p in groups[name]["params"]]
    assert sorted(in_groups) == sorted(trainable)


@pytest.mark.parametrize("form", ["paper", "code"])
def test_loss_decreases_when_training_on_fixed_data(form, clustered_batch):
    features, labels = clustered_batch
    torch.manual_seed(0)
    head = nn.Linear(32, 16)
    method = create_method("nir", num_classes=8, embedding_dim=16, feature_dim=32, form=form, weight=0.1,
                           blocks=2, width=32)
    optimizer = torch.optim.Adam([{"params": head.parameters(), "lr": 1e-2},
                                  *method.param_groups(Recipe("t", lr_method=1e-2, lr_backbone=2.5e-6,
                                                              weight_decay=0.0))])

    def loss_now() -> torch.Tensor:
        return method.loss(outputs(F.normalize(head(features), dim=-1)), labels)

    first = loss_now().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss_now().backward()
        optimizer.step()
    last = loss_now().item()
    assert np.isfinite(first) and np.isfinite(last)
    assert last < first - 0.3 * abs(first), f"{form}: loss {first:.4f} -> {last:.4f}"
