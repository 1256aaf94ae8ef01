"""JRD and its variants: the vectorised regularisers against loop-over-pairs references written from the
formulas (float64), edge cases, gradients, the α = 0 reduction to AMSoftmax, and training on fixed data."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.plugins.method import create_method
from harness.plugins.models import ModelOutput
from harness.plugins.method import find_recipe
from methods.jrd import DEFAULT_ALPHA
from methods.jrd_kernels import KERNELS

VARIANTS = ["jrd", "mrd", "jrd_c", "jrd_pool", "jmmd", "jrd_intra"]
NUM_CLASSES = 4


# ---------------------------------------------------------------- references, straight from the formulas

def ref_distance(kind: str, a: torch.Tensor, b: torch.Tensor) -> float:
    if kind == "gaussian":
        return sum(float(a[d] - b[d]) ** 2 for d in range(len(a)))
    return sum(abs(float(a[d] - b[d])) for d in range(len(a)))


def ref_bandwidths(kind: str, x: torch.Tensor, num_kernels: int, mul: float, sigma: float, fixed) -> list[float]:
    """bw_k = σ · m · mul^(k − ⌊K/2⌋), m = mean over i ≠ j of the distance (MGF: mean over i of ‖x_i‖²), or
    the fixed base; or σ · σ_k²."""
    if isinstance(fixed, tuple):
        return [sigma * b for b in fixed]
    n = len(x)
    if fixed is None and kind == "mgf":
        base = sum(float(x[i] @ x[i]) for i in range(n)) / n
    elif fixed is None:
        base = sum(ref_distance(kind, x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    else:
        base = fixed
    return [sigma * base * mul ** (k - num_kernels // 2) for k in range(num_kernels)]


def ref_kernel(kind: str, a: torch.Tensor, b: torch.Tensor, bandwidths: list[float], degree: int = 2) -> float:
    if kind in ("gaussian", "laplace"):
        distance = ref_distance(kind, a, b)
        return sum(math.exp(-distance / bw) for bw in bandwidths) / len(bandwidths)
    dot = sum(float(a[d] * b[d]) for d in range(len(a)))
    if kind == "polynomial":
        return (dot + 1.0) ** degree
    return sum(math.exp(dot / bw) for bw in bandwidths) / len(bandwidths)


def ref_layer_kernels(layers, kind="gaussian", nums=(3, 3, 1), mul=2.0, sigma=1.0, fixed=(None, None, None)):
    """One function (i, j) -> k^l(x_i^l, x_j^l) per layer."""
    kernels = []
    for x, num, bw in zip(layers, nums, fixed):
        bandwidths = ref_bandwidths(kind, x, num, mul, sigma, bw) if kind != "polynomial" else []
        kernels.append(lambda i, j, x=x, bandwidths=bandwidths: ref_kernel(kind, x[i], x[j], bandwidths))
    return kernels


def ref_product(kernels):
    return lambda i, j: math.prod(k(i, j) for k in kernels)


def ref_sum(kernels):
    return lambda i, j: sum(k(i, j) for k in kernels)


def ref_inter(pair_kernel, labels) -> float:
    """L_JRS = mean over ordered pairs with different labels of the pair kernel."""
    total, count = 0.0, 0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if labels[i] != labels[j]:
                total += pair_kernel(i, j)
                count += 1
    return total / count if count else 0.0


def ref_class_similarity(pair_kernel, labels, c1, c2) -> float:
    """Ŝ(I, J) = (1/(n^I n^J)) Σ_{i∈I, j∈J} K_ij (diagonal included when I = J)."""
    rows = [i for i in range(len(labels)) if labels[i] == c1]
    cols = [j for j in range(len(labels)) if labels[j] == c2]
    return sum(pair_kernel(i, j) for i in rows for j in cols) / (len(rows) * len(cols))


def ref_inter_by_class_pairs(pair_kernel, labels) -> float:
    """The paper's form: Σ_{I≠J} n^I n^J Ŝ_JRS(P^I, P^J) / N_pairs, N_pairs = Σ_{I≠J} n^I n^J."""
    classes = sorted(set(labels))
    n = {c: labels.count(c) for c in classes}
    pairs = [(a, b) for a in classes for b in classes if a != b]
    n_pairs = sum(n[a] * n[b] for a, b in pairs)
    return sum(n[a] * n[b] * ref_class_similarity(pair_kernel, labels, a, b) for a, b in pairs) / n_pairs


