"""Time `costmodel analyze --fuse` against plain `costmodel analyze`, and (--measure) show on
this CPU that the MAC fusion removes is time.

Usage::

    python benchmarks/bench_fusion.py [--model resnet50] [--rounds 5]
    python benchmarks/bench_fusion.py --measure [--threads 1] [--repeat 20] [--plot FILE.png]

Speed: every round runs `costmodel analyze costmodel.zoo:MODEL`, then with `--fuse inductor`
and with `--fuse engine`, each as a whole process (Python start-up and the imports included),
in turn, so that load from other processes hits all three alike; the median and the least of
the rounds are reported. The inductor runs have `CXX` pointing at no compiler: if inductor
tried to build anything they would fail. Aim: the inductor process within 3x the plain one
(medians); the run exits with 1 when it is missed.

--measure: for ShuffleNetV2 1.0x, MobileNetV2 and ResNet-50 (or --models), the MAC eager, with
inductor's kernels and with the engine rules (`costmodel.views.fusion`), then every model built
on the CPU with random weights and its torch.compile'd twin (inductor, default settings, the
same kernels `--fuse inductor` reads), timed in interleaved rounds under inference mode
(warm-up first; the compile is never timed), each round the median of --repeat runs; the least
of the round medians is reported. --plot draws the MAC and the times side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ["shufflenet_v2_x1_0", "mobilenet_v2", "resnet50"]


def time_processes(model: str, rounds: int) -> dict[str, list[float]]:
    commands = {
        "analyze": [],
        "analyze --fuse inductor": ["--fuse", "inductor"],
        "analyze --fuse engine": ["--fuse", "engine"],
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(rounds):
        for label, extra in commands.items():
            run_env = {**env, "CXX": "/nonexistent/c++"} if "inductor" in label else env
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "costmodel.cli", "analyze",
                                   f"costmodel.zoo:{model}", "--format", "json", *extra],
                                  env=run_env, capture_output=True, text=True)
            times[label].append(time.perf_counter() - start)
            if done.returncode != 0:
                sys.exit(f"{label} failed: {done.stderr.strip()}")
    return times


def speed(args: argparse.Namespace) -> int:
    times = time_processes(args.model, args.rounds)
    print(f"## `costmodel analyze costmodel.zoo:{args.model}` as a process, {args.rounds} "
          f"interleaved rounds\n")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}\n")
    print("| command | median s | least s | x plain (median) |")
    print("|---|---|---|---|")
    plain = statistics.median(times["analyze"])
    for label, runs in times.items():
        med = statistics.median(runs)
        print(f"| `{label}` | {med:.2f} | {min(runs):.2f} | {med / plain:.2f} |")
    ratio = statistics.median(times["analyze --fuse inductor"]) / plain
    met = ratio <= 3.0
    print(f"\naim: `--fuse inductor` within 3x plain analyze: {ratio:.2f}x "
          f"{'met' if met else 'MISSED'} (no C++ compiler reachable in the inductor runs)")
    return 0 if met else 1


def mac_table(models: list[str]) -> list[dict[str, Any]]:
    import costmodel
    from costmodel.views.fusion import fuse

    rows = []
    for name in models:
        eager = costmodel.analyze(f"costmodel.zoo:{name}")
        inductor = fuse(eager, "inductor")
        engine_analysis = costmodel.analyze(f"costmodel.zoo:{name}")
        engine = fuse(engine_analysis, "engine")
        kinds = {k: sum(1 for x in inductor.kernels if x.kind == k)
                 for k in ("generated", "extern")}
        library = {d["name"] for d in eager.ops() if _is_library(d["target"])}
        rows.append({"model": name, "ops": sum(1 for d in eager.ops() if d["op_type"] != "View"),
                     "eager": int(eager.total().mac_bytes),
                     "inductor": int(inductor.mac_bytes_fused),
                     "inductor_kernels": kinds, "engine": int(engine.mac_bytes_fused),
                     "engine_kernels": len(engine.kernels),
                     # the part fusion acts on: every op but the library calls, and the
                     # generated kernels that replace them
                     "rest_eager": int(sum(d["cost"].mac_bytes for d in eager.ops()
                                           if d["name"] not in library)),
                     "rest_inductor": int(sum(k.mac_bytes for k in inductor.kernels
                                              if k.kind == "generated"))})
    return rows


LIBRARY = ("aten::convolution", "aten::addmm", "aten::mm", "aten::bmm")


def _is_library(target: str) -> bool:
    """The ops both eager PyTorch and inductor hand to a library (oneDNN, BLAS)."""
    return target.startswith(("aten.convolution", "aten.addmm", "aten.mm", "aten.bmm",
                              "aten.linear"))


def library_share(fn: Any, inputs: list[Any], runs: int) -> float:
    """The share of a forward pass spent in library calls (convolution, matmul), from
    torch.profiler over `runs` passes: what fusion leaves as it is."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(runs):
            fn(*inputs)
        wall = time.perf_counter() - start
    library = sum(e.cpu_time_total for e in prof.events() if e.name in LIBRARY) * 1e-6
    return min(1.0, library / wall)


