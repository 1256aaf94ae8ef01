"""``pixels``: no training; the embedding is the image's pixels, compared by cosine.

The raw-pixel nearest-neighbour baseline every learned embedding should beat by far. It is a
method like any other so that it appears as a leaderboard row computed by the same evaluator.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from harness.plugins.method import Method, register_method

if TYPE_CHECKING:
    import torch


@register_method("pixels")
class Pixels(Method):
    """Raw pixels, cosine nearest neighbours (no training): the floor every method must beat."""

    family = "floor"
    trains = False
    backbone = "pixels"
    embedding_head = False
    pooling = "flatten"

    def loss(self, outputs, labels: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the pixels baseline has no loss: its recipe runs 0 epochs")
