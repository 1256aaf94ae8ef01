"""``python -m harness embed RUN_DIR IMAGE_FOLDER --out FILE.npy``: embed images with a trained trial."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.store import TrialFolder, atomic_save_array, atomic_write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed every image under a folder with a trained trial")
    p.add_argument("run_dir", help="a trial folder: results/runs/<experiment>/<trial_id>")
    p.add_argument("image_folder", help="folder searched recursively for images")
    p.add_argument("--out", required=True, help="output .npy; the sorted image paths go to <out>.paths.txt (required)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    p.set_defaults(func=embed_folder)


def embed_folder(args: argparse.Namespace) -> int:
    """Embed every image under the folder, or (one unreadable image) fail naming it before writing anything."""
    from harness.engine.inference import embed_images, image_files  # torch and the engine: only when it runs

    paths = image_files(args.image_folder)
    embeddings = embed_images(TrialFolder(args.run_dir), paths, args.device)
    out = Path(args.out)
    atomic_save_array(out, embeddings)
    atomic_write_text(out.with_name(out.name + ".paths.txt"), "\n".join(paths) + "\n")
    print(f"{len(paths)} embeddings of size {embeddings.shape[1]} -> {out}")
    return 0
