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


def synchronizer(device: str) -> Callable[[], None]:
    """What to call before reading the clock: wait for queued GPU kernels."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


#: What a run's time is read from. "wall": elapsed time, what a user waits. "cpu": the calling
#: thread's CPU time, which leaves out the time other processes hold the core: on a shared,
#: loaded machine it still measures the model, for single-threaded runs on the CPU (torch runs
#: the ops on the calling thread), and only there.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def clock_for(name: str, device: str, threads: int | None) -> Callable[[], float]:
    if name not in CLOCKS:
        raise CostModelError(f"unknown clock {name!r}: expected wall or cpu")
    if name == "cpu" and (device != "cpu" or threads != 1):
        raise CostModelError("--clock cpu measures one thread's CPU time: use it with "
                             "--threads 1 on the cpu device")
    return CLOCKS[name]


def median_time(fn: Callable[[], Any], device: str = "cpu", warmup: int = 3,
                min_time: float = 0.2, batch_time: float = 2e-3, max_batches: int = 200,
                min_batches: int = 5,
                statistic: Callable[[list[float]], float] = statistics.median,
                clock: Callable[[], float] = time.perf_counter) -> float:
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
        start = clock()
        for _ in range(inner):
            fn()
        sync()
        times.append((clock() - start) / inner)
    return statistic(times)
