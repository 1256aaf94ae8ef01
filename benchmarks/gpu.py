"""One command for a GPU machine: training throughput, packed trials and evaluation at SOP scale.

1. ResNet-50 (512-d embedding, ``ms`` loss) bf16 training throughput in images/s, through the
   harness's :class:`~harness.engine.train.Trainer` (bf16 autocast, channels-last): on synthetic
   tensors already on the GPU, and with the real data pipeline (``--images`` generated 500×375 JPEGs,
   RandomResizedCrop 224 + flip, PIL and torchvision decoders, loader workers on every CPU but one,
   pinned memory, persistent workers, prefetching);
2. 4 trials packed on one GPU (``gpus_per_trial=0.25``) against one at a time, in trials per hour,
   for ``small_cnn`` and ``resnet18`` (``omniglot28``, recipe ``cpu``, ``--epochs`` epochs, on Ray);
3. full evaluation (Recall@1,10,100,1000, MAP@R, R-Precision, NMI) of 60,000 × 512 embeddings in
   11,316 classes (SOP's test set's shape) on the GPU.

Without CUDA it prints one line, "no GPU: skipped", and exits 0 (CI has no GPU).

    python benchmarks/gpu.py [--steps 50] [--images 512] [--epochs 3]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def training_throughput(args: argparse.Namespace) -> None:
    from decode import write_jpegs  # benchmarks/decode.py, beside this script

    from harness.core.recipe import get_recipe
    from harness.engine.train import Trainer, build_train_loader, seed_everything
    from harness.plugins.data import ImageDataset, Subset
    from harness.plugins.method import get_method_class
    from harness.plugins.models import EmbeddingModel, create_backbone
    from harness.plugins.transforms import build_transform

    device = torch.device("cuda")
    recipe = get_recipe("default").override(batch_size=args.batch, sampler="m_per_class", samples_per_class=4)
    classes = args.batch // 4 * 2
    cls = get_method_class("ms")

    def trainer() -> Trainer:
        model = EmbeddingModel(create_backbone("resnet50"), embedding_dim=512, normalize=cls.normalize_embedding).to(device)
        method = cls(num_classes=classes, embedding_dim=512, feature_dim=model.feature_dim).to(device)
        return Trainer(model, method, recipe, device)

    def rate(t: Trainer, loader, steps: int) -> float:
        t.train_epoch(loader[:3] if isinstance(loader, list) else loader, {c: c for c in range(classes)},
                      progress=False)  # warm-up (cuDNN autotuning, workers)
        torch.cuda.synchronize()
        start = time.perf_counter()
        t.train_epoch(loader, {c: c for c in range(classes)}, progress=False)
        torch.cuda.synchronize()
        return steps * args.batch / (time.perf_counter() - start)

    seed_everything(0)
    labels = torch.arange(args.batch) // 4 % classes
    synthetic = [(torch.randn(args.batch, 3, 224, 224, device=device), labels)] * args.steps
    print(f"1. ResNet-50 bf16 training, batch {args.batch}, ms loss")
    print(f"   synthetic tensors          {rate(trainer(), synthetic, args.steps):8.1f} img/s")
    workers = max(1, (os.cpu_count() or 2) - 1)
    with tempfile.TemporaryDirectory(prefix="dmlbench-gpu-") as folder:
        paths = write_jpegs(Path(folder), args.images)
        subset = Subset(paths, np.arange(args.images) % classes)
        for decoder in ("pil", "torchvision"):
            r = recipe.override(decoder=decoder)
            dataset = ImageDataset(subset, build_transform(r, 3, None, train=True), channels=3, cache_bytes=0)
            loader = build_train_loader(dataset, subset.labels, r, "m_per_class", seed_everything(0), workers, device)
            print(f"   real pipeline, {decoder:11s} {rate(trainer(), loader, len(loader)):8.1f} img/s "
                  f"({workers} loader workers)")


def packed_trials(args: argparse.Namespace) -> None:
    from harness.experiment import ExperimentConfig
    from harness.scheduling import ray_compat
    from harness.scheduling.ray_executor import RayExecutor

    results = tempfile.mkdtemp(prefix="dmlbench-gpu-trials-")
    print(f"\n2. 4 trials (omniglot28, recipe cpu, {args.epochs} epochs) on one GPU, trials per hour")
    ray_compat.init()
    try:
        for backbone in ("small_cnn", "resnet18"):
            rates = {}
            for label, gpus, concurrent in (("one at a time", 1.0, 1), ("4 packed at 0.25 GPU", 0.25, 4)):
                trials = ExperimentConfig(methods=["ms"], dataset="omniglot28", backbone=backbone, seeds=[0, 1, 2, 3],
                                          recipe="cpu", recipe_overrides={"epochs": args.epochs}, results_dir=results,
                                          experiment=f"{backbone}-{concurrent}", save_model=False,
                                          device="cuda").trials()
                executor = RayExecutor(results, gpus_per_trial=gpus, cpus_per_trial=1, max_concurrent=concurrent,
                                       listeners=[])
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    records = executor.run(trials)
                seconds = time.perf_counter() - start
                failed = [r for r in records if r.status != "ok"]
                if failed:
                    raise RuntimeError(f"{failed[0].trial_id}: {failed[0].error}")
                rates[label] = len(trials) * 3600 / seconds
                print(f"   {backbone:9s} {label:22s} {rates[label]:8.0f} trials/h ({seconds:.0f} s)")
            print(f"   {backbone:9s} packed / one at a time   {rates['4 packed at 0.25 GPU'] / rates['one at a time']:8.2f}x")
    finally:
        ray_compat.shutdown()


def evaluation(args: argparse.Namespace) -> None:
    from harness.engine.evaluate import evaluate_embeddings

    n, dim, classes = 60_000, 512, 11_316
    generator = torch.Generator(device="cuda").manual_seed(0)
    labels = torch.randint(0, classes, (n,), device="cuda", generator=generator)
    centres = torch.randn(classes, dim, device="cuda", generator=generator)
    embeddings = torch.nn.functional.normalize(centres[labels] + torch.randn(n, dim, device="cuda", generator=generator),
                                               dim=1)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    metrics = evaluate_embeddings(embeddings, labels, None, None, recall_ks=(1, 10, 100, 1000), include_nmi=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()) if isinstance(v, float))
    print(f"\n3. evaluation of {n} x {dim} in {classes} classes on the GPU: {seconds:.1f} s, "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB\n   {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="synthetic training steps (default 50)")
    parser.add_argument("--batch", type=int, default=128, help="training batch (default 128)")
    parser.add_argument("--images", type=int, default=1024, help="JPEGs for the real pipeline (default 1024)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each packed trial (default 3)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU: skipped (benchmarks/gpu.py needs CUDA)")
        return
    print(f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    training_throughput(args)
    packed_trials(args)
    evaluation(args)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