def ref_jmmd(pair_kernel, labels) -> float:
    classes = sorted(set(labels))
    n = {c: labels.count(c) for c in classes}
    similarity = {(a, b): ref_class_similarity(pair_kernel, labels, a, b) for a in classes for b in classes}
    total, weight = 0.0, 0
    for a in classes:
        for b in classes:
            if a != b:
                mmd2 = similarity[a, a] + similarity[b, b] - 2 * similarity[a, b]
                total += n[a] * n[b] * mmd2
                weight += n[a] * n[b]
    return total / weight if weight else 0.0


def ref_intra(pair_kernel, labels) -> float:
    total, count = 0.0, 0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i != j and labels[i] == labels[j]:
                total += pair_kernel(i, i) + pair_kernel(j, j) - 2 * pair_kernel(i, j)
                count += 1
    return total / count if count else 0.0


def ref_adaptive_avg_pool(v: torch.Tensor, width: int) -> list[float]:
    """Bin k averages v[⌊k·D/d⌋ : ⌈(k+1)·D/d⌉] (PyTorch's adaptive pooling)."""
    size = len(v)
    bins = []
    for k in range(width):
        start, end = (k * size) // width, -((-(k + 1) * size) // width)
        bins.append(sum(float(v[d]) for d in range(start, end)) / (end - start))
    return bins


def ref_pooled(layers) -> torch.Tensor:
    width = min(x.shape[1] for x in layers)
    rows = []
    for i in range(len(layers[0])):
        per_layer = [ref_adaptive_avg_pool(x[i], width) for x in layers]
        rows.append([sum(p[d] for p in per_layer) / len(layers) for d in range(width)])
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def batch():
    """Three float64 layers (X⁻ ≥ 0 unnormalised, X unit rows, X⁺ cosines) of 11 samples in 4 unequal classes."""
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([2, 0, 1, 0, 3, 2, 2, 1, 0, 3, 2])
    x_minus = torch.rand(11, 6, generator=g, dtype=torch.float64) * 2
    x = nn.functional.normalize(torch.randn(11, 5, generator=g, dtype=torch.float64), dim=1)
    weights = nn.functional.normalize(torch.randn(5, NUM_CLASSES, generator=g, dtype=torch.float64), dim=0)
    return (x_minus, x, x @ weights), labels


def make(name: str, **hparams):
    torch.manual_seed(0)
    return create_method(name, num_classes=NUM_CLASSES, embedding_dim=5, feature_dim=6, **hparams)


def vectorised(method, layers, labels) -> torch.Tensor:
    return method.reduce(method.combined_kernel(layers), labels)


def assert_close(value: torch.Tensor, reference: float) -> None:
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(reference, rel=1e-10, abs=1e-12)


# ---------------------------------------------------------------- vectorised == loops (float64)

@pytest.mark.parametrize("kernel", KERNELS)
def test_jrd_matches_the_loop_reference_for_every_kernel(batch, kernel):
    layers, labels = batch
    reference = ref_inter(ref_product(ref_layer_kernels(layers, kind=kernel)), labels.tolist())
    assert_close(vectorised(make("jrd", kernel=kernel), layers, labels), reference)


