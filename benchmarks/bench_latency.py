"""How well costmodel predicts measured latency on models it has never seen: the calibrated
profile (learned per-kernel predictors) against FLOPs-only and MAC-only fits, on held-out
models disjoint from the calibration's source models, on this machine's CPU.

Usage::

    python benchmarks/bench_latency.py [--threads 1 2] [--calibrations N] [--mode full|quick]
                                       [--clock wall|cpu] [--quick] [--no-per-op]
                                       [--profile FILE ...]

Held-out models (`held_out()`): the zoo's image models that are not sources, the ShuffleNetV2
paper's guideline networks (costmodel.zoo.guidelines) at x1 and x2, and `transformers` vision
and text models built from configs (random weights, CPU) that differ from every source
config. None is a source (costmodel.latency.sources.SOURCES), and calibration reads no graph
of theirs; the script checks the names.

For each thread count: `--calibrations` profiles are calibrated in a row, each by
`costmodel calibrate` in a process of its own as a user runs it (or `--profile` files read);
every model is built, warmed up and timed by the one measurement protocol
(costmodel.latency.protocol: all models of the batch in interleaved rounds, the least of round
medians, unsettled ones re-measured and reported) by a fresh worker process
(costmodel.latency.isolated: a process that has done other work times models slower) in a
pass before, between and after the calibrations, each model keeping its least (as
calibration does for its sources), then predicted by each calibration. Printed:
every model's figures; per predictor the share within 10% and 20%, Spearman's rank
correlation; FLOPs-only (time = a x Mult-Adds) and MAC-only (time = b x MAC bytes) fitted by
least squares on these very measurements (the most they could do); the error per op type
(torch.profiler per op) and per model; the spread of the calibrations' predictions per model
(repeatability); the machine, its load average at the start and the end, and the aims, met or
MISSED. It exits non-zero only on a crash.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr
from tabulate import tabulate
from torch import nn

from costmodel.analysis import Analysis, analyze, analyze_loaded
from costmodel.capture.spec import InputSpec, LoadedModel
from costmodel.latency.isolated import Spec, Worker
from costmodel.latency.measure import profile_nodes
from costmodel.latency.predict import predict
from costmodel.latency.profile import DeviceProfile, read_profile, write_profile
from costmodel.latency.protocol import MODELS as PROTOCOL
from costmodel.latency.protocol import environment
from costmodel.latency.runnable import materialize, random_inputs
from costmodel.latency.sources import SOURCES, hf_config
from costmodel.latency.timing import CLOCKS, torch_threads
from costmodel.zoo import MODELS
from costmodel.zoo.guidelines import variants

ZOO_HELD_OUT = ["mobilenet_v1", "shufflenet_v1_g1", "shufflenet_v1_g2", "shufflenet_v1_g4",
                "shufflenet_v1_g8", "shufflenet_v2_x0_5", "shufflenet_v2_x1_5",
                "shufflenet_v2_x2_0", "resnet50"]
#: transformers configs, none equal to a source's: (name, model type, settings)
HF_HELD_OUT: list[tuple[str, str, dict[str, Any]]] = [
    ("hf:deit-256x4", "deit", dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                   intermediate_size=1024)),
    ("hf:vit-384x3-p32", "vit", dict(hidden_size=384, num_hidden_layers=3, num_attention_heads=6,
                                     intermediate_size=1536, patch_size=32)),
    ("hf:swin-48", "swin", dict(embed_dim=48, depths=[2, 2, 2, 2], num_heads=[2, 4, 8, 16])),
    ("hf:convnext-48", "convnext", dict(hidden_sizes=[48, 96, 192, 384], depths=[2, 2, 4, 2])),
    ("hf:mobilevit-s", "mobilevit", {}),
    ("hf:gpt2-256x4", "gpt2", dict(n_embd=256, n_layer=4, n_head=4)),
    ("hf:distilbert-384x3", "distilbert", dict(dim=384, n_layers=3, n_heads=6,
                                               hidden_dim=1536)),
    ("hf:llama-384x3", "llama", dict(hidden_size=384, num_hidden_layers=3,
                                     num_attention_heads=6, num_key_value_heads=2,
                                     intermediate_size=1024, vocab_size=8000)),
    ("hf:mobilenet_v2-0.75", "mobilenet_v2", dict(depth_multiplier=0.75)),
    ("hf:mobilenet_v1-1.0", "mobilenet_v1", {}),
    ("hf:efficientnet-w0.8", "efficientnet", dict(image_size=224, width_coefficient=0.8,
                                                   depth_coefficient=1.0, hidden_dim=1024)),
    ("hf:resnet-50", "resnet", {}),
    ("hf:poolformer-s12", "poolformer", {}),
    ("hf:levit-192", "levit", dict(hidden_sizes=[192, 288, 384], num_attention_heads=[3, 5, 6],
                                   key_dim=[32, 32, 32], depths=[4, 4, 4])),
]
QUICK = ["mobilenet_v1", "shufflenet_v2_x0_5", "g2_g4_x1", "g4_relu_shortcut_x1",
         "hf:deit-256x4", "hf:gpt2-256x4"]


@dataclass
class Case:
    name: str
    group: str
    analysis: Analysis
    model: nn.Module
    inputs: list[torch.Tensor]


@dataclass
class Result:
    case: Case
    measured_s: float
    stable: bool
    predicted_s: list[float]  # one per calibration
    quick_s: float | None = None  # on a --quick calibration (--with-quick)
    node_pred: dict[str, tuple[str, float]] = field(default_factory=dict)
    node_meas: dict[str, float] = field(default_factory=dict)

    @property
    def madds(self) -> float:
        return float(self.case.analysis.total().madds)

    @property
    def mac_bytes(self) -> float:
        return float(self.case.analysis.total().mac_bytes)


def _zoo(name: str) -> Case:
    with torch.device("meta"):
        meta = MODELS[name]()
    shape = (1, *meta.default_cfg["input_size"])
    analysis = analyze(meta.eval(), input_shape=shape, name=f"zoo:{name}")
    torch.manual_seed(0)
    return Case(f"zoo:{name}", "zoo", analysis, MODELS[name]().eval(), [torch.randn(shape)])


def _hf(name: str, model_type: str, settings: dict[str, Any]) -> Case:
    from costmodel.capture.hf import load_config

    loaded = load_config(hf_config(model_type, **settings), f"hf:{model_type}")
    analysis = analyze_loaded(loaded)
    analysis.model = name
    torch.manual_seed(0)
    model = materialize(loaded.model, "cpu").eval()
    return Case(name, "transformers", analysis, model, random_inputs(loaded.inputs, "cpu"))


def _named(quick: bool = False) -> list[tuple[str, Callable[[], Case]]]:
    builders: list[tuple[str, Callable[[], Case]]] = []
    builders += [(f"zoo:{n}", lambda n=n: _zoo(n)) for n in ZOO_HELD_OUT]
    for v in variants():
        if v.scale in ("x1", "x2"):
            def build(v: Any = v) -> Case:
                with torch.device("meta"):
                    meta = v.build()
                analysis = analyze(meta.eval(), input_shape=v.input_shape, name=v.name)
                torch.manual_seed(0)
                return Case(v.name, v.experiment, analysis, v.build().eval(),
                            [torch.randn(v.input_shape)])
            builders.append((v.name, build))
    builders += [(n, lambda n=n, t=t, s=s: _hf(n, t, s)) for n, t, s in HF_HELD_OUT]
    clash = {n for n, _ in builders} & set(SOURCES)
    if clash:
        raise SystemExit(f"held-out models that are sources: {sorted(clash)}")
    if quick:
        builders = [(n, b) for n, b in builders if n.removeprefix("zoo:") in QUICK
                    or n in QUICK]
    return builders


def held_out(quick: bool = False) -> list[Callable[[], Case]]:
    return [b for _, b in _named(quick)]


def loaders() -> dict[str, Callable[[str], LoadedModel]]:
    """The held-out models as the timing worker builds them (costmodel.latency.isolated)."""
    def loader(build: Callable[[], Case]) -> Callable[[str], LoadedModel]:
        def load(device: str) -> LoadedModel:
            case = build()
            return LoadedModel(case.model.to(device), case.name,
                               [InputSpec(tuple(x.shape), x.dtype) for x in case.inputs])
        return load
    return {name: loader(build) for name, build in _named()}


def fit_proportional(x: list[float], y: list[float]) -> float:
    """Least-squares slope through the origin: y ~ a x."""
    return sum(a * b for a, b in zip(x, y)) / sum(a * a for a in x)


def within(pred: list[float], meas: list[float], tol: float) -> float:
    return sum(abs(p / m - 1) <= tol for p, m in zip(pred, meas)) / len(meas)


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def _pct(x: float) -> str:
    return f"{100 * x:+.0f}%"


def timing_worker(cases: list[Case], threads: int, clock: str) -> Worker:
    """A fresh process that builds the held-out models and times them whole, one pass per
    request: in this process they would be timed after the calibrations' work, which slows
    them (costmodel.latency.isolated)."""
    return Worker(Spec("bench_latency:loaders", [c.name for c in cases], "cpu", threads, clock,
                       PROTOCOL.as_dict(), path=str(Path(__file__).parent)))


def calibrate_fresh(threads: int, clock: str, mode: str, out: Path) -> DeviceProfile:
    """`costmodel calibrate` in a process of its own, as a user runs it."""
    command = [sys.executable, "-m", "costmodel", "calibrate", "--threads", str(threads),
               "--clock", clock, "-o", str(out)]
    command += ["--quick"] if mode == "quick" else []
    command += [] if sys.stderr.isatty() else ["--quiet"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return read_profile(out)


def least_of_passes(passes: list[list[tuple[float, bool]]]) -> tuple[list[tuple[float, bool]],
                                                                       list[float]]:
    """Per model the fastest pass (another job only ever slows a run: on this project's
    machine the same model moved 7% between two quiet runs), and each model's spread
    between its passes (slowest / fastest - 1)."""
    least = [min(runs, key=lambda r: r[0]) for runs in zip(*passes)]
    spread = [max(r[0] for r in runs) / min(r[0] for r in runs) - 1 for runs in zip(*passes)]
    return least, spread


def per_node(cases: list[Case], clock: str) -> list[dict[str, float]]:
    """Per-op times (torch.profiler) of every model."""
    with torch.inference_mode():
        return [profile_nodes(c.model, c.inputs, c.analysis, "cpu", 3, CLOCKS[clock])[0]
                for c in cases]


def report(results: list[Result], label: str) -> tuple[dict[str, dict[str, float]], str]:
    meas = [r.measured_s for r in results]
    a = fit_proportional([r.madds for r in results], meas)
    b = fit_proportional([r.mac_bytes for r in results], meas)
    preds: dict[str, list[float]] = {}
    for k in range(len(results[0].predicted_s)):
        preds[f"costmodel, calibration {k + 1}"] = [r.predicted_s[k] for r in results]
    if results[0].quick_s is not None:
        preds["costmodel, --quick calibration"] = [r.quick_s or 0.0 for r in results]
    preds["FLOPs-only (fitted here)"] = [a * r.madds for r in results]
    preds["MAC-only (fitted here)"] = [b * r.mac_bytes for r in results]
    rows = []
    for i, r in enumerate(results):
        rows.append([r.case.name, r.case.group, f"{r.madds / 1e6:.0f}",
                     f"{r.mac_bytes / 1e6:.1f}", _ms(r.measured_s) + ("" if r.stable else " *")]
                    + [f"{_ms(p[i])} ({_pct(p[i] / r.measured_s - 1)})" for p in preds.values()])
    table = tabulate(rows, headers=["model", "set", "Mult-Adds M", "MAC MB", "measured ms",
                                    *preds], tablefmt="github", disable_numparse=True)
    summary: dict[str, dict[str, float]] = {}
    srows = []
    for name, p in preds.items():
        rho = float(spearmanr(p, meas)[0])
        summary[name] = {"within10": within(p, meas, 0.10), "within20": within(p, meas, 0.20),
                         "spearman": rho}
        srows.append([name, f"{100 * summary[name]['within10']:.0f}%",
                      f"{100 * summary[name]['within20']:.0f}%", f"{rho:.3f}"])
    stable = tabulate(srows, headers=["predictor", "within 10%", "within 20%", "Spearman"],
                      tablefmt="github", disable_numparse=True)
    by_group = []
    for group in sorted({r.case.group for r in results}):
        members = [r for r in results if r.case.group == group]
        errs = [r.predicted_s[0] / r.measured_s - 1 for r in members]
        share = sum(abs(e) <= 0.10 for e in errs) / len(errs)
        by_group.append([group, len(members), f"{100 * share:.0f}%",
                         _pct(statistics.median(errs)), _pct(min(errs)), _pct(max(errs))])
    gtable = tabulate(by_group, headers=["set", "models", "within 10%", "median error",
                                         "lowest", "highest"], tablefmt="github",
                      disable_numparse=True)
    note = (f"FLOPs-only: {a * 1e12:.3f} ps per Mult-Add; MAC-only: {b * 1e12:.2f} ps per byte "
            f"(least squares through the origin on the measured times). * = never settled.")
    return summary, (f"### {label}\n\n{table}\n\n{stable}\n\n{note}\n\n"
                     f"Calibration 1 by set\n\n{gtable}")


def per_op_type(results: list[Result]) -> str:
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


def in_model_lines(profiles: list[DeviceProfile]) -> str:
    """Each calibration's in-model scale and per-op cost, and how far its sources fit."""
    lines = []
    for i, p in enumerate(profiles):
        k = p.kernels
        if k is None:
            continue
        fit = list(k.in_model_fit.values())
        spread = (f"; sources fit {min(fit) - 1:+.0%} to {max(fit) - 1:+.0%} (measured / "
                  "predicted)" if fit else "")
        lines.append(f"calibration {i + 1} ({p.extra.get('mode', '?')}): in-model scale "
                     f"{k.in_model:.3f}, {k.in_model_op_s * 1e6:.1f} us per op{spread}")
    return "\n".join(lines)


