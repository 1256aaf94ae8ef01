"""``pixels``: the identity backbone, so that raw-pixel nearest neighbours are a row of the leaderboard.

Its feature map is the (normalised) image itself; with ``flatten`` pooling and no head, the
embedding is the pixel vector, and cosine kNN on it is the classic raw-pixel retrieval baseline.
"""
from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


class Pixels(nn.Module):
    """No parameters: ``forward_features(x) = x``. ``num_features`` is set from the input size."""

    def __init__(self, in_chans: int = 3, img_size: int = 28, **_: object):
        super().__init__()
        self.num_features = in_chans * img_size * img_size
        self.pretrained_cfg = {"input_size": (in_chans, img_size, img_size), "mean": (0.5,) * in_chans,
                               "std": (0.5,) * in_chans}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_model
def pixels(pretrained: bool = False, in_chans: int = 3, img_size: int = 28, **kwargs: object) -> Pixels:
    """The raw image as its own feature map (``num_classes``/``global_pool`` are accepted and ignored)."""
    return Pixels(in_chans=in_chans, img_size=img_size)
