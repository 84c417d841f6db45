"""Convolutions: 1-D, 2-D and 3-D, strided, padded, dilated, grouped, depthwise and transposed.

Mult-Adds count one multiply-accumulate per kernel tap per output element (a transposed conv:
per input element), bias not included. FLOPs are 2 * Mult-Adds plus one add per output element
when there is a bias. MAC reads the input, the weight and the bias once and writes the output once
(the ShuffleNetV2 accounting: a 1x1 conv costs h*w*(c1 + c2) + c1*c2/g).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from costmodel.cost import Cost, Num, div, prod
from costmodel.formulas.registry import OpCall, register


def conv(
    n: Num,
    c_in: Num,
    c_out: Num,
    in_size: Sequence[Num],
    out_size: Sequence[Num],
    kernel: Sequence[Num],
    groups: Num = 1,
    bias: bool = False,
    transposed: bool = False,
    itemsize: int = 4,
) -> Cost:
    """Cost of one convolution from its dimensions (works on ints and sympy symbols alike)."""
    taps = prod(kernel)
    if transposed:
        madds = n * c_in * prod(in_size) * div(c_out, groups) * taps
    else:
        madds = n * c_out * prod(out_size) * div(c_in, groups) * taps
    out_elems = n * c_out * prod(out_size)
    weight = c_out * div(c_in, groups) * taps
    bias_elems = c_out if bias else 0
    mac = n * c_in * prod(in_size) + weight + bias_elems + out_elems
    return Cost(
        madds=madds,
        flops=2 * madds + (out_elems if bias else 0),
        mac=mac,
        mac_bytes=mac * itemsize,
        params=weight + bias_elems,
    )


def conv_out_size(size: Num, kernel: Num, stride: Num = 1, padding: Num = 0,
                  dilation: Num = 1) -> Num:
    """Output length of a convolution or pooling window along one dimension (floor mode).

    With stride 1 there is nothing to round: sizes are integers, so a symbolic size keeps a
    plain polynomial form (h, not floor(h)) even for a symbol not declared integer.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if isinstance(span, int) and isinstance(stride, int):
        return span // stride + 1
    if stride == 1:
        return span + 1
    return sympy.floor(sympy.sympify(span) / stride) + 1


def _pair(value: Num | Sequence[Num], n: int) -> tuple[Num, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def conv2d(n: Num, c_in: Num, c_out: Num, h_in: Num, w_in: Num, kernel: Num | Sequence[Num],
           stride: Num | Sequence[Num] = 1, padding: Num | Sequence[Num] = 0,
           dilation: Num | Sequence[Num] = 1, groups: Num = 1, bias: bool = False,
           itemsize: int = 4) -> Cost:
    """Cost of a 2-D convolution on an (n, c_in, h_in, w_in) input."""
    k, s, p, d = (_pair(v, 2) for v in (kernel, stride, padding, dilation))
    out = tuple(conv_out_size(i, *a) for i, a in zip((h_in, w_in), zip(k, s, p, d)))
    return conv(n, c_in, c_out, (h_in, w_in), out, k, groups, bias, False, itemsize)


# --- the aten ops -------------------------------------------------------------------------------

_TRANSPOSED_OPS = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                   "cudnn_convolution_transpose"}
# Where each op keeps its bias, its `transposed` flag and its groups (positional index, kwarg).
_BIAS_AT = {"cudnn_convolution": None, "cudnn_convolution_transpose": None}
_GROUPS_AT = {
    "convolution": (8, "groups"), "_convolution": (8, "groups"),
    "convolution_overrideable": (8, "groups"),
    "conv1d": (6, "groups"), "conv2d": (6, "groups"), "conv3d": (6, "groups"),
    "conv_transpose1d": (6, "groups"), "conv_transpose2d": (6, "groups"),
    "conv_transpose3d": (6, "groups"),
    "cudnn_convolution": (5, "groups"), "cudnn_convolution_transpose": (6, "groups"),
    "mkldnn_convolution": (6, "groups"),
}


def _parts(call: OpCall) -> tuple:
    name = call.target.overloadpacket.__name__
    x, w = call.arg(0, "input"), call.arg(1, "weight")
    bias = None if name in _BIAS_AT else call.arg(2, "bias")
    if name in ("convolution", "_convolution", "convolution_overrideable"):
        transposed = bool(call.arg(6, "transposed"))
    else:
        transposed = name in _TRANSPOSED_OPS
    groups = call.arg(*_GROUPS_AT[name], 1)
    return x, w, bias, transposed, groups


def _conv_cost(call: OpCall) -> Cost:
    x, w, b, transposed, groups = _parts(call)
    y = call.out
    batched = x.ndim == w.ndim
    n = x.shape[0] if batched else 1
    spatial = w.ndim - 2
    in_size, out_size = x.shape[-spatial:], y.shape[-spatial:]
    if transposed:  # weight: (c_in, c_out / groups, *kernel)
        c_in, c_out = w.shape[0], w.shape[1] * groups
    else:  # weight: (c_out, c_in / groups, *kernel)
        c_out, c_in = w.shape[0], w.shape[1] * groups
    return conv(n, c_in, c_out, in_size, out_size, w.shape[2:], groups, b is not None,
                transposed, x.itemsize)


def conv_op_type(call: OpCall) -> str:
    """`Conv 3x3`, `Conv DW 3x3`, `Conv GW 1x1`, `Conv1d 3`, `ConvTranspose3d 2x2x2`..."""
    x, w, _, transposed, groups = _parts(call)
    spatial = w.ndim - 2
    base = "ConvTranspose" if transposed else "Conv"
    if spatial != 2:
        base += f"{spatial}d"
    c_in = x.shape[-spatial - 1]
    kind = ""
    if groups != 1:
        kind = " DW" if groups == c_in else " GW"
    return f"{base}{kind} {'x'.join(str(k) for k in w.shape[2:])}"


register(
    ["convolution", "_convolution", "convolution_overrideable", "conv1d", "conv2d", "conv3d",
     "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "cudnn_convolution",
     "cudnn_convolution_transpose", "mkldnn_convolution"],
    conv_op_type,
)(_conv_cost)
