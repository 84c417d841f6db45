"""The calibration micro-benchmarks: one small module per kernel family and size.

Sizes are those of batch-1 image models (56x56 to 7x7 maps, 24 to 1024 channels), so that the
efficiencies describe the kernels such models run. Each benchmark's FLOPs and MAC bytes come
from costmodel's own analysis of it, the same numbers the predictor reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Roles that are not efficiency classes: the per-op overhead, the peak FLOP/s, the bandwidth,
#: the Python time of an nn.Module call and the dispatch time of a view.
OVERHEAD, PEAK, BANDWIDTH = "overhead", "peak", "bandwidth"
MODULE_CALL, VIEW = "module_call", "view"
#: Layers in a chain benchmark: each layer's output is a fresh buffer and the next layer's
#: input, and each has weights of its own, as in a model rather than one layer in a hot loop.
CHAIN = 4


@dataclass(frozen=True)
class Bench:
    name: str
    role: str  # OVERHEAD, PEAK, BANDWIDTH or an efficiency class
    build: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...], ...]
    tiny: bool = False  # a minimal instance: its time is the class's fixed cost per op


class _Fn(nn.Module):
    """A module around a function of its inputs, for ops with no layer of their own."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def _shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()


class _Copy(nn.Module):
    """Copies its input into a buffer allocated once: a streaming read and write, with no
    allocation (and page faults) in the timed call."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.register_buffer("out", torch.empty(numel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.copy_(x)


def _views(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """`n` pairs of views of a tensor and back: dispatch, no data moved."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        for _ in range(n):
            x = x.view(-1).view(x.shape)
        return x
    return fn


def python_benches() -> list[Bench]:
    """Chains of modules that run no op and of views, two lengths each: the slope between
    them is the time per module call and per view, whatever the chain's fixed cost."""
    return [
        *[Bench(f"identity x{n}", MODULE_CALL,
                lambda n=n: nn.Sequential(*[nn.Identity() for _ in range(n)]), ((1, 8),))
          for n in (8, 64)],
        *[Bench(f"view x{2 * n}", VIEW, lambda n=n: _Fn(_views(n)), ((1, 8, 4, 4),))
          for n in (4, 32)],
    ]


def chain(bench: Bench, depth: int = CHAIN) -> Bench:
    """`depth` copies of a shape-preserving one-input benchmark in series."""
    return Bench(f"{bench.name} x{depth}", bench.role,
                 lambda: nn.Sequential(*[bench.build() for _ in range(depth)]), bench.shapes)


def _conv(c_in: int, c_out: int, hw: int, k: int, stride: int = 1, groups: int = 1) -> Bench:
    kind = "dw" if groups == c_in and groups > 1 else (f"g{groups}" if groups > 1 else "")
    dense = "conv_pointwise" if k == 1 else "conv_dense"
    role = {"dw": "conv_depthwise", "": dense}.get(kind, "conv_grouped")
    name = f"conv{k}x{k}{'-' + kind if kind else ''} {c_in}->{c_out} @{hw}" + (
        f" s{stride}" if stride > 1 else "")
    return Bench(name, role, lambda: nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups,
                                                bias=False), ((1, c_in, hw, hw),))


def _fn(name: str, role: str, fn: Callable[..., torch.Tensor],
        *shapes: tuple[int, ...]) -> Bench:
    return Bench(name, role, lambda: _Fn(fn), shapes)


def _tiny(bench: Bench) -> Bench:
    return Bench(bench.name, bench.role, bench.build, bench.shapes, tiny=True)


def tiny_benches() -> list[Bench]:
    """One minimal op per class (4x4 maps, 8 channels): what a kernel costs before any work,
    which differs by family (a depthwise convolution's setup is many times a ReLU's)."""
    return [_tiny(b) for b in (
        _conv(8, 8, 4, 1), _conv(8, 8, 4, 3), _conv(8, 8, 4, 3, groups=8),
        _conv(24, 24, 4, 1, groups=3),
        Bench("linear 8->8", "matmul", lambda: nn.Linear(8, 8), ((1, 8),)),
        _fn("sdpa 1x1x4x8", "attention", F.scaled_dot_product_attention, *[(1, 1, 4, 8)] * 3),
        Bench("relu 8 @4", "elementwise", nn.ReLU, ((1, 8, 4, 4),)),
        Bench("avgpool 8 @4", "pooling", lambda: nn.AvgPool2d(3, 2, 1), ((1, 8, 4, 4),)),
        Bench("maxpool 8 @4", "max_pool", lambda: nn.MaxPool2d(3, 2, 1), ((1, 8, 4, 4),)),
        Bench("batchnorm 8 @4", "norm", lambda: nn.BatchNorm2d(8).eval(), ((1, 8, 4, 4),)),
        _fn("cat 2x8 @4", "data_movement", lambda a, b: torch.cat((a, b), 1),
            (1, 8, 4, 4), (1, 8, 4, 4)),
    )]


