"""One command for a GPU machine: training throughput, packed trials and evaluation at SOP scale.

1. ResNet-50 (512-d embedding, ``ms`` loss) bf16 training throughput in images/s, through the
   harness's :class:`~harness.engine.train.Trainer` (bf16 autocast, channels-last): on synthetic
   tensors already on the GPU, and with the real data pipeline (``--images`` generated 500×375 JPEGs,
   RandomResizedCrop 224 + flip, PIL, torchvision and nvjpeg decoders, loader workers on every CPU but
   one, pinned memory, persistent workers, prefetching; on CUDA the workers hand over uint8 crops that
   the GPU normalises, and with nvjpeg the GPU also decodes, crops and flips: ``build_input``);
2. 4 trials packed on one GPU (``gpus_per_trial=0.25``) against one at a time, in trials per hour,
   for ``small_cnn`` and ``resnet18`` (``omniglot28``, recipe ``cpu``, ``--epochs`` epochs, on Ray; each
   trial holds its share of the node's CPUs, the executor's default, and uses them for loader workers);
3. full evaluation (Recall@1,10,100,1000, MAP@R, R-Precision, NMI) of 60,000 × 512 embeddings in
   11,316 classes (SOP's test set's shape) on the GPU, without and with NMI, against a raw search of
   the same k (1001) on the same device: faiss-gpu ``GpuIndexFlatIP`` where installed, otherwise a
   chunked torch matmul and ``topk`` (the anchor of the torch backend the evaluation then uses).

Every ratio is measured in one run. Without CUDA it prints one line, "no GPU: skipped", and exits 0
(CI has no GPU). ``--device cpu`` runs the same code on the CPU instead, at the sizes given: a smoke
run for the test that keeps this script working on machines without a GPU, whose figures mean nothing.

    python benchmarks/gpu.py [--steps 50] [--images 4096] [--epochs 10] [--parts throughput,packed,evaluation]
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
from typing import Callable

import numpy as np
import torch


def training_throughput(args: argparse.Namespace, device: torch.device) -> None:
    from decode import write_jpegs  # benchmarks/decode.py, beside this script

    from harness.core.recipe import RECIPES
    from harness.engine.train import Trainer, build_train_loader, seed_everything
    from harness.plugins.data import ImageDataset, Subset
    from harness.plugins.method import get_method_class
    from harness.plugins.models import EmbeddingModel, create_backbone
    from harness.plugins.transforms import DeviceLoader, build_input

    recipe = RECIPES.get("default").override(batch_size=args.batch, sampler="m_per_class", samples_per_class=4)
    classes = args.batch // 4 * 2
    cls = get_method_class("ms")

    def trainer() -> Trainer:
        model = EmbeddingModel(create_backbone(args.backbone), embedding_dim=512,
                               normalize=cls.normalize_embedding).to(device)
        method = cls(num_classes=classes, embedding_dim=512, feature_dim=model.feature_dim).to(device)
        return Trainer(model, method, recipe, device)

    def rate(t: Trainer, loader, steps: int) -> float:
        t.train_epoch(loader[:3] if isinstance(loader, list) else loader, {c: c for c in range(classes)},
                      progress=False)  # warm-up (cuDNN autotuning, workers)
        synchronize(device)
        start = time.perf_counter()
        t.train_epoch(loader, {c: c for c in range(classes)}, progress=False)
        synchronize(device)
        return steps * args.batch / (time.perf_counter() - start)

    seed_everything(0)
    labels = torch.arange(args.batch) // 4 % classes
    synthetic = [(torch.randn(args.batch, 3, 224, 224, device=device), labels)] * args.steps
    print(f"1. {args.backbone} training ({'bf16' if device.type == 'cuda' else 'float32'}), "
          f"batch {args.batch}, ms loss")
    tensors = rate(trainer(), synthetic, args.steps)
    print(f"   synthetic tensors          {tensors:8.1f} img/s")
    workers = max(1, (os.cpu_count() or 2) - 1)
    with tempfile.TemporaryDirectory(prefix="dmlbench-gpu-") as folder:
        paths = write_jpegs(Path(folder), args.images)
        subset = Subset(paths, np.arange(args.images) % classes)
        for decoder in ("pil", "torchvision", "nvjpeg"):
            r = recipe.override(decoder=decoder)
            pipeline = build_input(r, 3, None, True, device)
            dataset = ImageDataset(subset, pipeline.host, channels=3, cache_bytes=0, decoder=pipeline.decoder)
            loader = build_train_loader(dataset, subset.labels, r, "m_per_class", seed_everything(0), workers, device)
            real = rate(trainer(), DeviceLoader(loader, pipeline, device), len(loader))
            loading = pipeline.describe(workers)
            print(f"   real pipeline, {decoder:11s} {real:8.1f} img/s = {real / tensors:.2f}x synthetic "
                  f"({workers} loader workers, decoder {loading['decoder']}, normalised in {loading['normalised_in']})")


def packed_trials(args: argparse.Namespace, device: torch.device) -> None:
    from harness.core.store import TrialStore
    from harness.experiment import ExperimentConfig
    from harness.scheduling import ray_compat
    from harness.scheduling.ray_executor import RayExecutor

    results = tempfile.mkdtemp(prefix="dmlbench-gpu-trials-")
    print(f"\n2. 4 trials (omniglot28, recipe cpu, {args.epochs} epochs) on one GPU, trials per hour")
    ray_compat.init(num_gpus=1)  # on --device cpu, one GPU declared to Ray, so that the packing runs
    try:
        for backbone in ("small_cnn", "resnet18"):
            rates = {}
            for label, gpus, concurrent in (("one at a time", 1.0, 1), ("4 packed at 0.25 GPU", 0.25, 4)):
                trials = ExperimentConfig(methods=["ms"], dataset="omniglot28", backbone=backbone, seeds=[0, 1, 2, 3],
                                          recipe="cpu", recipe_overrides={"epochs": args.epochs}, results_dir=results,
                                          experiment=f"{backbone}-{concurrent}", save_model=False,
                                          device=device.type).trials()
                executor = RayExecutor(TrialStore(results), gpus_per_trial=gpus, max_concurrent=concurrent, listeners=[])
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    records = executor.run(trials)
                seconds = time.perf_counter() - start
                failed = [r for r in records if r.status != "ok"]
                if failed:
                    raise RuntimeError(f"{failed[0].trial_id}: {failed[0].error}")
                rates[label] = len(trials) * 3600 / seconds
                usage = [r.gpu for r in records if r.gpu.get("available")]
                shown = (f", GPU {np.mean([u['utilization_mean_pct'] for u in usage]):.0f}% mean, "
                         f"{max(u['utilization_peak_pct'] for u in usage):.0f}% peak" if usage else ", GPU not sampled")
                print(f"   {backbone:9s} {label:22s} {rates[label]:8.0f} trials/h ({seconds:.0f} s{shown})")
            speed_up = rates["4 packed at 0.25 GPU"] / rates["one at a time"]
            print(f"   {backbone:9s} packed / one at a time   {speed_up:8.2f}x")
    finally:
        ray_compat.shutdown()


def raw_search(x: torch.Tensor, k: int) -> str:
    """The anchor: the k nearest neighbours of every row of ``x`` among its rows by inner product, with
    nothing else (faiss-gpu where installed, else a chunked torch matmul and ``topk``); what ran."""
    from harness.engine.knn import faiss, faiss_gpu_available

    if x.is_cuda and faiss_gpu_available():
        index = faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), x.shape[1])
        data = x.cpu().numpy()
        index.add(data)
        index.search(data, k)
        return "faiss-gpu GpuIndexFlatIP"
    if not x.is_cuda:
        index = faiss.IndexFlatIP(x.shape[1])
        data = x.numpy()
        index.add(data)
        index.search(data, k)
        return "faiss-cpu IndexFlatIP"
    for chunk in x.split(4096):
        torch.topk(chunk @ x.T, k, dim=1)
    return "torch matmul + topk, 4096 rows a chunk"


def evaluation(args: argparse.Namespace, device: torch.device) -> None:
    from harness.engine.evaluate import evaluate_embeddings

    n, dim, classes, ks = args.eval_n, 512, max(2, args.eval_n * 11_316 // 60_000), (1, 10, 100, 1000)
    generator = torch.Generator(device=device).manual_seed(0)
    labels = torch.randint(0, classes, (n,), device=device, generator=generator)
    centres = torch.randn(classes, dim, device=device, generator=generator)
    noise = torch.randn(n, dim, device=device, generator=generator)
    embeddings = torch.nn.functional.normalize(centres[labels] + noise, dim=1)
    print(f"\n3. evaluation of {n} x {dim} in {classes} classes, Recall@{','.join(map(str, ks))}, on {device.type}")

    def timed(run: Callable[[], object]) -> tuple[float, object, str]:
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = run()
        synchronize(device)
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
        return time.perf_counter() - start, out, peak

    raw, anchor, _ = timed(lambda: raw_search(embeddings, min(max(ks) + 1, n)))
    print(f"   raw search, k = {min(max(ks) + 1, n):<5d}       {raw:7.1f} s  ({anchor})")
    for nmi in (False, True):
        seconds, metrics, peak = timed(lambda: evaluate_embeddings(embeddings, labels, recall_ks=ks, include_nmi=nmi))
        shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()))
        print(f"   evaluation{' with NMI' if nmi else ' without NMI':13s} {seconds:7.1f} s = {seconds / raw:5.2f}x raw "
              f"search{peak}\n      {shown}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


PARTS = {"throughput": training_throughput, "packed": packed_trials, "evaluation": evaluation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="synthetic training steps (default 50)")
    parser.add_argument("--batch", type=int, default=128, help="training batch (default 128)")
    parser.add_argument("--images", type=int, default=4096, help="JPEGs for the real pipeline (default 4096)")
    parser.add_argument("--backbone", default="resnet50", help="backbone of part 1 (default resnet50)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each packed trial (default 10)")
    parser.add_argument("--eval-n", type=int, default=60_000, help="embeddings evaluated in part 3 (default 60000)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)} (default all)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu: a smoke run of the same code, figures meaningless (default cuda)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no GPU: skipped (benchmarks/gpu.py needs CUDA)")
        return
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU smoke run (figures meaningless)"
    print(f"{name}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for part in parts:
        PARTS[part](args, device)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
