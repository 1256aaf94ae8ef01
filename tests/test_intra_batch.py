"""Intra-batch connections: declarations and recipe, the MPN's attention over the batch, inference
without the MPN, the label-smoothed cross-entropy with temperature, training."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.engine.evaluate import embed
from harness.plugins.method import METHODS, create_method, get_method_class
from harness.plugins.models import EmbeddingModel, create_backbone
from harness.plugins.method import find_recipe
from methods.intra_batch import smoothed_cross_entropy


def tiny_model(embedding_dim: int = 16) -> EmbeddingModel:
    cls = get_method_class("intra_batch")
    return EmbeddingModel(create_backbone("small_cnn", in_chans=1), embedding_dim,
                          normalize=cls.normalize_embedding, pooling=cls.paper_recipe.pooling)


def image_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    prototypes = torch.randn(4, 1, 16, 16, generator=g)
    return prototypes[labels] + 0.5 * torch.randn(16, 1, 16, 16, generator=g), labels


def test_declarations_dataset_defaults_and_recipe():
    cls = METHODS.get("intra_batch")
    assert (cls.pooling, cls.normalize_embedding, cls.sampler, cls.paper_recipe.name) == (None, True, "m_per_class",
                                                                                   "intra_batch")
    assert cls.dataset_defaults("cub") == cls.dataset_defaults("omniglot") == {}
    assert cls.dataset_defaults("cars") == {"num_layers": 2, "num_heads": 8, "temperature": 1 / 9,
                                            "concat_layers": True}
    assert cls.dataset_defaults("sop")["num_heads"] == 8 and cls.dataset_defaults("inshop")["num_heads"] == 4
    method = create_method("intra_batch", num_classes=5, embedding_dim=16, feature_dim=32)
    assert (method.config["num_layers"], method.config["num_heads"], method.config["temperature"]) == (1, 2, 0.2)
    recipe = find_recipe("intra_batch")
    assert (recipe.optimizer, recipe.batch_size, recipe.samples_per_class, recipe.epochs) == ("radam", 54, 9, 70)
    assert recipe.lr_backbone == recipe.lr_head == pytest.approx(1.5637e-4, rel=1e-4)
    (group,) = method.param_groups(recipe)  # one learning rate, as in the code
    assert group["lr"] == pytest.approx(recipe.lr_backbone)
    assert recipe.lr_milestones == (30,)  # lr/10 from 1-based epoch 31 to the end (trainer.py:151-168)
    assert (find_recipe("intra_batch_cars").batch_size, find_recipe("intra_batch_sop").batch_size,
            find_recipe("intra_batch_inshop").batch_size) == (70, 90, 56)
    for name in ("intra_batch", "intra_batch_cars", "intra_batch_sop", "intra_batch_inshop"):
        r = find_recipe(name)  # the code's GL_orig_RE: 227 px crops, RandomErasing; global max pooling
        assert (r.image_size, r.resize_size, r.augmentation, r.pooling) == (227, 256, "rrc_flip_erase", "max")
    with pytest.raises(ValueError, match="does not divide"):
        create_method("intra_batch", num_classes=5, embedding_dim=18, feature_dim=32, num_heads=4)


def test_mpn_attends_over_the_whole_batch():
    torch.manual_seed(0)
    cars = {**get_method_class("intra_batch").dataset_defaults("cars"), "num_heads": 4}
    method = create_method("intra_batch", num_classes=5, embedding_dim=16, feature_dim=32, **cars)
    method.eval()
    h = F.normalize(torch.randn(10, 16), dim=-1)
    layers = method.mpn.layers
    assert len(layers) == 2 and method.mpn.neck.num_features == 32
    weights = layers[0].attention(method.mpn.input(h))
    assert weights.shape == (4, 10, 10)  # heads × batch × batch
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 10))
    assert (weights > 0).all()  # fully connected: every sample receives from every sample
    logits = method.mpn(h)
    assert logits.shape == (10, 5)
    moved = h.clone()
    moved[0] = F.normalize(torch.randn(16), dim=-1)
    assert not torch.allclose(method.mpn(moved)[1:], logits[1:])  # a message from sample 0 reaches the others


def test_inference_ignores_the_mpn():
    torch.manual_seed(0)
    model, (images, labels) = tiny_model(), image_batch()
    method = create_method("intra_batch", num_classes=4, embedding_dim=16, feature_dim=256)
    assert not set(map(id, method.parameters())) & set(map(id, model.parameters()))
    before, _ = embed(model, [(images, labels)], "cpu")
    with torch.no_grad():
        for p in method.parameters():
            p.normal_()
    after, _ = embed(model, [(images, labels)], "cpu")
    assert torch.equal(before, after)
    torch.testing.assert_close(after.norm(dim=1), torch.ones(16))


def test_smoothed_cross_entropy_with_temperature_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 5, generator=g), torch.tensor([0, 1, 2, 3, 4, 0])
    t, eps = 0.2, 0.1
    targets = (1 - eps) * F.one_hot(labels, 5) + eps / 5
    expected = -(targets * torch.log_softmax(logits / t, dim=1)).mean(0).sum()  # the code's CrossEntropyLabelSmooth
    torch.testing.assert_close(smoothed_cross_entropy(logits, labels, t, eps), expected)


def test_loss_is_backbone_plus_mpn_cross_entropy():
    torch.manual_seed(0)
    method = create_method("intra_batch", num_classes=4, embedding_dim=16, feature_dim=32, mpn_weight=0.5)
    method.eval()
    features, labels = 3 * torch.randn(8, 16), torch.arange(4).repeat(2)
    backbone = smoothed_cross_entropy(method.classifier(features), labels, 0.2, 0.1)
    mpn = smoothed_cross_entropy(method.mpn(F.normalize(features, dim=-1)), labels, 0.2, 0.1)
    torch.testing.assert_close(method.features_loss(features, labels), backbone + 0.5 * mpn)
    # the backbone's classifier reads the unnormalised embedding, the MPN the normalised one
    model, (images, image_labels) = tiny_model(), image_batch()
    model.eval()
    method = create_method("intra_batch", num_classes=4, embedding_dim=16, feature_dim=256).eval()
    unnormalised = model.head(model(images).pooled)
    torch.testing.assert_close(F.normalize(unnormalised, dim=-1), model(images).embedding)
    torch.testing.assert_close(method.training_loss(model, images, image_labels),
                               method.features_loss(unnormalised, image_labels))


def test_loss_decreases_when_training_on_fixed_data():
    torch.manual_seed(0)
    model, (images, labels) = tiny_model(), image_batch()
    method = create_method("intra_batch", num_classes=4, embedding_dim=16, feature_dim=256)
    optimizer = torch.optim.RAdam([*model.parameters(), *method.parameters()], lr=5e-3)

    def loss_now() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks every time
        return method.training_loss(model, images, labels)

    with torch.no_grad():
        first = loss_now().item()
    for _ in range(12):
        optimizer.zero_grad()
        method.training_loss(model, images, labels).backward()
        optimizer.step()
    with torch.no_grad():
        last = loss_now().item()
    assert last < 0.7 * first, f"loss {first:.4f} -> {last:.4f}"
