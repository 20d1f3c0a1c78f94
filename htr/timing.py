"""Interleaved timing of peers in one process: the only fair comparison on a shared, noisy machine."""
from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping

import torch


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; the platform's machine type elsewhere): benchmark
    reports name the machine their figures come from."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fix_threads(threads: int) -> None:
    """Pin torch's and the BLAS libraries' (numba calls scipy's OpenBLAS) thread pools to `threads`."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def interleaved_medians(fns: Mapping[str, Callable[[], object]], repeats: int = 20,
                        warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn so load drifts hit all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}
