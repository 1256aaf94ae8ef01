"""Shared fixtures: the shared Omniglot copy (skipped where absent) and small seeded batches."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_OMNIGLOT = REPO.parent / "shared" / "data" / "omniglot"


@pytest.fixture(autouse=True)
def user_results_folder(tmp_path_factory, monkeypatch) -> Path:
    """A test's default results folder (``$DMLBENCH_RESULTS``): never the user's, never the committed one."""
    folder = tmp_path_factory.mktemp("user-results")
    monkeypatch.setenv("DMLBENCH_RESULTS", str(folder))
    return folder


@pytest.fixture(scope="session")
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


@pytest.fixture
def loss_before_and_after_training(clustered_batch):
    """``f(name) -> (first, last)``: a method's loss on the fixed batch before and after 60 Adam steps
    of a linear head (lr 1e-2) and the method's own parameter groups (``lr_method`` 1e-2)."""
    from torch import nn

    from harness.core.recipe import Recipe
    from harness.plugins.method import create_method
    from harness.plugins.models import ModelOutput

    features, labels = clustered_batch

    def train(name: str) -> tuple[float, float]:
        torch.manual_seed(0)
        head = nn.Linear(32, 16)
        method = create_method(name, num_classes=8, embedding_dim=16, feature_dim=32)
        optimizer = torch.optim.Adam([{"params": head.parameters(), "lr": 1e-2},
                                      *method.param_groups(Recipe("fixture", lr_method=1e-2, weight_decay=0.0))])

        def loss_now() -> torch.Tensor:
            emb = nn.functional.normalize(head(features), dim=-1)
            return method.loss(ModelOutput(embedding=emb, pooled=features, feature_map=features[:, :, None, None]),
                               labels)

        first = loss_now().item()
        for _ in range(60):
            optimizer.zero_grad()
            loss_now().backward()
            optimizer.step()
        return first, loss_now().item()

    return train
