"""A small CNN for tiny images on CPU, registered in timm as ``small_cnn``.

The 4-block "conv3x3-BN-ReLU-maxpool" embedding network of the few-shot / metric learning
literature (Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016; Snell et al.,
"Prototypical Networks for Few-shot Learning", NeurIPS 2017), here with widths 32-64-128-256 and
global average pooling, for sklearn digits (8x8) and Omniglot/MNIST-sized images (28-32 px).
Max pools use ``ceil_mode`` so that 8x8 inputs shrink 8 -> 4 -> 2 -> 1 -> 1 instead of to zero.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """``len(widths)`` blocks of conv3x3-BN-ReLU-maxpool2x2, then global pool and optional linear head.

    ``forward_features`` returns the last block's map, ``(N, widths[-1], ceil(H/16), ceil(W/16))``
    for 4 blocks; ``num_features == widths[-1]``.
    """

    def __init__(
        self,
        num_classes: int = 0,
        in_chans: int = 1,
        widths: Sequence[int] = (32, 64, 128, 256),
        global_pool: str = "avg",
    ):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        blocks = []
        chs = in_chans
        for width in widths:
            blocks.append(nn.Sequential(OrderedDict(
                conv=nn.Conv2d(chs, width, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(width),
                act=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(2, ceil_mode=True),
            )))
            chs = width
        self.stages = nn.Sequential(*blocks)
        self.feature_info = [
            dict(num_chs=w, reduction=2 ** (i + 1), module=f"stages.{i}") for i, w in enumerate(widths)
        ]
        self.num_features = chs
        self.global_pool, self.fc = create_classifier(chs, num_classes, pool_type=global_pool)
        self.head_hidden_size = chs * self.global_pool.feat_mult()
        # channels_last weights make convs emit NHWC maps, on which CPU max-pool / BN run several
        # times faster (fwd+bwd of 64 28x28 images on 2 cores: ~19 ms instead of ~29 ms)
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()


default_cfgs = generate_default_cfgs({
    "small_cnn": dict(
        url=None,  # no released weights; trained from scratch
        num_classes=0,
        input_size=(1, 28, 28),
        pool_size=(2, 2),
        crop_pct=1.0,
        interpolation="bilinear",
        mean=(0.5,),
        std=(0.5,),
        first_conv="stages.0.conv",
        classifier="fc",
        paper_ids="arXiv:1703.05175",
    ),
})


@register_model
def small_cnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """Small 4-block CNN (32-64-128-256, 256-d features) for 8-32 px images, grayscale by default."""
    return build_model_with_cfg(SmallCNN, "small_cnn", pretrained, **kwargs)
