"""Beyond one machine: a three-node Ray cluster on the loopback (Ray's own ``cluster_utils.Cluster``:
a head holding no CPU and two worker nodes of one CPU each, separate raylets and object stores),
commands joining it through ``--address``, a worker node lost mid-trial, the head node lost mid-run
(the driver's one line naming its ``--resume`` command, then that command), and a worker node in its
own mount namespace that cannot see the driver's results folder (its files reach the driver through Ray)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from harness.scheduling import ray_compat

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # minutes; one Ray cluster at a time
REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--no-progress", "--cpus-per-trial", "1"]


@pytest.fixture(scope="module")
def cluster():
    with ray_compat.loopback_only():
        made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False})
        workers = [made.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    made.wait_for_nodes()
    yield made, workers
    made.shutdown()


def harness(argv: list[str], address: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "harness", *argv, "--address", address], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(child: subprocess.Popen, timeout: float = 400) -> str:
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err[-3000:]
    return out


def records(folder: Path, pattern: str = "runs/*/*/record.json") -> list[tuple[Path, dict]]:
    return [(p.parent, json.loads(p.read_text())) for p in sorted(folder.glob(pattern))]


def test_run_and_search_spread_trials_over_the_nodes_and_keep_every_file(cluster, tmp_path):
    made, _ = cluster
    finished(harness(["run", "--methods", "ms", "--seeds", "0,1,2,3", "--epochs", "1", *TINY,
                      "--results-dir", str(tmp_path)], made.address))
    runs = records(tmp_path)
    assert len(runs) == 4
    for folder, record in runs:
        assert record["status"] == "ok" and record["metrics"]["recall@1"] > 0
        assert (folder / "model.pt").stat().st_size > 0 and (folder / "embeddings.npz").stat().st_size > 0
        assert not (folder / "checkpoint.pt").exists()
        assert [set(node) for node in record["nodes"]] == [{"node_id", "host"}]
    assert len({record["nodes"][0]["node_id"] for _, record in runs}) == 2  # both worker nodes ran trials
    assert made.head_node.node_id not in {record["nodes"][0]["node_id"] for _, record in runs}

    finished(harness(["search", "--method", "amsoftmax", "--trials", "2", "--final-seeds", "1", "--epochs", "1", "--val-fraction", "0.4", *TINY,
                      "--results-dir", str(tmp_path / "search")], made.address))
    searched = records(tmp_path / "search", "searches/*/trials/*/record.json")
    assert len(searched) == 2 and all(r["status"] == "ok" and r["nodes"] for _, r in searched)
    assert len({n["node_id"] for _, r in searched for n in r["nodes"]}) == 2
    (final,) = records(tmp_path / "search")
    assert final[1]["status"] == "ok" and (final[0] / "model.pt").is_file()


#: a worker node of one CPU joining the loopback cluster at argv[1] (as ``Cluster.add_node`` starts one),
#: which writes what it sees at the path argv[2] into the file argv[3] every half second until SIGTERM
def can_make_a_mount_namespace() -> bool:
    """Whether this user may run ``unshare -m`` and mount a tmpfs in it (root or CAP_SYS_ADMIN; CI runs as root)."""
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "none", "/mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


WORKER_NODE = """
import os, signal, sys, time
from ray._private.node import Node
from ray._private.parameter import RayParams
from harness.scheduling import ray_compat
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with ray_compat.loopback_only():
    node = Node(RayParams(gcs_address=sys.argv[1], num_cpus=1, num_gpus=0, node_ip_address="127.0.0.1",
                          object_store_memory=150 * 1024 * 1024, min_worker_port=0, max_worker_port=0,
                          include_log_monitor=False, node_manager_port=0),
                head=False, shutdown_at_exit=True, spawn_reaper=True)
while True:
    with open(sys.argv[3] + ".tmp", "w") as view:
        view.write(" ".join(sorted(os.listdir(sys.argv[2]))))
    os.replace(sys.argv[3] + ".tmp", sys.argv[3])
    time.sleep(0.5)