def test_jrd_is_the_paper_class_pair_form_normalised_by_n_pairs(batch):
    layers, labels = batch
    pair_kernel = ref_product(ref_layer_kernels(layers))
    value = vectorised(make("jrd"), layers, labels)
    assert_close(value, ref_inter_by_class_pairs(pair_kernel, labels.tolist()))
    assert_close(value, ref_inter(pair_kernel, labels.tolist()))


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "mgf"])
def test_bandwidth_scale_and_mixture_spacing(batch, kernel):
    layers, labels = batch
    reference = ref_inter(ref_product(ref_layer_kernels(layers, kind=kernel, mul=3.0, sigma=2.5)), labels.tolist())
    assert_close(vectorised(make("jrd", kernel=kernel, mul=3.0, sigma=2.5), layers, labels), reference)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "mgf"])
def test_fixed_bandwidths_base_or_explicit_components(batch, kernel):
    layers, labels = batch
    fixed = (0.7, (0.2, 1.0, 4.0), None)  # a fixed base, explicit σ_k², data-driven
    reference = ref_inter(ref_product(ref_layer_kernels(layers, kind=kernel, sigma=1.5, fixed=fixed)), labels.tolist())
    assert_close(vectorised(make("jrd", kernel=kernel, sigma=1.5, bandwidths=fixed), layers, labels), reference)


@pytest.mark.parametrize("kernel", KERNELS)
def test_mrd_sums_the_per_layer_penalties(batch, kernel):
    layers, labels = batch
    kernels = ref_layer_kernels(layers, kind=kernel)
    reference = ref_inter(ref_sum(kernels), labels.tolist())
    assert reference == pytest.approx(sum(ref_inter(k, labels.tolist()) for k in kernels))
    assert_close(vectorised(make("mrd", kernel=kernel), layers, labels), reference)


@pytest.mark.parametrize("kernel", KERNELS)
def test_jrd_c_is_one_kernel_on_the_concatenation(batch, kernel):
    layers, labels = batch
    concatenated = torch.cat(layers, dim=1)
    (pair_kernel,) = ref_layer_kernels([concatenated], kind=kernel, nums=(3,), fixed=(None,))
    assert_close(vectorised(make("jrd_c", kernel=kernel), layers, labels), ref_inter(pair_kernel, labels.tolist()))


@pytest.mark.parametrize("kernel", KERNELS)
def test_jrd_pool_is_one_kernel_on_the_pooled_representation(batch, kernel):
    layers, labels = batch
    (pair_kernel,) = ref_layer_kernels([ref_pooled(layers)], kind=kernel, nums=(3,), fixed=(None,))
    assert_close(vectorised(make("jrd_pool", kernel=kernel), layers, labels), ref_inter(pair_kernel, labels.tolist()))


@pytest.mark.parametrize("kernel", KERNELS)
def test_jmmd_is_minus_the_weighted_joint_mmd(batch, kernel):
    layers, labels = batch
    reference = -ref_jmmd(ref_product(ref_layer_kernels(layers, kind=kernel)), labels.tolist())
    assert_close(vectorised(make("jmmd", kernel=kernel), layers, labels), reference)


@pytest.mark.parametrize("kernel", KERNELS)
def test_intra_class_penalty(batch, kernel):
    layers, labels = batch
    pair_kernel = ref_product(ref_layer_kernels(layers, kind=kernel))
    reference = ref_inter(pair_kernel, labels.tolist()) + 0.3 * ref_intra(pair_kernel, labels.tolist())
    assert_close(vectorised(make("jrd_intra", kernel=kernel, beta=0.3), layers, labels), reference)


# ---------------------------------------------------------------- the method: representations, edge cases, gradients

