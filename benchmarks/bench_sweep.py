"""A million input sizes of ShuffleNetV2: one symbolic trace + numpy, against a trace per size.

Usage::

    python benchmarks/bench_sweep.py [--side 1000] [--trace-sample 20] [--model shufflenet_v2_x1_0]

The model is traced once with its input size free (1 x 3 x H x W); its five totals are
lambdified and evaluated on every (H, W) of a side x side grid (1,000,000 configurations by
default, H and W from 64 up), and the conditions torch checked while tracing
(`Analysis.guards`) are evaluated on the same grid to show the formulas hold there. The
alternative, a concrete `costmodel.analyze` per configuration, is timed on a random sample of
the grid, checked against the grid's values, and extrapolated. Also timed: building a symbolic
ResNet-50 total (warm: after the first trace). Figures print as a markdown table; nothing is
asserted about speed.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import sympy
import torch
from tabulate import tabulate

from costmodel import analyze, lambdify, sweep, symbols
from costmodel.zoo import MODELS

FIELDS = ("madds", "flops", "mac", "mac_bytes", "params")


def build(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return MODELS[name]()


def symbolic_total(name: str) -> tuple[float, object, list[sympy.Basic]]:
    """Seconds to trace `name` with H, W free and sum its costs; the total and the guards."""
    model = build(name)
    start = time.perf_counter()
    analysis = analyze(model, input_shape=(1, 3, "H", "W"))
    cost = analysis.total()
    return time.perf_counter() - start, cost, analysis.guards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shufflenet_v2_x1_0")
    parser.add_argument("--side", type=int, default=1000, help="grid side: side**2 sizes")
    parser.add_argument("--low", type=int, default=64, help="smallest H and W")
    parser.add_argument("--trace-sample", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    H, W = symbols("H W")
    n = args.side**2

    first_s, _, _ = symbolic_total(args.model)  # the first trace in a process warms torch up
    traced_s, cost, guards = symbolic_total(args.model)
    start = time.perf_counter()
    sizes = np.arange(args.low, args.low + args.side)
    grid = sweep(cost, {H: sizes, W: sizes})
    swept_s = time.perf_counter() - start
    assert len(grid) == n
    start = time.perf_counter()
    held = all(np.all(lambdify(g, [H, W])(grid.H, grid.W)) for g in guards
               if g.free_symbols)
    guards_s = time.perf_counter() - start

    rng = np.random.default_rng(args.seed)
    picks = rng.integers(0, n, args.trace_sample)
    model = build(args.model)
    start = time.perf_counter()
    for i in picks:
        h, w = int(grid.H[i]), int(grid.W[i])
        concrete = analyze(model, input_shape=(1, 3, h, w)).total()
        for field in FIELDS:
            assert getattr(concrete, field) == grid[field][i], (h, w, field)
    per_trace = (time.perf_counter() - start) / args.trace_sample

    resnet_s, _, _ = symbolic_total("resnet50")
    symbolic_s = traced_s + swept_s
    rows = [
        [f"symbolic trace of {args.model} in H, W + total",
         f"{traced_s:.2f} s (first in the process {first_s:.2f} s)", ""],
        [f"lambdify + evaluate {n:,} sizes (sweep)", f"{swept_s:.3f} s",
         f"{swept_s / n * 1e9:.0f} ns/size"],
        ["both together", f"{symbolic_s:.2f} s", "1x"],
        [f"analyze() per size (sample {args.trace_sample}, extrapolated)",
         f"{per_trace * n:,.0f} s", f"{per_trace * n / symbolic_s:,.0f}x"],
        [f"the {len(guards)} guards checked on the grid ({'all hold' if held else 'VIOLATED'})",
         f"{guards_s:.3f} s", ""],
        ["symbolic trace of resnet50 in H, W + total", f"{resnet_s:.2f} s", ""],
    ]
    print(f"{n:,} input sizes ({args.low}..{args.low + args.side - 1} squared) of {args.model}; "
          f"{platform.machine()}, torch {torch.__version__}, sympy {sympy.__version__}, "
          f"numpy {np.__version__}; one analyze() per size takes {per_trace * 1e3:.0f} ms\n")
    print(tabulate(rows, headers=["what", "time", "vs symbolic"], tablefmt="github"))


if __name__ == "__main__":
    main()
