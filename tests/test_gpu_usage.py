"""The GPU sampler, fed by a fake NVML on the CPU: mean and peak utilisation and memory, per epoch and
for the trial; absent (with the reason) without CUDA; the live table shows the figures."""
from __future__ import annotations

import io
import os
import time
from types import SimpleNamespace

import torch

from harness.engine.gpu_usage import GIB, GpuSampler
from harness.experiment import ExperimentConfig
from harness.scheduling.progress import TrialBoard


class FakeNvml:
    """Serves utilisation 10, 20, 30, ... and this process's memory 1, 2, 3, ... GiB, one per sample."""

    def __init__(self, list_this_process: bool = True):
        self.served = 0
        self.list_this_process = list_this_process

    def nvmlDeviceGetUtilizationRates(self, handle):
        self.served += 1
        return SimpleNamespace(gpu=10 * self.served)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        pid = os.getpid() if self.list_this_process else -1
        return [SimpleNamespace(pid=pid, usedGpuMemory=self.served * GIB)]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=40 * GIB)


def test_sampler_reports_mean_and_peak_per_epoch_and_for_the_trial():
    nvml = FakeNvml()
    sampler = GpuSampler(torch.device("cuda"), nvml=nvml, handle="gpu0")
    for _ in range(3):
        sampler.sample()
    assert sampler.so_far() == {"gpu_util_pct": 20.0, "gpu_memory_gib": 3.0}
    sampler.sample()
    assert sampler.so_far() == {"gpu_util_pct": 40.0, "gpu_memory_gib": 4.0}
    summary = sampler.summary()
    assert summary["utilization_mean_pct"] == 25.0 and summary["utilization_peak_pct"] == 40.0
    assert summary["memory_mean_gib"] == 2.5 and summary["memory_peak_gib"] == 4.0
    assert summary["memory_of"] == "this process" and summary["samples"] == 4


def test_sampler_thread_samples_until_stopped():
    nvml = FakeNvml()
    sampler = GpuSampler(torch.device("cuda"), interval_s=0.01, nvml=nvml, handle="gpu0").start()
    deadline = time.time() + 10
    while nvml.served < 5 and time.time() < deadline:
        time.sleep(0.01)
    summary = sampler.stop()
    assert summary["available"] and summary["samples"] == nvml.served >= 5
    served = nvml.served
    time.sleep(0.05)
    assert nvml.served == served  # stopped


def test_unlisted_process_falls_back_to_the_whole_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    sampler = GpuSampler(torch.device("cuda"), nvml=FakeNvml(list_this_process=False), handle="gpu0")
    sampler.sample()
    assert sampler.summary()["memory_of"] == "the whole GPU" and sampler.summary()["memory_peak_gib"] == 40.0


def test_without_cuda_nothing_is_sampled_and_the_reason_is_kept():
    sampler = GpuSampler(torch.device("cpu")).start()
    assert sampler.stop() == {"available": False, "reason": "no CUDA device (the trial ran on cpu)"}


def test_live_table_shows_gpu_columns_once_a_trial_reports_them():
    from rich.console import Console

    board = TrialBoard(stream=io.StringIO(), live=True)
    trial = ExperimentConfig(methods=["ms"], dataset="digits", seeds=[0]).trials()[0]
    board.started(trial)
    console = Console(file=io.StringIO(), width=200)
    console.print(board._table())
    assert "GPU" not in console.file.getvalue()
    board.epoch(trial, {"epoch": 1, "loss": 0.5, "gpu_util_pct": 63.4, "gpu_memory_gib": 5.25})
    console = Console(file=io.StringIO(), width=200)
    console.print(board._table())
    text = console.file.getvalue()
    assert "GPU" in text and "63% 5.2G" in text
    board.close()
