"""Measure a device profile on the machine at hand, from micro-benchmarks only.

The overhead is the time of a one-element op; the peak FLOP/s, of a large matmul; the
bandwidth, of streaming copies from 128 KB (in cache) to 128 MB (main memory), kept as a curve.
Each class's fixed time per op is that of its tiny benchmark; each class then gets the
compute and memory throughputs that best fit its benchmarks under the predictor's own formula,
t = overhead + max(FLOPs / C, bytes / B), by least squares on log time (scipy), and stores
them as fractions of the peak and the bandwidth. The Python time per nn.Module call and per
view is the slope of time over the length of a chain of modules that run no op, and of a
chain of views; every other benchmark's time is taken net of its own module calls and views
before the fits, as the predictor charges them apart. Layer benchmarks that keep their
input's shape run as short chains (costmodel.latency.microbench.chain). No model that is
later scored is measured. Each benchmark's time is the median of its batches of calls, the
statistic `validate` reports for a model.
"""

from __future__ import annotations

import itertools
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.optimize import least_squares
from tqdm import tqdm

from costmodel.analysis import analyze
from costmodel.device import cpu_model, resolve_device
from costmodel.latency.classes import CLASSES, WIDTH_CLASSES, conv_width
from costmodel.latency.microbench import (
    BANDWIDTH,
    MODULE_CALL,
    OVERHEAD,
    PEAK,
    VIEW,
    Bench,
    benches,
)
from costmodel.latency.profile import DeviceProfile, Efficiency, machine_profile_name
from costmodel.latency.timing import clock_for, median_time, torch_threads

#: Bytes of inputs a benchmark cycles through: beyond this machine class's L2 caches.
ROTATE_BYTES = 8 << 20


@dataclass(frozen=True)
class Sample:
    """One micro-benchmark: its counts (costmodel's) and its measured median time."""

    bench: str
    role: str
    flops: float
    mac_bytes: float
    ops: int
    seconds: float
    tiny: bool = False
    width: float | None = None  # a convolution's channels per group
    module_calls: int = 0
    views: int = 0


def measure(bench: Bench, device: str, min_time: float,
            clock: Callable[[], float] = time.perf_counter) -> Sample:
    """Count a benchmark with costmodel, then time it on the device."""
    module = bench.build().eval()
    analysis = analyze(module, input_shape=list(bench.shapes))
    ops = [op for op in analysis.ops() if op["op_type"] != "View"]
    views = len(analysis.ops()) - len(ops)
    module = module.to(device)
    # Inputs rotate through sets that together outgrow the caches, as a model's activations
    # arrive from memory rather than from the L1 cache of a loop over one tensor.
    per_set = sum(math.prod(s) * 4 for s in bench.shapes)
    copies = 1 if bench.tiny or bench.role in (OVERHEAD, PEAK, BANDWIDTH, MODULE_CALL,
                                               VIEW) else min(
        64, max(1, math.ceil(ROTATE_BYTES / per_set)))
    sets = [[torch.randn(s, device=device) for s in bench.shapes] for _ in range(copies)]
    turn = itertools.cycle(sets)
    with torch.inference_mode():
        seconds = median_time(lambda: module(*next(turn)), device, min_time=min_time,
                              clock=clock)
    width = conv_width(ops[0]["input_shapes"]) if bench.role in WIDTH_CLASSES else None
    return Sample(bench.name, bench.role, float(sum(op["cost"].flops for op in ops)),
                  float(sum(op["cost"].mac_bytes for op in ops)), len(ops), seconds,
                  bench.tiny, width, int(analysis.graph.graph["module_call_count"]), views)


def slope(samples: list[Sample], count: Callable[[Sample], int]) -> float:
    """Seconds per unit of `count` between the shortest and the longest of a chain's
    samples (0 if the longer one was not slower, or without any)."""
    if not samples:
        return 0.0
    short, long = min(samples, key=count), max(samples, key=count)
    if count(long) == count(short):
        raise ValueError("a chain benchmark needs two lengths")
    return max((long.seconds - short.seconds) / (count(long) - count(short)), 0.0)


def net_of_python(sample: Sample, module_call_s: float, view_s: float) -> Sample:
    """A sample's time less its module calls and views (at least a tenth of it is kept)."""
    python = sample.module_calls * module_call_s + sample.views * view_s
    return replace(sample, seconds=max(sample.seconds - python, sample.seconds / 10))


