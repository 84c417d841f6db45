"""`costmodel bench guidelines`: the ShuffleNetV2 paper's four speed experiments re-run on this
machine. Each benchmark network (`costmodel.zoo.guidelines`) is costed (Mult-Adds, MAC) on
meta tensors and timed on the device; per experiment, Kendall's tau says whether the measured
order of the rows agrees with the paper's and with the order MAC predicts."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from scipy.stats import kendalltau
from tabulate import tabulate
from tqdm import tqdm

from costmodel.analysis import analyze
from costmodel.bench.throughput import (
    FULL,
    QUICK,
    Timing,
    bench_mode,
    machine,
    measure_together,
)
from costmodel.device import resolve_device
from costmodel.formatting import si
from costmodel.report.figures import pyplot, save
from costmodel.zoo.guidelines import EXPERIMENTS, Variant, variants

SCHEMA = "costmodel-bench-guidelines/1"


@dataclass
class Row:
    variant: Variant
    madds: int
    mac: int
    timing: Timing

    @property
    def speed(self) -> float:
        return self.timing.typical


@dataclass
class Experiment:
    name: str
    rows: list[Row]
    platform: str
    tau_paper: float = float("nan")
    tau_mac: float = float("nan")
    by_scale: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class BenchResult:
    machine: dict[str, Any]
    quick: bool
    experiments: list[Experiment]
    started: str


def platform_for(experiment: str, device: torch.device) -> str:
    """The paper's column to compare with: GPU on a GPU, else ARM (G1) or CPU (G2-G4)."""
    if device.type == "cuda":
        return "GPU"
    return "ARM" if experiment == "G1" else "CPU"


def run(device_name: str = "cpu", quick: bool = False, threads: int | None = None,
        progress: bool = True) -> BenchResult:
    """Cost and time every network; tau per experiment. On a CPU, `threads` defaults to one:
    the paper timed its ARM figures on a single thread, and one thread keeps a busy machine's
    scheduler out of the timings (a parallel region waits for its slowest thread)."""
    device = resolve_device(device_name)
    if threads is None and device.type == "cpu":
        threads = 1
    chosen = variants(quick=quick)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows: dict[str, list[Row]] = {e: [] for e in EXPERIMENTS}
    groups: dict[tuple[str, str], list[Variant]] = {}
    for variant in chosen:  # the rows to compare: one experiment at one size
        groups.setdefault((variant.experiment, variant.scale), []).append(variant)
    with bench_mode(device, threads):
        info = machine(device)
        with tqdm(total=len(chosen), desc="bench guidelines", unit="net", file=sys.stderr,
                  disable=not progress or not sys.stderr.isatty()) as bar:
            for (experiment, scale), group in groups.items():
                bar.set_postfix_str(f"{experiment} {scale}")
                rows[experiment].extend(_rows(group, device, quick))
                bar.update(len(group))
    for experiment in rows:  # table order: row label, then size
        order = {v.name: i for i, v in enumerate(chosen)}
        rows[experiment].sort(key=lambda r: order[r.variant.name])
    experiments = [_ranked(Experiment(e, r, platform_for(e, device))) for e, r in rows.items()]
    return BenchResult(info, quick, experiments, started)


def _rows(group: list[Variant], device: torch.device, quick: bool) -> list[Row]:
    """Cost each network on meta tensors, then time them together on the device."""
    totals = []
    cases = []
    for variant in group:
        with torch.device("meta"):
            meta_model = variant.build()
        totals.append(analyze(meta_model, input_shape=variant.input_shape).total())
        torch.manual_seed(0)
        cases.append((variant.build().to(device),
                      torch.randn(variant.input_shape, device=device)))
    timings = measure_together(cases, QUICK if quick else FULL)
    return [Row(v, int(t.madds), int(t.mac), timing)
            for v, t, timing in zip(group, totals, timings)]


def _relative(rows: list[Row], value: Any) -> list[float]:
    """Each row's value over the value of its scale's first row (the paper's reference)."""
    first = {}
    for row in rows:
        first.setdefault(row.variant.scale, value(row))
    return [value(r) / first[r.variant.scale] for r in rows]


def _tau(a: list[float], b: list[float]) -> float:
    if len(a) < 2:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def _ranked(exp: Experiment) -> Experiment:
    """Kendall's tau of the measured speeds against the paper's and against -MAC: pooled over
    the scales as speeds relative to each scale's reference row, and per scale."""
    rows = [r for r in exp.rows if exp.platform in r.variant.paper]
    measured = _relative(rows, lambda r: r.speed)
    paper = _relative(rows, lambda r: r.variant.paper[exp.platform])
    lean = _relative(rows, lambda r: 1 / r.mac)
    exp.tau_paper, exp.tau_mac = _tau(measured, paper), _tau(measured, lean)
    for scale in dict.fromkeys(r.variant.scale for r in rows):
        part = [r for r in rows if r.variant.scale == scale]
        speeds = [r.speed for r in part]
        exp.by_scale[scale] = {
            "tau_paper": _tau(speeds, [r.variant.paper[exp.platform] for r in part]),
            "tau_mac": _tau(speeds, [-r.mac for r in part])}
    return exp