"""


@pytest.mark.skipif(not can_make_a_mount_namespace(),
                    reason="needs `unshare -m` and a tmpfs mount (root or CAP_SYS_ADMIN) to give a node its own view "
                           "of the results path")
def test_a_worker_node_with_its_own_view_of_the_results_path_sends_every_file_through_ray(tmp_path):
    """No shared file system, for real: the worker node's processes run in their own mount namespace
    (``unshare -m``) with an empty tmpfs over the driver's --results-dir, so the path the driver
    writes to does not exist for them. `run` through --address puts its trial on that node (the only
    one with a CPU); the record, weights and embeddings arrive complete in the driver's folder, and
    nothing the trial wrote is in the worker's view of that path."""
    results = tmp_path / "driver"
    results.mkdir()
    with ray_compat.loopback_only():
        head = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False})
    address, head_id = head.address, head.head_node.node_id
    view = tmp_path / "worker-view"
    script = (f"mount -t tmpfs none {shlex.quote(str(results))} && exec {shlex.quote(sys.executable)} -c "
              f"{shlex.quote(WORKER_NODE)} {address} {shlex.quote(str(results))} {shlex.quote(str(view))}")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    worker = subprocess.Popen(["unshare", "-m", "--propagation", "private", "bash", "-c", script], env=env,
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "worker.log").open("w"), start_new_session=True)
    try:
        deadline = time.time() + 120
        while sum(1 for n in ray_nodes(address) if n["Alive"]) < 2:
            assert worker.poll() is None and time.time() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.5)
        out = finished(harness(["run", "--methods", "ms", "--seeds", "0", "--epochs", "2", *TINY,
                                "--results-dir", str(results)], address))
        worker_saw = view.read_text().split()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 15)
        worker.wait(timeout=60)
        head.shutdown()
    ((folder, record),) = records(results)
    print(out.splitlines()[-1], record["nodes"], "worker's view of the results path:", worker_saw)
    assert record["status"] == "ok" and record["metrics"]["recall@1"] > 0
    assert record["nodes"][0]["node_id"] != head_id
    assert (folder / "model.pt").stat().st_size > 0 and (folder / "embeddings.npz").stat().st_size > 0
    assert not (folder / "checkpoint.pt").exists()
    assert worker_saw == []  # the worker's results path stayed empty: every file went through Ray


def ray_nodes(address: str) -> list[dict]:
    """The nodes of the cluster at ``address``, from a short-lived driver."""
    query = ("import ray, json; from harness.scheduling import ray_compat\nwith ray_compat.loopback_only(): "
             "ray.init(address=%r, log_to_driver=False)\nprint(json.dumps(ray.nodes()))" % address)
    done = subprocess.run([sys.executable, "-c", query], env=os.environ | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else []


def runs_a_trial(node) -> bool:
    """Whether a Tune trial's actor (``ray::ImplicitFunc``) runs under this node's raylet."""
    import psutil

    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    return any(child.name().startswith("ray::ImplicitFunc") for child in raylet.children())


def test_a_trial_whose_node_is_lost_restarts_on_another_node_from_its_checkpoint(cluster, tmp_path):
    """Kill one worker node once its trial has written an epoch checkpoint (on the driver's disk): Tune
    restarts the trial on the other worker node, which continues from that checkpoint;
    its metrics equal those of an uninterrupted local run with the same threads."""
    made, workers = cluster
    args = ["run", "--methods", "ms", "--seeds", "0", "--epochs", "3", *TINY]
    child = harness([*args, "--results-dir", str(tmp_path / "cluster")], made.address)
    deadline = time.time() + 400
    while not list((tmp_path / "cluster").glob("runs/*/*/checkpoint.pt")):
        assert child.poll() is None and time.time() < deadline, child.communicate()[1][-3000:]
        time.sleep(0.1)
    busy = next(w for w in workers if runs_a_trial(w))
    made.remove_node(busy, allow_graceful=False)
    out = finished(child)
    assert "restarting it from its last checkpoint" in out
    ((_, record),) = records(tmp_path / "cluster")
    # resumed from an epoch checkpoint, not from scratch: the node may die after epoch 1, 2 or (on a busy
    # machine) 3, between the last epoch and the evaluation
    assert record["status"] == "ok" and record["resumed_at_epoch"] in (1, 2, 3)
    assert len(record["nodes"]) == 2 and record["nodes"][0]["node_id"] == busy.node_id
    assert record["nodes"][1]["node_id"] != busy.node_id
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "harness", *args, "--executor", "local", "--results-dir",
                    str(tmp_path / "local")], cwd=REPO, env=env, check=True, capture_output=True)
    ((_, local),) = records(tmp_path / "local")
    assert record["metrics"] == local["metrics"]
    made.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # the module's cluster keeps two workers


FAKE = """#!/bin/bash
echo "{name} $*" >> "$CALLS"
{body}
"""


