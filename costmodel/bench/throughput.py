"""Measuring a model's throughput with care: warm-up, then repeats until the median stops
moving (or a cap), in `torch.inference_mode`; on a GPU every timed run ends in
`cuda.synchronize` and cuDNN picks its fastest kernels first (`cudnn.benchmark`). The machine
a figure came from is recorded with it, because a throughput means nothing without it."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from costmodel.device import cpu_model
from costmodel.errors import CostModelError
from costmodel.latency.protocol import least_of_round_medians


@dataclass(frozen=True)
class Plan:
    """How long to measure: `warmup` untimed runs (at least `warmup_s` seconds), then between
    `min_repeats` and `max_repeats` timed samples, stopping once the median of all samples is
    within `tolerance` of the median without the latest quarter, or after `max_s` seconds
    (per model, when several are measured in turns).
    A sample runs the model as many times as fill `sample_s` seconds (at least once), so that
    a fast model is not timed by the scheduler's jitter on a single call."""

    warmup: int = 3
    warmup_s: float = 0.3
    min_repeats: int = 10
    max_repeats: int = 100
    max_s: float = 4.0
    tolerance: float = 0.02
    sample_s: float = 0.05


#: Consecutive samples of a model that form one round of the protocol's statistic.
ROUND = 3
FULL = Plan()
QUICK = Plan(warmup=1, warmup_s=0.0, min_repeats=3, max_repeats=5, max_s=0.5, tolerance=0.05,
             sample_s=0.0)


@dataclass(frozen=True)
class Timing:
    """Seconds per run of `batch` images, one figure per sample of `number` runs;
    throughputs in images per second."""

    seconds: tuple[float, ...]
    batch: int
    stable: bool
    number: int = 1

    @property
    def median(self) -> float:
        return self.batch / statistics.median(self.seconds)

    @property
    def rounds(self) -> list[tuple[float, ...]]:
        """The samples in rounds of `ROUND` (each sampled in turns with the other models)."""
        return [self.seconds[i:i + ROUND] for i in range(0, len(self.seconds), ROUND)]

    @property
    def typical(self) -> float:
        """Throughput by the measurement protocol's statistic, the least of the round medians
        (costmodel.latency.protocol): robust to load that comes and goes."""
        return self.batch / least_of_round_medians(self.rounds)

    @property
    def best(self) -> float:
        return self.batch / min(self.seconds)

    @property
    def worst(self) -> float:
        return self.batch / max(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"min": self.worst, "median": self.median, "max": self.best,
                "least_of_round_medians": self.typical,
                "repeats": len(self.seconds), "runs_per_repeat": self.number,
                "stable": self.stable}


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "device": device.type,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


@contextmanager
def bench_mode(device: torch.device, threads: int | None) -> Iterator[None]:
    """Thread count, denormals flushed to zero (a slow path on x86 that random weights can
    reach), cuDNN's autotuner on a GPU; all restored afterwards."""
    if threads is not None and threads < 1:
        raise CostModelError(f"--threads {threads}: must be at least 1")
    old_threads = torch.get_num_threads()
    old_benchmark = torch.backends.cudnn.benchmark
    if threads is not None:
        torch.set_num_threads(threads)
    flushed = torch.set_flush_denormal(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        if flushed:
            torch.set_flush_denormal(False)
        torch.backends.cudnn.benchmark = old_benchmark


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model: nn.Module, inputs: torch.Tensor, plan: Plan = FULL) -> Timing:
    """Throughput of `model(inputs)` on the device the input lives on (the model must be there
    too)."""
    return measure_together([(model, inputs)], plan)[0]


def measure_together(cases: Sequence[tuple[nn.Module, torch.Tensor]], plan: Plan = FULL
                     ) -> list[Timing]:
    """Throughputs of models to be compared, sampled in turns (one sample of each per round),
    so that a change in the machine's background load hits them all alike. Rounds go on until
    every median has settled, or `max_s` seconds per model have passed. Every sample is
    synchronised on a GPU before the clock is read."""
    numbers = []
    with torch.inference_mode():
        for model, inputs in cases:
            model.eval()
            numbers.append(_warm_up(model, inputs, plan))
        seconds: list[list[float]] = [[] for _ in cases]
        began = time.perf_counter()
        settled = [False] * len(cases)
        while len(seconds[0]) < plan.max_repeats:
            for (model, inputs), number, samples in zip(cases, numbers, seconds):
                samples.append(_sample(model, inputs, number))
            if len(seconds[0]) >= plan.min_repeats:
                settled = [_settled(s, plan.tolerance) for s in seconds]
                if all(settled) or time.perf_counter() - began > plan.max_s * len(cases):
                    break
    return [Timing(tuple(s), inputs.shape[0], ok, number)
            for (_, inputs), s, ok, number in zip(cases, seconds, settled, numbers)]


def _warm_up(model: nn.Module, inputs: torch.Tensor, plan: Plan) -> int:
    """Run untimed; return how many runs fill a sample of `plan.sample_s` seconds."""
    device = inputs.device
    start = time.perf_counter()
    runs = 0
    while runs < plan.warmup or time.perf_counter() - start < plan.warmup_s:
        model(inputs)
        _sync(device)
        runs += 1
    per_run = (time.perf_counter() - start) / runs
    return max(1, math.ceil(plan.sample_s / per_run)) if per_run > 0 else 1


def _sample(model: nn.Module, inputs: torch.Tensor, number: int) -> float:
    """Seconds per run, over `number` runs."""
    _sync(inputs.device)
    tick = time.perf_counter()
    for _ in range(number):
        model(inputs)
    _sync(inputs.device)
    return (time.perf_counter() - tick) / number


def _settled(seconds: list[float], tolerance: float) -> bool:
    """The median no longer moves when the latest quarter of the runs is added."""
    earlier = seconds[: len(seconds) - max(1, len(seconds) // 4)]
    now = statistics.median(seconds)
    return abs(statistics.median(earlier) - now) <= tolerance * now
