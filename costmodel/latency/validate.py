"""Predicted against measured, per op type and in total: relative errors and rank correlation."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

from scipy.stats import spearmanr
from tabulate import tabulate

from costmodel.analysis import Analysis
from costmodel.capture.load import LoadedModel
from costmodel.device import resolve_device
from costmodel.latency.measure import Measurement, measure
from costmodel.latency.predict import PYTHON_TYPES, Prediction, predict
from costmodel.latency.profile import DeviceProfile
from costmodel.latency.protocol import environment, load_average
from costmodel.latency.runnable import build_on, random_inputs
from costmodel.latency.timing import clock_for, torch_threads

SCHEMA = "costmodel-validate/1"


@dataclass(frozen=True)
class Validation:
    prediction: Prediction
    measurement: Measurement
    repeat: int
    warmup: int
    clock: str = "wall"
    environment: dict[str, Any] | None = None

    @property
    def error(self) -> float:
        """Relative error of the whole-model prediction: predicted / measured - 1."""
        return self.prediction.total() / self.measurement.latency_s - 1

    @property
    def error_fastest(self) -> float:
        """The same against the fastest run, less sensitive to other load on the machine."""
        return self.prediction.total() / min(self.measurement.runs) - 1

    def by_op_type(self) -> list[dict[str, Any]]:
        """Per op type: predicted seconds, measured seconds (profiler, summed over its nodes),
        relative error, slowest measured first."""
        rows: dict[str, dict[str, Any]] = {}
        for node in self.prediction.nodes:
            row = rows.setdefault(node.op_type, {"op_type": node.op_type, "count": 0,
                                                 "predicted_s": 0.0, "measured_s": 0.0,
                                                 "bound": {}})
            row["count"] += 1
            row["predicted_s"] += node.latency_s
            row["measured_s"] += self.measurement.node_s.get(node.name, 0.0)
            row["bound"][node.bound] = row["bound"].get(node.bound, 0.0) + node.latency_s
        out = []
        for row in rows.values():
            row["bound"] = max(row["bound"], key=row["bound"].get)
            row["error"] = (row["predicted_s"] / row["measured_s"] - 1
                            if row["measured_s"] else None)
            out.append(row)
        return sorted(out, key=lambda r: -r["measured_s"])

    def spearman(self) -> float | None:
        """Rank correlation of predicted and measured time over op types."""
        rows = [r for r in self.by_op_type() if r["measured_s"]]
        if len(rows) < 3:
            return None
        rho = spearmanr([r["predicted_s"] for r in rows], [r["measured_s"] for r in rows])[0]
        return float(rho)


def validate(loaded: LoadedModel, analysis: Analysis, profile: DeviceProfile, repeat: int = 20,
             warmup: int = 5, clock: str = "wall") -> Validation:
    """Build the model for real on the profile's device, run it, and compare."""
    device = resolve_device(profile.device, f"profile {profile.name!r} is for").type
    read_clock = clock_for(clock, device, profile.threads)
    prediction = predict(analysis, profile)
    model = build_on(loaded.name, device)
    inputs = random_inputs(loaded.inputs, device)
    with torch_threads(profile.threads if device == "cpu" else None):
        env = environment(device)
        measured = measure(model, inputs, analysis, device, repeat, warmup,
                           profiled=min(repeat, 5), clock=read_clock)
        env["load_average_end"] = load_average()
    return Validation(prediction, measured, repeat, warmup, clock, env)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def to_json(v: Validation) -> dict[str, Any]:
    m = v.measurement
    return {"schema": SCHEMA, "model": v.prediction.model, "profile": v.prediction.profile.name,
            "device": v.prediction.profile.device, "threads": v.prediction.profile.threads,
            "repeat": v.repeat, "warmup": v.warmup, "clock": v.clock,
            "protocol": m.protocol.as_dict() if m.protocol else None, "settled": m.settled,
            "environment": v.environment,
            "totals": {"predicted_s": v.prediction.total(), "measured_s": m.latency_s,
                       "error": v.error,
                       "fastest_s": min(m.runs), "error_fastest": v.error_fastest,
                       "measured_runs_s": m.runs,
                       "measured_ops_s": sum(m.node_s.values()),
                       "unmatched_s": m.unmatched_s},
            "spearman_op_types": v.spearman(),
            "by_op_type": v.by_op_type()}


def render(v: Validation, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(to_json(v), indent=2)
    p, m = v.prediction, v.measurement
    style = "github" if fmt == "markdown" else "simple"
    rows = v.by_op_type()
    body = [[r["op_type"], r["count"], f"{r['predicted_s'] * 1e3:.3f}",
             f"{r['measured_s'] * 1e3:.3f}", _pct(r["error"]), r["bound"]] for r in rows]
    ops = sum(m.node_s.values())
    kernels = [r for r in rows if r["op_type"] not in PYTHON_TYPES]
    pred_ops = sum(r["predicted_s"] for r in kernels)
    body.append(["(all ops)", sum(r["count"] for r in kernels), f"{pred_ops * 1e3:.3f}",
                 f"{ops * 1e3:.3f}", _pct(pred_ops / ops - 1 if ops else None), ""])
    table = tabulate(body, headers=["Type", "Count", "Predicted ms", "Measured ms", "Error",
                                    "Bound"],
                     tablefmt=style, disable_numparse=True,
                     colalign=["left"] + ["right"] * 4 + ["left"])
    rho = v.spearman()
    n = p.profile.threads
    threads = f", {n} thread{'s' if n != 1 else ''}" if n else ""
    settled = ("settled" if m.settled else
               f"NOT settled: its two best rounds differ by {100 * m.spread:.0f}%")
    head = (f"{p.model} on {p.profile.name} ({p.profile.device}{threads})\n"
            f"measured {m.latency_s * 1e3:.3f} ms ({v.clock} clock, least of round medians, "
            f"{settled}; fastest run {min(m.runs) * 1e3:.3f} ms)\n"
            f"predicted {p.total() * 1e3:.3f} ms: "
            f"error {_pct(v.error)} ({_pct(v.error_fastest)} against the fastest run)\n"
            f"rank correlation over op types (Spearman): "
            f"{'n/a' if rho is None else f'{rho:.3f}'}")
    how = ("each op matched to its node by torch.profiler, timed on the thread's CPU clock"
           if v.clock == "cpu" else "torch.profiler (it adds its own overhead per op)")
    foot = (f"Measured per op type: {how}, median of {min(v.repeat, 5)} runs; the whole-model "
            f"time is measured without either. The gap between the two is Python, module calls "
            f"and views, which the profile prices per call and per view (rows "
            f"{' and '.join(PYTHON_TYPES)}, not in the ops' sum).")
    env = v.environment or {}
    load = env.get("load_average")
    how_timed = (f"Protocol: {m.protocol.describe() if m.protocol else 'n/a'}. Machine: "
                 f"{env.get('cpu', '?')}, torch {env.get('torch', '?')}, "
                 f"{env.get('threads', '?')} thread(s), load average "
                 f"{'n/a' if load is None else f'{load:.2f}'} at the start.")
    return "\n\n".join([head, table, textwrap.fill(foot, 100, break_on_hyphens=False),
                        textwrap.fill(how_timed, 100, break_on_hyphens=False)])
