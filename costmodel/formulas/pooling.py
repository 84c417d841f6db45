"""Pooling and resizing.

Pooling: FLOPs are one per window element per output (max: compares, average: adds and the
divide), counting only the elements a window covers inside the input: padding and a
ceil-mode window's overhang are never read (ATen clips each window to the input), and
HF EfficientNet's `AvgPool2d(1280, ceil_mode=True)` on a 7x7 map reads 49 elements per
output, not 1280^2. Adaptive pooling sums over the actual, possibly overlapping, windows. Resizing:
an output element of an n-tap interpolation costs n multiplies and n - 1 adds (nearest: 0).
Mult-Adds are 0; MAC reads the input once and writes the output (and max-pool indices).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from costmodel.cost import Cost, Num, prod
from costmodel.formulas.conv import conv_out_size
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


def _lost_taps(overhang: Num, stride: Num) -> Num:
    """Taps lost past one edge by windows `stride` apart, the first of which reaches
    `overhang` elements beyond it: sum over i >= 0 of max(0, overhang - i*stride), in closed
    form (exact for any overhang > -stride, which every floor- or ceil-mode pool satisfies)."""
    q = sympy.floor(sympy.sympify(overhang - 1) / stride)
    return (q + 1) * overhang - stride * q * (q + 1) / 2


def window_taps(size: Num, out: Num, kernel: Num, stride: Num, padding: Num = 0,
                dilation: Num = 1, ceil_mode: bool = True) -> Num:
    """Sum over the `out` windows along one dimension of the elements each covers inside the
    input: window i reads i*stride - padding + j*dilation for j < kernel, where that lies in
    [0, size). Concrete sizes are counted window by window. Symbolic ones (dilation 1) take
    out*kernel less the taps lost to the left padding and past the right edge, exact while no
    window overhangs both edges (`ceil_mode`: the last window may start in the right padding;
    False allows a simpler form); a symbolic dilated window is counted whole."""
    if all(isinstance(v, int) for v in (size, out, kernel, stride, padding, dilation)):
        return sum(1 for i in range(out) for j in range(kernel)
                   if 0 <= i * stride - padding + j * dilation < size)
    if dilation != 1:
        return out * kernel  # an upper bound: dilated pools with free sizes are rare
    if padding == 0 and not ceil_mode:
        return out * kernel  # every floor-mode window lies inside an unpadded input
    if not ceil_mode and isinstance(padding, int) and isinstance(stride, int) \
            and padding <= stride:
        # one window reaches each edge: the first loses the padding, the last what the floor
        # leaves of it (it ends padding - (size + 2*padding - kernel) mod stride past the edge)
        past = padding - (sympy.Mod(size + 2 * padding - kernel, stride) if stride > 1 else 0)
        return out * kernel - padding - (past if padding >= stride - 1 else sympy.Max(0, past))
    return (out * kernel - _lost_taps(padding, stride)
            - _lost_taps((out - 1) * stride + kernel - padding - size, stride))


def pool(lead: Num, in_size: Sequence[Num], out_size: Sequence[Num], kernel: Sequence[Num],
         itemsize: int = 4, stride: Sequence[Num] | None = None,
         padding: Sequence[Num] | None = None, dilation: Sequence[Num] | None = None,
         ceil_mode: bool = False) -> Cost:
    """Cost of a max or average pool with a fixed window: `lead` is the product of the
    non-pooled dims (n * c); one FLOP per window element inside the input per output; reads
    the input once."""
    n = len(kernel)
    s = tuple(stride) if stride else tuple(kernel)
    p = tuple(padding) if padding else (0,) * n
    d = tuple(dilation) if dilation else (1,) * n
    taps = prod(window_taps(*a, ceil_mode) for a in zip(in_size, out_size, kernel, s, p, d))
    outputs = lead * prod(out_size)
    mac = lead * prod(in_size) + outputs
    return Cost(flops=lead * taps, mac=mac, mac_bytes=mac * itemsize)


def adaptive_pool(lead: Num, in_size: Sequence[Num], out_size: Sequence[Num],
                  itemsize: int = 4) -> Cost:
    """Cost of adaptive (max or average) pooling from `in_size` to `out_size`: one FLOP per
    element of each (possibly overlapping) window."""
    windows = prod(adaptive_window_total(i, o) for i, o in zip(in_size, out_size))
    mac = lead * prod(in_size) + lead * prod(out_size)
    return Cost(flops=lead * windows, mac=mac, mac_bytes=mac * itemsize)


def pool2d(n: Num, c: Num, h_in: Num, w_in: Num, kernel: Num | Sequence[Num],
           stride: Num | Sequence[Num] | None = None, padding: Num | Sequence[Num] = 0,
           dilation: Num | Sequence[Num] = 1, itemsize: int = 4) -> Cost:
    """MaxPool2d / AvgPool2d on an (n, c, h_in, w_in) input (floor mode; stride defaults to the
    kernel, as in torch)."""
    k = _as_tuple(kernel, 2)
    s = k if stride is None else _as_tuple(stride, 2)
    p, d = _as_tuple(padding, 2), _as_tuple(dilation, 2)
    out = [conv_out_size(i, *a) for i, a in zip((h_in, w_in), zip(k, s, p, d))]
    return pool(n * c, (h_in, w_in), out, k, itemsize, s, p, d)


def adaptive_avg_pool2d(n: Num, c: Num, h_in: Num, w_in: Num,
                        output_size: Num | Sequence[Num] = 1, itemsize: int = 4) -> Cost:
    """AdaptiveAvgPool2d (or AdaptiveMaxPool2d) on an (n, c, h_in, w_in) input; output_size 1 is
    global pooling."""
    return adaptive_pool(n * c, (h_in, w_in), _as_tuple(output_size, 2), itemsize)


def _pool(call: OpCall) -> Cost:
    name = call.target.overloadpacket.__name__
    x, y = call.inputs[0], call.out
    dims = int(name.split("pool")[1][0])
    lead = prod(x.shape[:-dims])
    if name.startswith(("adaptive", "_adaptive")):
        cost = adaptive_pool(lead, x.shape[-dims:], y.shape[-dims:])
    else:
        kernel = _as_tuple(call.arg(1, "kernel_size"), dims)
        stride = call.arg(2, "stride") or kernel
        padding = call.arg(3, "padding", 0)
        is_max = name.startswith("max")
        dilation = call.arg(4, "dilation", 1) if is_max else 1
        ceil_mode = bool(call.arg(5, "ceil_mode", False) if is_max
                         else call.arg(4, "ceil_mode", False))
        cost = pool(lead, x.shape[-dims:], y.shape[-dims:], kernel, 4,
                    _as_tuple(stride, dims), _as_tuple(padding, dims),
                    _as_tuple(dilation, dims), ceil_mode)
    return Cost(flops=cost.flops) + call.io()  # MAC: also max-pool indices where written


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
