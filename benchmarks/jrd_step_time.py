"""Training-step time of JRD (and its variants) against AMSoftmax alone, with the real embedding model.

One step = forward + loss + backward + optimizer step (Adam of the ``jrd`` recipe), BatchNorm statistics
frozen as in that recipe, on a fixed random batch with labels drawn from ``--num-classes`` classes.
The methods' steps are interleaved so that drifting machine load hits them alike; the first
``--warmup`` steps are dropped and the median (and minimum) of the rest is reported, with the ratio of
medians to AMSoftmax. On a shared CPU, ``--threads 1`` avoids OpenMP threads waiting on each other.
The regulariser alone (forward + backward from the model's outputs, without the model) is timed too.

    python benchmarks/jrd_step_time.py                                  # resnet18, 112 px, CPU-sized
    python benchmarks/jrd_step_time.py --backbone resnet50 --image-size 224 --device cuda

Measured on the idle 2-core CPU machine (no other job), 2026-11-24, defaults (resnet18 at 112 px,
batch 128, 2 threads): AMSoftmax 2651 ms a step, JRD 2661 ms (1.004x); the regulariser's forward and
backward alone 6.3 ms.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from harness.plugins.method import Method, create_method, get_method_class
from harness.plugins.models import EmbeddingModel, ModelOutput, create_backbone
from harness.plugins.method import find_recipe
from harness.engine.train import build_optimizer, freeze_batchnorm_statistics
import methods.jrd  # noqa: F401  (registers jrd and its variants)

BASELINE = "amsoftmax"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18", help="timm name, or bninception (default resnet18)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=100, help="classes of the class weights and labels")
    parser.add_argument("--methods", nargs="+", default=["jrd"], help="methods timed against amsoftmax")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per method, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--regulariser-repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser.parse_args()


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    synchronise(device)
    start = time.perf_counter()
    fn()
    synchronise(device)
    return time.perf_counter() - start


def build(name: str, args: argparse.Namespace,
          device: torch.device) -> tuple[EmbeddingModel, Method, torch.optim.Optimizer]:
    """The model and method of one row, from the same seed; the optimiser of the ``jrd`` recipe."""
    torch.manual_seed(0)
    cls, recipe = get_method_class(name), find_recipe("jrd")
    model = EmbeddingModel(create_backbone(args.backbone), embedding_dim=args.embedding_dim,
                           normalize=cls.normalize_embedding, pooling=cls.pooling or recipe.pooling, taps=cls.taps,
                           head_init=recipe.head_init).to(device)
    method = create_method(name, num_classes=args.num_classes, embedding_dim=model.embedding_dim,
                           feature_dim=model.feature_dim).to(device)
    model.train()
    freeze_batchnorm_statistics(model.backbone)
    return model, method, build_optimizer(model, method, recipe)


def train_step(model: EmbeddingModel, method: Method, optimizer: torch.optim.Optimizer,
               images: torch.Tensor, labels: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    method.loss(model(images), labels).backward()
    optimizer.step()


def regulariser_time(model: EmbeddingModel, method: Method, images: torch.Tensor, labels: torch.Tensor,
                     repeats: int, device: torch.device) -> float:
    """Median time of the regulariser's forward + backward from fixed model outputs."""
    with torch.no_grad():
        outputs = model(images)

    def step() -> None:
        leaves = ModelOutput(embedding=outputs.embedding.detach().requires_grad_(),
                             pooled=outputs.pooled.detach().requires_grad_(), feature_map=outputs.feature_map)
        method.regulariser(leaves, labels).backward()

    times = [timed(step, device) for _ in range(repeats + 1)]
    return statistics.median(times[1:])


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = [BASELINE] + [n for n in args.methods if n != BASELINE]
    rows = {name: build(name, args, device) for name in names}
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator).to(device)
    labels = torch.randint(args.num_classes, (args.batch_size,), generator=generator).to(device)

    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.warmup + args.steps):
        for name, (model, method, optimizer) in rows.items():
            times[name].append(timed(lambda: train_step(model, method, optimizer, images, labels), device))

    print(f"backbone {args.backbone} @ {args.image_size}px, batch {args.batch_size}, embedding {args.embedding_dim}, "
          f"{args.num_classes} classes, device {device} ({torch.get_num_threads()} threads), "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    baseline = statistics.median(times[BASELINE][args.warmup:])
    print(f"{'method':<12}{'median step (ms)':>18}{'min step (ms)':>15}{'ratio':>8}{'regulariser fwd+bwd (ms)':>27}")
    for name, (model, method, _) in rows.items():
        step, fastest = statistics.median(times[name][args.warmup:]), min(times[name][args.warmup:])
        reg = "" if name == BASELINE else \
            f"{1e3 * regulariser_time(model, method, images, labels, args.regulariser_repeats, device):.2f}"
        print(f"{name:<12}{1e3 * step:>18.1f}{1e3 * fastest:>15.1f}{step / baseline:>8.3f}{reg:>27}")


if __name__ == "__main__":
    main()
