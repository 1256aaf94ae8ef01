"""The machine a trial ran on, and the environment fingerprint its record keeps.

The device, the processor and the instruction set torch's kernels use, torch's threads, the GPU with
its CUDA and cuDNN versions and the deterministic settings: what a trial's numbers depend on besides its
config and library versions. They need torch, so they live in the engine; the harness commit and the
library versions are :mod:`harness.core.environment`'s.
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

from harness.core.environment import git_commit, package_versions


def device_name(device: torch.device | None) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)
def processor_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device | None) -> dict[str, object]:
    """What a trial's numbers depend on besides its config and library versions: the processor and the
    instruction set torch's CPU kernels use, torch's threads, the GPU with its CUDA and cuDNN versions, and
    the deterministic settings."""
    cuda = device is not None and device.type == "cuda"
    return {
        "cpu": processor_model(), "machine": platform.machine(), "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None,
        "deterministic": {"algorithms": torch.are_deterministic_algorithms_enabled(),
                          "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                          "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)},
    }


def environment_fingerprint(device: torch.device | None) -> dict[str, object]:
    """Commit, library versions, device, hardware and host of the process that ran a trial."""
    return {"git_commit": git_commit(), "versions": package_versions(), "device": device_name(device),
            "hardware": hardware(device), "host": platform.node()}
