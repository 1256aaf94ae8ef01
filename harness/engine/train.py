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
from harness.plugins.optimizers import create_optimizer
from harness.core.recipe import Recipe

#: batches each loader worker keeps ready when feeding a GPU
PREFETCH_BATCHES = 4
#: steps between the loop's checks of the loss (one device synchronisation each)
LOSS_CHECK_EVERY = 32


class TrialFailed(RuntimeError):
    """A trial that cannot go on (non-finite loss, injected fault); the message is the recorded reason."""


class TrialDiverged(TrialFailed):
    """A trial whose training diverged (a non-finite loss): recorded as ``diverged``, not ``failed``."""


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
                       generator: torch.Generator, num_workers: int = 0,
                       device: torch.device | None = None) -> DataLoader:
    """Batches by plain shuffling (the last partial batch of an epoch dropped or kept as the recipe's
    ``drop_last`` says), or m-per-class (pytorch-metric-learning's MPerClassSampler, whole batches).

    The dataset's decoded cache (:class:`~harness.plugins.data.ImageDataset`) is filled first, on the
    trial's threads (m-per-class epochs do not visit every image; loader workers fork sharing it).
    For a CUDA ``device`` the batches come in pinned memory (for non-blocking copies) and the workers
    persist across epochs, each keeping ``PREFETCH_BATCHES`` batches ready; a dataset that batches
    its items as lists (encoded files for ``decoder="nvjpeg"``) says so by its ``collate_fn``
    (on the CPU workers restart every epoch, so an epoch's augmentation draws depend only on the
    loader's generator, which a checkpoint saves: resumed CPU trials stay exact)."""
    kind = recipe.sampler_for(method_sampler)
    cuda = device is not None and device.type == "cuda"
    if hasattr(dataset, "preload"):
        dataset.preload(threads=max(num_workers, torch.get_num_threads()))
    options = dict(num_workers=num_workers, generator=generator, pin_memory=cuda,
                   collate_fn=getattr(dataset, "collate_fn", None))
    if num_workers:
        options.update(persistent_workers=cuda, prefetch_factor=PREFETCH_BATCHES if cuda else 2)
    if kind == "m_per_class":
        m = recipe.samples_per_class
        batch = recipe.batch_size - recipe.batch_size % m
        # MPerClassSampler draws from numpy/python RNGs, which seed_everything has seeded; it asserts that
        # the split has the classes a batch needs (Recipe.check_batches refused any other recipe before the trial)
        sampler = MPerClassSampler(labels, m=m, batch_size=batch, length_before_new_iter=len(labels))
        return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, **options)
    batch = min(recipe.batch_size, len(labels))
    return DataLoader(dataset, batch_size=batch, sampler=RandomSampler(dataset, generator=generator),
                      drop_last=recipe.drop_last, **options)


def label_lookup(label_map: dict[int, int]) -> torch.Tensor:
    """A tensor ``t`` with ``t[class_id] = label_map[class_id]`` and -1 for ids not in the map."""
    table = torch.full((max(label_map, default=-1) + 1,), -1, dtype=torch.int64)
    table[torch.as_tensor(list(label_map), dtype=torch.int64)] = torch.as_tensor(list(label_map.values()))
    return table


