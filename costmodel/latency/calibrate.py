"""Measure a device profile on the machine at hand, from micro-benchmarks only.

Two parts. The base figures: the Python time per nn.Module call and per view (the slope of
time over the length of a chain of modules that run no op, and of a chain of views), the
fixed time of a one-element op, the peak FLOP/s of a large matmul and the bandwidth of
streaming copies from 16 KB to 16 MB, kept as a curve. Then the learned predictors: the op
configurations of a fixed set of source models (costmodel.latency.sources) are harvested
from their graphs and sampled around (costmodel.latency.kernels), each is timed as an op runs
in a model (a fresh output, arguments cycled through more memory than the L2 caches hold),
and each kernel class gets a regressor of log(time / roofline estimate) over the analytic
features (costmodel.latency.learned); a class whose cross-validated error stays above 5%
gets more samples around its worst configurations while the time budget lasts. The
roofline's per-class efficiencies are fitted on the same timings, by least squares on log
time (scipy), for ops no learned class covers. Everything is timed by one protocol
(costmodel.latency.protocol). No model that is later scored is measured or harvested.
"""

from __future__ import annotations

import itertools
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.optimize import least_squares
from tqdm import tqdm

from costmodel.analysis import Analysis, analyze, analyze_loaded
from costmodel.device import cpu_model, resolve_device
from costmodel.latency.classes import CLASSES, WIDTH_CLASSES, class_of, conv_width
from costmodel.latency.isolated import Spec, Worker
from costmodel.latency.kernels import (
    Config,
    features,
    harvest,
    kernel_name,
    runner,
    size_pool,
    variant,
)
from costmodel.latency.learned import ClassRows, KernelPredictors, sklearn_version
from costmodel.latency.measure import protocol_for
from costmodel.latency.microbench import (
    BANDWIDTH,
    MODULE_CALL,
    OVERHEAD,
    PEAK,
    VIEW,
    Bench,
    benches,
)
from costmodel.latency.predict import predict, roofline_estimate
from costmodel.latency.profile import DeviceProfile, Efficiency, machine_profile_name
from costmodel.latency.protocol import (
    KERNELS,
    SMOKE,
    Protocol,
    environment,
    time_interleaved,
)
from costmodel.latency.sources import SOURCES, smoke_sources
from costmodel.latency.timing import clock_for, torch_threads

#: Bytes of inputs a benchmark cycles through: beyond this machine class's L2 caches.
ROTATE_BYTES = 8 << 20
#: The benchmarks of the base figures; the kernel classes are learned from sampled ops.
BASE_ROLES = (OVERHEAD, PEAK, BANDWIDTH, MODULE_CALL, VIEW)


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


@dataclass(frozen=True)
class Mode:
    """How much a calibration measures: base benchmarks, sources, sampled variants per
    harvested configuration, adaptive rounds, and a time budget for the kernel timings."""

    name: str
    smoke: bool
    variants: float  # sampled configurations per harvested one
    adaptive_rounds: int
    budget_s: float
    protocol: Protocol
    source_passes: int  # passes over the source models whole, 1 to 3 (SourceRuns)


MODES: dict[str, Mode] = {
    "full": Mode("full", False, 2.0, 2, 240.0, KERNELS, 3),
    "quick": Mode("quick", False, 0.0, 0, 40.0, replace(KERNELS, rounds=3, per_round=2,
                                                       retries=1), 2),
    "smoke": Mode("smoke", True, 1.0, 1, 10.0, SMOKE, 1),
}
#: The mode `calibrate` runs when none is named (predict's calibration on first use).
DEFAULT_MODE = "full"
#: Configurations timed together, in interleaved rounds.
BATCH = 24
#: A class whose cross-validated error is above this gets adaptive samples.
CV_TARGET = 0.05


@dataclass
class KernelSample:
    config: Config
    seconds: float
    stable: bool


