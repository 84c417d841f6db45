"""Clocks to time by, and torch's thread count for a while (the protocol that times is
costmodel.latency.protocol)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
