"""NMI at scale: the old scikit-learn ``KMeans`` path against :func:`harness.engine.kmeans.kmeans`.

SOP-like random embeddings (:func:`evaluation_scale.embeddings`: L2-normalised, classes of
``--per-class`` images); clusters = classes. Each measured part runs in its own subprocess (peak
RSS from ``ru_maxrss``); the ratios are measured in one run of this script.

    python benchmarks/nmi_scale.py --sizes 10000/1000 60000/11316 [--skip-sklearn-above 10000]

Measured on the idle 2-core CPU machine (load average 1.0, no other job), 2026-11-24, defaults:
10,000 points in 1,000 clusters, scikit-learn 13.8 s, the harness 2.5 s (5.5x), the same NMI (0.6716);
60,000 points in 11,316 clusters, the harness 126.6 s, NMI 0.8224 (scikit-learn not run; the issue
extrapolated 1.8 h). Peak RSS of that part: 3.41 GB in this run, 1.72 GB (121.8 s) when run again
alone with ``--part harness:60000:11316``; the arrays it holds come to about 1.2 GB, the rest is the
allocator's, and varies between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from evaluation_scale import embeddings


def measure(part: str, n: int, clusters: int, dim: int) -> None:
    import resource
    import time

    import torch
    from sklearn.metrics import normalized_mutual_info_score

    x, labels = embeddings(n, dim, max(1, n // clusters))
    start = time.perf_counter()
    if part == "sklearn":
        from sklearn.cluster import KMeans
        assignment = KMeans(n_clusters=clusters, n_init=1, random_state=0).fit_predict(x)
    else:
        from harness.engine.kmeans import kmeans
        assignment = kmeans(torch.from_numpy(x), clusters).numpy()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "nmi": normalized_mutual_info_score(labels, assignment),
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10000/1000", "60000/11316"],
                        help="points/clusters pairs")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--skip-sklearn-above", type=int, default=10000,
                        help="points above which the scikit-learn path is not run (SOP: ~1.8 h)")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        part, n, clusters = args.part.split(":")
        return measure(part, int(n), int(clusters), args.dim)
    from harness.engine.kmeans import kmeans_implementation
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; "
          f"new path: {kmeans_implementation('cpu')}")
    for size in args.sizes:
        n, clusters = (int(v) for v in size.split("/"))
        runs = {}
        for part in ("sklearn", "harness"):
            if part == "sklearn" and n > args.skip_sklearn_above:
                continue
            out = subprocess.run([sys.executable, __file__, "--dim", str(args.dim), "--part",
                                  f"{part}:{n}:{clusters}"], check=True, capture_output=True,
                                 text=True).stdout
            runs[part] = json.loads(out.strip().splitlines()[-1])
            print(f"{n} points, {clusters} clusters, {part:8s}: {runs[part]['seconds']:8.1f} s, "
                  f"NMI {runs[part]['nmi']:.4f}, peak RSS {runs[part]['peak_rss_gb']:.2f} GB")
        if len(runs) == 2:
            print(f"  speed-up {runs['sklearn']['seconds'] / runs['harness']['seconds']:.1f}x, "
                  f"NMI difference {runs['harness']['nmi'] - runs['sklearn']['nmi']:+.4f}")


if __name__ == "__main__":
    main()
