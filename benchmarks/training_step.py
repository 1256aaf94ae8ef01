"""Training steps per second: the harness's loop against a bare PyTorch loop doing the same work.

Both train the same model (``small_cnn``, 512-d), with the same method's loss (default ``ms``), the same
sampler (pytorch-metric-learning's MPerClassSampler) and the same optimiser (the recipe's per-group
AdamW) on the training classes of Omniglot in its original layout (105×105 PNGs), under the ``cpu``
recipe (28 px), on one thread. The bare loop indexes a tensor of images decoded and resized once,
before timing; the harness runs :class:`~harness.engine.train.Trainer` over its real loader, as a
trial does: with its decoded cache (the default) and without it (``cache_bytes=0``, every PNG decoded
and resized every epoch, as before the cache). Epochs alternate between the three loops, so that other
load on the machine hits them alike; the ratios are of median steps/s over the epochs after the first
(the harness's first epoch, which fills the cache, is shown apart).

    python benchmarks/training_step.py [--data-root ../shared/data/omniglot] [--method ms] [--epochs 4]

Measured on the idle 2-core CPU machine (load average 0.3-0.7, no other job), 2026-11-24,
``--epochs 5``: harness with its decoded cache 16.69 steps/s = 1.17x the bare loop (14.32); without
the cache 12.22 = 0.85x (the issue's starting point: 0.75x).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from pytorch_metric_learning.samplers import MPerClassSampler

from harness.engine.train import Trainer, build_optimizer, build_train_loader, seed_everything
from harness.engine.runner import build_model
from harness.experiment import ExperimentConfig
from harness.plugins.data import ImageDataset, create_dataset
from harness.plugins.transforms import build_transform


def bare_epoch(model, method, optimizer, images: torch.Tensor, labels: torch.Tensor, m: int, batch: int) -> int:
    """One epoch of the plain loop; returns its number of steps."""
    model.train()
    method.train()
    order = list(MPerClassSampler(labels.numpy(), m=m, batch_size=batch, length_before_new_iter=len(labels)))
    steps = len(order) // batch
    for s in range(steps):
        idx = torch.as_tensor(order[s * batch:(s + 1) * batch])
        loss = method.training_loss(model, images[idx], labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data/omniglot", help="Omniglot, original layout")
    parser.add_argument("--method", default="ms")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each loop (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = ExperimentConfig(methods=[args.method], dataset="omniglot", data_root=args.data_root, seeds=[0],
                            recipe="cpu", device="cpu", save_model=False).trials()[0].spec
    recipe = spec.recipe_obj
    splits = create_dataset("omniglot", args.data_root)
    subset = splits.trainval
    label_map = {int(c): i for i, c in enumerate(subset.classes)}

    def fresh():
        generator = seed_everything(spec.seed)
        model, cls = build_model(spec, splits.channels)
        method = cls(num_classes=len(label_map), embedding_dim=model.embedding_dim,
                     feature_dim=model.feature_dim, **spec.hparams)
        return generator, model, method, cls

    transform = build_transform(recipe, splits.channels, None, train=True)
    loops = {}
    for name, cache_bytes in (("harness, decoded cache", None), ("harness, no cache", 0)):
        generator, model, method, cls = fresh()
        trainer = Trainer(model, method, recipe, torch.device("cpu"))
        loader = build_train_loader(ImageDataset(subset, transform, channels=splits.channels, cache_bytes=cache_bytes),
                                    subset.labels, recipe, cls.sampler, generator)
        loops[name] = lambda t=trainer, ld=loader: (t.train_epoch(ld, label_map, progress=False), len(ld))[1]

    _, model, method, _ = fresh()
    optimizer = build_optimizer(model, method, recipe)
    decoded = ImageDataset(subset, transform, channels=splits.channels, cache_bytes=0)
    images = torch.stack([decoded[i][0] for i in range(len(decoded))])
    labels = torch.as_tensor([label_map[int(y)] for y in subset.labels])
    m = recipe.samples_per_class
    batch = recipe.batch_size - recipe.batch_size % m
    loops["bare loop, images decoded once"] = lambda: bare_epoch(model, method, optimizer, images, labels, m, batch)

    print(f"{args.method} on omniglot ({len(subset)} training images, {len(label_map)} classes), recipe cpu, "
          f"{args.threads} thread(s); {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start")
    wall: dict[str, list[float]] = {name: [] for name in loops}
    cpu: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.epochs):
        for name, epoch in loops.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            steps = epoch()
            wall[name].append(steps / (time.perf_counter() - start_wall))
            cpu[name].append(steps / (time.process_time() - start_cpu))
    bare = "bare loop, images decoded once"
    print("  steps/s: median of epochs 2-N by wall clock and by this process's CPU time (the fairer clock when "
          "other jobs share the cores); epoch 1 apart")
    for name in loops:
        w, c = statistics.median(wall[name][1:]), statistics.median(cpu[name][1:])
        print(f"  {name:32s} wall {w:6.2f} ({w / statistics.median(wall[bare][1:]):.2f}x bare)   "
              f"CPU {c:6.2f} ({c / statistics.median(cpu[bare][1:]):.2f}x bare)   epoch 1: wall {wall[name][0]:.2f}, "
              f"CPU {cpu[name][0]:.2f}")
    print(f"  load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