def benches(smoke: bool = False) -> list[Bench]:
    """Every micro-benchmark; `smoke` keeps one tiny one per role, to test the machinery."""
    if smoke:
        return [
            _fn("relu 1", OVERHEAD, torch.relu, (1,)),
            Bench("matmul 64", PEAK, lambda: nn.Linear(64, 64, bias=False), ((64, 64),)),
            Bench("copy 64K", BANDWIDTH, lambda: _Copy(1 << 16), ((1 << 16,),)),
            _conv(8, 8, 8, 1), _conv(8, 8, 8, 3), _conv(8, 8, 8, 3, groups=8),
            _conv(8, 8, 8, 1, groups=2),
            Bench("linear 16->16", "matmul", lambda: nn.Linear(16, 16), ((4, 16),)),
            _fn("sdpa 1x2x8x8", "attention", F.scaled_dot_product_attention,
                (1, 2, 8, 8), (1, 2, 8, 8), (1, 2, 8, 8)),
            _fn("relu 8x8x8", "elementwise", torch.relu, (1, 8, 8, 8)),
            Bench("avgpool 8 @8", "pooling", lambda: nn.AvgPool2d(3, 2, 1), ((1, 8, 8, 8),)),
            Bench("maxpool 8 @8", "max_pool", lambda: nn.MaxPool2d(3, 2, 1), ((1, 8, 8, 8),)),
            Bench("batchnorm 8 @8", "norm", lambda: nn.BatchNorm2d(8).eval(), ((1, 8, 8, 8),)),
            _fn("shuffle 8 @8", "data_movement", _shuffle, (1, 8, 8, 8)),
            *tiny_benches(), *python_benches(),
        ]
    return [*tiny_benches(), *python_benches(), *cold_matvec_benches(), *[
        chain(b) if _keeps_shape(b) else b for b in _layer_benches()]]


def cold_matvec_benches() -> list[Bench]:
    """Batch-1 linear layers whose weights come from main memory, as a classifier's do: read
    once per forward pass, they are evicted by the rest of the model before the next. A chain
    of distinct layers, 64 to 75 MB of weights in all (beyond the last-level cache), each
    layer 4 to 9 MB like a classifier's."""
    return [chain(Bench(f"linear {n}->{n}", "matmul", lambda n=n: nn.Linear(n, n), ((1, n),)),
                  depth) for n, depth in ((1024, 16), (1536, 8))]


def _keeps_shape(bench: Bench) -> bool:
    """A one-input layer benchmark whose output has its input's shape: it can be chained."""
    if bench.role in (OVERHEAD, PEAK, BANDWIDTH) or len(bench.shapes) != 1:
        return False
    with torch.device("meta"):
        out = bench.build()(torch.empty(bench.shapes[0]))
    return tuple(out.shape) == bench.shapes[0]


