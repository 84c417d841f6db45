"""How well costmodel predicts measured latency: the roofline model against FLOPs-only and
MAC-only predictors, over the zoo and every size of the ShuffleNetV2 paper's four guideline
networks, on this machine's CPU.

Usage::

    python benchmarks/bench_latency.py [--threads 1 all] [--repeat N] [--clock wall|cpu]
                                       [--quick] [--no-per-op] [--profile FILE ...]
                                       [--compare FILE]

For each thread count, a device profile is calibrated here from micro-benchmarks only
(`costmodel.latency.calibrate`; nothing of the scored models), then every model is built on the
CPU with random weights, run under ``torch.inference_mode`` (warm-up, then the median of
``--repeat`` runs), and predicted three ways:

* roofline: ``costmodel.latency.predict`` with the calibrated profile (nothing fitted here);
  and, to show what the Python terms add, the same without them (the profile's per-module-call
  and per-view times set to 0); with ``--compare FILE``, also the roofline on another
  profile (one calibrated another way), scored on the same measurements;
* FLOPs-only: time = a x Mult-Adds, ``a`` least-squares fitted on these very measurements;
* MAC-only: time = b x MAC bytes, fitted the same way.

It prints, per thread count, every model's figures, then for each predictor the share of
models within 10% of measured, Spearman's rank correlation, and within each FLOPs-matched
guideline experiment (same experiment, same scale) the share of pairs put in the right speed
order; then the roofline's error per op type over all models (torch.profiler per op). The run
ends with the aims, met or MISSED; it exits non-zero only on a crash.

``--clock cpu`` times one-thread runs by the thread's CPU time (calibration included), which
leaves out the time other processes hold the core: on a shared, loaded machine the wall clock
measures the other jobs as much as the model.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from scipy.stats import spearmanr
from tabulate import tabulate
from torch import nn
from tqdm import tqdm

from costmodel import analyze
from costmodel.latency.calibrate import calibrate
from costmodel.latency.measure import measure
from costmodel.latency.predict import predict
from costmodel.latency.profile import DeviceProfile, read_profile
from costmodel.latency.timing import CLOCKS, torch_threads
from costmodel.zoo import MODELS
from costmodel.zoo.guidelines import variants

ZOO = [n for n in MODELS if n not in ("llama_7b",)]
QUICK_ZOO = ["mobilenet_v2", "shufflenet_v1_g3", "shufflenet_v2_x1_0", "resnet18"]


@dataclass
class Case:
    """One model to score: how to build it, its input, and which FLOPs-matched set it is in."""

    name: str
    group: str  # "zoo" or "G1".."G4"
    matched: str | None  # e.g. "G2 x1": variants whose Mult-Adds are (nearly) equal
    build: Any
    input_shape: tuple[int, ...]


@dataclass
class Result:
    case: Case
    madds: float
    mac_bytes: float
    measured_s: float
    fastest_s: float
    roofline_s: float
    ops_only_s: float  # the roofline without module-call and view time
    compare_s: float | None  # the roofline on the --compare profile
    node_pred: dict[str, tuple[str, float]] = field(default_factory=dict)
    node_meas: dict[str, float] = field(default_factory=dict)


def cases(quick: bool) -> list[Case]:
    out = []
    for name in QUICK_ZOO if quick else ZOO:
        factory = MODELS[name]
        with torch.device("meta"):
            model = factory()
        shape = ((1, *model.default_cfg["input_size"]) if hasattr(model, "default_cfg")
                 else None)
        if shape is None:  # llama_tiny: token ids
            continue
        out.append(Case(name, "zoo", None, factory, shape))
    for v in variants(quick=quick):
        out.append(Case(v.name, v.experiment, f"{v.experiment} {v.scale}", v.build,
                        v.input_shape))
    return out


def run_case(case: Case, profile: DeviceProfile, repeat: int, warmup: int, clock: str,
             per_op: bool, compare: DeviceProfile | None = None) -> Result:
    with torch.device("meta"):
        meta_model = case.build()
    analysis = analyze(meta_model.eval(), input_shape=case.input_shape)
    prediction = predict(analysis, profile)
    ops_only = predict(analysis, replace(profile, module_call_s=0.0, view_s=0.0)).total()
    model: nn.Module = case.build().eval()
    x = torch.randn(case.input_shape)
    m = measure(model, [x], analysis, "cpu", repeat, warmup, profiled=3, per_op=per_op,
                clock=CLOCKS[clock])
    total = analysis.total()
    return Result(case, float(total.madds), float(total.mac_bytes), m.latency_s, min(m.runs),
                  prediction.total(), ops_only,
                  predict(analysis, compare).total() if compare else None,
                  {n.name: (n.op_type, n.latency_s) for n in prediction.nodes}, m.node_s)


def fit_proportional(x: list[float], y: list[float]) -> float:
    """Least-squares slope through the origin: y ~ a x."""
    return sum(a * b for a, b in zip(x, y)) / sum(a * a for a in x)


def within(pred: list[float], meas: list[float], tol: float = 0.10) -> float:
    return sum(abs(p / m - 1) <= tol for p, m in zip(pred, meas)) / len(meas)


def pairs_right(results: list[Result], pred: list[float], experiment: str | None = None
                ) -> tuple[int, float]:
    """Pairs within each FLOPs-matched set (of one `experiment`, or all), and the share whose
    order `pred` gets right (a predicted tie counts half)."""
    by_set: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        if r.case.matched and experiment in (None, r.case.group):
            by_set.setdefault(r.case.matched, []).append(i)
    right, count = 0.0, 0
    for members in by_set.values():
        for i, j in itertools.combinations(members, 2):
            count += 1
            dm = results[i].measured_s - results[j].measured_s
            dp = pred[i] - pred[j]
            right += 0.5 if dp == 0 else float((dm > 0) == (dp > 0))
    return count, right / count if count else float("nan")


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def _pct(x: float) -> str:
    return f"{100 * x:+.0f}%"


def report(results: list[Result], label: str, compare_name: str | None = None
           ) -> tuple[dict[str, dict[str, float]], str]:
    """Per-model table and the predictor summary, as markdown."""
    meas = [r.measured_s for r in results]
    a = fit_proportional([r.madds for r in results], meas)
    b = fit_proportional([r.mac_bytes for r in results], meas)
    preds = {"roofline (costmodel, calibrated)": [r.roofline_s for r in results],
             "roofline, ops only (no module-call or view time)": [r.ops_only_s
                                                                  for r in results],
             **({f"roofline on profile {compare_name}":
                 [r.compare_s for r in results]} if compare_name else {}),
             "FLOPs-only (fitted here)": [a * r.madds for r in results],
             "MAC-only (fitted here)": [b * r.mac_bytes for r in results]}
    rows = []
    for i, r in enumerate(results):
        rows.append([r.case.name, r.case.group, f"{r.madds / 1e6:.0f}", f"{r.mac_bytes / 1e6:.1f}",
                     _ms(r.measured_s), _ms(r.fastest_s)]
                    + [f"{_ms(p[i])} ({_pct(p[i] / r.measured_s - 1)})" for p in preds.values()])
    table = tabulate(rows, headers=["model", "set", "Mult-Adds M", "MAC MB", "measured ms",
                                    "fastest ms", "roofline ms", "ops-only ms",
                                    *(["compared ms"] if compare_name else []),
                                    "FLOPs-only ms", "MAC-only ms"],
                     tablefmt="github", disable_numparse=True)
    summary: dict[str, dict[str, float]] = {}
    srows = []
    for name, p in preds.items():
        n_pairs, share = pairs_right(results, p)
        rho = float(spearmanr(p, meas)[0])
        summary[name] = {"within": within(p, meas), "spearman": rho, "pairs": share,
                         "within_fastest": within(p, [r.fastest_s for r in results])}
        srows.append([name, f"{100 * summary[name]['within']:.0f}%",
                      f"{100 * summary[name]['within_fastest']:.0f}%", f"{rho:.3f}",
                      f"{100 * share:.0f}% of {n_pairs}"])
    stable = tabulate(srows, headers=["predictor", "within 10%", "within 10% of fastest",
                                      "Spearman", "FLOPs-matched pairs ordered right"],
                      tablefmt="github", disable_numparse=True)
    note = (f"FLOPs-only: {a * 1e12:.3f} ps per Mult-Add; MAC-only: {b * 1e12:.2f} ps per "
            f"byte (least squares through the origin on the measured medians).")
    experiments = sorted({r.case.group for r in results if r.case.matched})
    erows = []
    for exp in experiments:
        row: list[str] = [exp]
        for p in preds.values():
            n_pairs, share = pairs_right(results, p, exp)
            row.append(f"{100 * share:.0f}%")
        erows.append([row[0], str(n_pairs), *row[1:]])
    etable = tabulate(erows, headers=["experiment", "pairs (same scale)", *preds],
                      tablefmt="github", disable_numparse=True)
    return summary, (f"### {label}\n\n{table}\n\n{stable}\n\n{note}\n\n"
                     f"Speed order within each FLOPs-matched experiment\n\n{etable}")


def per_op_type(results: list[Result]) -> str:
    """The roofline's error per op type over every model: predicted against profiled."""
    agg: dict[str, list[float]] = {}
    for r in results:
        for node, (op_type, pred) in r.node_pred.items():
            if node in r.node_meas:
                row = agg.setdefault(op_type, [0, 0.0, 0.0])
                row[0] += 1
                row[1] += pred
                row[2] += r.node_meas[node]
    total = sum(v[2] for v in agg.values()) or 1.0
    rows = [[t, int(n), _ms(p), _ms(m), _pct(p / m - 1) if m else "n/a",
             f"{100 * m / total:.1f}%"]
            for t, (n, p, m) in sorted(agg.items(), key=lambda kv: -kv[1][2])]
    return tabulate(rows, headers=["op type", "nodes", "predicted ms", "measured ms", "error",
                                   "share of measured"], tablefmt="github",
                    disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["1", "all"],
                        help="thread counts to run, 'all' for torch's default (default: 1 all)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per model (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="clock for one-thread runs and their calibration (default wall)")
    parser.add_argument("--quick", action="store_true",
                        help="4 zoo models and the guideline networks' x1 at 14x14")
    parser.add_argument("--no-per-op", action="store_true", help="skip the profiled runs")
    parser.add_argument("--profile", nargs="+", metavar="FILE",
                        help="use these calibrated profiles (one per --threads) instead of "
                             "calibrating")
    parser.add_argument("--compare", metavar="FILE",
                        help="also score the roofline on this profile, on the same runs")
    args = parser.parse_args(argv)
    compare = read_profile(args.compare) if args.compare else None
    warnings.filterwarnings("ignore")
    all_threads = torch.get_num_threads()
    counts = [all_threads if t == "all" else int(t) for t in args.threads]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} "
          f"CPUs, {platform.machine()} ({platform.processor() or 'cpu'}), load average "
          f"{load:.2f}, repeat={args.repeat} (median) after {args.warmup} warm-up, "
          f"one-thread clock: {args.clock}\n")
    todo = cases(args.quick)
    aims: list[tuple[str, bool]] = []
    started = time.perf_counter()
    for k, threads in enumerate(counts):
        clock = args.clock if threads == 1 else "wall"
        with torch_threads(threads):
            t0 = time.perf_counter()
            if args.profile:
                profile = read_profile(args.profile[k])
            else:
                profile = calibrate("cpu", threads, quiet=not sys.stderr.isatty(), clock=clock)
            cal_s = time.perf_counter() - t0
            results = []
            for case in tqdm(todo, desc=f"{threads} thread(s)", file=sys.stderr,
                             disable=not sys.stderr.isatty()):
                results.append(run_case(case, profile, args.repeat, args.warmup, clock,
                                        not args.no_per_op, compare))
        label = (f"{threads} thread{'s' if threads > 1 else ''} ({clock} clock), profile "
                 f"{profile.name}: peak {profile.peak('float32') / 1e9:.1f} GFLOP/s, bandwidth "
                 f"{profile.memory_bandwidth / 1e9:.1f} GB/s, overhead "
                 f"{profile.overhead_s * 1e6:.1f} us; calibration {cal_s:.0f} s")
        summary, text = report(results, label, compare.name if compare else None)
        print(text + "\n")
        if not args.no_per_op:
            how = ("ops matched to nodes by torch.profiler, timed on the CPU clock"
                   if clock == "cpu" else "torch.profiler")
            print(f"Roofline error per op type, {threads} thread(s), all models (measured: "
                  f"{how}, median of 3 runs per node)\n")
            print(per_op_type(results) + "\n")
        roof = summary["roofline (costmodel, calibrated)"]
        flops = summary["FLOPs-only (fitted here)"]
        aims += [
            (f"{threads} thread(s): Spearman >= 0.95 ({roof['spearman']:.3f})",
             roof["spearman"] >= 0.95),
            (f"{threads} thread(s): >= 80% of models within 10% ({100 * roof['within']:.0f}%)",
             roof["within"] >= 0.80),
            (f"{threads} thread(s): roofline beats FLOPs-only on both "
             f"({100 * roof['within']:.0f}% vs {100 * flops['within']:.0f}%, "
             f"{roof['spearman']:.3f} vs {flops['spearman']:.3f})",
             roof["within"] > flops["within"] and roof["spearman"] > flops["spearman"]),
        ]
    print(f"{len(todo)} models, {time.perf_counter() - started:.0f} s in all; load average "
          f"at the end {os.getloadavg()[0]:.2f}\n")
    print(tabulate([[a, "met" if ok else "MISSED"] for a, ok in aims],
                   headers=["aim", "result"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
