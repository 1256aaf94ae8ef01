"""The Ray Tune executor on CPU: same metrics as in-process, failures recorded, resume, worker restarts."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import psutil
import pytest
import ray

from harness.scheduling import ray_compat
from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--dataset", "digits", "--epochs", "1", "--no-progress", "--cpus-per-trial", "1", "--executor", "ray"]


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance per test module (start-up takes seconds); executors reuse it, and
    commands run in a subprocess join it with --address."""
    started = ray_compat.init(num_cpus=2)
    yield ray_compat.address()
    if started:
        ray_compat.shutdown()


pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.xdist_group("ray")]  # one Ray cluster at a time


def kill_when(argv: list[str], ready: Callable[[], bool], address: str, timeout: float = 400) -> None:
    """Run ``python -m harness ARGV --address ADDRESS`` and SIGKILL it once ``ready()``; then wait
    until Ray has ended its orphaned trials (their workers could still write checkpoints)."""
    child = subprocess.Popen([sys.executable, "-m", "harness", *argv, "--address", address], cwd=REPO,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while not ready():
            assert child.poll() is None and time.time() < deadline, "the command ended before it was killed"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.2)


def records(results: Path) -> dict[str, dict]:
    return {r["trial_id"]: r for r in (json.loads(p.read_text()) for p in results.glob("runs/*/*/record.json"))}


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "steps_per_s"} for epoch in history]


def test_ray_and_local_executors_give_identical_metrics(tmp_path):
    args = ["run", "--methods", "ms,amsoftmax", "--seeds", "0", *FAST]
    assert main([*args, "--executor", "ray", "--results-dir", str(tmp_path / "ray")]) == 0
    assert main([*args, "--executor", "local", "--results-dir", str(tmp_path / "local")]) == 0
    on_ray, local = records(tmp_path / "ray"), records(tmp_path / "local")
    assert set(on_ray) == set(local) and len(on_ray) == 2
    for trial_id, record in on_ray.items():
        assert record["status"] == "ok"
        assert record["metrics"] == local[trial_id]["metrics"]
        assert without_timing(record["history"]) == without_timing(local[trial_id]["history"])


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path, capsys):
    code = main(["run", "--methods", "amsoftmax,pixels", "--fail-at-epoch", "1", "--results-dir", str(tmp_path), *FAST])
    assert code == 1  # after its summary
    by_method = {r["spec"]["method"]: r for r in records(tmp_path).values()}
    assert by_method["pixels"]["status"] == "ok" and by_method["pixels"]["metrics"]["recall@1"] > 0
    assert by_method["amsoftmax"]["status"] == "failed"
    assert "injected failure at epoch 1" in by_method["amsoftmax"]["error"]
    assert "0 of 1 seeds; 1 failed" in capsys.readouterr().out
    board = pd.read_csv(tmp_path / "leaderboards" / "digits.csv").set_index("method")
    assert board.loc["amsoftmax", "n_failed"] == 1 and board.loc["pixels", "n_failed"] == 0


@pytest.mark.slow
def test_a_killed_run_resumes_only_its_unfinished_trials(ray_session, tmp_path, capsys):
    """Kill a run as soon as its first record is on disk; ``--resume`` runs only the rest."""
    args = ["run", "--dataset", "digits", "--methods", "amsoftmax", "--seeds", "0,1,2", "--epochs", "2", "--max-concurrent", "1",
            "--no-progress", "--cpus-per-trial", "1", "--executor", "ray", "--results-dir", str(tmp_path)]
    kill_when(args, lambda: any(tmp_path.glob("runs/*/*/record.json")), ray_session)
    before = {k: r["finished_at"] for k, r in records(tmp_path).items()}
    assert 1 <= len(before) < 3  # written the moment its trial finished, while the run went on
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert capsys.readouterr().out.count(": recall@1 ") == 3 - len(before)  # one line per trial it ran
    after = records(tmp_path)
    assert len(after) == 3 and all(r["status"] == "ok" for r in after.values())
    assert {k: after[k]["finished_at"] for k in before} == before
    assert main([*args, "--resume"]) == 0  # nothing left to run
    assert ": recall@1 " not in capsys.readouterr().out


