"""The input pipeline a GPU runs, run on the CPU: uint8 batches normalised on the device, and JPEGs
decoded, cropped and flipped there (``decoder="nvjpeg"``) give the images the loader workers would have
made; without CUDA nvjpeg falls back to torchvision and says so, in a warning and in the record."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.core.recipe import RECIPES
from harness.engine.train import build_train_loader, seed_everything
from harness.core.store import TrialStore
from harness.engine.runner import Attempt, run_trial
from harness.experiment import ExperimentConfig
from harness.plugins.data import ImageDataset, Subset
from harness.plugins.transforms import DeviceLoader, build_input

CPU = torch.device("cpu")
#: a BN-Inception-like input (BGR, 0-255), so that every step of the input space is exercised
CAFFE_CFG = {"mean": (104.0, 117.0, 128.0), "std": (1.0, 1.0, 1.0), "input_space": "BGR", "input_range": (0, 255)}


def write_jpegs(folder: Path, n: int) -> list[str]:
    """``n`` smooth RGB JPEGs of different sizes, and one PNG (not a JPEG: decoded on the CPU)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        h, w = 60 + 7 * i, 80 - 3 * i
        small = rng.integers(0, 256, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        path = folder / (f"{i}.png" if i == n - 1 else f"{i}.jpg")
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


@pytest.fixture
def subset(tmp_path: Path) -> Subset:
    return Subset(write_jpegs(tmp_path, 6), np.arange(6) % 3)


def images_of(pipeline, subset: Subset, seed: int = 0) -> torch.Tensor:
    """Every image of ``subset`` through ``pipeline`` in one batch, in order, torch seeded with ``seed``."""
    dataset = ImageDataset(subset, pipeline.host, channels=3, cache_bytes=0, decoder=pipeline.decoder)
    torch.manual_seed(seed)
    items = [dataset[i][0] for i in range(len(dataset))]
    batch = dataset.collate_fn([(x, 0) for x in items])[0] if dataset.collate_fn else torch.stack(items)
    return pipeline.batch(batch, CPU) if pipeline.batch is not None else batch


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("decoder", ["pil", "torchvision", "nvjpeg"])
def test_the_device_path_gives_the_images_of_the_host_path(subset: Subset, decoder: str, train: bool) -> None:
    """uint8 to the device and normalised there (pil, torchvision), or decoded, cropped and flipped
    there (nvjpeg): the images the loader workers make on the CPU, within float rounding; the crops
    and flips draw from torch's generator in the same order."""
    recipe = RECIPES.get("default").override(decoder=decoder, image_size=48, resize_size=56)
    reference_recipe = recipe.override(decoder="torchvision" if decoder == "nvjpeg" else decoder)
    for seed in (0, 1):
        host = images_of(build_input(reference_recipe, 3, CAFFE_CFG, train, CPU, split=False), subset, seed)
        split = build_input(recipe, 3, CAFFE_CFG, train, CPU, split=True)
        device = images_of(split, subset, seed)
        assert split.batch is not None and device.dtype == torch.float32 and device.shape == host.shape == (6, 3, 48, 48)
        torch.testing.assert_close(device, host, atol=1e-3, rtol=0)
    assert split.describe(3) == {"decoder": decoder, "loader_workers": 3, "normalised_in": "device"}
    if decoder != "nvjpeg":
        assert ImageDataset(subset, split.host, channels=3)[0][0].dtype == torch.uint8  # workers hand over uint8


def test_nvjpeg_loads_encoded_files_through_the_train_loader(subset: Subset) -> None:
    """The loader workers read the files, collate them as lists, and the device pipeline makes the batch."""
    recipe = RECIPES.get("default").override(decoder="nvjpeg", image_size=32, batch_size=4, samples_per_class=2)
    pipeline = build_input(recipe, 3, None, True, CPU, split=True)
    dataset = ImageDataset(subset, pipeline.host, channels=3, decoder=pipeline.decoder)
    assert dataset[0][0].dim() == 1 and dataset[0][0][:2].tolist() == [0xFF, 0xD8]   # the file's bytes
    loader = build_train_loader(dataset, subset.labels, recipe, "m_per_class", seed_everything(0), num_workers=1)
    batches = list(DeviceLoader(loader, pipeline, CPU))
    assert len(batches) == 1 and batches[0][0].shape == (4, 3, 32, 32) and batches[0][1].shape == (4,)
    assert torch.isfinite(batches[0][0]).all() and batches[0][0].std() > 0.1


def test_nvjpeg_without_cuda_falls_back_to_torchvision_and_says_so() -> None:
    recipe = RECIPES.get("digits").override(decoder="nvjpeg")
    with pytest.warns(RuntimeWarning, match="nvjpeg asked for, no CUDA device"):
        pipeline = build_input(recipe, 1, None, True, CPU)
    assert pipeline.decoder == "torchvision" and pipeline.batch is None
    assert pipeline.describe(0)["note"].startswith("nvjpeg asked for, no CUDA device (cpu)")


def test_the_record_says_how_images_were_loaded_and_that_no_gpu_was_sampled(tmp_path: Path) -> None:
    trial = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0], recipe_overrides={"epochs": 1, "decoder": "nvjpeg"},
                             results_dir=str(tmp_path), device="cpu").trials()[0]
    with pytest.warns(RuntimeWarning, match="nvjpeg asked for"):
        record = run_trial(trial.spec, trial.placement, TrialStore(tmp_path), Attempt(progress=False))
    assert record.ok and record.loading["decoder"] == "torchvision" and record.loading["loader_workers"] == 0
    assert record.loading["normalised_in"] == "loader workers" and "no CUDA device" in record.loading["note"]
    assert record.gpu == {"available": False, "reason": "not sampled"}
    assert "gpu_util_pct" not in record.history[0]
