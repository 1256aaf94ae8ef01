"""Every registered method, as timm tests every model: built through the same code path as a trial, one
real :class:`~harness.engine.train.Trainer` step on a small grayscale batch leaves every parameter finite,
and the model's outputs have the shapes the method declares it reads."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from harness.core.spec import TrialSpec
from harness.engine.train import Trainer, seed_everything
from harness.engine.runner import build_model
from harness.plugins.method import METHODS, find_recipe

EMBEDDING_DIM = 64  # divisible by every method's attention heads
CLASSES, PER_CLASS, SIZE = 8, 4, 28


def batch() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    prototypes = torch.rand(CLASSES, 1, SIZE, SIZE, generator=g)
    images = (prototypes[labels] + 0.2 * torch.rand(len(labels), 1, SIZE, SIZE, generator=g)).clamp(0, 1)
    return TensorDataset(images, labels)


@pytest.mark.parametrize("name", METHODS.names())
def test_one_trainer_step_keeps_everything_finite_and_outputs_have_the_declared_shapes(name):
    seed_everything(0)
    cls = METHODS.get(name)
    recipe = find_recipe("cpu").override(batch_size=CLASSES * PER_CLASS, samples_per_class=PER_CLASS,
                                          image_size=SIZE, resize_size=SIZE)
    config = TrialSpec(method=name, dataset="digits", seed=0, recipe=recipe.to_dict(),
                       backbone=cls.backbone or "small_cnn", embedding_dim=EMBEDDING_DIM if cls.embedding_head else 0,
                       method_settings=cls.settings())
    model, _ = build_model(config, channels=1)
    method = cls(num_classes=CLASSES, embedding_dim=model.embedding_dim, feature_dim=model.feature_dim)
    images, labels = batch().tensors

    outputs = model(images)
    assert outputs["embedding"].shape == (len(labels), model.embedding_dim)
    if cls.normalize_embedding:
        assert torch.allclose(outputs["embedding"].norm(dim=1), torch.ones(len(labels)), atol=1e-4)
    for tap in cls.taps:
        assert outputs[tap].shape[0] == len(labels) and torch.isfinite(outputs[tap]).all(), tap
    if "pooled" in cls.taps:
        assert outputs["pooled"].shape == (len(labels), model.feature_dim)

    if not cls.trains:
        return
    trainer = Trainer(model, method, recipe, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    metrics = trainer.train_epoch(DataLoader(batch(), batch_size=len(labels)), {c: c for c in range(CLASSES)},
                                  progress=False)
    assert math.isfinite(metrics["loss"]) and metrics["epoch"] == 1
    parameters = list(model.named_parameters()) + [(f"method.{n}", p) for n, p in method.named_parameters()]
    assert all(torch.isfinite(p).all() for _, p in parameters), [n for n, p in parameters if not torch.isfinite(p).all()]
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters()), "the step changed nothing"