CRASH_PLUGIN = """
import os
from pathlib import Path
from typing import Callable

from harness.plugins.method import register_method
from methods.amsoftmax import AMSoftmax

ROOT = Path({root!r})


@register_method("crash_once")
class CrashOnce(AMSoftmax):
    '''AM-Softmax whose worker process dies once: at its first batch after an epoch checkpoint exists.'''

    def loss(self, outputs, labels):
        with open(ROOT / "calls.log", "a") as log:
            log.write(f"{{os.getpid()}}\\n")
        if list(ROOT.glob("runs/*/*/checkpoint.pt")) and not (ROOT / "crashed").exists():
            (ROOT / "crashed").touch()
            os._exit(1)
        return super().loss(outputs, labels)
"""


@pytest.mark.slow
def test_a_trial_whose_worker_dies_restarts_from_its_last_checkpoint(tmp_path, monkeypatch):
    """The plugin (imported by the workers from the driver's sys.path) kills its worker in epoch 2 once;
    Tune restarts the trial, which resumes at epoch 2: the second process trains one epoch, not two."""
    (tmp_path / "crash_plugin_ray.py").write_text(textwrap.dedent(CRASH_PLUGIN.format(root=str(tmp_path))))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--plugins", "crash_plugin_ray", "run", "--dataset", "digits", "--methods", "crash_once", "--epochs", "2",
                 "--no-progress", "--cpus-per-trial", "1", "--executor", "ray", "--results-dir", str(tmp_path)]) == 0
    (record,) = records(tmp_path).values()
    assert record["status"] == "ok" and [h["epoch"] for h in record["history"]] == [1, 2]
    pids = (tmp_path / "calls.log").read_text().split()
    first, second = pids[0], next(p for p in pids if p != pids[0])
    batches_per_epoch = pids.count(first) - 1  # the first process died at its first batch of epoch 2
    assert (tmp_path / "crashed").exists() and pids.count(second) == batches_per_epoch
    assert not glob.glob(str(tmp_path / "runs/*/*/checkpoint.pt"))  # a finished trial's checkpoint goes


