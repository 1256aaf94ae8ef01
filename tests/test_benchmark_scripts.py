"""Every script in ``benchmarks/`` runs, at toy sizes, and prints the ratios it exists for.

The scripts are run by hand on idle machines (their figures are in their docstrings), so nothing else
would notice when a change to the harness breaks one (``jrd_step_time.py`` once failed on a model
built without the recipe's pooling). ``gpu.py`` cannot run in CI (no GPU): its ``--device cpu`` smoke
run takes the same training, data pipeline, raw search and evaluation code a GPU machine will. The
figures printed here mean nothing; only that each script runs to the end and prints its ratios.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str, timeout: int = 600) -> str:
    run = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.fixture(scope="module")
def small_omniglot(omniglot_root: Path, tmp_path_factory) -> Path:
    """The shared Omniglot, original layout, 5 characters of each of its 8 alphabets (800 drawings,
    25 training classes)."""
    root = tmp_path_factory.mktemp("omniglot")
    for alphabet in sorted((omniglot_root / "images_background").iterdir()):
        for character in sorted(alphabet.iterdir())[:5]:
            shutil.copytree(character, root / "images_background" / alphabet.name / character.name)
    return root


def test_every_script_is_tested_here():
    tested = {"cli_startup.py", "decode.py", "evaluation_scale.py", "gpu.py", "jrd_step_time.py", "nmi_scale.py",
              "scheduling_overhead.py", "training_step.py"}
    assert {p.name for p in BENCHMARKS.glob("*.py")} == tested


def test_cli_startup():
    out = run_script("cli_startup.py", "--runs", "1", "--only", "help", "circel")
    timed = r" +median \d+\.\d\d s, fastest \d+\.\d\d s, CPU \d+\.\d\d s  \d+\.\d\dx target"
    assert len(re.findall(r"--help" + timed, out)) == 3
    assert len(re.findall(r"circel" + timed, out)) == 4  # run, run with a --plugins loss, search, benchmark


@pytest.mark.slow
def test_decode():
    out = run_script("decode.py", "--images", "4", "--rounds", "1")
    assert re.search(r"decoder=torchvision +\d+\.\d images/s per worker .* \d+\.\d\dx PIL", out)


@pytest.mark.slow
def test_evaluation_scale():
    out = run_script("evaluation_scale.py", "--n", "1000", "--recall-ks", "1,10,100", "--nmi")
    assert re.search(r"harness / raw faiss k=101: time \d+\.\d\dx, peak RSS \d+\.\d\dx", out)
    assert re.search(r"harness\+nmi / raw faiss k=101: time \d+\.\d\dx", out)


@pytest.mark.slow
def test_nmi_scale():
    out = run_script("nmi_scale.py", "--sizes", "500/50")
    assert "new path: faiss-cpu" in out and re.search(r"\d+\.\d+x", out)


@pytest.mark.slow
def test_jrd_step_time():
    out = run_script("jrd_step_time.py", "--image-size", "32", "--batch-size", "16", "--num-classes", "4",
                     "--steps", "1", "--warmup", "0", "--regulariser-repeats", "1")
    assert re.search(r"^jrd +\d+\.\d +\d+\.\d +\d\.\d{3} +\d+\.\d\d$", out, re.MULTILINE)


@pytest.mark.slow
def test_training_step(small_omniglot):
    out = run_script("training_step.py", "--data-root", str(small_omniglot), "--epochs", "2")
    assert len(re.findall(r"wall +\d+\.\d\d \(\d\.\d\dx bare\)", out)) == 3


@pytest.mark.slow
def test_scheduling_overhead(small_omniglot):
    out = run_script("scheduling_overhead.py", "--data-root", str(small_omniglot), "--trials", "2", "--epochs", "1")
    assert re.search(r"Ray overhead per trial +-?\d+\.\d\d s", out)
    assert re.search(r"two at a time vs one at a time +\d\.\d\dx", out)


@pytest.mark.slow
def test_scheduling_overhead_on_a_simulated_cluster(small_omniglot):
    out = run_script("scheduling_overhead.py", "--data-root", str(small_omniglot), "--cluster-trials", "6",
                     "--nodes", "3", "--node-cpus", "1", "--epochs", "1")
    assert re.search(r"overhead per trial over local +-?\d+\.\d\d s", out)
    counts = re.search(r"trials per node +(\d+) (\d+) (\d+) +\(most / fewest \d+\.\d\dx\)", out)
    assert counts and sum(map(int, counts.groups())) == 6 and int(counts.group(2)) > 0  # at least two nodes used


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script would run in full")
def test_gpu_without_a_gpu_skips_in_one_line():
    assert run_script("gpu.py", timeout=120).strip().splitlines() == ["no GPU: skipped (benchmarks/gpu.py needs CUDA)"]


@pytest.mark.slow
def test_gpu_smoke_run_on_the_cpu_measures_throughput_and_evaluation():
    out = run_script("gpu.py", "--device", "cpu", "--parts", "throughput,evaluation", "--backbone", "resnet18",
                     "--batch", "8", "--steps", "2", "--images", "16", "--eval-n", "3000")
    rates = [float(r) for r in re.findall(r"(\d+\.\d+) img/s", out)]
    assert len(rates) == 4 and all(r > 0 for r in rates)                 # synthetic, PIL, torchvision, nvjpeg
    assert len(re.findall(r"= \d+\.\d\dx synthetic", out)) == 3
    assert "decoder torchvision, normalised in loader workers" in out            # nvjpeg's fallback without CUDA
    assert "raw search, k = 1001" in out and "faiss-cpu IndexFlatIP" in out
    assert len(re.findall(r"= +\d+\.\d\dx raw search", out)) == 2                # without and with NMI
    nmi = re.search(r"nmi (\d\.\d{3})", out)
    assert nmi and 0.5 < float(nmi.group(1)) <= 1.0                             # 565 well-separated classes
    recall = re.search(r"recall@1 (\d\.\d{3})", out)
    assert recall and float(recall.group(1)) > 0.9


def test_gpu_refuses_an_unknown_part():
    run = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--parts", "throughput,speed"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "unknown part(s) speed" in run.stderr