def map_labels(labels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Class ids → training labels through :func:`label_lookup`'s table; an unknown id is an error."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(table) or (table[labels] < 0).any()):
        unknown = sorted({int(y) for y in labels if not 0 <= int(y) < len(table) or table[int(y)] < 0})
        raise KeyError(f"class id(s) {unknown} are not training classes")
    return table[labels]


def prepare_model(model: nn.Module, recipe: Recipe, device: torch.device) -> None:
    """Once per model: channels-last weights with bf16 autocast on CUDA (``recipe.amp``), and
    ``torch.compile`` in place (``recipe.torch_compile``; state-dict keys unchanged)."""
    if recipe.amp and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if recipe.torch_compile and getattr(model, "_compiled_call_impl", None) is None:
        model.compile()


def build_optimizer(model: EmbeddingModel, method: Method, recipe: Recipe) -> torch.optim.Optimizer:
    """One group each for backbone, head and the method's own parameters, at the recipe's learning rates,
    under the recipe's registered optimizer (:mod:`harness.plugins.optimizers`)."""
    groups = [
        {"params": model.backbone_parameters(), "lr": recipe.lr_backbone, "name": "backbone"},
        {"params": model.head_parameters(), "lr": recipe.lr_head, "name": "head"},
        *method.param_groups(recipe),
    ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g.setdefault("weight_decay", recipe.weight_decay)
    return create_optimizer(groups, recipe)


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe) -> torch.optim.lr_scheduler.LRScheduler:
    """The recipe's schedule, stepped after each epoch: ×gamma at the start of each 0-based epoch of
    ``lr_milestones`` (the authors' schedule), else every ``lr_decay_epochs`` epochs (0 = constant)."""
    if recipe.lr_milestones:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(recipe.lr_milestones), gamma=recipe.lr_decay_gamma)
    step = recipe.lr_decay_epochs or max(recipe.epochs, 1)
    gamma = recipe.lr_decay_gamma if recipe.lr_decay_epochs else 1.0
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=gamma)


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
        self.scheduler = build_scheduler(self.optimizer, recipe)
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
        """One pass over ``loader``; returns mean loss and step rate. Raises TrialDiverged on a non-finite loss.

        The losses stay on the device and are checked every ``LOSS_CHECK_EVERY`` steps and at the end
        (a GPU is not made to wait for each step); the error names the first non-finite step."""
        self._set_train_mode()
        prepare_model(self.model, self.recipe, self.device)
        table = label_lookup(label_map)
        channels_last = self.amp and self.device.type == "cuda"
        losses: list[torch.Tensor] = []
        checked, total, start = 0, 0.0, time.perf_counter()
        bar = tqdm(loader, desc=f"{self.method.name} epoch {self.epoch + 1}/{self.recipe.epochs}",
                   leave=False, disable=None if progress else True, dynamic_ncols=True)  # None: on a terminal only
        for images, labels in bar:
            images = images.to(self.device, non_blocking=True)
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = map_labels(labels, table).to(self.device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                loss = self.method.training_loss(self.model, images, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.recipe.grad_clip_value:
                nn.utils.clip_grad_value_(self.trainable_parameters, self.recipe.grad_clip_value)
            self.optimizer.step()
            losses.append(loss.detach())
            if len(losses) - checked >= LOSS_CHECK_EVERY:
                total = self._check_losses(losses, checked, total)
                checked = len(losses)
                bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
        total = self._check_losses(losses, checked, total)
        steps = len(losses)
        bar.close()
        self.scheduler.step()
        self.epoch += 1
        elapsed = time.perf_counter() - start
        return {"epoch": self.epoch, "loss": total / steps if steps else math.nan,
                "steps_per_s": steps / elapsed if elapsed > 0 else 0.0}

    def _check_losses(self, losses: list[torch.Tensor], first: int, total: float) -> float:
        """``total`` plus ``losses[first:]``, added one by one (one synchronisation); TrialDiverged names
        the first non-finite step."""
        if first >= len(losses):
            return total
        recent = torch.stack(losses[first:]).cpu()
        finite = torch.isfinite(recent)
        if not finite.all():
            bad = int((~finite).nonzero()[0])
            raise TrialDiverged(f"non-finite loss ({recent[bad].item()}) at epoch {self.epoch + 1}, step {first + bad + 1}")
        for value in recent.tolist():
            total += value
        return total

    def state_dict(self) -> dict:
        """Model, method, optimiser, schedule and epoch (the RNGs and the loader are the trial's to save)."""
        return {"model": self.model.state_dict(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
