"""``benchmarks/gpu.py`` cannot run in CI (no GPU), so its code is run here on the CPU at toy sizes:
the same training, data pipeline, raw search and evaluation paths a GPU machine will take, which
keeps the script from rotting between the rare sessions that have a GPU. Its figures mean nothing."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script would run in full")
def test_without_a_gpu_it_skips_in_one_line():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines() == ["no GPU: skipped (benchmarks/gpu.py needs CUDA)"]


def test_the_cpu_smoke_run_measures_throughput_and_evaluation():
    run = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--parts", "throughput,evaluation",
                          "--backbone", "resnet18", "--batch", "8", "--steps", "2", "--images", "16",
                          "--eval-n", "3000"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    rates = [float(r) for r in re.findall(r"(\d+\.\d+) img/s", out)]
    assert len(rates) == 3 and all(r > 0 for r in rates)                         # synthetic, PIL, torchvision
    assert len(re.findall(r"= \d+\.\d\dx synthetic", out)) == 2
    assert "raw search, k = 1001" in out and "faiss-cpu IndexFlatIP" in out
    ratios = re.findall(r"= +(\d+\.\d\d)x raw search", out)
    assert len(ratios) == 2                                                       # without and with NMI
    nmi = re.search(r"nmi (\d\.\d{3})", out)
    assert nmi and 0.5 < float(nmi.group(1)) <= 1.0                             # 565 well-separated classes
    recall = re.search(r"recall@1 (\d\.\d{3})", out)
    assert recall and float(recall.group(1)) > 0.9


def test_an_unknown_part_is_refused():
    run = subprocess.run([sys.executable, str(SCRIPT), "--parts", "throughput,speed"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "unknown part(s) speed" in run.stderr