def fit_class(samples: list[Sample], overhead: float, peak: float,
              bandwidth: Callable[[float], float]) -> Efficiency:
    """The class's fixed cost per op (its tiny benchmark's time, at least the `overhead` of
    any op), then the (compute, memory) efficiencies that fit t = n*o + max(F/C, M/B) best
    in log time over its other benchmarks."""
    tiny = [s.seconds / s.ops for s in samples if s.tiny]
    overhead = max(min(tiny), overhead) if tiny else overhead
    samples = [s for s in samples if not s.tiny] or samples
    flops = np.array([s.flops for s in samples])
    # the bandwidth of each op's own size, as the predictor reads it (a chain's ops are alike)
    nbytes = np.array([s.mac_bytes / bandwidth(s.mac_bytes / s.ops) for s in samples])
    fixed = np.array([s.ops * overhead for s in samples])
    log_t = np.log([s.seconds for s in samples])
    widths = [s.width for s in samples]
    with_width = all(w is not None for w in widths) and len(set(widths)) > 2
    width = np.array(widths, dtype=float) if with_width else np.ones(len(samples))

    def residuals(p: np.ndarray) -> np.ndarray:
        c, b = np.exp(p[:2])
        share = width / (width + p[2]) if with_width else 1.0
        return np.log(fixed + np.maximum(flops / (c * share), nbytes / b) + 1e-12) - log_t

    # b is the memory efficiency itself: bytes are already in seconds at the copy bandwidth;
    # the third parameter is the width at which a convolution reaches half its compute rate
    start = [*np.log([peak * 0.5, 1.0]), 4.0]
    lower, upper = [*np.log([peak * 1e-3, 1e-2]), 0.0], [*np.log([peak * 4, 10.0]), 512.0]
    n = 3 if with_width else 2
    result = least_squares(residuals, start[:n], bounds=(lower[:n], upper[:n]))
    c, b = np.exp(result.x[:2])
    return Efficiency(compute=float(c / peak), memory=float(b), overhead_s=float(overhead),
                      width_half=float(result.x[2]) if with_width else None)


def width_table(samples: list[Sample], overhead: float, peak: float
                ) -> tuple[tuple[float, float], ...] | None:
    """A convolution class's measured share of the peak at each width it was benchmarked at:
    FLOPs over the time beyond the fixed cost per op, the geometric mean where several
    benchmarks share a width (tiny ones excluded: they measure the fixed cost). Whatever
    bounds a benchmark is folded into its share, so the table reproduces each benchmark's
    time; None with fewer than two widths."""
    by_width: dict[float, list[float]] = {}
    for s in samples:
        busy = s.seconds - s.ops * overhead
        if s.tiny or s.width is None or s.flops <= 0 or busy <= 0:
            continue
        by_width.setdefault(s.width, []).append(math.log(s.flops / (busy * peak)))
    if len(by_width) < 2:
        return None
    return tuple((w, math.exp(sum(v) / len(v))) for w, v in sorted(by_width.items()))


def calibrate(device: str = "cpu", threads: int | None = None, smoke: bool = False,
              quiet: bool = False, name: str | None = None, clock: str = "wall"
              ) -> DeviceProfile:
    """Run every micro-benchmark and fit a profile (a few seconds with `smoke`)."""
    resolve_device(device)
    if threads is None:
        threads = torch.get_num_threads()
    read_clock = clock_for(clock, device, threads)
    with torch_threads(threads):
        todo = benches(smoke)
        progress = tqdm(todo, desc="calibrating", unit="bench", file=sys.stderr,
                        disable=quiet or not sys.stderr.isatty())
        samples = []
        for bench in progress:
            progress.set_postfix_str(bench.name)
            samples.append(measure(bench, device, 0.02 if smoke else 0.4, read_clock))
    profile = fit_profile(samples, device, threads,
                          name or machine_profile_name(device, threads))
    return replace(profile, extra={"clock": clock, **profile.extra})


def fit_profile(samples: list[Sample], device: str, threads: int | None, name: str
                ) -> DeviceProfile:
    """A profile from measured samples: overhead, peak and bandwidth first, then each class."""
    module_call_s = slope([s for s in samples if s.role == MODULE_CALL],
                          lambda s: s.module_calls)
    view_s = slope([s for s in samples if s.role == VIEW], lambda s: s.views)
    by_role: dict[str, list[Sample]] = {}
    for s in samples:
        by_role.setdefault(s.role, []).append(net_of_python(s, module_call_s, view_s))
    overhead = min(s.seconds / s.ops for s in by_role[OVERHEAD])
    peak = max(s.flops / max(s.seconds - s.ops * overhead, 1e-9) for s in by_role[PEAK])
    curve = sorted((s.mac_bytes, s.mac_bytes / max(s.seconds - s.ops * overhead, 1e-9))
                   for s in by_role[BANDWIDTH])
    bandwidth = curve[-1][1]  # the largest copy: main memory
    shape = DeviceProfile("", device, {"float32": peak}, bandwidth, overhead, {},
                          bandwidth_curve=curve)
    efficiency = {cls: fit_class(by_role[cls], overhead, peak, shape.bandwidth_at)
                  for cls in CLASSES}
    for cls in WIDTH_CLASSES:
        eff = efficiency[cls]
        table = width_table(by_role[cls], eff.overhead_s or overhead, peak)
        efficiency[cls] = replace(eff, width_table=table)
    cpu = cpu_model()
    return DeviceProfile(
        name=name, device=device, peak_flops={"float32": peak}, memory_bandwidth=bandwidth,
        overhead_s=overhead, efficiency=efficiency, threads=threads, bandwidth_curve=curve,
        torch=torch.__version__, measured=True, module_call_s=module_call_s, view_s=view_s,
        description=f"calibrated by costmodel on {platform.node()} ({cpu}), "
                    f"{threads} thread(s), {device}",
        sources=["costmodel calibrate: micro-benchmarks in costmodel/latency/microbench.py"],
        extra={"samples": [s.__dict__ for s in samples]})
