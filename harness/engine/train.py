"""The training loop: per-group learning rates, step decay, samplers, frozen BatchNorm (statistics and,
optionally, affine parameters), gradient value clipping, bf16 on GPU.

:class:`Trainer` holds the model, the method (whose own parameters — proxies, class weights —
form their own optimiser group) and the optimiser/scheduler state; ``state_dict`` makes a whole
trial checkpointable so a restarted worker resumes at the next epoch.
"""
from __future__ import annotations

import math
import random
import time
from typing import Iterable

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from harness.plugins.method import Method
from harness.plugins.models import EmbeddingModel
from harness.core.recipe import Recipe


class TrialFailed(RuntimeError):
    """A trial that cannot go on (non-finite loss, injected fault); the message is the recorded reason."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator for the data loaders."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_train_loader(dataset: Dataset, labels: np.ndarray, recipe: Recipe, method_sampler: str,
                       generator: torch.Generator, num_workers: int = 0) -> DataLoader:
    """Batches by plain shuffling, or m-per-class (pytorch-metric-learning's MPerClassSampler)."""
    kind = method_sampler if recipe.sampler == "method" else recipe.sampler
    if kind == "m_per_class":
        m = recipe.samples_per_class
        batch = recipe.batch_size - recipe.batch_size % m
        if len(np.unique(labels)) * m < batch:
            raise ValueError(f"m-per-class batches of {batch} need {batch // m} classes, "
                             f"the training split has {len(np.unique(labels))}")
        # MPerClassSampler draws from numpy/python RNGs, which seed_everything has seeded.
        sampler = MPerClassSampler(labels, m=m, batch_size=batch, length_before_new_iter=len(labels))
        return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                          num_workers=num_workers, generator=generator)
    if kind != "random":
        raise ValueError(f"unknown sampler {kind!r}; valid: random, m_per_class")
    batch = min(recipe.batch_size, len(labels))
    return DataLoader(dataset, batch_size=batch, sampler=RandomSampler(dataset, generator=generator),
                      drop_last=True, num_workers=num_workers, generator=generator)


def build_optimizer(model: EmbeddingModel, method: Method, recipe: Recipe) -> torch.optim.Optimizer:
    """One group each for backbone, head and the method's own parameters, at the recipe's learning rates."""
    groups = [
        {"params": model.backbone_parameters(), "lr": recipe.lr_backbone, "name": "backbone"},
        {"params": model.head_parameters(), "lr": recipe.lr_head, "name": "head"},
        *method.param_groups(recipe.lr_method, recipe.weight_decay),
    ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g.setdefault("weight_decay", recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, eps=recipe.adam_eps)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, eps=recipe.adam_eps)
    return torch.optim.RAdam(groups, eps=recipe.adam_eps)


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_batchnorm_statistics(module: nn.Module) -> None:
    """Put every BatchNorm in eval mode (running statistics fixed); its affine parameters still train."""
    for m in batchnorms(module):
        m.eval()


class Trainer:
    """Trains ``model`` with ``method``'s loss under ``recipe``, one epoch per :meth:`train_epoch` call."""

    def __init__(self, model: EmbeddingModel, method: Method, recipe: Recipe, device: torch.device):
        self.model, self.method, self.recipe, self.device = model, method, recipe, device
        self.optimizer = build_optimizer(model, method, recipe)
        step = recipe.lr_decay_epochs or max(recipe.epochs, 1)
        gamma = recipe.lr_decay_gamma if recipe.lr_decay_epochs else 1.0
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=step, gamma=gamma)
        self.epoch = 0
        self.amp = recipe.amp and device.type == "cuda"
        self.trainable_parameters = [p for g in self.optimizer.param_groups for p in g["params"]]

    def _set_train_mode(self) -> None:
        self.model.train()
        self.method.train()
        if self.recipe.freeze_bn:
            freeze_batchnorm_statistics(self.model.backbone)
        warming_up = self.epoch < self.recipe.warmup_epochs
        for p in self.model.backbone.parameters():
            p.requires_grad_(not warming_up)
        if self.recipe.freeze_bn_affine:
            for m in batchnorms(self.model.backbone):
                for p in m.parameters():
                    p.requires_grad_(False)

    def train_epoch(self, loader: Iterable, label_map: dict[int, int], progress: bool = True) -> dict[str, float]:
        """One pass over ``loader``; returns mean loss and step rate. Raises TrialFailed on a non-finite loss."""
        self._set_train_mode()
        total, steps, start = 0.0, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"{self.method.name} epoch {self.epoch + 1}/{self.recipe.epochs}",
                   leave=False, disable=not progress, dynamic_ncols=True)
        for images, labels in bar:
            images = images.to(self.device, non_blocking=True)
            labels = torch.as_tensor([label_map[int(y)] for y in labels], device=self.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                loss = self.method.training_loss(self.model, images, labels)
            if not torch.isfinite(loss):
                raise TrialFailed(f"non-finite loss ({loss.item()}) at epoch {self.epoch + 1}, step {steps + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.recipe.grad_clip_value:
                nn.utils.clip_grad_value_(self.trainable_parameters, self.recipe.grad_clip_value)
            self.optimizer.step()
            total += float(loss.detach())
            steps += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        self.scheduler.step()
        self.epoch += 1
        elapsed = time.perf_counter() - start
        return {"epoch": self.epoch, "loss": total / max(steps, 1) if steps else math.nan,
                "steps_per_s": steps / elapsed if elapsed > 0 else 0.0}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "epoch": self.epoch, "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                             "python": random.getstate()}}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
