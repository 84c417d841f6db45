"""Latency of a compiled model: the predictor's units are the kernels a fusion makes, not the
ops (docs/fusion.md). `kernel_units` is the one place that turns kernels into the predictor's
NodeTimes; everything else (the roofline terms, the profile, the reports) is the eager
predictor's own.

- an extern kernel (a library convolution or matmul) is priced as its op is, by its class;
- a generated kernel is a loop that streams its buffers: the element-wise class, its FLOPs
  those of the ops it computes, its bytes inductor's count for the kernel;
- a compiled model calls no nn.Module and dispatches no view, so neither costs time.
"""

from __future__ import annotations

from typing import Any

from costmodel.analysis import Analysis
from costmodel.capture.load import LoadedModel
from costmodel.cost import is_concrete
from costmodel.errors import CostModelError
from costmodel.latency.classes import WIDTH_CLASSES, class_of, conv_width
from costmodel.latency.predict import NodeTime, Prediction
from costmodel.latency.profile import DeviceProfile
from costmodel.views.fusion import Fusion, fusion_of


def kernel_units(analysis: Analysis, fusion: Fusion, profile: DeviceProfile) -> list[NodeTime]:
    """One NodeTime per kernel: its ops' FLOPs (each op under its own kernel), the bytes the
    kernel moves once fused, the class of its library call or the element-wise class."""
    ops = {d["name"]: d for d in analysis.ops()}
    flops: dict[int, Any] = {}
    for name, index in fusion.kernel_of.items():
        if index is not None:
            flops[index] = flops.get(index, 0) + ops[name]["cost"].flops
    units = []
    for kernel in fusion.kernels:
        work, nbytes = flops.get(kernel.index, 0), kernel.mac_bytes
        if not (is_concrete(work) and is_concrete(nbytes)):
            raise CostModelError(f"{analysis.model}: cannot predict a symbolic analysis "
                                 f"(kernel {kernel.index}): give concrete input sizes")
        lead = ops[kernel.ops[0]] if kernel.ops else None
        if kernel.kind in ("extern", "single", "fused") and lead is not None:
            cls = class_of(lead["op_type"], lead["target"])
        else:
            cls = "elementwise"
        width = conv_width(lead["input_shapes"]) if lead and cls in WIDTH_CLASSES else None
        dtype = lead["dtypes"][0].removeprefix("torch.") if lead and lead["dtypes"] \
            else "float32"
        eff = profile.efficiency[cls]
        work, nbytes = float(work), float(nbytes)
        units.append(NodeTime(
            name=f"kernel {kernel.index}", op_type=kernel.label, module=kernel.module,
            efficiency_class=cls, flops=work, mac_bytes=nbytes,
            compute_s=work / (profile.peak(dtype) * eff.compute_share(width)),
            memory_s=nbytes / (profile.bandwidth_at(nbytes) * eff.memory),
            overhead_s=profile.overhead(cls)))
    return units


def predict_fused(analysis: Analysis, profile: DeviceProfile) -> Prediction:
    """The predicted time of the compiled model: the sum over its kernels."""
    fusion = fusion_of(analysis)
    if fusion is None:
        raise CostModelError(f"{analysis.model}: a fused prediction needs --fuse")
    return Prediction(analysis.model, profile, kernel_units(analysis, fusion, profile))


def check_compiler() -> str:
    """The C++ compiler inductor would run, or a one-line error saying there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CostModelError(f"validate --fuse inductor compiles the model with torch.compile "
                             f"and needs a C++ compiler: none found ({text}); install g++ "
                             f"or set CXX") from exc


def validate_fused(loaded: LoadedModel, analysis: Analysis, profile: DeviceProfile,
                   repeat: int = 20, warmup: int = 5, clock: str = "wall") -> Any:
    """Compile the model with torch.compile (inductor, CPU) and time it as validate times the
    eager model: the same warm-up, runs, median and clock; the first call, which compiles,
    is never timed. Per-kernel times are not measured: the comparison is the whole model's."""
    import torch

    from costmodel.device import resolve_device
    from costmodel.latency.measure import measure_whole
    from costmodel.latency.runnable import build_on, random_inputs
    from costmodel.latency.timing import clock_for, torch_threads
    from costmodel.latency.validate import Validation

    fusion = fusion_of(analysis)
    if fusion is None or fusion.mode != "inductor":
        raise CostModelError("validate measures a compiled model: use --fuse inductor")
    device = resolve_device(profile.device, f"profile {profile.name!r} is for").type
    if device != "cpu":
        raise CostModelError(f"validate --fuse inductor compiles for the CPU; profile "
                             f"{profile.name!r} is for {device}")
    check_compiler()
    read_clock = clock_for(clock, device, profile.threads)
    prediction = predict_fused(analysis, profile)
    model = build_on(loaded.name, device)
    inputs = random_inputs(loaded.inputs, device)
    with torch_threads(profile.threads):
        compiled = torch.compile(model)
        try:
            with torch.inference_mode():
                compiled(*inputs)  # the compile
        except Exception as exc:
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CostModelError(f"{loaded.name}: torch.compile failed: {text}") from exc
        measured = measure_whole(compiled, inputs, device, repeat, warmup, read_clock)
    return Validation(prediction, measured, repeat, warmup, clock)


def render_validation(v: Any, fmt: str = "table") -> str:
    """A compiled model's validation: the whole-model times (no per-kernel measurement)."""
    import json

    p, m = v.prediction, v.measurement
    n = p.profile.threads
    threads = f", {n} thread{'s' if n != 1 else ''}" if n else ""
    if fmt == "json":
        from costmodel.latency.validate import SCHEMA

        return json.dumps({
            "schema": SCHEMA, "model": p.model, "profile": p.profile.name,
            "device": p.profile.device, "threads": n, "repeat": v.repeat, "warmup": v.warmup,
            "clock": v.clock, "compiled": "torch.compile (inductor)", "kernels": len(p.nodes),
            "totals": {"predicted_s": p.total(), "measured_s": m.latency_s, "error": v.error,
                       "fastest_s": min(m.runs), "error_fastest": v.error_fastest,
                       "measured_runs_s": m.runs},
            "protocol": m.protocol.as_dict() if m.protocol else None, "settled": m.settled},
            indent=2)
    return (f"{p.model} compiled with torch.compile (inductor) on {p.profile.name} "
            f"({p.profile.device}{threads}), {len(p.nodes)} kernels\n"
            f"measured {m.latency_s * 1e3:.3f} ms ({v.clock} clock, after the compiling call; "
            f"fastest {min(m.runs) * 1e3:.3f} ms{'' if m.settled else '; rounds never settled'})\n"
            f"Protocol: {m.protocol.describe() if m.protocol else 'n/a'}\n"
            f"predicted {p.total() * 1e3:.3f} ms: error {100 * v.error:+.1f}% "
            f"({100 * v.error_fastest:+.1f}% against the fastest run)")
