"""Interleaved timing of peers in one process: the only fair comparison on a shared, noisy machine."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

import torch


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


def format_table(header: list[str], rows: list[list[object]]) -> str:
    """A plain fixed-width table (also valid Markdown)."""
    def text(c: object) -> str:
        if isinstance(c, float):
            return f"{c:.0f}" if abs(c) >= 1000 else f"{c:.3g}"  # 1102, not 1.1e+03
        return str(c)

    cells = [[str(c) for c in header]] + [[text(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])