def calibrate(device: str = "cpu", threads: int | None = None, smoke: bool = False,
              quiet: bool = False, name: str | None = None, clock: str = "wall",
              mode: str | None = None, seed: int = 0) -> DeviceProfile:
    """Measure the base figures (Python time, overhead, peak, bandwidth), then time
    configurations harvested from the source models and sampled around them, and fit one
    predictor per kernel class (`mode`: full, quick or smoke; `smoke` is mode smoke)."""
    resolve_device(device)
    began = time.perf_counter()
    plan = MODES["smoke" if smoke else (mode or DEFAULT_MODE)]
    if threads is None:
        threads = torch.get_num_threads()
    read_clock = clock_for(clock, device, threads)
    env_start = environment(device)
    show = not quiet and sys.stderr.isatty()
    sources = smoke_sources() if plan.smoke else SOURCES
    # the graphs predict will see: traced outside inference mode, where conv2d and
    # batch_norm reach the graph as the aten ops they run (convolution, native_batch_norm)
    graphs = {name: analyze_loaded(load("meta")) for name, load in sources.items()}
    with torch_threads(threads), _flushed(), torch.inference_mode(), \
            source_worker(plan.smoke, device, threads, clock) as worker:
        env_start["threads"] = torch.get_num_threads()
        todo = [b for b in benches(plan.smoke) if b.role in BASE_ROLES]
        samples = measure_benches(todo, device, plan.protocol, read_clock)
        base = fit_profile(samples, device, threads, name or machine_profile_name(
            device, threads))
        configs: list[Config] = []
        seen: set[str] = set()
        for graph in graphs.values():
            for config in harvest(graph):
                if config.key not in seen:
                    seen.add(config.key)
                    configs.append(config)
        rng = random.Random(seed)
        pool = size_pool(configs)
        sampled = _around(configs, plan.variants, rng, seen, pool)
        progress = tqdm(total=len(configs) + len(sampled), desc="calibrating", unit="op",
                        file=sys.stderr, disable=not show)
        deadline = began + plan.budget_s
        runs = SourceRuns(list(sources), worker.time)
        if plan.source_passes > 1:
            runs.time_pass()
        timed = time_configs(configs, device, plan.protocol, read_clock, progress, None)
        if plan.source_passes > 2:
            runs.time_pass()
        timed += time_configs(sampled, device, plan.protocol, read_clock, progress, deadline)
        rows = fit_rows(timed, base)
        for _ in range(plan.adaptive_rounds):
            worst = _worst(rows, timed)
            extra = _around(worst, 2.0, rng, seen, pool)
            if not extra or time.perf_counter() > deadline:
                break
            progress.total += len(extra)
            timed += time_configs(extra, device, plan.protocol, read_clock, progress, deadline)
            rows = fit_rows(timed, base)
        efficiency = _efficiency(timed, base)
        predictors = KernelPredictors(rows, sklearn_version(), list(sources))
        profile = replace(base, efficiency=efficiency, kernels=predictors)
        progress.set_description("calibrating: source models whole")
        runs.time_pass()
        context = in_model(runs.least(), graphs, profile)
        predictors.in_model_ratios, predictors.in_model_fit = context.ratios, context.fit
        predictors.in_model, predictors.in_model_op_s = context.scale, context.op_s
        progress.close()
    unsettled = [f"{s.config.key[:80]}" for s in timed if not s.stable]
    env_end = environment(device)
    extra = {"clock": clock, "mode": plan.name, "protocol": plan.protocol.as_dict(),
             "environment": env_start, "load_average_end": env_end["load_average"],
             "calibration_s": time.perf_counter() - began, "configurations": len(timed),
             "source_passes": len(runs.passes), "source_pass_spread": runs.spread(),
             "source_seconds": runs.least(),
             "unstable": unsettled, **base.extra}
    return replace(profile, extra=extra,
                   sources=[*base.sources, "learned predictors: configurations harvested from "
                            + ", ".join(sources) + " and sampled around them"])


