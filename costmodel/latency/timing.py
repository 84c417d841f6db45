"""Wall-clock timing of a callable, and torch's thread count for a while."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from costmodel.errors import CostModelError


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with torch's intra-op thread count set to `threads` (None: leave it)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise CostModelError(f"--threads must be at least 1, got {threads}")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def check_device(device: str, what: str = "--device") -> str:
    """'cpu' or 'cuda', the latter only where torch sees a GPU; `what` names the source."""
    if device not in ("cpu", "cuda"):
        raise CostModelError(f"unknown device {device!r}: expected cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise CostModelError(f"{what} cuda: torch sees no CUDA GPU on this machine")
    return device


def synchronizer(device: str) -> Callable[[], None]:
    """What to call before reading the clock: wait for queued GPU kernels."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def median_time(fn: Callable[[], Any], device: str = "cpu", warmup: int = 3,
                min_time: float = 0.2, batch_time: float = 2e-3, max_batches: int = 200,
                min_batches: int = 5,
                statistic: Callable[[list[float]], float] = statistics.median) -> float:
    """Median (or `statistic`) seconds per call: calls run in batches long enough for the
    clock (`batch_time`), until `min_time` has passed (at least `min_batches` batches),
    after `warmup` calls."""
    sync = synchronizer(device)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(batch_time / once))
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < max_batches and (len(times) < min_batches
                                         or time.perf_counter() - began < min_time):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - start) / inner)
    return statistic(times)
