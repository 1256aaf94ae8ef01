"""Image transforms from a recipe and the backbone's pretrained config (mean, std, input space).

Train: ``rrc_flip`` = RandomResizedCrop(image_size) + horizontal flip (the DML standard),
``rrc_flip_erase`` = the same then RandomErasing on the normalised tensor (intra-batch's
``GL_orig_RE``: p = 0.5, area 2–40%, aspect 0.3–3.3, filled with the constants 0.4914, 0.4822,
0.4465 per channel; torchvision draws the aspect ratio log-uniformly, the code's copy of Zhong et
al.'s uniformly), ``flip`` = Resize + CenterCrop + flip, ``none`` = Resize + CenterCrop.
Eval: Resize(resize_size) + CenterCrop(image_size). Backbones converted from Caffe (BN-Inception)
take BGR in 0–255: their pretrained config says ``input_space="BGR"`` and ``input_range=(0, 255)``,
and we honour it. The recipe's ``decoder``: ``pil`` (PIL images, ``transforms``) or ``torchvision``
(uint8 tensors from ``torchvision.io``, the same steps in ``transforms.v2``: 1.7× the images per
second per loader worker on CUB-sized JPEGs, ``benchmarks/decode.py``).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torchvision import transforms as T
from torchvision.transforms import v2

from harness.core.recipe import Recipe

#: RandomErasing's fill of intra-batch's ``GL_orig_RE`` (Zhong et al.'s CIFAR means), one per channel
ERASE_VALUE = (0.4914, 0.4822, 0.4465)


class TensorPipeline(v2.Compose):
    """A transform of uint8 C×H×W tensors decoded by ``torchvision.io`` (``decoder="torchvision"``):
    :class:`~harness.plugins.data.ImageDataset` reads its ``decoder`` and hands it tensors, not PIL images."""

    decoder = "torchvision"


def _to_input_space(cfg: dict[str, Any], channels: int, tensor_input: bool = False) -> list[Callable]:
    mean = tuple(cfg.get("mean", (0.5,) * channels))[:channels]
    std = tuple(cfg.get("std", (0.5,) * channels))[:channels]
    steps: list[Callable] = [v2.ToDtype(torch.float32, scale=True) if tensor_input else T.ToTensor()]
    if tuple(cfg.get("input_range", (0, 1)))[1] == 255:
        steps.append(T.Lambda(lambda x: x * 255.0))
    if cfg.get("input_space", "RGB") == "BGR" and channels == 3:
        steps.append(T.Lambda(lambda x: x.flip(0)))
    steps.append(T.Normalize(mean, std))
    return steps


def build_transform(recipe: Recipe, channels: int, pretrained_cfg: dict[str, Any] | None,
                    train: bool) -> Callable[[Any], torch.Tensor]:
    """The PIL → tensor transform of a training (``train=True``) or evaluation pass; with the recipe's
    ``decoder="torchvision"``, a :class:`TensorPipeline` of the same steps on uint8 tensors, in
    torchvision's ``transforms.v2`` (which resize uint8 tensors with antialiasing directly, close to
    but not bit-identical with PIL's resampling)."""
    cfg = dict(pretrained_cfg or {})
    size, resize = recipe.image_size, recipe.resize_size
    tensor_input = recipe.decoder == "torchvision"
    ops = v2 if tensor_input else T
    if train and recipe.augmentation in ("rrc_flip", "rrc_flip_erase"):
        geometry = [ops.RandomResizedCrop(size), ops.RandomHorizontalFlip()]
    else:
        geometry = [ops.Resize(resize), ops.CenterCrop(size)]
        if train and recipe.augmentation == "flip":
            geometry.append(ops.RandomHorizontalFlip())
    erase = []
    if train and recipe.augmentation == "rrc_flip_erase":
        erase = [ops.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=list(ERASE_VALUE[:channels]))]
    pipeline = TensorPipeline if tensor_input else T.Compose
    return pipeline(geometry + _to_input_space(cfg, channels, tensor_input) + erase)
