"""Every registered method: declarations are consistent, and its loss trains (decreases) on fixed data;
SoftTriple's regulariser; the recipe's architecture and training fields (pooling, head init, frozen
BatchNorm affine parameters, gradient clipping, RandomErasing)."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from harness.core.recipe import RECIPES, Recipe
from harness.core.registry import UnknownNameError
from harness.engine.train import Trainer, batchnorms
from harness.engine.runner import build_model
from harness.plugins.method import METHODS, Method, create_method, register_method
from harness.plugins.models import EmbeddingModel, ModelOutput, create_backbone
from harness.plugins.transforms import build_transform

BASELINES = ["triplet", "contrastive", "ms", "softtriple", "amsoftmax"]


def test_baselines_are_registered_with_paper_defaults():
    for name in BASELINES + ["pixels"]:
        assert name in METHODS.names()
    ms = create_method("ms", num_classes=5, embedding_dim=16, feature_dim=32)
    assert ms.config == {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1}
    am = create_method("amsoftmax", num_classes=5, embedding_dim=16, feature_dim=32, margin=0.35)
    assert am.config == {"scale": 20.0, "margin": 0.35}
    assert METHODS.get("triplet").sampler == "m_per_class"
    assert METHODS.get("amsoftmax").sampler == "random"


def test_every_declared_default_lies_in_its_search_space():
    for name in METHODS.names():
        for pname, param in METHODS.get(name).hparams.items():
            if param.space is not None:
                assert param.space.contains(param.default), f"{name}.{pname}"


def test_unknown_method_and_hparam_list_the_valid_names():
    with pytest.raises(UnknownNameError, match="valid methods: .*amsoftmax.*triplet"):
        create_method("nope", num_classes=3, embedding_dim=4, feature_dim=4)
    with pytest.raises(ValueError, match="valid: alpha, base, beta, epsilon"):
        create_method("ms", num_classes=3, embedding_dim=4, feature_dim=4, gamma=1.0)


def test_register_method_rejects_non_methods_and_duplicates():
    with pytest.raises(TypeError):
        register_method("not_a_method")(object)

    @register_method("test-dummy")
    class Dummy(Method):
        pass

    try:
        assert METHODS.get("test-dummy") is Dummy
        with pytest.raises(ValueError, match="registered twice"):
            register_method("test-dummy")(type("Other", (Method,), {}))
        with pytest.raises(ValueError, match="not a plain folder name"):  # method names become folder names
            register_method("../escape")(type("Escape", (Method,), {}))
    finally:
        METHODS._entries.pop("test-dummy", None)


def test_proxy_methods_have_trainable_parameters_in_their_own_group():
    am = create_method("amsoftmax", num_classes=7, embedding_dim=16, feature_dim=32)
    st = create_method("softtriple", num_classes=7, embedding_dim=16, feature_dim=32)
    assert any(p.requires_grad for p in am.parameters()) and any(p.requires_grad for p in st.parameters())
    ms = create_method("ms", num_classes=7, embedding_dim=16, feature_dim=32)
    assert not any(p.requires_grad for p in ms.parameters())
    (group,) = am.param_groups(Recipe("t", lr_method=0.01, weight_decay=0.0))
    assert group["lr"] == pytest.approx(0.01) and sum(p.numel() for p in group["params"]) == 7 * 16


@pytest.mark.parametrize("name", BASELINES)
def test_loss_decreases_when_training_on_fixed_data(name, loss_before_and_after_training):
    first, last = loss_before_and_after_training(name)
    assert math.isfinite(first) and first > 0
    assert last < 0.7 * first, f"{name}: loss {first:.4f} -> {last:.4f}"


def test_softtriple_adds_the_codes_centre_regulariser():
    """τ·Σ_{same class, k<k'} √(2 − 2 cos) / (C·K·(K − 1)) on top of τ = 0, as idstcv/SoftTriple."""
    torch.manual_seed(0)
    with_tau = create_method("softtriple", num_classes=3, embedding_dim=8, feature_dim=8, centers_per_class=4)
    without = create_method("softtriple", num_classes=3, embedding_dim=8, feature_dim=8, centers_per_class=4, tau=0.0)
    without.load_state_dict(with_tau.state_dict())
    assert with_tau.config["tau"] == 0.2
    x = F.normalize(torch.randn(6, 8), dim=-1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    out = ModelOutput(embedding=x, pooled=x, feature_map=x[:, :, None, None])
    centres = F.normalize(with_tau.criterion.fc, dim=0).T.reshape(3, 4, 8)
    reg = sum(torch.sqrt(2 - 2 * centres[c, k] @ centres[c, j]) for c in range(3) for k in range(4)
              for j in range(k + 1, 4)) / (3 * 4 * 3)
    torch.testing.assert_close(with_tau.loss(out, y), without.loss(out, y) + 0.2 * reg, rtol=1e-5, atol=1e-6)


def tiny_bn_model() -> EmbeddingModel:
    torch.manual_seed(0)
    return EmbeddingModel(create_backbone("small_cnn", in_chans=1), embedding_dim=8)


def one_epoch(recipe: Recipe) -> tuple[EmbeddingModel, EmbeddingModel]:
    """(the model before, the model after) one epoch of two batches with the contrastive loss."""
    model = tiny_bn_model()
    before = copy.deepcopy(model)
    method = create_method("contrastive", num_classes=2, embedding_dim=8, feature_dim=model.feature_dim)
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(8, 1, 16, 16, generator=g), torch.tensor([0, 1] * 4))
    Trainer(model, method, recipe, torch.device("cpu")).train_epoch([batch] * 2, {0: 0, 1: 1}, progress=False)
    return before, model


@pytest.mark.parametrize("freeze_affine", [False, True])
def test_freeze_bn_affine_keeps_gamma_and_beta_after_warmup(freeze_affine):
    recipe = RECIPES.get("cpu").override(freeze_bn=True, freeze_bn_affine=freeze_affine, optimizer="adam",
                                        weight_decay=0.0)
    before, after = one_epoch(recipe)
    bn_before, bn_after = batchnorms(before.backbone), batchnorms(after.backbone)
    assert bn_after
    for b, a in zip(bn_before, bn_after):
        torch.testing.assert_close(a.running_mean, b.running_mean)  # statistics frozen either way
        assert torch.equal(a.weight, b.weight) == freeze_affine and torch.equal(a.bias, b.bias) == freeze_affine
    convs = [(b, a) for b, a in zip(before.backbone.modules(), after.backbone.modules()) if isinstance(a, nn.Conv2d)]
    assert all(not torch.equal(b.weight, a.weight) for b, a in convs)


def test_gradient_value_clipping_bounds_every_entry():
    model = tiny_bn_model()
    method = create_method("contrastive", num_classes=2, embedding_dim=8, feature_dim=model.feature_dim)
    recipe = RECIPES.get("cpu").override(grad_clip_value=1e-4)
    trainer = Trainer(model, method, recipe, torch.device("cpu"))
    seen = []
    trainer.optimizer.register_step_pre_hook(lambda *_: seen.append(
        max(p.grad.abs().max().item() for p in trainer.trainable_parameters if p.grad is not None)))
    g = torch.Generator().manual_seed(0)
    trainer.train_epoch([(torch.randn(8, 1, 16, 16, generator=g), torch.tensor([0, 1] * 4))], {0: 0, 1: 1},
                        progress=False)
    assert seen == [pytest.approx(1e-4)]


@pytest.mark.parametrize("pooling", ["avg", "max", "avgmax"])
def test_pooling_and_head_init_come_from_the_recipe(pooling):
    recipe = RECIPES.get("cpu").override(pooling=pooling, head_init="kaiming_normal_fan_out")
    config = SimpleNamespace(method="ms", backbone="small_cnn", pretrained=None, embedding_dim=64, recipe_obj=recipe,
                             method_settings=METHODS.get("ms").settings())
    torch.manual_seed(0)
    model, _ = build_model(config, channels=1)
    fmap = torch.randn(2, model.feature_dim, 3, 3)
    expected = {"avg": fmap.mean((2, 3)), "max": fmap.amax((2, 3)), "avgmax": fmap.mean((2, 3)) + fmap.amax((2, 3))}
    torch.testing.assert_close(model.forward_head(fmap).pooled, expected[pooling])
    assert not model.head.bias.any()  # Kaiming-normal fan-out: N(0, 2/64) weights, zero bias
    assert model.head.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)
    pixels = SimpleNamespace(method="pixels", backbone="pixels", pretrained=None, embedding_dim=0, recipe_obj=recipe,
                             method_settings=METHODS.get("pixels").settings())
    assert build_model(pixels, channels=1)[0].pooling == "flatten"  # a method that forces its own pooling


def test_random_erasing_augmentation():
    recipe = RECIPES.get("default").override(image_size=227, resize_size=256, augmentation="rrc_flip_erase")
    train = build_transform(recipe, 3, None, train=True)
    assert [type(t).__name__ for t in train.transforms][-1] == "RandomErasing"
    erase = train.transforms[-1]
    assert (erase.p, erase.scale, erase.value) == (0.5, (0.02, 0.4), [0.4914, 0.4822, 0.4465])
    image = Image.fromarray(np.full((300, 300, 3), 255, np.uint8))
    torch.manual_seed(0)
    outs = [train(image) for _ in range(40)]
    assert all(o.shape == (3, 227, 227) for o in outs)
    erased = [bool((o[0] == 0.4914).any()) for o in outs]  # white image normalises to 1.0: erased pixels differ
    assert 8 < sum(erased) < 32
    assert build_transform(recipe, 3, None, train=False)(image).shape == (3, 227, 227)
