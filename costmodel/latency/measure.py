"""Measured latency of a real forward pass: the whole model's median wall time, and per op
the times torch's profiler records, matched to the nodes of the op graph.

Matching: the profiler shows the ops Python called (`aten::conv2d`), the graph the aten ops
they dispatch to (`aten.convolution`). Each top-level profiler event is given the first graph
op name found in it or below it; the k-th event of a name is then the k-th graph node of that
name, in execution order (both run the same forward pass). Views are not matched: they launch
no kernel and the predictor gives them no time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from costmodel.analysis import Analysis
from costmodel.latency.protocol import MODELS, Protocol, Timed, time_interleaved
from costmodel.latency.timing import synchronizer

ITERATION = "costmodel.iteration"


@dataclass
class Measurement:
    """Whole-model seconds (the protocol's least of round medians), every timed run, and
    median seconds per graph node; whether the rounds settled, by which protocol."""

    latency_s: float
    runs: list[float]
    node_s: dict[str, float] = field(default_factory=dict)
    unmatched_s: float = 0.0
    settled: bool = True
    protocol: Protocol | None = None
    spread: float = 0.0


def protocol_for(repeat: int, warmup: int) -> Protocol:
    """The model protocol sized to about `repeat` timed runs after `warmup` untimed ones:
    rounds of up to 3 runs, at least 2 rounds."""
    per_round = 3 if repeat >= 6 else max(1, repeat // 2)
    return replace(MODELS, warmup=warmup, warmup_s=0.0 if warmup == 0 else MODELS.warmup_s,
                   per_round=per_round, rounds=max(2, math.ceil(repeat / per_round)))


def time_model(model: nn.Module, inputs: list[torch.Tensor], device: str, repeat: int,
               warmup: int, clock: Callable[[], float] = time.perf_counter) -> Timed:
    """Forward passes under inference mode timed by the protocol (wall, or `clock`)."""
    with torch.inference_mode():
        return time_interleaved([lambda: model(*inputs)], protocol_for(repeat, warmup),
                                device, clock)[0]


def _aten_name(target: str) -> str:
    """'aten.convolution.default' -> 'aten::convolution', the profiler's spelling."""
    parts = target.split(".")
    return f"{parts[0]}::{parts[1]}" if len(parts) >= 2 else target


def _match(event: Any, names: set[str]) -> str | None:
    stack = [event]
    while stack:
        e = stack.pop(0)
        if e.name in names:
            return e.name
        stack = list(e.cpu_children) + stack
    return None


def profile_nodes(model: nn.Module, inputs: list[torch.Tensor], analysis: Analysis,
                  device: str, iterations: int, clock: Callable[[], float] = time.perf_counter
                  ) -> tuple[dict[str, float], float]:
    """Median seconds per graph node over profiled runs, and the median time of top-level
    events that matched no node.

    The profiler's times are wall times. With the thread's CPU clock, the ops are timed again
    on that clock (`_cpu_times`) and each top-level op's time goes to the node the profiler
    matched it to; where the two runs do not see the same ops, the profiler's times are
    scaled by the CPU clock's share of the wall time instead."""
    from torch.profiler import ProfilerActivity, profile, record_function

    ops = [op for op in analysis.ops() if op["op_type"] != "View"]
    names = {_aten_name(op["target"]) for op in ops}
    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync = synchronizer(device)
    with torch.inference_mode():
        model(*inputs)
        sync()
        with profile(activities=activities) as prof:
            wall, own = time.perf_counter(), clock()
            for _ in range(iterations):
                with record_function(ITERATION):
                    model(*inputs)
                sync()
            scale = (clock() - own) / (time.perf_counter() - wall)
    runs: list[list[tuple[str, str | None, float]]] = []  # (event, node, seconds) per run
    for it in (e for e in prof.events() if e.name == ITERATION):
        queues: dict[str, deque[str]] = defaultdict(deque)
        for op in ops:
            queues[_aten_name(op["target"])].append(op["name"])
        run = []
        for event in it.cpu_children:
            name = _match(event, names)
            node = queues[name].popleft() if name is not None and queues[name] else None
            run.append((event.name, node, _seconds(event, device) * scale))
        runs.append(run)
    if clock is not time.perf_counter and device == "cpu" and runs:
        timed = _cpu_times(model, inputs, iterations, clock)
        plan = [(name.removeprefix("aten::"), node) for name, node, _ in runs[0]]
        if all([name for name, _ in plan] == [n for n, _ in t] for t in timed):
            runs = [[(name, node, t[i][1]) for i, (name, node) in enumerate(plan)]
                    for t in timed]
    per_node: dict[str, list[float]] = defaultdict(list)
    unmatched: list[float] = []
    for run in runs:
        for _, node, seconds in run:
            if node is not None:
                per_node[node].append(seconds)
        unmatched.append(sum(seconds for _, node, seconds in run if node is None))
    node_s = {n: statistics.median(v) for n, v in per_node.items()}
    return node_s, statistics.median(unmatched) if unmatched else 0.0


class _OpClock(TorchDispatchMode):
    """Times every aten op called from Python on a clock (the thread's CPU time)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock = clock
        self.times: list[tuple[str, float]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        start = self.clock()
        out = func(*args, **(kwargs or {}))
        self.times.append((func.overloadpacket.__name__, self.clock() - start))
        return out


def _cpu_times(model: nn.Module, inputs: list[torch.Tensor], iterations: int,
               clock: Callable[[], float]) -> list[list[tuple[str, float]]]:
    """(op name, seconds) of every top-level aten op, per run."""
    runs = []
    with torch.inference_mode():
        with _OpClock(clock):  # the first run under the mode pays its set-up
            model(*inputs)
        for _ in range(iterations):
            with _OpClock(clock) as timer:
                model(*inputs)
            runs.append(timer.times)
    return runs


def _seconds(event: Any, device: str) -> float:
    """An event's time with its children: CPU time, or on a GPU the kernels' time."""
    if device == "cuda":
        return event.device_time_total * 1e-6
    return event.cpu_time_total * 1e-6


def measure_whole(model: nn.Module, inputs: list[torch.Tensor], device: str, repeat: int = 20,
                  warmup: int = 5, clock: Callable[[], float] = time.perf_counter
                  ) -> Measurement:
    """The whole model's time by the protocol, no profiler attached (an eager or a compiled
    model alike)."""
    protocol = protocol_for(repeat, warmup)
    timed = time_model(model, inputs, device, repeat, warmup, clock)
    return Measurement(timed.seconds, timed.samples, settled=timed.settled(protocol.threshold),
                       protocol=protocol, spread=timed.spread)


def measure(model: nn.Module, inputs: list[torch.Tensor], analysis: Analysis, device: str,
            repeat: int = 20, warmup: int = 5, profiled: int = 5,
            per_op: bool = True, clock: Callable[[], float] = time.perf_counter
            ) -> Measurement:
    """Whole-model time by the protocol (no profiler attached), then per-node times
    (profiled)."""
    result = measure_whole(model, inputs, device, repeat, warmup, clock)
    if per_op:
        result.node_s, result.unmatched_s = profile_nodes(model, inputs, analysis, device,
                                                          profiled, clock)
    return result
