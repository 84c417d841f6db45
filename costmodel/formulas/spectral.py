"""Fast Fourier transforms (FNet's token mixing, spectral layers), by the radix-2 estimate.

An FFT is not a contraction in this project's sense, so it has 0 Mult-Adds. A complex
transform of length N costs 5 N log2 N real FLOPs (radix-2 Cooley-Tukey: N/2 log2 N
butterflies of one complex multiply, 6 FLOPs, and two complex adds, 4), with log2 N rounded
up for a length that is not a power of two; a real-to-complex or complex-to-real transform
costs half, rounded down. A transform over several dims has N = the product of their sizes,
and every other dim is a batch of transforms. A normalised transform (`norm="ortho"` or
`"forward"`/`"backward"` where it scales) adds one multiply per real component of the
output. MAC reads the input once and writes the output once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from costmodel.cost import Cost, Num, prod
from costmodel.formulas.registry import OpCall, TensorMeta, register

FFT_FLOPS_PER_POINT_STAGE = 5


def log2_ceil(n: Num) -> Num:
    """Stages of a radix-2 transform of length n: log2 n rounded up."""
    if isinstance(n, int):
        return max(n - 1, 0).bit_length()
    return sympy.ceiling(sympy.log(n, 2))


def fft(shape: Sequence[Num], dims: Sequence[int], real: bool = False) -> Cost:
    """FLOPs of FFTs over `dims` of a tensor of `shape` (complex, or one side real)."""
    length = prod([shape[d] for d in dims])
    transforms = prod([size for d, size in enumerate(shape) if d not in dims])
    flops = FFT_FLOPS_PER_POINT_STAGE * length * log2_ceil(length)
    if real:
        flops = flops // 2 if isinstance(flops, int) else sympy.floor(flops / 2)
    return Cost(flops=transforms * flops)


def _scaling(call: OpCall, normalization: int) -> Cost:
    out = call.out
    components = 2 if out.dtype.is_complex else 1
    return Cost(flops=out.numel * components if normalization else 0)


def _dims(tensor: TensorMeta, dims: Sequence[int]) -> list[int]:
    return [d % tensor.ndim for d in dims]


@register("_fft_c2c", "FFT")
def _fft_c2c(call: OpCall) -> Cost:
    x = call.arg(0, "self")
    dims = _dims(x, call.arg(1, "dim"))
    return fft(x.shape, dims) + _scaling(call, call.arg(2, "normalization")) + call.io()


@register("_fft_r2c", "FFT")
def _fft_r2c(call: OpCall) -> Cost:
    """The length is the real input's: a one-sided output is half of it, the work too."""
    x = call.arg(0, "self")
    dims = _dims(x, call.arg(1, "dim"))
    return fft(x.shape, dims, real=True) + _scaling(call, call.arg(2, "normalization")) \
        + call.io()


@register("_fft_c2r", "FFT")
def _fft_c2r(call: OpCall) -> Cost:
    """The length is the real output's (`last_dim_size` along the last dim)."""
    out = call.out
    dims = _dims(out, call.arg(1, "dim"))
    return fft(out.shape, dims, real=True) + _scaling(call, call.arg(2, "normalization")) \
        + call.io()