def outputs_for(method, n: int = 12, num_labels: int = NUM_CLASSES, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    pooled = torch.rand(n, method.feature_dim, generator=g).requires_grad_()
    embedding = nn.functional.normalize(torch.randn(n, method.embedding_dim, generator=g), dim=1).requires_grad_()
    labels = torch.arange(n) % num_labels
    return ModelOutput(embedding=embedding, pooled=pooled, feature_map=pooled[:, :, None, None]), labels


def test_x_plus_is_the_cosine_to_the_amsoftmax_weights_before_scale_and_margin():
    method = make("jrd")
    outputs, labels = outputs_for(method)
    x_minus, x, x_plus = method.representations(outputs)
    weights = method.criterion.W
    expected = outputs.embedding @ (weights / weights.norm(dim=0, keepdim=True))
    assert torch.allclose(x_plus, expected, atol=1e-6)
    assert x_minus is outputs.pooled and x is outputs.embedding
    regulariser = method.regulariser(outputs, labels)
    assert torch.equal(regulariser, vectorised(method, (x_minus, x, x_plus), labels))


def test_regulariser_runs_in_float32_under_bf16_autocast():
    method = make("jrd")
    outputs, labels = outputs_for(method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = method.regulariser(outputs, labels)
    assert value.dtype == torch.float32 and torch.equal(value, method.regulariser(outputs, labels))


@pytest.mark.parametrize("name", VARIANTS)
def test_regulariser_gradients_reach_all_three_layers(name):
    method = make(name)
    outputs, labels = outputs_for(method)
    method.regulariser(outputs, labels).backward()
    for grad in (outputs.pooled.grad, outputs.embedding.grad, method.criterion.W.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["jrd", "mrd", "jrd_c", "jrd_pool", "jmmd"])
@pytest.mark.parametrize("n", [1, 6])
def test_single_class_batch_gives_zero_not_nan(name, n):
    method = make(name)
    outputs, labels = outputs_for(method, n=n, num_labels=1)
    loss = method.loss(outputs, labels)
    assert method.regulariser(outputs, labels).item() == 0.0
    loss.backward()
    for grad in (outputs.pooled.grad, outputs.embedding.grad, method.criterion.W.grad):
        assert grad is None or torch.isfinite(grad).all()
    assert torch.isfinite(outputs.embedding.grad).all()


def test_single_class_batch_keeps_only_the_intra_penalty_finite():
    method = make("jrd_intra")
    outputs, labels = outputs_for(method, n=6, num_labels=1)
    value = method.regulariser(outputs, labels)
    value.backward()
    assert torch.isfinite(value) and value > 0 and torch.isfinite(outputs.pooled.grad).all()


def test_identical_samples_give_finite_kernels_and_gradients():
    method = make("jrd")
    outputs, labels = outputs_for(method, n=6)
    same = ModelOutput(embedding=outputs.embedding[:1].expand(6, -1), pooled=outputs.pooled[:1].expand(6, -1),
                       feature_map=outputs.feature_map)
    value = method.regulariser(same, labels)
    value.backward()
    assert 0.0 <= value.item() <= 1.0  # rounding leaves distances of ~1e-7, the scale of the data-driven base
    assert torch.isfinite(outputs.pooled.grad).all() and torch.isfinite(outputs.embedding.grad).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_alpha_zero_is_exactly_amsoftmax(name):
    amsoftmax = make("amsoftmax")
    method = make(name, alpha=0.0)
    method.load_state_dict(amsoftmax.state_dict())
    outputs, labels = outputs_for(method)
    assert torch.equal(method.loss(outputs, labels), amsoftmax.loss(outputs, labels))
    weighted = make(name, alpha=0.5)
    weighted.load_state_dict(amsoftmax.state_dict())
    expected = amsoftmax.loss(outputs, labels) + 0.5 * weighted.regulariser(outputs, labels)
    assert torch.allclose(weighted.loss(outputs, labels), expected)


# ---------------------------------------------------------------- declarations

def test_alpha_default_depends_on_the_kernel_unless_given():
    for kernel in KERNELS:
        assert make("jrd", kernel=kernel).config["alpha"] == DEFAULT_ALPHA[kernel]
    assert DEFAULT_ALPHA == {"gaussian": 1.0, "laplace": 1.0, "polynomial": 1e-3, "mgf": 1e-3}
    assert make("jrd", kernel="mgf", alpha=0.2).config["alpha"] == 0.2
    assert make("jrd").config == {"scale": 20.0, "margin": 0.1, "alpha": 1.0, "kernel": "gaussian", "sigma": 1.0,
                                  "mul": 2.0, "bandwidths": None, "degree": 2}


def test_bad_kernel_or_bandwidths_fail_with_the_valid_choices():
    with pytest.raises(ValueError, match="valid: gaussian, laplace, polynomial, mgf"):
        make("jrd", kernel="cauchy")
    with pytest.raises(ValueError, match="3 kernel"):
        make("jrd", bandwidths=(1.0,))
    with pytest.raises(ValueError, match="explicit bandwidths"):
        make("jrd", bandwidths=((1.0, 2.0), None, None))
    assert make("jrd_c", bandwidths=(0.5,)).kernels[0].bandwidth == 0.5


def test_declarations_and_paper_recipe():
    for name in VARIANTS:
        cls = type(make(name))
        assert cls.taps == ("embedding", "pooled") and cls.sampler == "random" and cls.paper_recipe.name == "jrd"
        assert cls.lr_multiplier == 1.0
        for pname, param in cls.hparams.items():
            assert param.space is None or param.space.contains(param.default), (name, pname)
    recipe = find_recipe("jrd")
    assert (recipe.batch_size, recipe.sampler, recipe.optimizer, recipe.adam_eps, recipe.weight_decay) == \
        (100, "random", "adam", 0.01, 1e-4)
    assert (recipe.lr_backbone, recipe.lr_head, recipe.lr_method) == (1e-4, 1e-4, 1e-2)
    assert (recipe.epochs, recipe.lr_milestones, recipe.lr_decay_gamma, recipe.freeze_bn) == (50, (19, 39), 0.1, True)
    assert (recipe.augmentation, recipe.image_size, recipe.resize_size) == ("rrc_flip", 224, 256)


# ---------------------------------------------------------------- it trains

@pytest.mark.parametrize("name", VARIANTS)
def test_loss_decreases_when_training_on_fixed_data(name, loss_before_and_after_training):
    first, last = loss_before_and_after_training(name)
    assert math.isfinite(first) and first > 0
    assert last < 0.7 * first, f"{name}: loss {first:.4f} -> {last:.4f}"


@pytest.mark.parametrize("norm", [10.0, 50.0])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_trains_a_few_steps_with_finite_loss_at_realistic_feature_norms(kernel, norm):
    """Post-ReLU pooled features of norm 10-50 (a ResNet/BN-Inception's global average pool on real images), 2048-d,
    a 64-d embedding head, 8 classes × 4 samples: 5 Adam steps of the full JRD loss (its kernel's default α) stay
    finite, and so do the parameters. The unscaled MGF exp(⟨x, x'⟩) overflowed at the first step (⟨x, x'⟩ > 88)."""
    torch.manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)
    images = torch.randn(len(labels), 256) + torch.randn(8, 256)[labels]
    features = nn.Sequential(nn.Linear(256, 2048), nn.ReLU())
    with torch.no_grad():  # scale the layer so that the pooled features have the norm asked for
        features[0].weight.mul_(norm / features(images).norm(dim=1).mean())
    head = nn.Linear(2048, 64)
    method = create_method("jrd", num_classes=8, embedding_dim=64, feature_dim=2048, kernel=kernel)
    optimizer = torch.optim.Adam([*features.parameters(), *head.parameters(), *method.parameters()], lr=1e-3)
    losses, norms = [], []
    for _ in range(5):
        pooled = features(images)
        norms.append(pooled.norm(dim=1).mean().item())
        outputs = ModelOutput(embedding=nn.functional.normalize(head(pooled), dim=1), pooled=pooled,
                              feature_map=pooled[:, :, None, None])
        loss = method.loss(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert norms[0] == pytest.approx(norm, rel=0.05) and min(norms) > 0.8 * norm
    assert all(math.isfinite(v) for v in losses), (kernel, losses)
    assert all(torch.isfinite(p).all() for p in [*features.parameters(), *head.parameters(), *method.parameters()])
