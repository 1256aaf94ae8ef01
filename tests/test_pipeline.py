"""The data pipeline: the decoded cache never changes a result, the label lookup equals the dict,
the torchvision decoder reads what PIL reads, the loss check names the first bad step."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.core.recipe import RECIPES
from harness.engine.train import Trainer, TrialFailed, label_lookup, map_labels
from harness.core.store import TrialStore
from harness.engine.runner import Attempt, run_trial
from harness.experiment import ExperimentConfig
from harness.plugins.data import ImageDataset, Subset, create_dataset, images
from harness.plugins.transforms import TensorPipeline, build_transform

OMNIGLOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
needs_omniglot = pytest.mark.skipif(not OMNIGLOT.is_dir(), reason="needs ../shared/data/omniglot")


def omniglot_sample(n: int = 24) -> Subset:
    subset = create_dataset("omniglot", OMNIGLOT).trainval
    return Subset(list(subset.images[:n]), subset.labels[:n])


@needs_omniglot
@pytest.mark.parametrize("augmentation", ["none", "flip", "rrc_flip"])
def test_cached_items_equal_uncached(augmentation: str) -> None:
    images.DECODED_CACHES.clear()
    recipe = RECIPES.get("cpu").override(augmentation=augmentation)
    transform = build_transform(recipe, 1, None, train=True)
    subset = omniglot_sample()
    cached, uncached = (ImageDataset(subset, transform, channels=1, cache_bytes=b) for b in (None, 0))
    cached.preload()
    assert cached._cache is not None and all(a is not None for a in cached._cache.arrays)
    for epoch in range(2):  # the second reads from the cache
        for i in range(len(subset)):
            torch.manual_seed(1000 * epoch + i)
            a, label_a = cached[i]
            torch.manual_seed(1000 * epoch + i)
            b, label_b = uncached[i]
            assert torch.equal(a, b) and label_a == label_b
    cached[0][0].add_(1)  # a caller's in-place change does not reach the cache
    torch.manual_seed(0)
    a = cached[0][0]
    torch.manual_seed(0)
    assert torch.equal(a, uncached[0][0])


def test_cache_bounded_by_budget() -> None:
    images.DECODED_CACHES.clear()
    subset = Subset(np.zeros((10, 8, 8), dtype=np.uint8), np.arange(10))
    transform = build_transform(RECIPES.get("digits"), 1, None, train=False)  # Resize(16): 16x16 float tensors
    assert ImageDataset(subset, transform, channels=1, cache_bytes=10 * 16 * 16 * 4)._decoded_cache(0) is not None
    images.DECODED_CACHES.clear()
    small = ImageDataset(subset, transform, channels=1, cache_bytes=10 * 16 * 16)  # only the uint8 images fit
    assert small._decoded_cache(0) is not None and small.prepare_steps and small.augment is not None
    images.DECODED_CACHES.clear()
    assert ImageDataset(subset, transform, channels=1, cache_bytes=100)._decoded_cache(0) is None


def test_trial_metrics_identical_with_and_without_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trial = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0], recipe_overrides={"epochs": 1},
                             device="cpu", save_model=False, results_dir=str(tmp_path)).trials()[0]
    store, attempt = TrialStore(tmp_path), Attempt(progress=False)
    images.DECODED_CACHES.clear()
    cached = run_trial(trial.spec, trial.placement, store, attempt)
    monkeypatch.setattr(images, "DECODED_CACHES", images._CacheRegistry(images.DECODED_CACHE_BYTES))
    images.limit_decoded_cache(0)  # this process keeps no decoded image
    uncached = run_trial(trial.spec, trial.placement, store, attempt)
    assert not images.DECODED_CACHES.caches
    assert cached.metrics == uncached.metrics
    assert [h["loss"] for h in cached.history] == [h["loss"] for h in uncached.history]


def test_a_process_budget_bounds_later_datasets_and_drops_the_oldest_caches(monkeypatch) -> None:
    monkeypatch.setattr(images, "DECODED_CACHES", images._CacheRegistry(images.DECODED_CACHE_BYTES))
    transform = build_transform(RECIPES.get("digits"), 1, None, train=False)  # 16x16 float tensors: 1 KiB each
    first, second = (ImageDataset(Subset(np.full((10, 8, 8), v, dtype=np.uint8), np.arange(10)), transform,
                                  channels=1) for v in (0, 1))
    first.preload()
    second.preload()
    assert len(images.DECODED_CACHES.caches) == 2 and first.cache_bytes == images.DECODED_CACHE_BYTES
    images.limit_decoded_cache(15 * 1024)  # room for one of the two (10 KiB each)
    assert list(images.DECODED_CACHES.caches.values()) == [second._cache]
    third = ImageDataset(Subset(np.full((20, 8, 8), 2, dtype=np.uint8), np.arange(20)), transform, channels=1)
    assert third.cache_bytes == 15 * 1024
    assert third._decoded_cache(0) is not None and third.augment is not None  # 20 KiB of tensors do not fit; uint8 do
    with pytest.raises(ValueError, match=">= 0"):
        images.limit_decoded_cache(-1)


def test_label_lookup_equals_dict() -> None:
    label_map = {int(c): i for i, c in enumerate([3, 7, 8, 12, 40])}
    table = label_lookup(label_map)
    ids = torch.tensor([40, 3, 8, 8, 12, 7])
    assert map_labels(ids, table).tolist() == [label_map[int(y)] for y in ids]
    for unknown in ([5], [41], [-1]):
        with pytest.raises(KeyError, match=str(unknown[0])):
            map_labels(torch.tensor(unknown), table)


@needs_omniglot
def test_torchvision_decoder_reads_pil_pixels() -> None:
    recipe = RECIPES.get("cpu").override(decoder="torchvision", image_size=105, resize_size=105)
    transform = build_transform(recipe, 1, None, train=False)
    assert isinstance(transform, TensorPipeline)
    subset = omniglot_sample(4)
    pil = ImageDataset(subset, build_transform(recipe.override(decoder="pil"), 1, None, train=False), channels=1)
    tv = ImageDataset(subset, transform, channels=1)
    for i in range(len(subset)):
        assert torch.equal(pil[i][0], tv[i][0])  # lossless PNG at its own size: the same pixels


class _ConstantLoss(nn.Module):
    """A method stand-in whose loss is finite until ``bad_step``."""

    name = "constant"

    def __init__(self, bad_step: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.bad_step, self.calls = bad_step, 0

    def training_loss(self, model, images, labels):
        self.calls += 1
        return self.w * (float("nan") if self.calls >= self.bad_step else 1.0) + 0 * model(images).embedding.sum()

    def param_groups(self, recipe):
        return [{"params": [self.w], "lr": recipe.lr_method, "name": "method"}]


def test_non_finite_loss_names_its_step() -> None:
    from harness.plugins.models import EmbeddingModel, create_backbone

    model = EmbeddingModel(create_backbone("small_cnn", in_chans=1), embedding_dim=8)
    method = _ConstantLoss(bad_step=40)
    trainer = Trainer(model, method, RECIPES.get("cpu").override(epochs=1), torch.device("cpu"))
    loader = [(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]))] * 50
    with pytest.raises(TrialFailed, match="epoch 1, step 40"):
        trainer.train_epoch(loader, {0: 0, 1: 1}, progress=False)
