"""A trial's GPU utilisation and memory, sampled through NVML in a background thread while it runs.

NVML comes from ``nvidia-ml-py`` (module ``pynvml``; ``pip install -e ".[nvml]"``). Each sample reads
the GPU's utilisation (the share of the last sample period in which a kernel ran: the whole GPU's,
shared by every trial packed on it) and the memory this process holds on it (NVML's per-process
figure; the whole GPU's used memory where NVML does not list this process, e.g. in a container with
its own process ids, and the summary says which; 0 before the process has a CUDA context). The GPU is the one torch uses for the trial's
device, found in NVML by its UUID (NVML ignores ``CUDA_VISIBLE_DEVICES``, which Ray sets).

Without a CUDA device, without ``pynvml``, or when NVML cannot be read, nothing is sampled and the
summary says why: ``{"available": False, "reason": ...}``.
"""
from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

import torch

#: seconds between two samples (nvidia-smi's default period)
SAMPLE_INTERVAL_S = 1.0
GIB = 2 ** 30


def load_nvml() -> ModuleType | None:
    """The ``pynvml`` module, initialised, or None where it is not installed or NVML cannot start."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001: no library, no driver: NVML is simply absent
        return None
    return pynvml


class GpuSampler:
    """Samples the GPU of ``device`` every ``interval_s`` seconds from :meth:`start` to :meth:`stop`.

    :meth:`so_far` gives the mean utilisation and the peak memory since the previous call (for a
    trial's epoch); :meth:`summary` the mean and peak of both over every sample. ``nvml`` is the
    ``pynvml`` module to read (default: :func:`load_nvml`; tests pass a fake) and ``handle`` its handle
    of the GPU (default: found by the UUID torch gives the device)."""

    def __init__(self, device: torch.device, interval_s: float = SAMPLE_INTERVAL_S, nvml: Any = None,
                 handle: Any = None):
        self.interval_s = interval_s
        self.utilization: list[float] = []
        self.memory: list[float] = []
        self.memory_scope = "process"
        self._epoch_start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.reason = "" if device.type == "cuda" else f"no CUDA device (the trial ran on {device.type})"
        self.nvml = None
        if not self.reason:
            self.nvml = nvml or load_nvml()
            self.reason = "" if self.nvml is not None else "NVML not available (pip install nvidia-ml-py)"
        self.handle = handle if handle is not None or self.nvml is None else self._handle(device)

    def _handle(self, device: torch.device) -> Any:
        try:
            uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", ""))
            if uuid:
                return self.nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            return self.nvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception as error:  # noqa: BLE001: an NVML error means no samples, and the record says why
            self.reason = f"NVML could not find the GPU: {error}"
            return None

    def start(self) -> "GpuSampler":
        if self.handle is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling (one last sample first); the :meth:`summary`."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.summary()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                break

    def sample(self) -> None:
        """Read the GPU's utilisation and this process's memory once."""
        try:
            utilization = float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            memory = self._process_memory()
        except Exception as error:  # noqa: BLE001: keep what was sampled, say why sampling stopped
            self.reason = f"NVML stopped answering: {error}"
            self._stop.set()
            return
        with self._lock:
            self.utilization.append(utilization)
            self.memory.append(memory / GIB)

    def _process_memory(self) -> float:
        processes = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        used = [p.usedGpuMemory for p in processes if p.pid == os.getpid() and p.usedGpuMemory is not None]
        if used:
            return float(sum(used))
        if not torch.cuda.is_initialized():
            return 0.0  # no CUDA context yet: this process holds no GPU memory
        self.memory_scope = "device"
        return float(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def so_far(self) -> dict[str, float]:
        """``gpu_util_pct`` (mean) and ``gpu_memory_gib`` (peak) of the samples since the last call;
        empty when none was taken."""
        with self._lock:
            utilization, memory = self.utilization[self._epoch_start:], self.memory[self._epoch_start:]
            self._epoch_start = len(self.utilization)
        if not utilization:
            return {}
        return {"gpu_util_pct": sum(utilization) / len(utilization), "gpu_memory_gib": max(memory)}

    def summary(self) -> dict[str, Any]:
        """Mean and peak utilisation (%) and memory (GiB) over every sample, or why there are none."""
        with self._lock:
            utilization, memory = list(self.utilization), list(self.memory)
        if not utilization:
            return {"available": False, "reason": self.reason or "no sample taken"}
        summary = {"available": True, "samples": len(utilization), "interval_s": self.interval_s,
                   "utilization_mean_pct": sum(utilization) / len(utilization),
                   "utilization_peak_pct": max(utilization), "utilization_of": "the whole GPU",
                   "memory_mean_gib": sum(memory) / len(memory), "memory_peak_gib": max(memory),
                   "memory_of": "this process" if self.memory_scope == "process" else "the whole GPU"}
        return summary | ({"note": self.reason} if self.reason else {})
