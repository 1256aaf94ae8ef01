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
second per loader worker on CUB-sized JPEGs, ``benchmarks/decode.py``) or ``nvjpeg`` (decoded on the
GPU). :func:`build_input` splits a pass between the loader workers and the device: on CUDA the workers
stop at uint8 images and the device normalises (and, for ``nvjpeg``, decodes, crops and flips).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

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
    """uint8 image (PIL or C×H×W tensor, or a B×C×H×W batch of tensors) → the backbone's float input."""
    mean = tuple(cfg.get("mean", (0.5,) * channels))[:channels]
    std = tuple(cfg.get("std", (0.5,) * channels))[:channels]
    steps: list[Callable] = [v2.ToDtype(torch.float32, scale=True) if tensor_input else T.ToTensor()]
    if tuple(cfg.get("input_range", (0, 1)))[1] == 255:
        steps.append(T.Lambda(lambda x: x * 255.0))
    if cfg.get("input_space", "RGB") == "BGR" and channels == 3:
        steps.append(T.Lambda(lambda x: x.flip(-3)))
    steps.append(T.Normalize(mean, std))
    return steps


def _geometry(recipe: Recipe, train: bool, ops: Any) -> list[Callable]:
    """The crop, resize and flip steps of a training or evaluation pass, from ``ops`` (``transforms`` or ``v2``)."""
    size, resize = recipe.image_size, recipe.resize_size
    if train and recipe.augmentation in ("rrc_flip", "rrc_flip_erase"):
        return [ops.RandomResizedCrop(size), ops.RandomHorizontalFlip()]
    geometry = [ops.Resize(resize), ops.CenterCrop(size)]
    if train and recipe.augmentation == "flip":
        geometry.append(ops.RandomHorizontalFlip())
    return geometry


def _erasing(recipe: Recipe, channels: int, train: bool, ops: Any) -> list[Callable]:
    if train and recipe.augmentation == "rrc_flip_erase":
        return [ops.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=list(ERASE_VALUE[:channels]))]
    return []


def build_transform(recipe: Recipe, channels: int, pretrained_cfg: dict[str, Any] | None,
                    train: bool) -> Callable[[Any], torch.Tensor]:
    """The PIL → tensor transform of a training (``train=True``) or evaluation pass; with the recipe's
    ``decoder="torchvision"`` (or ``"nvjpeg"``, whose host-side form this is), a :class:`TensorPipeline`
    of the same steps on uint8 tensors, in torchvision's ``transforms.v2`` (which resize uint8 tensors
    with antialiasing directly, close to but not bit-identical with PIL's resampling)."""
    cfg = dict(pretrained_cfg or {})
    tensor_input = recipe.decoder != "pil"
    ops = v2 if tensor_input else T
    steps = _geometry(recipe, train, ops) + _to_input_space(cfg, channels, tensor_input)
    pipeline = TensorPipeline if tensor_input else T.Compose
    return pipeline(steps + _erasing(recipe, channels, train, ops))


class DeviceBatch:
    """The part of an input pipeline that runs on the device, a batch at a time.

    It takes what the loader's collation made of the host part's output: a B×C×H×W uint8 batch, or
    (``decoder="nvjpeg"``) a list of encoded files (1-D uint8 tensors) and decoded C×H×W images. The
    files are decoded together by ``torchvision.io.decode_jpeg`` on the device (nvJPEG on CUDA; a
    file that is not a JPEG, or an image already decoded, is decoded on the CPU and moved), each image
    then goes through ``geometry`` (the same ``transforms.v2`` steps the host would run, drawing from
    torch's global generator), and the batch is converted to float and normalised on the device; a
    per-image random step (``erase``, RandomErasing) is applied to each image in turn."""

    def __init__(self, normalise: Callable[[torch.Tensor], torch.Tensor], erase: Callable | None = None,
                 geometry: Callable | None = None, mode: str = "RGB"):
        self.normalise, self.erase, self.geometry, self.mode = normalise, erase, geometry, mode

    def __call__(self, images: torch.Tensor | list[torch.Tensor], device: torch.device) -> torch.Tensor:
        if isinstance(images, (list, tuple)):
            images = torch.stack([self.geometry(image) if self.geometry else image
                                  for image in decode_batch(images, device, self.mode)])
        batch = self.normalise(images.to(device, non_blocking=True))
        if self.erase is not None:
            for i in range(len(batch)):
                batch[i] = self.erase(batch[i])
        return batch


