"""Ray Tune's cost and benefit on one machine: per-trial overhead and the speed-up of parallel trials.

The same ``--trials`` Omniglot trials (``--method`` on ``../shared/data/omniglot``, recipe ``cpu``,
``--epochs`` epochs, one CPU and one thread each) run, in one process:

1. by the local executor, one after another (in this process, caches cold at the start);
2. by the Ray executor, one at a time (Ray's start-up, ``ray.init``, timed apart: a command starts
   Ray once); the difference from 1, per trial, is Ray's overhead. It splits, from the moments the
   records reach the driver, into the start of a run's worker (a new process importing ray.tune,
   torch, timm and the plugins, once per run and worker: Tune reuses it for the run's next trials,
   which also find the dataset and its decoded images cached) and what each further trial costs
   beyond its own time;
3. by the Ray executor, two at a time on two CPUs: the speed-up over 2, end to end;
4. with ``--cluster-trials N``: N trials on a simulated cluster (Ray's ``cluster_utils.Cluster`` on the
   loopback, ``--nodes`` worker nodes of ``--node-cpus`` CPUs each and a head without CPUs), after the
   local executor ran the same N: each executor's time per trial outside the trials themselves
   (wall time times the trials it runs at once, minus the trials' own time, over N) and how evenly
   the nodes were used (trials per node, from each record's ``nodes``). On a machine with fewer
   cores than the simulated cluster the trials slow each other, which the trials' own time absorbs.

Every figure comes with the load average (other jobs on the machine slow every row).

    python benchmarks/scheduling_overhead.py [--trials 2] [--epochs 3] [--method ms]
    python benchmarks/scheduling_overhead.py --cluster-trials 24 --nodes 3 --node-cpus 2 --epochs 1

Measured on the idle 2-core CPU machine (load average 0.3-1.7, no other job), 2026-11-24, in two
sessions:

    --trials 2 --epochs 3   local 28.0 s, Ray one at a time 34.6 s, two at a time 22.1 s (ray.init 4.5 s apart)
                            overhead 3.29 s per trial = worker start 9.88 s once + 0.04 s per further trial;
                            two at a time 1.57x
                            again: local 24.5 s, Ray 32.1 s, two at a time 21.8 s: 3.82 s per trial
                            (worker start 8.31 s), 1.47x
    --trials 4 --epochs 6   local 94.4 s, Ray one at a time 98.5 s, two at a time 55.5 s (ray.init 3.4 s apart)
                            overhead 1.01 s per trial = worker start 9.21 s once + 0.04 s per further trial;
                            two at a time 1.78x
    --trials 6 --epochs 3   local 69.5 s, Ray one at a time 76.9 s, two at a time 46.5 s (ray.init 3.0 s apart)
                            overhead 1.24 s per trial = worker start 7.30 s once + 0.03 s per further trial;
                            two at a time 1.66x

``--cluster-trials 24 --nodes 3 --node-cpus 2 --epochs 1`` on 800 Omniglot drawings (5 characters of
each background alphabet), same machine, 2026-12-04, load average 4.8 (another engineer's jobs and a
test run beside it): local 14.4 s (0.01 s per trial outside the trials), the simulated cluster 51.9 s
(9.03 s per trial outside the trials, wall time x 6 slots: six worker starts and six trials at once on
two cores); overhead over local 9.02 s per trial; trials per node 9 8 7 (most / fewest 1.29x).

``--trials 1 --epochs 1``, 2026-12-07, on a BUSY machine (load average 11.1 at the start, 14.7 at the end: eight
engineers' tests and trainings on the same two cores; the figures are upper bounds, not the idle machine's):
local 21.3 s (the trial's own time 20.0 s), ray.init 11.1 s apart, Ray one at a time 53.1 s (own time 21.7 s):
31.8 s of overhead for the one trial, 31.3 s of it the worker's start. This is why a command's default executor
runs one trial, or trials that could only run one at a time, in its own process without starting Ray (it says so
in one line; ``--executor ray`` forces Ray): there Ray brings no concurrency and costs its start-up and a worker's.

The worker start is almost all imports a trial needs in a fresh process (``import
harness.scheduling.ray_executor`` alone: 6.7-8.7 s here; torch 1.6-2.4 s, torchvision 1.8-2.0 s of
which torch._dynamo 1.6-1.7 s through ``torchvision.ops`` (timm imports it), scikit-learn 1.4-1.5 s
for NMI, ray.tune 0.8 s), paid once per worker and Tune run: the overhead per trial is under 2 s from
about 4 trials a command. Two at a time pays that start in each worker at once, and the two trials
slow each other by 6-9% (their own time summed: 75.3 s against 69.4 s one at a time), so with a
worker start ``W`` and trials of ``T`` seconds the speed-up is about ``(W + nT) / (W + 1.085 nT / 2)``:
at most 1.84x, and 1.8x from about 20 trials of 12 s. Timeline of a worker's start (a bare Tune run,
same machine): the process exists 1.1 s after ``fit``, the trainable runs 1.8 s later, then the
imports.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from typing import Callable

from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from harness.core.trial import Trial
from harness.experiment import ExperimentConfig
from collections import Counter

from harness.scheduling import ray_compat
from harness.scheduling.executors import LocalExecutor
from harness.scheduling.ray_executor import RayExecutor


def trials(method: str, n: int, epochs: int, data_root: str, results: str, tag: str) -> list[Trial]:
    return ExperimentConfig(methods=[method], dataset="omniglot", data_root=data_root, seeds=list(range(n)),
                            recipe="cpu", recipe_overrides={"epochs": epochs}, results_dir=results, experiment=tag,
                            save_model=False, device="cpu").trials()


def timed(run: Callable[[], list[TrialRecord] | None]) -> tuple[float, list[TrialRecord], float]:
    """Seconds ``run`` takes (its printing swallowed), the records it returns, and the load average after."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        records = run() or []
    failed = [r for r in records if r.status != "ok"]
    if failed:
        raise RuntimeError(f"trial {failed[0].trial_id} {failed[0].status}: {failed[0].error}")
    return time.perf_counter() - start, records, os.getloadavg()[0]