def test_a_locally_started_ray_listens_on_the_loopback_only():
    listening = [(p.name(), c.laddr.ip) for p in psutil.Process().children(recursive=True)
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert {"gcs_server", "raylet"} <= {name for name, _ in listening}
    assert {ip for _, ip in listening} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening


def driver(argv: list[str], pythonpath: Path | None = None) -> subprocess.Popen:
    """``python -m harness ARGV`` starting its own Ray (no --address), in its own process group; ``pythonpath``
    first on its module path (a ``--plugins`` module's folder)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-m", "harness", *argv], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(ready: Callable[[], bool], child: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert child.poll() is None and time.time() < deadline, "the command ended too early"
        time.sleep(0.2)


def descendants(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE}


@pytest.mark.slow
def test_a_killed_drivers_processes_end_with_it_and_no_foreign_ray_process_is_touched(tmp_path):
    """kill -9 of a driver that started its own Ray: every process it started (Ray's dashboard and
    runtime-env agents among them) ends within seconds; a ray::-named orphan this harness did not start
    survives that and the next run, which resumes the trial and removes Tune's leftover folder."""
    foreign = subprocess.Popen([sys.executable, "-c", "import ctypes, time; "
                                "ctypes.CDLL(None).prctl(15, b'ray::Foreign', 0, 0, 0); time.sleep(900)"],
                               start_new_session=True)
    try:
        args = ["run", "--dataset", "digits", "--methods", "ms", "--epochs", "3", "--no-progress",
                "--cpus-per-trial", "1", "--executor", "ray", "--results-dir", str(tmp_path)]
        child = driver(args)
        wait_for(lambda: any(tmp_path.glob("runs/*/*/checkpoint.pt")), child)
        started = descendants(child.pid)
        assert any("agent" in " ".join(psutil.Process(p).cmdline()).lower() for p in alive(started))
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
        deadline = time.time() + 30
        while alive(started) and time.time() < deadline:
            time.sleep(0.5)
        assert not alive(started)
        assert foreign.poll() is None
        resumed = driver([*args, "--resume"])
        out, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        assert foreign.poll() is None  # (the old clean-up killed every ray:: process whose parent is no raylet)
        assert not list((tmp_path / "ray").glob("harness-*"))
        (record,) = records(tmp_path).values()
        assert record["status"] == "ok" and record["resumed_at_epoch"] >= 1
    finally:
        foreign.kill()
        foreign.wait()


#: a plugin method that trains as ``ms`` until the run's first checkpoint exists, then, at its next batch, writes
#: the file ``held`` beside the results folder and waits there: the run cannot finish before the test's signal
HELD_METHOD = """
import time
from pathlib import Path

from harness.plugins.method import register_method
from methods.ms import MultiSimilarity

RESULTS = Path({results!r})


@register_method("held_ms")
class HeldMS(MultiSimilarity):
    \"\"\"MS, held at its first batch after a checkpoint is written.\"\"\"

    def loss(self, outputs, labels):
        if any(RESULTS.glob("runs/*/*/checkpoint.pt")):
            (RESULTS.parent / "held").write_text("holding")
            while True:
                time.sleep(0.1)
        return super().loss(outputs, labels)
"""


def test_ctrl_c_prints_how_to_resume_not_a_traceback(tmp_path):
    """Ctrl-C after a checkpoint, while a trial trains (held there by the plugin, so that the signal lands
    at that point at any load), ends the command with 130 and one line naming ``--resume``."""
    results = tmp_path / "results"
    (tmp_path / "held_method.py").write_text(HELD_METHOD.format(results=str(results)))
    child = driver(["run", "--plugins", "held_method", "--dataset", "digits", "--methods", "held_ms", "--epochs", "3",
                    "--no-progress", "--executor", "local", "--results-dir", str(results)], pythonpath=tmp_path)
    wait_for((tmp_path / "held").exists, child)
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: run the same command again with --resume")


def test_resources_default_to_cpu_trials_and_reject_what_the_machine_lacks(tmp_path):
    from harness.core.store import TrialStore
    from harness.scheduling.ray_executor import RayExecutor

    with RayExecutor(TrialStore(tmp_path)) as executor:
        assert executor.resources() == (1.0, 0.0)
    with RayExecutor(TrialStore(tmp_path), gpus_per_trial=0.25) as executor, pytest.raises(ValueError, match="GPU"):
        executor.resources()


def test_concurrent_trials_share_a_quarter_of_their_node_for_decoded_images(tmp_path, monkeypatch):
    from harness.core.placement import Placement
    from harness.core.spec import TrialSpec
    from harness.core.trial import Trial
    from harness.plugins.data import images
    from harness.scheduling.ray_executor import WorkerSetup, decoded_cache_share, trials_per_node

    assert trials_per_node(16, 1, 1, 0.25, None) == 4           # four packed on the GPU
    assert trials_per_node(16, 8, 4, 1, None) == 4              # the CPUs run out before the GPUs
    assert trials_per_node(2, 0, 1, 0, None) == 2 and trials_per_node(2, 0, 1, 0, 1) == 1
    assert trials_per_node(16, 0, 0.5, 0, None) == 32 and trials_per_node(1, 0, 2, 0, None) == 1
    gib = 2**30
    assert decoded_cache_share(128 * gib, 4) == images.DECODED_CACHE_BYTES == 2 * gib
    assert decoded_cache_share(128 * gib, 32) == gib and decoded_cache_share(8 * gib, 2) == gib
    cpus, gpus, memory = ray_compat.node_capacity()              # the module's Ray session: 2 CPUs, no GPU
    assert (cpus, gpus) == (2.0, 0.0) and memory > gib
    monkeypatch.setattr(ray_compat, "node_capacity", lambda: (16.0, 1.0, 16 * gib))
    trial = Trial(TrialSpec(method="ms", dataset="digits", seed=0, recipe={}, backbone="small_cnn"), Placement())
    placed = WorkerSetup(cwd=str(tmp_path), results_dir=str(tmp_path), sys_path=(), plugins=(), cpus=1, gpus=0.25,
                         max_concurrent=None, resume=False).place(trial)
    assert placed.image_cache_bytes == gib                       # 4 GiB of the node, over 4 trials
    assert images.DECODED_CACHES.budget == images.DECODED_CACHE_BYTES  # the process-wide default untouched


def test_one_command_gives_the_same_metrics_with_either_executor_by_default(tmp_path, ray_session):
    """Issue 20 item 5: the executors default to the same threads per trial (1 without GPUs), so a command
    without --cpus-per-trial gives identical metrics with --executor local and --executor ray."""
    from harness.core.store import TrialStore

    args = ["run", "--dataset", "digits", "--epochs", "1", "--no-progress", "--methods", "amsoftmax"]
    metrics = {}
    for executor in ("local", "ray"):
        assert main([*args, "--executor", executor, "--results-dir", str(tmp_path / executor)]) == 0
        [(_, record)] = list(TrialStore(tmp_path / executor).records())
        metrics[executor] = (record.metrics, record.environment["hardware"]["threads"])
        # the record keeps the planned placement and, apart, the one its worker ran it under (issue 32 item 5)
        assert (record.placement.device, record.actual_placement.device) == ("auto", "cpu"), executor
    assert metrics["local"] == metrics["ray"] and metrics["local"][1] == 1