def repeatability(results: list[Result]) -> tuple[float, float, str]:
    """Per model, (max - min) / min of the calibrations' predictions."""
    spreads = [(max(r.predicted_s) / min(r.predicted_s) - 1, r.case.name) for r in results]
    worst = sorted(spreads, reverse=True)[:5]
    text = ", ".join(f"{n} {100 * s:.1f}%" for s, n in worst)
    return max(s for s, _ in spreads), statistics.median(s for s, _ in spreads), text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--calibrations", type=int, default=1,
                        help="calibrate this many times in a row, score each (repeatability)")
    parser.add_argument("--mode", choices=["full", "quick"], default="full",
                        help="calibration mode (default full)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="clock for one-thread runs and their calibration (default wall)")
    parser.add_argument("--quick", action="store_true", help="six held-out models")
    parser.add_argument("--with-quick", action="store_true",
                        help="also calibrate once with --quick and score it (its accuracy "
                             "cost)")
    parser.add_argument("--no-per-op", action="store_true", help="skip the profiled runs")
    parser.add_argument("--profile", nargs="+", metavar="FILE",
                        help="read these profiles (one per thread count) instead of "
                             "calibrating")
    parser.add_argument("--save", metavar="DIR",
                        help="write every profile calibrated here to DIR (to read back with "
                             "--profile, or to study its rows)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    print(f"environment at the start: {environment('cpu')}")
    print(f"protocol for the models: {PROTOCOL.describe()}\n")
    t0 = time.perf_counter()
    cases = [build() for build in held_out(args.quick)]
    print(f"{len(cases)} held-out models built and analysed in {time.perf_counter() - t0:.0f} s;"
          f" sources (never scored): {', '.join(SOURCES)}\n")
    aims: list[tuple[str, bool]] = []
    for k, threads in enumerate(args.threads):
        clock = args.clock if threads == 1 else "wall"
        profiles: list[DeviceProfile] = []
        times = []
        began = time.perf_counter()
        with timing_worker(cases, threads, clock) as worker, \
                tempfile.TemporaryDirectory() as scratch:
            passes = [worker.time()]  # one pass before the calibrations ...
            with torch_threads(threads):  # per op, in this process while it is young
                nodes = per_node(cases, clock) if not args.no_per_op else [{} for _ in cases]
            meas_s = time.perf_counter() - began
            if args.profile:
                profiles = [read_profile(args.profile[k])]
            else:
                for i in range(args.calibrations):
                    t0 = time.perf_counter()
                    profiles.append(calibrate_fresh(threads, clock, args.mode,
                                                    Path(scratch, f"cal{i}.json")))
                    times.append(time.perf_counter() - t0)
                    if i + 1 < args.calibrations:  # a pass between calibrations too
                        began = time.perf_counter()
                        passes.append(worker.time())
                        meas_s += time.perf_counter() - began
            quick = None
            if args.with_quick:
                t0 = time.perf_counter()
                quick = calibrate_fresh(threads, clock, "quick", Path(scratch, "quick.json"))
                times_quick = time.perf_counter() - t0
            began = time.perf_counter()
            passes.append(worker.time())  # ... and one after them
            measured, pass_spread = least_of_passes(passes)
            meas_s += time.perf_counter() - began
        bad = [c.name for c, (_, ok) in zip(cases, measured) if not ok]
        results = []
        for case, (seconds, ok), node_s in zip(cases, measured, nodes):
            preds = [predict(case.analysis, p) for p in profiles]
            results.append(Result(case, seconds, ok, [p.total() for p in preds],
                                  quick_s=predict(case.analysis, quick).total() if quick
                                  else None,
                                  node_pred={n.name: (n.op_type, n.latency_s)
                                             for n in preds[0].nodes}, node_meas=node_s))
        cal = ", ".join(f"{t:.0f} s" for t in times) or "read from file"
        if quick is not None:
            cal += f"; --quick {times_quick:.0f} s ({quick.extra.get('configurations')} " \
                   "configurations)"
        extra = profiles[0].extra
        label = (f"{threads} thread{'s' if threads > 1 else ''} ({clock} clock); calibration "
                 f"({extra.get('mode', '?')}) {cal}, {extra.get('configurations', '?')} "
                 f"configurations, load average {extra.get('environment', {}).get('load_average')}"
                 f" at its start; models timed in {len(passes)} passes (before, between and after "
                 f"the calibrations; each model's least) and profiled per op in {meas_s:.0f} s; "
                 f"spread between the passes: median {100 * statistics.median(pass_spread):.1f}%,"
                 f" largest {100 * max(pass_spread):.1f}%")
        kept = profiles + ([quick] if quick is not None else [])
        if args.save:
            for i, p in enumerate(kept):
                tag = "quick" if p is quick else f"cal{i + 1}"
                write_profile(p, Path(args.save) / f"{threads}t-{tag}.json")
            Path(args.save, f"{threads}t-measured.json").write_text(json.dumps(
                {r.case.name: {"measured_s": r.measured_s, "stable": r.stable,
                               "spread": s} for r, s in zip(results, pass_spread)}, indent=1))
        summary, text = report(results, label)
        print(text + "\n")
        print(in_model_lines(kept) + "\n")
        if bad:
            print(f"never settled ({len(bad)}): {', '.join(bad)}\n")
        if not args.no_per_op:
            print(f"Error per op type, {threads} thread(s), calibration 1 (measured: "
                  f"torch.profiler, median of 3 runs per node)\n")
            print(per_op_type(results) + "\n")
        if len(profiles) > 1:
            worst, median, text = repeatability(results)
            print(f"Repeatability over {len(profiles)} calibrations: spread of the predictions "
                  f"per model (max / min - 1): median {100 * median:.1f}%, largest "
                  f"{100 * worst:.1f}% ({text})\n")
            aims.append((f"{threads} thread(s): calibrations agree within 5% on every model "
                         f"({100 * worst:.1f}%)", worst <= 0.05))
        ours = summary["costmodel, calibration 1"]
        want = 0.90 if threads == 1 else 0.80
        aims += [
            (f"{threads} thread(s): >= {100 * want:.0f}% within 10% "
             f"({100 * ours['within10']:.0f}%)", ours["within10"] >= want),
            (f"{threads} thread(s): Spearman >= 0.97 ({ours['spearman']:.3f})",
             ours["spearman"] >= 0.97),
        ]
    print(f"{len(cases)} models, {time.perf_counter() - started:.0f} s in all; environment at "
          f"the end: {environment('cpu')}\n")
    print(tabulate([[a, "met" if ok else "MISSED"] for a, ok in aims],
                   headers=["aim", "result"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