def decode_batch(items: list[torch.Tensor], device: torch.device, mode: str) -> list[torch.Tensor]:
    """uint8 C×H×W images on ``device`` from encoded files (1-D uint8 tensors) and decoded images:
    the JPEGs in one ``decode_jpeg`` call on ``device``, any other file by ``decode_image`` on the CPU."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    read_mode = ImageReadMode.GRAY if mode == "L" else ImageReadMode.RGB
    jpegs = [i for i, item in enumerate(items) if item.dim() == 1 and item[:2].tolist() == [0xFF, 0xD8]]
    out: list[torch.Tensor | None] = [None] * len(items)
    if jpegs:
        decoded = decode_jpeg([items[i] for i in jpegs], mode=read_mode, device=device)
        for i, image in zip(jpegs, decoded):
            out[i] = image
    for i, item in enumerate(items):
        if out[i] is None:
            out[i] = (decode_image(item, mode=read_mode) if item.dim() == 1 else item).to(device)
    return out


@dataclass(frozen=True)
class InputPipeline:
    """How images reach a model: ``host``, the per-image transform of the loader workers (None: the
    dataset hands over the encoded file), and ``batch``, what runs on the device a batch at a time
    (None: the host made the model's float input); ``decoder`` is the one that runs, ``note`` says
    why it is not the recipe's."""

    host: Callable | None
    batch: DeviceBatch | None
    decoder: str
    note: str = ""

    def describe(self, workers: int) -> dict[str, Any]:
        """What the record says about the loading: decoder, loader workers, where the input was normalised."""
        where = "device" if self.batch is not None else "loader workers"
        return {"decoder": self.decoder, "loader_workers": workers, "normalised_in": where} | (
            {"note": self.note} if self.note else {})


def build_input(recipe: Recipe, channels: int, pretrained_cfg: dict[str, Any] | None, train: bool,
                device: torch.device, split: bool | None = None) -> InputPipeline:
    """The input pipeline of a pass on ``device``. On the CPU: :func:`build_transform`, all on the host
    (``nvjpeg`` falls back to ``torchvision``, with a warning and a note). On CUDA the loader workers
    only decode and crop (uint8 batches: a quarter of float32's bytes to collate, pin and copy) and
    the device normalises; with ``nvjpeg`` the workers only read the files, and the device decodes,
    crops and flips (:class:`DeviceBatch`). ``split`` forces that split (True) or not (False) on any
    device (default: on CUDA only); the tests run the CUDA path's code on the CPU with it."""
    cfg = dict(pretrained_cfg or {})
    if not (device.type == "cuda" if split is None else split):
        note = ""
        if recipe.decoder == "nvjpeg":
            note = f"nvjpeg asked for, no CUDA device ({device.type}): decoded by torchvision in the loader"
            warnings.warn(note, RuntimeWarning, stacklevel=2)
            recipe = recipe.override(decoder="torchvision")
        return InputPipeline(build_transform(recipe, channels, cfg, train), None, recipe.decoder, note)
    tensor_input = recipe.decoder != "pil"
    ops = v2 if tensor_input else T
    erase = _erasing(recipe, channels, train, v2)
    batch = DeviceBatch(T.Compose(_to_input_space(cfg, channels, tensor_input=True)), erase[0] if erase else None,
                        v2.Compose(_geometry(recipe, train, v2)) if recipe.decoder == "nvjpeg" else None,
                        "L" if channels == 1 else "RGB")
    if recipe.decoder == "nvjpeg":
        return InputPipeline(None, batch, "nvjpeg")
    host = _geometry(recipe, train, ops) + ([] if tensor_input else [T.PILToTensor()])
    return InputPipeline((TensorPipeline if tensor_input else T.Compose)(host), batch, recipe.decoder)


class DeviceLoader:
    """A loader's ``(images, labels)`` batches with the images on ``device``, finished there by the
    pipeline's :class:`DeviceBatch` (passed through as they are when it has none)."""

    def __init__(self, loader: Iterable, pipeline: InputPipeline, device: torch.device):
        self.loader, self.pipeline, self.device = loader, pipeline, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for images, labels in self.loader:
            if self.pipeline.batch is not None:
                images = self.pipeline.batch(images, self.device)
            yield images, labels