class BnRelu:
    """Batch norm then ReLU, the pair that follows every convolution of the three models."""

    @staticmethod
    def build() -> Any:
        from torch import nn

        return nn.Sequential(nn.BatchNorm2d(BLOCK_SHAPE[1]), nn.ReLU()).eval()


class Chain:
    """Four element-wise ops on one tensor, (2x + 1).relu() * x."""

    @staticmethod
    def build() -> Any:
        from torch import nn

        class Net(nn.Module):
            def forward(self, x: Any) -> Any:
                return (x * 2 + 1).relu() * x

        return Net().eval()


#: one 1x128x224x224 float32 tensor is 25.7 MB, past the caches: the blocks stream memory
BLOCK_SHAPE = (1, 128, 224, 224)


def measure_blocks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Eager against compiled for two blocks whose ops only stream memory: the time fusion
    saves against the MAC it removes, with no library call and little dispatch in the way."""
    import torch

    import costmodel
    from costmodel.views.fusion import fuse

    rows = []
    for name, block in (("batch norm + ReLU", BnRelu), ("element-wise chain (4 ops)", Chain)):
        model = block.build()
        analysis = costmodel.analyze(model, input_shape=BLOCK_SHAPE)
        fused = fuse(analysis, "inductor").mac_bytes_fused
        x = torch.randn(*BLOCK_SHAPE)
        compiled = torch.compile(model)
        with torch.inference_mode():
            for _ in range(3):
                model(x)
                compiled(x)
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(args.rounds):
                for kind, fn in (("eager", model), ("compiled", compiled)):
                    runs = []
                    for _ in range(args.repeat):
                        start = time.perf_counter()
                        fn(x)
                        runs.append(time.perf_counter() - start)
                    times[kind].append(statistics.median(runs))
        rows.append({"block": name, "eager_mac": int(analysis.total().mac_bytes),
                     "fused_mac": int(fused), "eager_s": min(times["eager"]),
                     "compiled_s": min(times["compiled"])})
    return rows


def measure(args: argparse.Namespace) -> int:
    import torch

    from costmodel.capture.load import load, parse_dtype
    from costmodel.latency.runnable import build_on, random_inputs
    from costmodel.latency.timing import torch_threads

    rows = mac_table(args.models)
    models: dict[str, Any] = {}
    with torch_threads(args.threads):
        blocks = measure_blocks(args)
        for name in args.models:
            target = f"costmodel.zoo:{name}"
            loaded = load(target, None, parse_dtype("float32"))
            model = build_on(target, "cpu")
            inputs = random_inputs(loaded.inputs, "cpu")
            compiled = torch.compile(model)
            with torch.inference_mode():
                for _ in range(3):
                    model(*inputs)
                    compiled(*inputs)  # the first call compiles
            models[name] = (model, compiled, inputs)
        medians: dict[tuple[str, str], list[float]] = {}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name, (model, compiled, inputs) in models.items():
                    for kind, fn in (("eager", model), ("compiled", compiled)):
                        runs = []
                        for _ in range(args.repeat):
                            start = time.perf_counter()
                            fn(*inputs)
                            runs.append(time.perf_counter() - start)
                        medians.setdefault((name, kind), []).append(statistics.median(runs))
        shares = {(name, kind): library_share(fn, inputs, 5)
                  for name, (model, compiled, inputs) in models.items()
                  for kind, fn in (("eager", model), ("compiled", compiled))}
    print(f"## Blocks that only stream memory, {'x'.join(map(str, BLOCK_SHAPE))} float32 "
          f"({args.threads} thread{'s' if args.threads != 1 else ''})\n")
    print("| block | MAC eager | MAC fused (inductor) | MAC ratio | eager ms | compiled ms | "
          "time ratio |")
    print("|---|---|---|---|---|---|---|")
    for b in blocks:
        print(f"| {b['block']} | {b['eager_mac'] / 1e6:.1f} MB | {b['fused_mac'] / 1e6:.1f} MB "
              f"| {b['eager_mac'] / b['fused_mac']:.2f}x | {b['eager_s'] * 1e3:.2f} | "
              f"{b['compiled_s'] * 1e3:.2f} | {b['eager_s'] / b['compiled_s']:.2f}x |")
    print()
    print(f"## MAC and time, eager and compiled ({args.threads} thread"
          f"{'s' if args.threads != 1 else ''}, least of {args.rounds} round medians of "
          f"{args.repeat} runs)\n")
    print("| model | ops | MAC eager | kernels (inductor: generated + extern) | MAC inductor "
          "| kernels (engine) | MAC engine | eager ms | compiled ms | time saved | "
          "MAC saved (inductor) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        eager_s = min(medians[(row["model"], "eager")])
        compiled_s = min(medians[(row["model"], "compiled")])
        row.update(eager_s=eager_s, compiled_s=compiled_s)
        k = row["inductor_kernels"]
        print(f"| {row['model']} | {row['ops']} | {row['eager'] / 1e6:.1f} MB | "
              f"{k['generated']} + {k['extern']} | {row['inductor'] / 1e6:.1f} MB | "
              f"{row['engine_kernels']} | {row['engine'] / 1e6:.1f} MB | "
              f"{eager_s * 1e3:.2f} | {compiled_s * 1e3:.2f} | "
              f"{100 * (1 - compiled_s / eager_s):.0f}% | "
              f"{100 * (1 - row['inductor'] / row['eager']):.0f}% |")
    print("\nSplit by torch.profiler's share of library calls (convolution, matmul: left as "
          "they are by fusion) in 5 profiled runs, applied to the times above:\n")
    print("| model | library ms eager | library ms compiled | rest ms eager | rest ms compiled "
          "| rest time saved | rest MAC eager | rest MAC inductor (generated kernels) | "
          "rest MAC saved |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        name = row["model"]
        lib_e = row["eager_s"] * shares[(name, "eager")]
        lib_c = row["compiled_s"] * shares[(name, "compiled")]
        rest_e, rest_c = row["eager_s"] - lib_e, row["compiled_s"] - lib_c
        row.update(library_eager_s=lib_e, library_compiled_s=lib_c, rest_eager_s=rest_e,
                   rest_compiled_s=rest_c)
        print(f"| {name} | {lib_e * 1e3:.2f} | {lib_c * 1e3:.2f} | {rest_e * 1e3:.2f} | "
              f"{rest_c * 1e3:.2f} | {100 * (1 - rest_c / rest_e):.0f}% | "
              f"{row['rest_eager'] / 1e6:.1f} MB | {row['rest_inductor'] / 1e6:.1f} MB | "
              f"{100 * (1 - row['rest_inductor'] / row['rest_eager']):.0f}% |")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}")
    if args.plot:
        plot(rows, blocks, args.plot, args.threads)
    return 0


def plot(rows: list[dict[str, Any]], blocks: list[dict[str, Any]], path: str,
         threads: int) -> None:
    """MAC eager and fused (left); for the blocks, how much less MAC and time compiled takes
    (middle); compiled against eager, in MAC and in measured time, for the whole model and
    for the part fusion acts on (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    x = range(len(rows))
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2),
                                              gridspec_kw={"width_ratios": [3, 2, 3]})
    width = 0.27
    for i, (key, label) in enumerate((("eager", "eager (every op)"),
                                      ("inductor", "torch.compile kernels (inductor)"),
                                      ("engine", "inference-engine rules"))):
        left.bar([j + (i - 1) * width for j in x], [r[key] / 1e6 for r in rows], width,
                 label=label)
    left.set_xticks(list(x), names, fontsize=8)
    left.set_ylabel("MAC (MB read + written)")
    left.set_title("Memory access per op, and once fused")
    left.legend(fontsize=7)
    bx = range(len(blocks))
    middle.bar([j - 0.2 for j in bx], [b["eager_mac"] / b["fused_mac"] for b in blocks], 0.4,
               label="MAC eager / fused", color="tab:orange")
    middle.bar([j + 0.2 for j in bx], [b["eager_s"] / b["compiled_s"] for b in blocks], 0.4,
               label="time eager / compiled", color="tab:gray", hatch="//", edgecolor="white")
    middle.set_xticks(list(bx), [b["block"] for b in blocks], fontsize=8)
    middle.set_title("Blocks that only stream memory")
    middle.set_ylabel("x less than eager")
    middle.legend(fontsize=7)
    if "rest_eager_s" in rows[0]:
        bars = (("rest_inductor", "rest_eager", "MAC outside library calls", "tab:orange", ""),
                ("rest_compiled_s", "rest_eager_s", "time outside library calls",
                 "tab:orange", "//"),
                ("compiled_s", "eager_s", "time, whole model", "tab:gray", "//"))
        width = 0.25
        for i, (num, den, label, color, hatch) in enumerate(bars):
            right.bar([j + (i - 1) * width for j in x], [r[num] / r[den] for r in rows],
                      width, label=label, color=color, hatch=hatch, edgecolor="white")
        right.axhline(1.0, color="black", linewidth=0.8)
        right.set_xticks(list(x), names, fontsize=8)
        right.set_ylabel("torch.compile / eager")
        right.set_title(f"Measured on this CPU, {threads} thread{'s' if threads != 1 else ''}")
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", help="the model of the speed test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--measure", action="store_true",
                        help="MAC eager and fused, and eager against compiled time")
    parser.add_argument("--models", nargs="+", default=MEASURED)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--plot", metavar="FILE.png")
    args = parser.parse_args()
    return measure(args) if args.measure else speed(args)


if __name__ == "__main__":
    sys.exit(main())
