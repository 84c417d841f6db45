"""Evaluating a symbolic cost at 1,000,000 points: lambdify against sympy's subs and re-tracing.

Usage::

    python benchmarks/bench_lambdify.py [--points 1000000] [--subs-sample 2000]
                                        [--trace-sample 20]

The expression is the full cost (all five fields) of a ShuffleNetV2 basic unit built from the
formula functions with its width ``c``, split ``s``, bottleneck ``m`` and map ``h x w`` free
(the unit of notebooks/shufflenet_whatif.ipynb). Three ways to evaluate it at N random
configurations:

* ``lambdify`` + numpy on all N points at once (timed in full, building the function included);
* ``Cost.subs`` per point (all five fields), and ``expr.subs`` of the MAC alone, each timed on
  a sample and extrapolated to N;
* tracing a concrete unit with ``costmodel.analyze`` per point, timed on a sample and
  extrapolated to N (only at the paper's split, ``s = m = c/2``, which the zoo unit supports).

The lambdify results are checked against the subs results on the sample. Figures are printed
as a markdown table; nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import sympy
import torch
from tabulate import tabulate

from costmodel import analyze, lambdify, symbols
from costmodel.cost import Cost, total
from costmodel.formulas import batch_norm, channel_shuffle, concat, conv2d, elementwise
from costmodel.zoo.shufflenet import ShuffleUnitV2


def v2_unit(c: sympy.Expr, s: sympy.Expr, m: sympy.Expr, h: sympy.Expr, w: sympy.Expr) -> Cost:
    """A ShuffleNetV2 basic unit: split s of c channels, bottleneck m, on an h x w map."""
    return total([conv2d(1, s, m, h, w, 1), batch_norm(1, m, (h, w)), elementwise(m * h * w),
                  conv2d(1, m, m, h, w, 3, padding=1, groups=m), batch_norm(1, m, (h, w)),
                  conv2d(1, m, s, h, w, 1), batch_norm(1, s, (h, w)), elementwise(s * h * w),
                  concat([(c - s) * h * w, s * h * w]), channel_shuffle(1, c, h, w)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--subs-sample", type=int, default=2000)
    parser.add_argument("--trace-sample", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    c, s, m, h, w = symbols("c s m h w")
    cost = v2_unit(c, s, m, h, w)
    rng = np.random.default_rng(args.seed)
    half = rng.integers(8, 257, args.points)
    width = 2 * half
    split = rng.integers(1, width)
    mid = rng.integers(8, 513, args.points)
    size = rng.choice([7, 14, 28, 56], args.points)

    start = time.perf_counter()
    evaluate = lambdify(cost, [c, s, m, h, w])
    built = time.perf_counter() - start
    start = time.perf_counter()
    fast = evaluate(width, split, mid, size, size)
    vectorised = time.perf_counter() - start

    k = min(args.subs_sample, args.points)
    start = time.perf_counter()
    slow = [cost.subs({c: int(width[i]), s: int(split[i]), m: int(mid[i]), h: int(size[i]),
                       w: int(size[i])}) for i in range(k)]
    per_subs = (time.perf_counter() - start) / k
    for field in ("madds", "flops", "mac", "mac_bytes", "params"):
        assert fast[field][:k].tolist() == [float(getattr(x, field)) for x in slow], field

    mac = sympy.sympify(cost.mac)
    start = time.perf_counter()
    for i in range(k):
        mac.subs({c: int(width[i]), s: int(split[i]), m: int(mid[i]), h: int(size[i]),
                  w: int(size[i])})
    per_mac_subs = (time.perf_counter() - start) / k

    t = min(args.trace_sample, args.points)
    per_trace = 0.0
    for i in range(t):
        channels, hw = int(width[i]), int(size[i])
        at = {c: channels, s: channels // 2, m: channels // 2, h: hw, w: hw}
        start = time.perf_counter()
        with torch.device("meta"):
            unit = ShuffleUnitV2(channels, channels, stride=1)
        traced = analyze(unit, input_shape=(1, channels, hw, hw)).total()
        per_trace += time.perf_counter() - start
        assert traced == cost.subs(at), at
    per_trace /= t

    n = args.points
    lam_total = built + vectorised
    rows = [
        ["lambdify + numpy", f"{lam_total:.3f} s (build {built * 1e3:.1f} ms)",
         f"{lam_total / n * 1e9:.1f} ns", "1x"],
        [f"Cost.subs per point (sample {k})", f"{per_subs * n:,.0f} s (extrapolated)",
         f"{per_subs * 1e6:.1f} us", f"{per_subs * n / lam_total:,.0f}x"],
        [f"MAC only: expr.subs per point (sample {k})",
         f"{per_mac_subs * n:,.0f} s (extrapolated)", f"{per_mac_subs * 1e6:.1f} us",
         f"{per_mac_subs * n / lam_total:,.0f}x"],
        [f"analyze() per point (sample {t})", f"{per_trace * n:,.0f} s (extrapolated)",
         f"{per_trace * 1e3:.1f} ms", f"{per_trace * n / lam_total:,.0f}x"],
    ]
    print(f"{n:,} configurations of a ShuffleNetV2 unit's cost (5 fields); "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"sympy {sympy.__version__}, numpy {np.__version__}\n")
    print(tabulate(rows, headers=["method", f"time for {n:,}", "per point", "vs lambdify"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
