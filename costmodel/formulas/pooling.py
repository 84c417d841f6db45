"""Pooling and resizing.

Pooling: FLOPs are one per window element per output (max: compares, average: adds and the
divide), for adaptive pooling summed over the actual, possibly overlapping, windows. Resizing:
an output element of an n-tap interpolation costs n multiplies and n - 1 adds (nearest: 0).
Mult-Adds are 0; MAC reads the input once and writes the output (and max-pool indices).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from costmodel.cost import Cost, Num, prod
from costmodel.formulas.registry import OpCall, register


def _as_tuple(value: Num | Sequence[Num], n: int) -> tuple[Num, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value) * (n if len(value) == 1 else 1)
    return (value,) * n


def adaptive_window_total(size: Num, out: Num) -> Num:
    """Sum of the window lengths of adaptive pooling from `size` to `out` along one dimension.

    Window i spans [floor(i*size/out), ceil((i+1)*size/out)), as in ATen.
    """
    if isinstance(size, int) and isinstance(out, int):
        return sum(-((-(i + 1) * size) // out) - (i * size) // out for i in range(out))
    if out == 1:
        return size
    return sympy.ceiling(sympy.sympify(size) / out) * out  # symbolic: an upper bound


def _pool(call: OpCall) -> Cost:
    name = call.target.overloadpacket.__name__
    x, y = call.inputs[0], call.out
    dims = int(name.split("pool")[1][0])
    if name.startswith(("adaptive", "_adaptive")):
        per_dim = [adaptive_window_total(i, o) for i, o in zip(x.shape[-dims:], y.shape[-dims:])]
        flops = prod(x.shape[:-dims]) * prod(per_dim)
    else:
        kernel = _as_tuple(call.arg(1, "kernel_size"), dims)
        flops = y.numel * prod(kernel)
    return Cost(flops=flops) + call.io()


register(
    [f"{p}{d}d{s}" for p in ("max_pool", "avg_pool", "adaptive_avg_pool", "_adaptive_avg_pool",
                              "adaptive_max_pool")
     for d in (1, 2, 3) for s in ("", "_with_indices")],
    "Pooling",
)(_pool)

#: interpolation taps per output element, by the op's mode
_TAPS = {"nearest": 0, "linear": 2, "bilinear": 4, "bicubic": 16, "trilinear": 8}


def _resize(call: OpCall) -> Cost:
    name = call.target.overloadpacket.__name__
    mode = name.removeprefix("_").removeprefix("upsample_").split("_")[0].rstrip("123d")
    mode = "nearest" if mode.startswith("nearest") else mode
    taps = _TAPS[mode]
    return Cost(flops=call.out.numel * max(2 * taps - 1, 0)) + call.io()


register(
    ["upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
     "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d",
     "upsample_linear1d", "upsample_bilinear2d", "_upsample_bilinear2d_aa",
     "upsample_bicubic2d", "_upsample_bicubic2d_aa", "upsample_trilinear3d"],
    "Upsample",
)(_resize)