@dataclass(frozen=True)
class InModel:
    """What kernels cost inside a forward pass beyond their time alone, fitted on the sources:
    time in a model = scale x the learned kernels' time + op_s per op + everything else."""

    ratios: dict[str, float]  # per source, the scale alone (op_s = 0)
    scale: float
    op_s: float
    fit: dict[str, float]  # per source, measured / predicted with both fitted


#: Fewer sources than this: only the scale is fitted (the median of their ratios).
FIT_SOURCES = 3
#: Bounds of the fit: a scale within 2x of the kernels alone, at most 100 us per op.
SCALE_BOUNDS = (0.5, 2.0)
OP_S_BOUND = 1e-4


class SourceRuns:
    """The source models timed whole in passes (`time_pass`: all sources in interleaved
    rounds, by a fresh process: costmodel.latency.isolated); `least` is each one's fastest.

    A full calibration takes three passes spread through it (before the kernels, between the
    harvested and the sampled ones, at the end), --quick the first and the last, --smoke the
    last (Mode.source_passes): another job sharing the machine only ever slows a run, and on
    this project's 2-core machine one pass in a slow phase put every source 10-15% slower
    and the in-model scale at 1.23 instead of 1.05-1.10."""

    def __init__(self, names: list[str], timer: Callable[[], list[tuple[float, bool]]]
                 ) -> None:
        self.names, self.timer = names, timer
        self.passes: list[list[float]] = []

    def time_pass(self) -> None:
        self.passes.append([seconds for seconds, _ in self.timer()])

    def least(self) -> dict[str, float]:
        return {n: min(p[i] for p in self.passes) for i, n in enumerate(self.names)}

    def spread(self) -> float:
        """The largest ratio, over the sources, of a source's slowest pass to its fastest."""
        return max((max(p[i] for p in self.passes) / min(p[i] for p in self.passes) - 1
                    for i in range(len(self.names))), default=0.0)


def source_worker(smoke: bool, device: str, threads: int, clock: str) -> Worker:
    """The fresh process that builds the source models and times them whole."""
    registry = "costmodel.latency.sources:" + ("smoke_sources" if smoke else "SOURCES")
    names = list(smoke_sources() if smoke else SOURCES)
    return Worker(Spec(registry, names, device, threads, clock,
                       protocol_for(9, 3).as_dict()))


def in_model(measured: dict[str, float], graphs: dict[str, Analysis],
             profile: DeviceProfile) -> InModel:
    """Each source model's measured time (SourceRuns.least) against its prediction split in
    three: the learned kernels L, the ops that are not views n (each issued by a Python call
    the kernel replay skips: the functional API's checks, argument parsing, the composite
    op's own dispatch) and the rest O (module calls, views, roofline classes);
    `fit_in_model` fits them. Only the sources are run: a held-out model's time never
    enters a profile."""
    one = profile.kernels
    two = replace(profile, kernels=replace(one, in_model=2.0, in_model_op_s=0.0))
    base = replace(profile, kernels=replace(one, in_model=1.0, in_model_op_s=0.0))
    rows = []
    for name, m in measured.items():
        at_one = predict(graphs[name], base).total()
        learned = predict(graphs[name], two).total() - at_one  # linear in the scale
        ops = sum(op["op_type"] != "View" for op in graphs[name].ops())
        rows.append(InModelRow(name, m, learned, ops, at_one - learned))
    return fit_in_model(rows)


@dataclass(frozen=True)
class InModelRow:
    """One source run whole: measured seconds against its prediction's three parts."""

    name: str
    measured_s: float
    learned_s: float  # the learned kernels alone (scale 1)
    ops: int  # ops that are not views
    other_s: float  # module calls, views, roofline classes


