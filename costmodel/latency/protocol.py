"""One measurement protocol for every command that times something (calibrate, validate,
bench guidelines, benchmarks/bench_latency.py), built to survive a shared machine.

1. Warm-up: every candidate runs untimed first (`warmup` calls and at least `warmup_s`), which
   also sizes a *sample*: as many calls as fill `sample_s`, so that a fast candidate is not
   timed by the clock's jitter on one call.
2. Interleaved rounds: the candidates of a batch are timed in turns, `per_round` samples of
   each per round, so that a change in the machine's load hits them all alike.
3. The statistic: the least of the round medians. Other load only ever adds time; a round's
   median drops the odd interrupted sample, and the least over rounds keeps the round that
   other work disturbed least.
4. Instability: a candidate is settled when its two least round medians agree within
   `threshold` (the statistic is then seen twice). An unsettled candidate is re-measured, more
   rounds for it alone, up to `retries` times, and reported unstable if it never settles.

`environment` records what the figures were measured on and how loaded the machine was.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from costmodel.device import cpu_model


@dataclass(frozen=True)
class Protocol:
    """How to time a batch of candidates (see the module's docstring)."""

    warmup: int = 3
    warmup_s: float = 0.05
    sample_s: float = 2e-3
    per_round: int = 3
    rounds: int = 5
    threshold: float = 0.05
    retries: int = 2

    def describe(self) -> str:
        sample = (f"samples of at least {self.sample_s * 1e3:.1f} ms each" if self.sample_s
                  else "samples of one call each")
        return (f"{self.warmup} warm-up calls (at least {self.warmup_s * 1e3:.0f} ms); "
                f"{self.rounds} interleaved rounds of {self.per_round} {sample}; least of "
                f"round medians; unsettled when "
                f"the two least round medians differ by more than "
                f"{100 * self.threshold:.0f}%, re-measured up to {self.retries} times")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Per-op micro-benchmarks in calibration; whole models (validate, benchmarks); a smoke run.
KERNELS = Protocol()
MODELS = Protocol(warmup=3, warmup_s=0.2, sample_s=0.0, per_round=3, rounds=5)
SMOKE = Protocol(warmup=1, warmup_s=0.0, sample_s=2e-4, per_round=1, rounds=2, retries=0)


@dataclass
class Timed:
    """One candidate's samples (seconds per call) by round, and the protocol's verdict."""

    rounds: list[list[float]] = field(default_factory=list)
    number: int = 1  # calls per sample
    retried: int = 0

    @property
    def medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds if r]

    @property
    def seconds(self) -> float:
        """The least of the round medians."""
        return least_of_round_medians(self.rounds)

    @property
    def spread(self) -> float:
        return spread(self.medians)

    def settled(self, threshold: float) -> bool:
        return settled(self.medians, threshold)

    @property
    def samples(self) -> list[float]:
        return [s for r in self.rounds for s in r]


def least_of_round_medians(rounds: Sequence[Sequence[float]]) -> float:
    """min over rounds of each round's median: robust to load that comes and goes."""
    medians = [statistics.median(r) for r in rounds if len(r)]
    if not medians:
        raise ValueError("no samples")
    return min(medians)


def spread(medians: Sequence[float]) -> float:
    """How far the second-least round median lies above the least (0 with one round)."""
    if len(medians) < 2:
        return 0.0
    low = sorted(medians)
    return low[1] / low[0] - 1 if low[0] > 0 else math.inf


def settled(medians: Sequence[float], threshold: float) -> bool:
    """The least round median is seen twice: the next one is within `threshold` of it."""
    return len(medians) >= 2 and spread(medians) <= threshold


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def time_interleaved(fns: Sequence[Callable[[], Any]], protocol: Protocol = KERNELS,
                     device: str = "cpu", clock: Callable[[], float] = time.perf_counter,
                     on_round: Callable[[], None] | None = None) -> list[Timed]:
    """Time each callable by the protocol: warm-up, interleaved rounds, re-measure of the
    unsettled ones. The caller sets the mode (inference, threads)."""
    sync = _sync(device)
    timed = [Timed(number=_warm(fn, protocol, sync)) for fn in fns]
    _rounds(fns, timed, range(len(fns)), protocol.rounds, protocol, sync, clock, on_round)
    for attempt in range(protocol.retries):
        todo = [i for i, t in enumerate(timed) if not t.settled(protocol.threshold)]
        if not todo:
            break
        for i in todo:
            timed[i].retried = attempt + 1
        _rounds(fns, timed, todo, protocol.rounds, protocol, sync, clock, None)
    return timed


def _warm(fn: Callable[[], Any], protocol: Protocol, sync: Callable[[], None]) -> int:
    """Run untimed; how many calls fill a sample."""
    start = time.perf_counter()
    calls = 0
    while calls < protocol.warmup or time.perf_counter() - start < protocol.warmup_s:
        fn()
        sync()
        calls += 1
        if calls >= 10 * max(protocol.warmup, 1) and time.perf_counter() - start > 1e-3:
            break
    once = (time.perf_counter() - start) / max(calls, 1)
    return max(1, math.ceil(protocol.sample_s / once)) if once > 0 else 1


def _rounds(fns: Sequence[Callable[[], Any]], timed: list[Timed], which: Sequence[int],
            count: int, protocol: Protocol, sync: Callable[[], None],
            clock: Callable[[], float], on_round: Callable[[], None] | None) -> None:
    for r in range(count):
        # alternate the order so that no candidate always follows the same neighbour
        order = list(which) if r % 2 == 0 else list(reversed(which))
        current = {i: [] for i in which}
        for _ in range(protocol.per_round):
            for i in order:
                fn, number = fns[i], timed[i].number
                sync()
                start = clock()
                for _ in range(number):
                    fn()
                sync()
                current[i].append((clock() - start) / number)
        for i in which:
            timed[i].rounds.append(current[i])
        if on_round is not None:
            on_round()


def load_average() -> float | None:
    """The one-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """What a measurement ran on: processor, threads, torch, and the machine's load."""
    info: dict[str, Any] = {"device": device, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                            "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "python": platform.python_version(),
                            "load_average": load_average()}
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def unstable(names: Sequence[str], timed: Sequence[Timed], threshold: float) -> list[str]:
    """'name (spread x%)' of each candidate that never settled."""
    return [f"{n} ({100 * t.spread:.0f}%)" for n, t in zip(names, timed)
            if not t.settled(threshold)]
