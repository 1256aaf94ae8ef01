"""Embedding models: a timm backbone, a pooling, a linear embedding head, optional L2 normalisation.

The pooling and the head's initialisation are the recipe's (``Recipe.pooling``, ``Recipe.head_init``),
never a method's, so that every method trained under one recipe has the same architecture.

The model/method contract is :class:`ModelOutput`: every forward returns the embedding together
with the by-products a method may read (``Method.taps``):

* ``feature_map`` — the backbone's last feature map, before pooling (Metrix mixes here);
* ``pooled``      — that map pooled (JRD's X⁻: post-ReLU, not normalised);
* ``embedding``   — the head's output, L2-normalised when the method asks (JRD's X);
* ``stage<i>``    — the pooled output of the backbone's i-th feature stage (timm ``feature_info``),
  captured with a forward hook only when a method asks for it.

Backbones come from timm by name (plus our registered ``bninception``, ``small_cnn`` and
``pixels``). Weights load only from a local file (``pretrained``); nothing is ever downloaded.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from harness.plugins import backbones  # noqa: F401  (importing registers bninception, small_cnn, pixels with timm)
from harness.plugins.backbone_names import check_backbone_name
from harness.core.store import CorruptFileError


@dataclass
class ModelOutput:
    embedding: torch.Tensor
    pooled: torch.Tensor
    feature_map: torch.Tensor
    stages: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self.stages:
            return self.stages[key]
        return getattr(self, key)


def pool(feature_map: torch.Tensor, kind: str) -> torch.Tensor:
    """Global pooling of an (N, C, H, W) map: ``avg``, ``max``, ``avgmax`` (their sum) or ``flatten``."""
    if kind == "avg":
        return feature_map.mean(dim=(2, 3))
    if kind == "max":
        return feature_map.amax(dim=(2, 3))
    if kind == "avgmax":
        return feature_map.mean(dim=(2, 3)) + feature_map.amax(dim=(2, 3))
    if kind == "flatten":
        return feature_map.flatten(1)
    raise ValueError(f"unknown pooling {kind!r}; valid: avg, max, avgmax, flatten")


def init_head(head: nn.Linear, kind: str) -> None:
    """Initialise the embedding head: ``default`` leaves PyTorch's ``nn.Linear`` init (Kaiming-uniform,
    a = √5; JRD's code), ``kaiming_normal_fan_out`` draws N(0, 2/fan_out) weights and zero bias
    (the Proxy-Anchor and Metrix codes' ``_initialize_weights``)."""
    if kind == "kaiming_normal_fan_out":
        nn.init.kaiming_normal_(head.weight, mode="fan_out")
        nn.init.zeros_(head.bias)
    elif kind != "default":
        raise ValueError(f"unknown head_init {kind!r}; valid: default, kaiming_normal_fan_out")


def create_backbone(name: str, in_chans: int = 3, pretrained: str | None = None) -> nn.Module:
    """A timm backbone without classifier or pooling; weights from a local file only."""
    check_backbone_name(name)
    kwargs = dict(num_classes=0, global_pool="", in_chans=in_chans)
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {path} does not exist")
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
            raise CorruptFileError(f"pretrained weights file {path} cannot be loaded into {name}: "
                                   f"{str(error).splitlines()[0]}") from error
    return timm.create_model(name, pretrained=False, **kwargs)


class EmbeddingModel(nn.Module):
    """backbone → pooling → Linear(num_features → embedding_dim) → optional L2 normalisation.

    ``embedding_dim=0`` skips the head (the embedding is the pooled feature, as for ``pixels``);
    ``head_init`` is :func:`init_head`'s ``kind``.
    """

    def __init__(self, backbone: nn.Module, embedding_dim: int, normalize: bool = True,
                 pooling: str = "avg", taps: tuple[str, ...] = (), head_init: str = "default"):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.normalize = normalize
        self.feature_dim = int(backbone.num_features)
        self.head = nn.Linear(self.feature_dim, embedding_dim) if embedding_dim else nn.Identity()
        if embedding_dim:
            init_head(self.head, head_init)
        self.embedding_dim = embedding_dim or self.feature_dim
        self._captured: dict[str, torch.Tensor] = {}
        for tap in taps:
            if tap.startswith("stage"):
                self._hook_stage(tap)

    def _hook_stage(self, tap: str) -> None:
        info = getattr(self.backbone, "feature_info", None)
        index = int(tap.removeprefix("stage"))
        if not info or index >= len(info):
            raise ValueError(f"backbone has no feature stage {index} for tap {tap!r}")
        module = self.backbone.get_submodule(info[index]["module"])
        module.register_forward_hook(lambda _m, _i, out: self._captured.__setitem__(tap, out))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(images)

    def forward_head(self, feature_map: torch.Tensor) -> ModelOutput:
        pooled = pool(feature_map, self.pooling)
        embedding = self.head(pooled)
        if self.normalize:
            embedding = F.normalize(embedding, dim=-1)
        stages = {k: pool(v, "avg") for k, v in self._captured.items()}
        self._captured = {}
        return ModelOutput(embedding=embedding, pooled=pooled, feature_map=feature_map, stages=stages)

    def forward(self, images: torch.Tensor) -> ModelOutput:
        return self.forward_head(self.forward_features(images))

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head.parameters() if p.requires_grad]
