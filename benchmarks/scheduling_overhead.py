"""Ray Tune's cost and benefit on one machine: per-trial scheduling overhead and the speed-up of parallel trials.

1. Overhead: ``--trials`` trivial trials (the ``pixels`` floor on digits: no training, one evaluation)
   run one at a time by the local executor and by the Ray executor; the difference per trial is
   Ray's scheduling overhead (Ray's start-up is timed apart).
2. Speed-up: ``--pairs`` × 2 CPU trials (``amsoftmax`` on digits, ``--epochs`` epochs, one CPU each)
   on Ray one at a time, then two at a time (each run starts its worker processes afresh).

    python benchmarks/scheduling_overhead.py [--trials 8] [--pairs 2] [--epochs 20]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from typing import Callable

from harness.scheduling import ray_compat
from harness.core.config import TrialConfig
from harness.experiment import ExperimentConfig
from harness.scheduling.executors import LocalExecutor
from harness.scheduling.ray_executor import RayExecutor
from harness.core.record import TrialRecord


def trials(method: str, n_seeds: int, epochs: int, results: str, tag: str) -> list[TrialConfig]:
    return ExperimentConfig(methods=[method], dataset="digits", seeds=list(range(n_seeds)), recipe_overrides={"epochs": epochs},
                            results_dir=results, experiment=tag, save_model=False, device="cpu").trials()


def timed(run: Callable[[], list[TrialRecord]]) -> tuple[float, list[TrialRecord]]:
    """Seconds ``run`` takes (its printing swallowed), and the records it returns."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        records = run()
    return time.perf_counter() - start, records


def trial_seconds(records: list[TrialRecord]) -> float:
    return sum(r.wall_time_s for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trivial trials per executor (default 8)")
    parser.add_argument("--pairs", type=int, default=2, help="pairs of speed-up trials (default 2)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each speed-up trial (default 20)")
    args = parser.parse_args()
    results = tempfile.mkdtemp(prefix="dmlbench-bench-")
    local = LocalExecutor(progress=False, cpus_per_trial=1, listeners=[])
    one_at_a_time = RayExecutor(results, cpus_per_trial=1, max_concurrent=1, listeners=[])
    two_at_a_time = RayExecutor(results, cpus_per_trial=1, max_concurrent=2, listeners=[])
    trivial = trials("pixels", args.trials, 0, results, "trivial")
    training = trials("amsoftmax", 2 * args.pairs, args.epochs, results, "training")

    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; results in {results}")
    timed(lambda: local.run(trivial[:1]))  # warm-up: imports, dataset cache
    t_local, _ = timed(lambda: local.run(trivial))
    t_init, _ = timed(lambda: [ray_compat.init(num_cpus=os.cpu_count())])
    t_first, _ = timed(lambda: one_at_a_time.run(trivial[:1]))  # starts the worker actor
    t_ray, _ = timed(lambda: one_at_a_time.run(trivial))
    t_seq, seq = timed(lambda: one_at_a_time.run(training))
    t_par, par = timed(lambda: two_at_a_time.run(training))
    ray_compat.shutdown()

    overhead = (t_ray - t_local) / args.trials
    print(f"\n1. scheduling overhead, {args.trials} trivial trials (pixels on digits), one at a time")
    print(f"   local executor      {t_local:7.2f} s  ({t_local / args.trials:.2f} s/trial)")
    print(f"   Ray executor        {t_ray:7.2f} s  ({t_ray / args.trials:.2f} s/trial)")
    print(f"   Ray start-up        {t_init:7.2f} s  (ray.init); first trial {t_first:.2f} s (starts a worker)")
    print(f"   overhead per trial  {overhead:7.2f} s  (Ray / local time: {t_ray / t_local:.2f}x)")
    print(f"\n2. parallel speed-up, {len(training)} trials (amsoftmax on digits, {args.epochs} epochs, 1 CPU each) "
          "on Ray")
    print(f"   one at a time       {t_seq:7.2f} s  (trials' own time {trial_seconds(seq):.2f} s)")
    print(f"   two at a time       {t_par:7.2f} s  (trials' own time {trial_seconds(par):.2f} s)")
    print(f"   speed-up            {t_seq / t_par:7.2f}x  end to end, worker start-up included")
    throughput = 2 * trial_seconds(seq) / trial_seconds(par)
    print(f"   trial throughput    {throughput:7.2f}x  (ideal 2.00x on two idle cores)")
    print(f"   load average        {os.getloadavg()[0]:7.1f}  at the end (other processes share the cores)")


if __name__ == "__main__":
    main()
