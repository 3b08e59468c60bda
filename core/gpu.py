"""GPU memory of given processes through NVML (package nvidia-ml-py), when it is installed and works.

Everything here degrades to None: no pynvml, no driver, no GPU or any NVML error never raises.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

_lock = threading.Lock()
_nvml: Any = None
_tried = False


def _load() -> Any:
    global _nvml, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml = pynvml
            except Exception:
                _nvml = None
        return _nvml


def nvml_available() -> bool:
    return _load() is not None


def gpu_ids() -> list[str]:
    """The GPUs NVML finds, as CUDA_VISIBLE_DEVICES names them ("0", "1", ...); empty without NVML."""
    nvml = _load()
    if nvml is None:
        return []
    try:
        return [str(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception:
        return []


def gpu_memory_bytes(pids: Collection[int]) -> int | None:
    """Summed GPU memory used by compute processes whose pid is in `pids`; None when NVML is absent.

    NVML's per-process figure includes the CUDA context, so it sits above what the framework reports.
    """
    nvml = _load()
    if nvml is None:
        return None
    wanted = set(pids)
    total = 0
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception:
        return None
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            processes = nvml.nvmlDeviceGetComputeProcesses(handle)
        except Exception:
            continue
        for proc in processes:
            used = getattr(proc, "usedGpuMemory", None)
            if getattr(proc, "pid", None) in wanted and isinstance(used, int):
                total += used
    return total