def _layer_benches() -> list[Bench]:
    """One layer or op per benchmark, at the sizes of batch-1 image models."""
    return [
        _fn("relu 1", OVERHEAD, torch.relu, (1,)),
        Bench("matmul 1024", PEAK, lambda: nn.Linear(1024, 1024, bias=False), ((1024, 1024),)),
        *[Bench(f"copy {n >> 10}K", BANDWIDTH, lambda n=n: _Copy(n), ((n,),))
          for n in (1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24)],
        # dense convolutions
        _conv(3, 24, 224, 3, 2), _conv(3, 32, 224, 3, 2), _conv(64, 64, 56, 3),
        _conv(128, 128, 28, 3), _conv(256, 256, 14, 3), _conv(512, 512, 7, 3),
        _conv(64, 256, 56, 1), _conv(128, 128, 28, 1), _conv(256, 256, 14, 1),
        _conv(512, 512, 7, 1), _conv(116, 116, 28, 1), _conv(24, 24, 56, 1),
        # ... and memory-bound ones: few channels on large maps
        _conv(16, 16, 112, 1), _conv(8, 96, 56, 1), _conv(96, 8, 56, 1),
        _conv(16, 16, 56, 3), _conv(8, 8, 112, 3), _conv(24, 24, 56, 3), _conv(32, 32, 28, 3),
        _conv(8, 8, 56, 3), _conv(32, 32, 56, 3), _conv(64, 64, 28, 3), _conv(128, 128, 14, 3),
        _conv(32, 32, 56, 1), _conv(32, 32, 28, 1), _conv(64, 64, 28, 1),
        # depthwise
        _conv(32, 32, 112, 3, groups=32), _conv(64, 64, 112, 3, 2, groups=64),
        _conv(96, 96, 112, 3, groups=96), _conv(16, 16, 56, 3, groups=16),
        _conv(144, 144, 56, 3, groups=144),
        _conv(116, 116, 28, 3, groups=116), _conv(240, 240, 28, 3, 2, groups=240),
        _conv(480, 480, 14, 3, groups=480), _conv(960, 960, 7, 3, groups=960),
        # grouped
        _conv(240, 240, 28, 1, groups=3), _conv(480, 480, 14, 1, groups=3),
        _conv(384, 384, 28, 1, groups=8), _conv(768, 768, 14, 1, groups=8),
        _conv(200, 200, 28, 1, groups=2), _conv(272, 272, 28, 1, groups=4),
        _conv(48, 48, 56, 1, groups=2), _conv(96, 96, 56, 1, groups=4),
        _conv(64, 64, 56, 1, groups=8), _conv(256, 256, 56, 1, groups=8),
        # ... and more points per width (8 to 64 channels per group) at other channel counts
        # and maps: the width table's mean per width then spans the kernels' choices
        _conv(128, 128, 28, 1, groups=4), _conv(512, 512, 14, 1, groups=16),
        _conv(128, 128, 28, 1, groups=8), _conv(64, 64, 56, 1, groups=4),
        _conv(128, 128, 28, 1, groups=2), _conv(256, 256, 14, 1, groups=4),
        _conv(64, 64, 28, 1, groups=8),
        # matmul (batch-1 matrix-vector products are in cold_matvec_benches)
        Bench("linear 128x512->512", "matmul", lambda: nn.Linear(512, 512), ((128, 512),)),
        # attention
        _fn("sdpa 1x8x128x64", "attention", F.scaled_dot_product_attention,
            *[(1, 8, 128, 64)] * 3),
        _fn("sdpa 1x8x512x64", "attention", F.scaled_dot_product_attention,
            *[(1, 8, 512, 64)] * 3),
        # element-wise
        _fn("relu 24x112x112", "elementwise", torch.relu, (1, 24, 112, 112)),
        _fn("relu 116x28x28", "elementwise", torch.relu, (1, 116, 28, 28)),
        _fn("relu 64x112x112", "elementwise", torch.relu, (1, 64, 112, 112)),
        _fn("add 64x56x56", "elementwise", torch.add, (1, 64, 56, 56), (1, 64, 56, 56)),
        _fn("add 256x14x14", "elementwise", torch.add, (1, 256, 14, 14), (1, 256, 14, 14)),
        _fn("mean 1024x7x7", "elementwise", lambda x: x.mean((2, 3)), (1, 1024, 7, 7)),
        # pooling
        Bench("maxpool3x3 s2 64 @112", "max_pool", lambda: nn.MaxPool2d(3, 2, 1),
              ((1, 64, 112, 112),)),
        Bench("maxpool3x3 s2 24 @112", "max_pool", lambda: nn.MaxPool2d(3, 2, 1),
              ((1, 24, 112, 112),)),
        Bench("avgpool3x3 s2 240 @28", "pooling", lambda: nn.AvgPool2d(3, 2, 1),
              ((1, 240, 28, 28),)),
        Bench("avgpool3x3 s2 24 @56", "pooling", lambda: nn.AvgPool2d(3, 2, 1),
              ((1, 24, 56, 56),)),
        # normalisation
        Bench("batchnorm 64 @112", "norm", lambda: nn.BatchNorm2d(64).eval(),
              ((1, 64, 112, 112),)),
        Bench("batchnorm 64 @56", "norm", lambda: nn.BatchNorm2d(64).eval(),
              ((1, 64, 56, 56),)),
        Bench("batchnorm 232 @14", "norm", lambda: nn.BatchNorm2d(232).eval(),
              ((1, 232, 14, 14),)),
        Bench("batchnorm 1024 @7", "norm", lambda: nn.BatchNorm2d(1024).eval(),
              ((1, 1024, 7, 7),)),
        Bench("layernorm 128x768", "norm", lambda: nn.LayerNorm(768), ((1, 128, 768),)),
        # data movement
        _fn("cat 2x58 @28", "data_movement", lambda a, b: torch.cat((a, b), 1),
            (1, 58, 28, 28), (1, 58, 28, 28)),
        _fn("cat 2x232 @7", "data_movement", lambda a, b: torch.cat((a, b), 1),
            (1, 232, 7, 7), (1, 232, 7, 7)),
        _fn("cat 2x116 @56", "data_movement", lambda a, b: torch.cat((a, b), 1),
            (1, 116, 56, 56), (1, 116, 56, 56)),
        _fn("shuffle 232 @14", "data_movement", _shuffle, (1, 232, 14, 14)),
        _fn("shuffle 240 @28", "data_movement", lambda x: _shuffle(x, 3), (1, 240, 28, 28)),
    ]