def test_the_slurm_script_starts_a_head_then_workers_then_the_command_against_the_head(tmp_path):
    """benchmarks/slurm_ray.sbatch with fake ``scontrol``, ``srun`` and python on PATH that record their
    arguments: the head on the first node, one worker per other node joining it, the command last. The
    script orders the backgrounded ``ray start`` calls before the command only by its waits, so the test
    keeps two seconds of each (at 0 a backgrounded ``srun`` can log after the command on a busy machine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {"scontrol": 'printf "gpu01\\ngpu02\\ngpu03\\n"',
             "srun": 'case "$*" in *hostname*) echo "10.1.2.3 fe80::1";; esac',
             "python": ""}
    for name, body in fakes.items():
        (bin_dir / name).write_text(FAKE.format(name=name, body=body))
        (bin_dir / name).chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls"),
                        "SLURM_JOB_NODELIST": "gpu[01-03]", "SLURM_CPUS_PER_TASK": "8", "SLURM_GPUS_PER_NODE": "a100:4",
                        "RAY_HEAD_WAIT_S": "2", "RAY_WORKER_WAIT_S": "2", "PYTHON": "python"}
    subprocess.run(["bash", str(REPO / "benchmarks" / "slurm_ray.sbatch"), "run", "--methods", "ms"], env=env,
                   check=True, timeout=60)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "scontrol show hostnames gpu[01-03]"
    assert calls[1] == "srun --nodes=1 --ntasks=1 -w gpu01 hostname --ip-address"
    srun_starts = sorted((c for c in calls if c.startswith("srun") and "start" in c), key=lambda c: c.split()[4])
    assert [c.split()[4] for c in srun_starts] == ["gpu01", "gpu02", "gpu03"]
    assert "--head --node-ip-address=10.1.2.3 --port=6379 --num-cpus=8 --num-gpus=4 --block" in srun_starts[0]
    assert all("--address=10.1.2.3:6379 --num-cpus=8 --num-gpus=4 --block" in c for c in srun_starts[1:])
    assert calls[-1] == "python -m harness run --methods ms --address 10.1.2.3:6379"


def small_cluster(port: int) -> Cluster:
    """A head without CPUs whose GCS listens on ``port``, and one worker node of one CPU."""
    with ray_compat.loopback_only():
        made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False, "gcs_server_port": port})
        made.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    made.wait_for_nodes()
    return made


def worker_id(made: Cluster) -> str:
    """The node id of ``made``'s one worker node."""
    (node,) = made.worker_nodes
    return node.node_id


def test_after_the_head_node_is_lost_the_printed_resume_command_loses_nothing(tmp_path):
    """The head node killed while the second of two trials is between epochs (the first finished):
    the driver exits nonzero, its stderr ending with one line naming the command to run with
    --resume; that command, against a cluster started again at the same address, keeps the finished
    trial's record as it was and continues the other from its epoch checkpoint (on the driver's disk)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["run", "--methods", "ms", "--seeds", "0,1", "--epochs", "3", *TINY, "--results-dir", str(tmp_path)]
    first = small_cluster(port)
    address, first_worker = first.address, worker_id(first)
    child = harness(args, address)
    started = time.time()
    deadline = time.time() + 400
    while not (len(records(tmp_path)) == 1 and list(tmp_path.glob("runs/*/*/checkpoint.pt"))):
        assert child.poll() is None and time.time() < deadline, child.communicate()[1][-3000:]
        time.sleep(0.1)
    ((kept_folder, kept),) = records(tmp_path)
    kept_bytes = (kept_folder / "record.json").read_bytes()
    lost_at = time.time()
    first.shutdown()  # the head node (and with it the cluster) is gone
    print(f"head lost after {lost_at - started:.1f} s of the run")
    _, err = child.communicate(timeout=120)
    print(f"driver exited {child.returncode} {time.time() - lost_at:.1f} s after the head was lost")
    assert child.returncode != 0 and time.time() - lost_at < 60
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: the Ray head node at 127.0.0.1:{port} is lost; once the cluster runs again, run: ")
    command = shlex.split(last.partition(", run: ")[2])
    assert command == ["python", "-m", "harness", *args, "--address", address, "--resume"]
    second = small_cluster(port)
    second_worker = worker_id(second)
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, *command[1:]], cwd=REPO, env=env, check=True, capture_output=True, timeout=400)
    finally:
        second.shutdown()
    runs = records(tmp_path)
    assert len(runs) == 2 and all(r["status"] == "ok" for _, r in runs)
    assert (kept_folder / "record.json").read_bytes() == kept_bytes  # the finished trial was not run again
    ((resumed_folder, resumed),) = [(f, r) for f, r in runs if f != kept_folder]
    assert resumed["resumed_at_epoch"] >= 1
    # the record names both attempts' nodes: the lost cluster's worker, then the new one's
    assert [node["node_id"] for node in resumed["nodes"]] == [first_worker, second_worker]
    assert (resumed_folder / "model.pt").stat().st_size > 0 and (resumed_folder / "embeddings.npz").stat().st_size > 0
