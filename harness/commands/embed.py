"""``python -m harness embed RUN_DIR IMAGE_FOLDER --out FILE.npy``: embed images with a trained trial."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harness.core.store import TrialFolder, atomic_save_array, atomic_write_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed every image under a folder with a trained trial")
    p.add_argument("run_dir", help="a trial folder: results/runs/<experiment>/<trial_id>")
    p.add_argument("image_folder", help="folder searched recursively for images")
    p.add_argument("--out", required=True, help="output .npy; the sorted image paths go to <out>.paths.txt (required)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    p.set_defaults(func=embed_folder)


def embed_folder(args: argparse.Namespace) -> int:
    """Embed every image under the folder, or (one unreadable image) fail naming it before writing anything."""
    from torch.utils.data import DataLoader  # torch and the engine: only when it runs (``--help`` stays fast)

    from harness.engine.evaluate import embed
    from harness.engine.tensor_files import load_tensors
    from harness.engine.train import resolve_device
    from harness.engine.runner import build_model, eval_transform
    from harness.plugins.data import DATASETS, ImageDataset, Subset

    trial = TrialFolder(args.run_dir)
    spec = trial.record.spec
    channels = DATASETS.get(spec.dataset).channels
    model, _ = build_model(spec, channels, trial.record.placement.pretrained)
    model.load_state_dict(load_tensors(trial.model_path()))
    paths = sorted(str(p) for p in Path(args.image_folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {args.image_folder}")
    subset = Subset(paths, np.zeros(len(paths), dtype=np.int64))
    device = resolve_device(args.device)
    model.to(device)
    loader = DataLoader(ImageDataset(subset, eval_transform(model, spec.recipe_obj, channels), channels=channels),
                        batch_size=spec.recipe_obj.eval_batch_size)
    embeddings, _ = embed(model, loader, device)
    out = Path(args.out)
    atomic_save_array(out, embeddings.cpu().numpy())
    atomic_write_text(out.with_name(out.name + ".paths.txt"), "\n".join(paths) + "\n")
    print(f"{len(paths)} embeddings of size {embeddings.shape[1]} -> {out}")
    return 0