def fit_in_model(rows: list[InModelRow]) -> InModel:
    """The scale a and per-op cost b that fit measured = a L + b n + O best in relative
    error (bounded least squares); with fewer than FIT_SOURCES rows, b = 0 and a is the
    median of the rows' own ratios."""
    from scipy.optimize import lsq_linear

    ratios = {r.name: max(0.2, min(5.0, (r.measured_s - r.other_s) / r.learned_s))
              for r in rows if r.learned_s > 0}
    if not ratios:
        return InModel({"none": 1.0}, 1.0, 0.0, {})
    scale, op_s = statistics.median(ratios.values()), 0.0
    if len(rows) >= FIT_SOURCES:
        a = np.array([[r.learned_s / r.measured_s, r.ops / r.measured_s] for r in rows])
        y = np.array([1 - r.other_s / r.measured_s for r in rows])
        result = lsq_linear(a, y, bounds=([SCALE_BOUNDS[0], 0.0], [SCALE_BOUNDS[1], OP_S_BOUND]))
        scale, op_s = float(result.x[0]), float(result.x[1])
    fit = {r.name: r.measured_s / (scale * r.learned_s + op_s * r.ops + r.other_s)
           for r in rows}
    return InModel(ratios, scale, op_s, fit)


@contextmanager
def _flushed() -> Iterator[None]:
    """Denormals flushed to zero, as in a benchmark run: random weights can reach them."""
    flushed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def measure_benches(todo: list[Bench], device: str, protocol: Protocol,
                    clock: Callable[[], float]) -> list[Sample]:
    """Count each base benchmark with costmodel, then time them all by the protocol."""
    counted, calls = [], []
    for bench in todo:
        module = bench.build().eval()
        analysis = analyze(module, input_shape=list(bench.shapes))
        ops = [op for op in analysis.ops() if op["op_type"] != "View"]
        module = module.to(device)
        per_set = sum(math.prod(s) * 4 for s in bench.shapes)
        copies = 1 if bench.tiny or bench.role in (OVERHEAD, PEAK, BANDWIDTH, MODULE_CALL,
                                                   VIEW) else min(
            64, max(1, math.ceil(ROTATE_BYTES / per_set)))
        sets = [[torch.randn(s, device=device) for s in bench.shapes] for _ in range(copies)]
        turn = itertools.cycle(sets)
        calls.append(lambda module=module, turn=turn: module(*next(turn)))
        width = conv_width(ops[0]["input_shapes"]) if bench.role in WIDTH_CLASSES else None
        counted.append((bench, ops, analysis, width))
    timed = time_interleaved(calls, protocol, device, clock)
    return [Sample(bench.name, bench.role, float(sum(op["cost"].flops for op in ops)),
                   float(sum(op["cost"].mac_bytes for op in ops)), len(ops), t.seconds,
                   bench.tiny, width, int(analysis.graph.graph["module_call_count"]),
                   len(analysis.ops()) - len(ops))
            for (bench, ops, analysis, width), t in zip(counted, timed)]


#: Sampled configurations a class gets at least (where its harvested ones allow: at most
#: MAX_PER_CONFIG around each).
MIN_SAMPLED = 60
MAX_PER_CONFIG = 8.0


def _around(configs: list[Config], per_config: float, rng: random.Random, seen: set[str],
            pool: dict[str, list[int]] | None = None) -> list[Config]:
    """About `per_config` new configurations sampled around each of `configs` (sizes from
    the class's `pool` among them), and more around those of a class the sources use
    rarely, so that it gets at least MIN_SAMPLED (the grouped convolutions of two sources
    gave 40 rows, too few for a forest, which G2's groups 2 to 8 then missed by 30%)."""
    per_class: dict[str, int] = {}
    for config in configs:
        per_class[config.kclass] = per_class.get(config.kclass, 0) + 1
    out = []
    for config in configs:
        rate = per_config and min(MAX_PER_CONFIG,
                                  max(per_config, MIN_SAMPLED / per_class[config.kclass]))
        want = int(rate) + (rng.random() < rate - int(rate))
        for _ in range(want * 3):
            if want <= 0:
                break
            near = variant(config, rng, pool)
            if near is not None and near.key not in seen:
                seen.add(near.key)
                out.append(near)
                want -= 1
    return out