# --- output ------------------------------------------------------------------------------------

def to_json(result: BenchResult) -> dict[str, Any]:
    def number(x: float) -> float | None:
        return None if x != x else round(x, 4)  # NaN is not JSON

    return {
        "schema": SCHEMA,
        "machine": result.machine,
        "quick": result.quick,
        "started": result.started,
        "batch": 1,
        "experiments": [{
            "experiment": e.name, "guideline": EXPERIMENTS[e.name], "platform": e.platform,
            "tau_paper": number(e.tau_paper), "tau_mac": number(e.tau_mac),
            "by_scale": {s: {k: number(v) for k, v in t.items()} for s, t in e.by_scale.items()},
            "rows": [{"name": r.variant.name, "label": r.variant.label,
                      "scale": r.variant.scale, "widths": list(r.variant.widths),
                      "input_shape": list(r.variant.input_shape), "madds": r.madds,
                      "mac": r.mac, "paper": r.variant.paper,
                      "images_per_s": r.timing.as_dict()} for r in e.rows],
        } for e in result.experiments],
    }


def header(result: BenchResult) -> str:
    m = result.machine
    where = m.get("gpu", m["cpu"])
    return (f"costmodel bench guidelines{' --quick' if result.quick else ''}: {where}, "
            f"{m['device']}, torch {m['torch']}, {m['threads']} threads, batch 1, "
            f"{result.started}")


def table(result: BenchResult, markdown: bool = False) -> str:
    fmt = "github" if markdown else "simple"
    parts = [header(result)]
    for e in result.experiments:
        title = (f"{e.name}: {EXPERIMENTS[e.name]}. Kendall's tau of the measured order "
                 f"against the paper's ({e.platform}): {e.tau_paper:.2f}; against MAC's: "
                 f"{e.tau_mac:.2f}")
        rows = []
        for r in e.rows:
            t = r.timing
            rows.append([r.variant.label, r.variant.scale,
                         ",".join(map(str, r.variant.widths)), si(r.madds), si(r.mac),
                         _fmt(r.variant.paper.get(e.platform)), _fmt(t.typical),
                         f"{_fmt(t.worst)}-{_fmt(t.best)}"])
        head = ["Row", "Size", "Widths", "Mult-Adds", "MAC", f"Paper {e.platform} /s",
                "Measured /s", "min-max"]
        gap = "\n\n" if markdown else "\n"  # a markdown table must not touch a paragraph
        parts.append(title + gap + tabulate(rows, head, tablefmt=fmt, disable_numparse=True))
    return "\n\n".join(parts)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def render(result: BenchResult, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(to_json(result), indent=2)
    return table(result, markdown=fmt == "markdown")


def plot(result: BenchResult, path: str | Path) -> Path:
    """One panel per guideline: measured throughput against MAC, both relative to the
    experiment's reference row (its first) at the same size, since within a size every row
    has the same Mult-Adds. The dashed line is throughput inversely proportional to MAC."""
    plt = pyplot()
    from matplotlib.ticker import FormatStrFormatter

    markers = {"x1": "o", "x2": "s", "x4": "^"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for ax, e in zip(axes.flat, result.experiments):
        mac = _relative(e.rows, lambda r: r.mac)
        speed = _relative(e.rows, lambda r: r.speed)
        colors = {label: f"C{i}" for i, label in
                  enumerate(dict.fromkeys(r.variant.label for r in e.rows))}
        for row, x, y in zip(e.rows, mac, speed):
            ax.scatter(x, y, color=colors[row.variant.label], marker=markers[row.variant.scale],
                       s=40)
        span = [min(mac) * 0.9, max(mac) * 1.1]
        ax.plot(span, [1 / x for x in span], "k--", lw=0.8, label="throughput ~ 1/MAC")
        for label, color in colors.items():
            ax.scatter([], [], color=color, marker="o", label=label)
        for scale, marker in markers.items():
            ax.scatter([], [], color="gray", marker=marker, label=scale)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # 0.8, not 8 x 10^-1
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(FormatStrFormatter("%g"))
        reference = e.rows[0].variant.label
        ax.set_xlabel(f"MAC relative to {reference} at the same size")
        ax.set_ylabel(f"measured images/s relative to {reference}")
        ax.set_title(f"{e.name}: {EXPERIMENTS[e.name]}\nKendall's tau vs paper "
                     f"{e.tau_paper:.2f}, vs MAC {e.tau_mac:.2f}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(header(result), fontsize=8)
    fig.tight_layout()
    return save(fig, path, dpi=90)
