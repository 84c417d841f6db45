"""Time costmodel.analyze against FlopCounterMode and fvcore on the zoo's image models.

Usage::

    python benchmarks/bench_analyze.py [--models NAME ...] [--repeat N] [--cli-runs K]
                                       [--stages] [--profile MODEL] [--no-fvcore]

For every model, each tool gets one warm-up call (reported as "first call"), then N timed
rounds run the tools in turn (interleaved, so load from other processes hits all alike) and
the median is reported:

* costmodel: ``costmodel.analyze(model, input_shape=...)`` on a model built on ``meta``
  (trace, graph, costs); ``report.render(analysis)`` is timed separately.
* FlopCounterMode: one forward pass of the same meta model on a meta input under
  ``torch.utils.flop_counter.FlopCounterMode``; Mult-Adds = FLOPs / 2.
* fvcore: ``FlopCountAnalysis(model, x).total()`` on a CPU model with real weights and a
  ``torch.randn`` input (its jit trace is part of its cost); its count is already Mult-Adds.

The run ends with the project's aims, each met or missed, and exits with 1 if one is missed:
ResNet-50's costmodel time within 1.0x of FlopCounterMode's and below fvcore's (medians), the
``costmodel analyze`` process within 1.0x of a FlopCounterMode script's process, and
costmodel's Mult-Adds equal to FlopCounterMode's FLOPs / 2 on every model.

Model construction is not timed. Only fvcore does real arithmetic (a CPU forward pass inside its
jit trace), so ``--threads`` (default 1) matters to it alone. The CLI
(``costmodel analyze costmodel.zoo:resnet50``) is timed end to end as a subprocess, Python
start-up and the torch import included.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from tabulate import tabulate
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import costmodel
from costmodel.report import render
from costmodel.zoo import MODELS

DEFAULT_MODELS = [
    "mobilenet_v1",
    "mobilenet_v2",
    "shufflenet_v1_g3",
    "shufflenet_v2_x1_0",
    "resnet18",
    "resnet50",
]
INPUT_SHAPE = (1, 3, 224, 224)


def time_interleaved(calls: dict[str, Callable[[], Any]], repeat: int
                     ) -> dict[str, tuple[float, float, Any, float]]:
    """Warm each call up once, then time `repeat` rounds of all calls in turn.

    Interleaving spreads any load from other processes over every tool alike. Returns, per
    call, (first-call seconds, median seconds, last result, minimum seconds).
    """
    first: dict[str, float] = {}
    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for key, fn in calls.items():
        start = time.perf_counter()
        results[key] = fn()
        first[key] = time.perf_counter() - start
    for _ in range(repeat):
        for key, fn in calls.items():
            start = time.perf_counter()
            results[key] = fn()
            times[key].append(time.perf_counter() - start)
    return {k: (first[k], statistics.median(times[k]), results[k], min(times[k])) for k in calls}


def build(name: str, device: str) -> nn.Module:
    """The zoo model `name` on `device`, in eval mode."""
    with torch.device(device):
        model = MODELS[name]()
    return model.eval()


def costmodel_call(model: nn.Module) -> Callable[[], Any]:
    """analyze() on the meta model; returns the Analysis."""
    return lambda: costmodel.analyze(model, input_shape=INPUT_SHAPE)


def flop_counter_call(model: nn.Module) -> Callable[[], float]:
    """One forward pass on a meta input under FlopCounterMode; returns Mult-Adds (FLOPs / 2)."""
    x = torch.empty(INPUT_SHAPE, device="meta")

    def run() -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() / 2

    return run


def fvcore_call(model: nn.Module) -> Callable[[], float]:
    """FlopCountAnalysis(model, x).total() on real CPU tensors; returns its Mult-Adds."""
    from fvcore.nn import FlopCountAnalysis

    x = torch.randn(INPUT_SHAPE)

    def run() -> float:
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return float(analysis.total())

    return run


def bench_stages(model: nn.Module, repeat: int) -> dict[str, float]:
    """Median seconds of analyze()'s stages: trace, graph building, costing."""
    from costmodel.analysis import cost_graph
    from costmodel.capture.graph import build_graph
    from costmodel.capture.load import InputSpec
    from costmodel.capture.trace import trace

    specs = [InputSpec(INPUT_SHAPE, torch.float32)]
    stages: dict[str, list[float]] = {"trace": [], "graph": [], "cost": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        traced = trace(model, specs, "model")
        t1 = time.perf_counter()
        graph = build_graph(traced)
        t2 = time.perf_counter()
        cost_graph(graph)
        t3 = time.perf_counter()
        stages["trace"].append(t1 - t0)
        stages["graph"].append(t2 - t1)
        stages["cost"].append(t3 - t2)
    return {k: statistics.median(v) for k, v in stages.items()}


#: the peer's whole process: the same zoo image model on meta, one forward under FlopCounterMode
FLOP_COUNTER_SCRIPT = """
import sys, torch
from torch.utils.flop_counter import FlopCounterMode
from costmodel.zoo import MODELS
with torch.device("meta"):
    model = MODELS[sys.argv[1]]().eval()
x = torch.empty(1, 3, 224, 224, device="meta")
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    model(x)
print(counter.get_total_flops() // 2)
"""


def time_processes(target: str, runs: int) -> dict[str, list[float]]:
    """Wall seconds of three fresh processes, in interleaved rounds so that load from other
    processes hits all alike: `costmodel analyze TARGET`, a FlopCounterMode script on the same
    model, and `python -c "import torch"` (the floor under both)."""
    exe = shutil.which("costmodel", path=os.path.dirname(sys.executable))
    cli = [exe] if exe else [sys.executable, "-m", "costmodel.cli"]
    commands = {"cli": [*cli, "analyze", target],
                "flop_counter": [sys.executable, "-c", FLOP_COUNTER_SCRIPT,
                                 target.rpartition(":")[2]],
                "torch": [sys.executable, "-c", "import torch"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return times


#: (label, path fragments) in match order; the first label whose fragment is in a path wins.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("model code (costmodel/zoo)", ("costmodel/zoo/",)),
    ("recorder (costmodel/capture/trace.py)", ("costmodel/capture/trace.py",)),
    ("graph building (costmodel/capture/graph.py)", ("costmodel/capture/graph.py",)),
    ("costing (costmodel/ other)", ("costmodel/",)),
    ("torch meta kernels in Python (_meta_registrations, _refs, _prims, _decomp)",
     ("torch/_meta_registrations.py", "torch/_refs/", "torch/_prims/", "torch/_prims_common/",
      "torch/_decomp/")),
    ("torch/_ops.py (op dispatch)", ("torch/_ops.py",)),
    ("torch/fx (graph nodes)", ("torch/fx/",)),
    ("torch/utils (pytree, dispatch modes)", ("torch/utils/",)),
    ("torch/nn (modules, hooks)", ("torch/nn/",)),
    ("torch (other)", ("torch/",)),
    ("networkx", ("networkx/",)),
    ("sympy", ("sympy/",)),
]


def _area(path: str) -> str:
    """Which package area a profiled function's file belongs to."""
    path = path.replace(os.sep, "/")
    for label, fragments in AREAS:
        if any(f"/{f}" in path for f in fragments):
            return label
    return "C builtins (C++ kernels, dispatcher)" if path == "~" else "Python stdlib / other"


def _find(raw: dict[Any, Any], path_end: str, func: str) -> Any:
    """The profiler's key of function `func` in the file ending in `path_end`, or None."""
    return next((k for k in raw if k[2] == func
                 and k[0].replace(os.sep, "/").endswith(path_end)), None)


def breakdown(raw: dict[Any, Any]) -> list[tuple[str, float]]:
    """(part, cumulative seconds) of analyze(): the recorder's dispatch split into the ops
    themselves (torch's meta kernels) and recording them, the rest of the trace (model code,
    module hooks, the function mode), graph building and costing."""
    def cum(key: Any) -> float:
        return raw[key][3] if key in raw else 0.0

    def edge(caller: Any, callee: Any) -> float:
        return raw[callee][4][caller][3] if callee in raw and caller in raw[callee][4] else 0.0

    analyze = _find(raw, "costmodel/analysis.py", "analyze")
    trace = _find(raw, "costmodel/capture/trace.py", "trace")
    dispatch = _find(raw, "costmodel/capture/trace.py", "__torch_dispatch__")
    function = _find(raw, "costmodel/capture/trace.py", "__torch_function__")
    emit = _find(raw, "costmodel/capture/trace.py", "emit")
    op_call = _find(raw, "torch/_ops.py", "__call__")
    graph = _find(raw, "costmodel/capture/graph.py", "build_graph")
    cost = _find(raw, "costmodel/analysis.py", "cost_graph")
    whole = edge(function, emit)
    rows = [
        ("analyze()", cum(analyze)),
        ("trace(): one run of the model under the recorder", cum(trace)),
        (". aten ops through the recorder (_Recorder.__torch_dispatch__)", cum(dispatch)),
        (". . the op itself: torch's meta kernels (OpOverload.__call__)", edge(dispatch, op_call)),
        (". . recording it (emit: fx node, pytree maps)", edge(dispatch, emit)),
        (". kept-whole functions recorded (_KeepWhole -> emit)", whole),
        (". the rest: model code, nn.Module calls and hooks, dispatch overhead",
         cum(trace) - cum(dispatch) - whole),
        ("build_graph()", cum(graph)),
        ("cost_graph()", cum(cost)),
        ("the rest of analyze()", cum(analyze) - cum(trace) - cum(graph) - cum(cost)),
    ]
    return rows


def profile(name: str, top: int) -> None:
    """cProfile one analyze() call (after a warm-up); print hotspots, a breakdown of the call
    and own time by area."""
    model = build(name, "meta")
    costmodel.analyze(model, input_shape=INPUT_SHAPE)
    profiler = cProfile.Profile()
    profiler.enable()
    costmodel.analyze(model, input_shape=INPUT_SHAPE)
    profiler.disable()
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = sorted(((cum, calls, path, line, func)
                   for (path, line, func), (_, calls, _, cum, _) in raw.items()), reverse=True)
    total = rows[0][0]
    print(f"\ncProfile of one analyze({name}) call: {total:.3f} s under the profiler")
    mine = [r for r in rows if "costmodel/" in r[2].replace(os.sep, "/")
            and "/zoo/" not in r[2].replace(os.sep, "/")]
    table = [[f"{c:.3f}", f"{100 * c / total:.0f}%", n, f"{_short(p)}:{ln}({fn})"]
             for c, n, p, ln, fn in mine[:top]]
    print(f"\nTop {top} cumulative inside costmodel/ (model code in costmodel/zoo left out)\n")
    print(tabulate(table, headers=["cum s", "share", "calls", "function"],
                   tablefmt="github", disable_numparse=True))
    table = [[part, f"{t:.3f}", f"{100 * t / total:.0f}%"] for part, t in breakdown(raw)]
    print("\nWhere analyze()'s time goes (cumulative; dots mark parts of the row above)\n")
    print(tabulate(table, headers=["part", "cum s", "share"], tablefmt="github",
                   disable_numparse=True))
    own: dict[str, float] = {}
    for (path, _, _), (_, _, tottime, _, _) in raw.items():
        own[_area(path)] = own.get(_area(path), 0.0) + tottime
    table = [[area, f"{t:.3f}", f"{100 * t / total:.0f}%"]
             for area, t in sorted(own.items(), key=lambda kv: -kv[1])]
    print("\nOwn time by area (where the interpreter actually was)\n")
    print(tabulate(table, headers=["area", "own s", "share"], tablefmt="github",
                   disable_numparse=True))


def _short(path: str) -> str:
    """Path from the package directory on (costmodel/..., torch/...)."""
    for marker in ("costmodel", "torch", "sympy", "networkx"):
        key = f"{os.sep}{marker}{os.sep}"
        if key in path:
            return marker + os.sep + path.split(key, 1)[1]
    return os.path.basename(path)


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def _g(madds: float) -> str:
    return f"{madds / 1e9:.4f}G"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, metavar="NAME",
                        choices=[n for n in MODELS if not n.startswith(("llama", "mixtral"))],
                        help=f"image models of costmodel.zoo (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--repeat", type=int, default=7,
                        help="timed rounds after the warm-up (default 7)")
    parser.add_argument("--cli-runs", type=int, default=3, help="CLI subprocess runs (0: skip)")
    parser.add_argument("--cli-target", default="costmodel.zoo:resnet50", metavar="TARGET")
    parser.add_argument("--stages", action="store_true", help="also time analyze()'s stages")
    parser.add_argument("--profile", metavar="MODEL", help="cProfile analyze() on MODEL")
    parser.add_argument("--profile-top", type=int, default=8, metavar="N",
                        help="rows of the cumulative costmodel/ hotspots (default 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1). Only fvcore does real "
                             "arithmetic; with more threads than idle cores its OpenMP "
                             "regions stall, so 1 keeps it stable on a shared machine")
    parser.add_argument("--no-fvcore", action="store_true", help="skip fvcore")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}, load average {load:.2f}, "
          f"torch threads {torch.get_num_threads()}, repeat={args.repeat} (median), times in ms\n")

    rows = []
    stage_rows = []
    min_rows = []
    aims: list[tuple[str, bool]] = []
    for name in args.models:
        meta_model = build(name, "meta")
        calls = {"cm": costmodel_call(meta_model), "fc": flop_counter_call(meta_model)}
        if not args.no_fvcore:
            calls["fv"] = fvcore_call(build(name, "cpu"))
        t = time_interleaved(calls, args.repeat)
        analysis = t["cm"][2]
        rd = time_interleaved({"render": lambda a=analysis: render(a)}, args.repeat)["render"]
        cm, fc = t["cm"], t["fc"]
        row = [name, _ms(cm[1]), _ms(cm[0]), _ms(rd[1]), _ms(fc[1]), _ms(fc[0])]
        if not args.no_fvcore:
            row += [_ms(t["fv"][1]), _ms(t["fv"][0])]
        row += [f"{cm[1] / fc[1]:.1f}x"]
        if not args.no_fvcore:
            row += [f"{cm[1] / t['fv'][1]:.2f}x"]
        row += [_g(analysis.total().madds), _g(fc[2])]
        if not args.no_fvcore:
            row += [_g(t["fv"][2])]
        rows.append(row)
        min_row = [name, _ms(cm[3]), _ms(fc[3])]
        if not args.no_fvcore:
            min_row += [_ms(t["fv"][3])]
        min_row += [f"{cm[3] / fc[3]:.1f}x"]
        if not args.no_fvcore:
            min_row += [f"{cm[3] / t['fv'][3]:.2f}x"]
        min_rows.append(min_row)
        aims.append((f"{name}: Mult-Adds equal FlopCounterMode's FLOPs / 2",
                     analysis.total().madds == fc[2]))
        if name == "resnet50":
            aims.append((f"resnet50: costmodel within 1.0x of FlopCounterMode on meta "
                         f"({cm[1] / fc[1]:.2f}x)", cm[1] <= fc[1]))
            if not args.no_fvcore:
                aims.append((f"resnet50: costmodel faster than fvcore ({cm[1] / t['fv'][1]:.2f}x)",
                             cm[1] < t["fv"][1]))
        if args.stages:
            s = bench_stages(meta_model, args.repeat)
            stage_rows.append([name, _ms(s["trace"]), _ms(s["graph"]), _ms(s["cost"]),
                               f"{100 * s['trace'] / sum(s.values()):.0f}%"])
        print(f"  done {name}", file=sys.stderr)

    headers = ["model", "costmodel", "cm first", "render", "FlopCounter", "FC first"]
    if not args.no_fvcore:
        headers += ["fvcore", "fv first"]
    headers += ["cm/FC"]
    if not args.no_fvcore:
        headers += ["cm/fv"]
    headers += ["Mult-Adds cm", "Mult-Adds FC"]
    if not args.no_fvcore:
        headers += ["Mult-Adds fv"]
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    print("\ncostmodel = analyze() only; render = report.render(analysis) (table, by op type), "
          "timed on its own.\nfirst = the warm-up call of that tool on that model (the first "
          "model's also pays lazy imports and kernel registration).\nTools are timed in "
          "interleaved rounds (costmodel, FlopCounterMode, fvcore, repeat); ratios are of "
          "medians.")

    print("\nSame runs, fastest of the N timed calls (less sensitive to other load) in ms\n")
    min_headers = ["model", "costmodel", "FlopCounter"] + ([] if args.no_fvcore else ["fvcore"])
    min_headers += ["cm/FC"] + ([] if args.no_fvcore else ["cm/fv"])
    print(tabulate(min_rows, headers=min_headers, tablefmt="github", disable_numparse=True))

    if stage_rows:
        print("\nanalyze() stages (median ms)\n")
        print(tabulate(stage_rows, headers=["model", "trace", "build graph", "cost",
                                            "trace share"],
                       tablefmt="github", disable_numparse=True))

    if args.cli_runs:
        times = time_processes(args.cli_target, args.cli_runs)
        print(f"\nWhole processes, wall, {args.cli_runs} interleaved rounds\n")
        labels = {"cli": f"costmodel analyze {args.cli_target}",
                  "flop_counter": "FlopCounterMode script, same model on meta",
                  "torch": 'python -c "import torch"'}
        print(tabulate(
            [[labels[k], f"{statistics.median(v):.2f}", f"{min(v):.2f}", f"{max(v):.2f}"]
             for k, v in times.items()],
            headers=["command", "median s", "min s", "max s"], tablefmt="github",
            disable_numparse=True))
        ratio = statistics.median(times["cli"]) / statistics.median(times["flop_counter"])
        aims.append((f"costmodel analyze process within 1.0x of the FlopCounterMode script "
                     f"({ratio:.2f}x)", ratio <= 1.0))

    if args.profile:
        profile(args.profile, args.profile_top)

    print("\nAims (ratios of medians)\n")
    print(tabulate([[aim, "met" if met else "MISSED"] for aim, met in aims],
                   headers=["aim", "result"], tablefmt="github", disable_numparse=True))
    return 0 if all(met for _, met in aims) else 1


if __name__ == "__main__":
    sys.exit(main())
