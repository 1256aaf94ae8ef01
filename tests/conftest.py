"""Shared fixtures: the shared Omniglot copy (skipped where absent) and small seeded batches."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_OMNIGLOT = REPO.parent / "shared" / "data" / "omniglot"


@pytest.fixture
def omniglot_root() -> Path:
    if not (SHARED_OMNIGLOT / "images_background").is_dir():
        pytest.skip(f"shared Omniglot data not found at {SHARED_OMNIGLOT} (../shared/data/omniglot beside the repo)")
    return SHARED_OMNIGLOT


@pytest.fixture
def clustered_batch():
    """A fixed batch: 8 classes × 4 samples of 32-d features around class centres, with contiguous labels."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 32, generator=g)
    labels = torch.arange(8).repeat_interleave(4)
    features = centres[labels] + 0.8 * torch.randn(32, 32, generator=g)
    return features, labels
