"""The environment fingerprint stored with every trial record and leaderboard."""
from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

_PACKAGES = ("torch", "torchvision", "timm", "pytorch-metric-learning", "faiss-cpu", "faiss-gpu", "ray",
             "optuna", "numpy", "pandas")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The harness checkout's commit (with ``+dirty`` when it has uncommitted changes), or ``unknown``;
    decided once per process, on the first call (the CLI makes it as a command starts)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


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
