"""Time symbolic analyses: costs in free input sizes (H, W) and in a freed channel width.

Usage::

    python benchmarks/bench_symbolic.py [--models NAME ...] [--repeat N] [--widths]

For each model (default resnet50), on a model built on ``meta``, with one warm-up call first:

* concrete: ``analyze(model, input_shape=(1, 3, 224, 224))``, for scale;
* symbolic: ``analyze(model, input_shape=(1, 3, "H", "W"))`` (trace on fake tensors with a
  ShapeEnv, graph, formulas on sympy expressions);
* total: the first ``analysis.total()`` of that symbolic analysis (summing the sympy
  expressions; later calls hit sympy's cache);
* with ``--widths``: ShuffleNetV2 1.0x with its stage-2 branch width freed as ``B``.

Medians of ``--repeat`` runs, in ms, and the symbolic median over the concrete one; nothing
is asserted unless ``--max-ratio R`` is given: then the exit code is 1 when a symbolic trace
takes more than R times its concrete one (a guard for CI on a quiet machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from tabulate import tabulate

import costmodel
from costmodel.zoo import MODELS

BRANCHES = {"stages.0.0.left.1": "B", "stages.0.*.right.0": "B", "stages.0.*.right.2": "B"}


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(first call ms, median ms of `repeat` more (0.0 if none), last result)."""
    start = time.perf_counter()
    result = fn()
    first = (time.perf_counter() - start) * 1e3
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return first, statistics.median(times) if times else 0.0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--widths", action="store_true",
                        help="also time ShuffleNetV2 1.0x with a freed stage width")
    parser.add_argument("--max-ratio", type=float, metavar="R",
                        help="exit 1 when a symbolic trace takes more than R x its concrete one")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for name in args.models:
        with torch.device("meta"):
            model = MODELS[name]()
        _, concrete, _ = median_ms(
            lambda m=model: costmodel.analyze(m, input_shape=(1, 3, 224, 224)), args.repeat)
        first, symbolic, analysis = median_ms(
            lambda m=model: costmodel.analyze(m, input_shape=(1, 3, "H", "W")), args.repeat)
        total, _, cost = median_ms(analysis.total, 0)
        rows.append([name, "H, W", f"{concrete:.0f}", f"{first:.0f}", f"{symbolic:.0f}",
                     f"{symbolic / concrete:.1f}", f"{total:.0f}", len(str(cost.mac))])
    if args.widths:
        with torch.device("meta"):
            model = MODELS["shufflenet_v2_x1_0"]()
        _, concrete, _ = median_ms(
            lambda: costmodel.analyze(model, input_shape=(1, 3, 224, 224)), args.repeat)
        first, symbolic, analysis = median_ms(
            lambda: costmodel.analyze(model, input_shape=(1, 3, 224, 224), widths=BRANCHES),
            max(1, args.repeat // 2))
        total, _, cost = median_ms(analysis.total, 0)
        rows.append(["shufflenet_v2_x1_0", "stage-2 width B", f"{concrete:.0f}", f"{first:.0f}",
                     f"{symbolic:.0f}", f"{symbolic / concrete:.1f}", f"{total:.0f}",
                     len(str(cost.mac))])
    print(tabulate(rows, headers=["model", "free", "concrete ms", "symbolic first ms",
                                  "symbolic ms", "x concrete", "first total() ms",
                                  "len(str(MAC))"], tablefmt="github"))
    worst = max(float(r[5]) for r in rows)
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f"a symbolic trace took {worst:.1f} x its concrete one (--max-ratio "
              f"{args.max_ratio:g})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
