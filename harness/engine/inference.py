"""A finished trial's model applied to new images (``python -m harness embed``): the model rebuilt from its
record and weights, every image under a folder embedded as the trial's evaluation embeds its test images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from harness.core.store import TrialFolder
from harness.engine.evaluate import embed
from harness.engine.runner import build_model, eval_transform
from harness.engine.tensor_files import load_tensors
from harness.engine.train import resolve_device
from harness.plugins.data import DATASETS, ImageDataset, Subset

#: the image files ``embed`` reads (by suffix, any case)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_files(folder: str | Path) -> list[str]:
    """The images under ``folder`` (recursively, sorted); ``FileNotFoundError`` if there are none."""
    paths = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return paths


def embed_images(trial: TrialFolder, paths: list[str], device: str = "auto") -> np.ndarray:
    """The embeddings (one row per path, in order) of the images ``paths`` by ``trial``'s trained model on
    ``device``, transformed as its evaluation transforms test images; an unreadable image fails naming it."""
    spec = trial.record.spec
    channels = DATASETS.get(spec.dataset).channels
    model, _ = build_model(spec, channels, trial.record.placement.pretrained)
    model.load_state_dict(load_tensors(trial.model_path()))
    subset = Subset(paths, np.zeros(len(paths), dtype=np.int64))
    on = resolve_device(device)
    model.to(on)
    loader = DataLoader(ImageDataset(subset, eval_transform(model, spec.recipe_obj, channels), channels=channels),
                        batch_size=spec.recipe_obj.eval_batch_size)
    embeddings, _ = embed(model, loader, on)
    return embeddings.cpu().numpy()