def time_configs(configs: list[Config], device: str, protocol: Protocol,
                 clock: Callable[[], float], progress: Any, deadline: float | None
                 ) -> list[KernelSample]:
    """Time configurations by the protocol, a batch of one class at a time (a batch is
    interleaved); stop at `deadline`."""
    out: list[KernelSample] = []
    ordered = sorted(configs, key=lambda c: c.kclass)
    for start in range(0, len(ordered), BATCH):
        if deadline is not None and time.perf_counter() > deadline:
            break
        batch = ordered[start:start + BATCH]
        fns, kept = [], []
        for config in batch:
            try:
                fn = runner(config, device)
            except Exception:  # a configuration torch cannot run on real tensors
                progress.update(1)
                continue
            fns.append(fn)
            kept.append(config)
        timed = time_interleaved(fns, protocol, device, clock)
        out += [KernelSample(c, t.seconds, t.settled(protocol.threshold))
                for c, t in zip(kept, timed)]
        progress.update(len(kept))
        del fns
    return out


def _dtype(config: Config) -> str:
    out = config.call.outputs[0] if config.call.outputs else None
    return str(out.dtype).removeprefix("torch.") if out is not None else "float32"


def fit_rows(timed: list[KernelSample], base: DeviceProfile) -> dict[str, ClassRows]:
    """Per kernel class: features and log(time / roofline estimate) of every timed
    configuration, with the class's cross-validated error."""
    by_class: dict[str, list[KernelSample]] = {}
    for sample in timed:
        by_class.setdefault(sample.config.kclass, []).append(sample)
    out = {}
    for cls in sorted(by_class):
        members = by_class[cls]
        vocabulary = {n: i for i, n in enumerate(sorted({kernel_name(s.config.target)
                                                         for s in members}))}
        rows, targets, labels = [], [], []
        for s in members:
            cost = s.config.cost
            estimate = roofline_estimate(base, float(cost.flops), float(cost.mac_bytes),
                                         _dtype(s.config))
            rows.append(features(s.config.call, s.config.op_type, cost, estimate, vocabulary))
            targets.append(math.log(max(s.seconds, 1e-9) / estimate))
            labels.append(s.config.key[:120])
        entry = ClassRows(rows, targets, labels, vocabulary)
        entry.cv_error = entry.cross_validate()[0]
        out[cls] = entry
    return out


def _worst(rows: dict[str, ClassRows], timed: list[KernelSample]) -> list[Config]:
    """The configurations with the largest cross-validated errors, in classes above the
    CV target: where adaptive sampling adds points."""
    by_label = {s.config.key[:120]: s.config for s in timed}
    worst = []
    for entry in rows.values():
        if entry.cv_error is None or entry.cv_error <= CV_TARGET:
            continue
        _, errors = entry.cross_validate()
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        worst += [by_label[entry.labels[i]] for i in order[:max(2, len(order) // 5)]
                  if entry.labels[i] in by_label]
    return worst


def _efficiency(timed: list[KernelSample], base: DeviceProfile) -> dict[str, Efficiency]:
    """The roofline's per-class efficiencies, fitted on the same timings (the fallback for
    ops no learned class covers)."""
    by_role: dict[str, list[Sample]] = {}
    for s in timed:
        c = s.config
        width = conv_width([tuple(t.shape) for t in c.call.inputs])
        role = class_of(c.op_type, str(c.target))
        by_role.setdefault(role, []).append(Sample(c.key[:60], role, float(c.cost.flops),
                                                   float(c.cost.mac_bytes), 1, s.seconds,
                                                   width=width))
    out = {}
    for cls in CLASSES:
        members = by_role.get(cls)
        out[cls] = (fit_class(members, base.overhead_s, base.peak("float32"), base.bandwidth_at)
                    if members else base.efficiency.get(cls, Efficiency(1.0, 1.0)))
    return out


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
                  if by_role.get(cls) else Efficiency(1.0, 1.0) for cls in CLASSES}
    for cls in WIDTH_CLASSES:
        eff = efficiency[cls]
        table = width_table(by_role.get(cls, []), eff.overhead_s or overhead, peak)
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