def arrivals(executor: RayExecutor, configs: list[Trial]) -> tuple[float, list[TrialRecord], float, list[float]]:
    """``timed`` run of ``executor``, with the seconds from its start at which each record arrived."""
    start, arrived = time.perf_counter(), []

    def run() -> list[TrialRecord]:
        return executor.run(configs, on_record=lambda record: arrived.append(time.perf_counter() - start))

    return (*timed(run), arrived)


def trial_seconds(records: list[TrialRecord]) -> float:
    return sum(r.wall_time_s for r in records)


def cluster_part(args: argparse.Namespace, results: str, store: TrialStore) -> None:
    """Part 4: local executor against a simulated cluster on the same trials (written through ``store``)."""
    from ray.cluster_utils import Cluster

    def batch(tag: str) -> list[Trial]:
        return trials(args.method, args.cluster_trials, args.epochs, args.data_root, results, tag)

    local = LocalExecutor(store, progress=False, cpus_per_trial=1, listeners=[])
    t_local, rec_local, _ = timed(lambda: local.run(batch("cluster-local")))
    with ray_compat.loopback_only():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                                "include_dashboard": False})
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=args.node_cpus, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    try:
        with RayExecutor(store, cpus_per_trial=1, address=cluster.address, listeners=[]) as executor:
            t_ray, rec_ray, load = timed(lambda: executor.run(batch("cluster-ray")))
    finally:
        cluster.shutdown()
    n, slots = args.cluster_trials, args.nodes * args.node_cpus
    per_node = Counter(r.nodes[0]["node_id"] for r in rec_ray)
    counts = sorted(per_node.values(), reverse=True) + [0] * (args.nodes - len(per_node))
    print(f"\n{n} trials on a simulated cluster of {args.nodes} nodes x {args.node_cpus} CPUs (load {load:.1f})")
    print(f"  local executor                 {t_local:7.1f} s  outside the trials {(t_local - trial_seconds(rec_local)) / n:6.2f} s per trial")
    print(f"  Ray on the cluster             {t_ray:7.1f} s  outside the trials {(t_ray * slots - trial_seconds(rec_ray)) / n:6.2f} s per trial "
          f"(wall x {slots} slots)")
    print(f"  overhead per trial over local  {((t_ray * slots - trial_seconds(rec_ray)) - (t_local - trial_seconds(rec_local))) / n:7.2f} s")
    print(f"  trials per node                {' '.join(map(str, counts))}  (most / fewest {counts[0] / max(counts[-1], 1):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2, help="trials per run (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each trial (default 3)")
    parser.add_argument("--method", default="ms")
    parser.add_argument("--data-root", default="../shared/data/omniglot", help="Omniglot, original layout")
    parser.add_argument("--cluster-trials", type=int, help="run only part 4 with this many trials")
    parser.add_argument("--nodes", type=int, default=3, help="worker nodes of the simulated cluster (default 3)")
    parser.add_argument("--node-cpus", type=int, default=2, help="CPUs of each simulated node (default 2)")
    args = parser.parse_args()
    results = tempfile.mkdtemp(prefix="dmlbench-bench-")
    store = TrialStore(results)  # built once, handed to every executor
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; results in {results}")
    if args.cluster_trials:
        cluster_part(args, results, store)
        return

    def batch(tag: str) -> list[Trial]:  # a fresh experiment name: no run reuses another's records
        return trials(args.method, args.trials, args.epochs, args.data_root, results, tag)

    local = LocalExecutor(store, progress=False, cpus_per_trial=1, listeners=[])
    t_local, rec_local, load_local = timed(lambda: local.run(batch("local")))
    t_init, _, load_init = timed(lambda: ray_compat.init(num_cpus=os.cpu_count()) and None)
    one = RayExecutor(store, cpus_per_trial=1, max_concurrent=1, listeners=[])
    two = RayExecutor(store, cpus_per_trial=1, max_concurrent=2, listeners=[])
    t_seq, rec_seq, load_seq, arrived = arrivals(one, batch("ray-1"))
    t_par, rec_par, load_par = timed(lambda: two.run(batch("ray-2")))
    ray_compat.shutdown()

    n = args.trials
    print(f"\n{n} trials: {args.method} on omniglot, recipe cpu, {args.epochs} epochs, 1 CPU and 1 thread each")
    print(f"  local executor, one at a time  {t_local:7.1f} s  (trials' own time {trial_seconds(rec_local):.1f} s; "
          f"load {load_local:.1f})")
    print(f"  Ray start-up (ray.init)        {t_init:7.1f} s  (once per command; load {load_init:.1f})")
    print(f"  Ray, one at a time             {t_seq:7.1f} s  (trials' own time {trial_seconds(rec_seq):.1f} s; "
          f"load {load_seq:.1f})")
    print(f"  Ray, two at a time             {t_par:7.1f} s  (trials' own time {trial_seconds(rec_par):.1f} s; "
          f"load {load_par:.1f})")
    print(f"  Ray overhead per trial         {(t_seq - t_local) / n:7.2f} s  (Ray one at a time minus local, per trial; "
          "target < 2 s), of which:")
    own = [r.wall_time_s for r in rec_seq]  # in the order they finished, like ``arrived``
    start_up = arrived[0] - own[0]
    print(f"    worker start, once per run   {start_up:7.2f} s  (first record's arrival minus its trial's time)")
    if n > 1:
        gaps = [arrived[i] - arrived[i - 1] - own[i] for i in range(1, n)]
        further = sum(gaps) / len(gaps)
        print(f"    each further trial           {further:7.2f} s  (between two records beyond the "
              "second trial's time, reused worker)")
        for total in (10, 100):
            print(f"  per trial in a command of {total:3d}   {(start_up + (total - 1) * further) / total:7.2f} s  "
                  f"(worker start + {total - 1} further trials, over {total}; from the two lines above)")
    print(f"  two at a time vs one at a time {t_seq / t_par:7.2f}x  end to end (target >= 1.8x on two idle cores)")
    print(f"  load average {os.getloadavg()[0]:.1f} at the end (other processes share the cores)")


if __name__ == "__main__":
    main()
