"""The four benchmark networks of the ShuffleNetV2 paper (Ma et al., ECCV 2018, section 2 and
appendix), one per guideline, each at three sizes.

Every network takes a 56x56 input and stacks a building block 10 times; within an experiment
the variants have (nearly) equal Mult-Adds, so a difference in speed comes from what Mult-Adds
miss (MAC, fragmentation, element-wise work). The blocks:

- **G1** two 1x1 convolutions ``c1 -> c2 -> c1`` at the ratios 1:1, 1:2, 1:6, 1:12.
- **G2** one 1x1 convolution ``c -> c`` with ``g`` = 1, 2, 4, 8 groups, ``c`` widened with ``g``.
- **G3** 1, 2 or 4 1x1 convolutions ``c' -> c'`` in series, or 2 or 4 in parallel on the same
  input, their outputs summed; ``c' = c / sqrt(k)`` for ``k`` fragments keeps Mult-Adds equal.
- **G4** the ResNet bottleneck ``c -> c/4`` (1x1) ``-> c/4`` (3x3) ``-> c`` (1x1), with or
  without its three ReLUs and with or without the shortcut add.

Widths. The paper gives two sets: GPU widths and, four times smaller, ARM/CPU widths (G1:
(32, 32), (22, 44), (13, 78), (9, 108); G2: c = 64, 90, 128, 180; G3: c = 64; G4: c = 32).
costmodel measures on the user's CPU by default, so the x1 networks use the **ARM/CPU widths**.
``x2`` and ``x4`` multiply every width by 2 and 4 (Mult-Adds by 4 and 16), as the paper's G3
and G4 column headers (c = 64, 128, 256) show and as its 3.5-4x throughput steps in every table
confirm. One deviation: the paper's CPU c = 180 at g = 8 is not a multiple of 8; 184 (23
channels per group) is the nearest that is. Mult-Adds within an experiment agree to within
6% (the paper's own 1:2 pair, (22, 44), is 5.5% below 1:1).

No batch norm: at inference it folds into the convolutions, and the paper's G1-G3 blocks have
none. Weights are initialised so that activations keep their scale through the 10 blocks
(variance ``1 / fan_in``, doubled before a ReLU, shared among summed branches); PyTorch's
default would shrink them towards denormal floats, which CPUs process slowly.

``paper`` holds the paper's measured throughput for each cell, by platform: "GPU" (G1 in
batches/s, as the paper reports it), "ARM" (G1, images/s) and "CPU" (G2-G4, images/s).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["EXPERIMENTS", "SCALES", "Variant", "variants"]

#: Experiment name -> the guideline it tests, in words.
EXPERIMENTS: dict[str, str] = {
    "G1": "equal channel width minimises MAC",
    "G2": "excessive group convolution increases MAC",
    "G3": "network fragmentation reduces parallelism",
    "G4": "element-wise operations are non-negligible",
}
#: Scale name -> width multiplier.
SCALES: dict[str, int] = {"x1": 1, "x2": 2, "x4": 4}
SIZE = 56
QUICK_SIZE = 14
BLOCKS = 10


@dataclass(frozen=True)
class Variant:
    """One cell of a paper table: a network, its input shape and the paper's throughput."""

    name: str
    experiment: str
    label: str
    scale: str
    input_shape: tuple[int, ...]
    paper: dict[str, float]
    factory: Callable[[], nn.Module] = field(repr=False, compare=False)
    widths: tuple[int, ...] = ()

    def build(self) -> nn.Module:
        """A fresh network (on the current default device), with ``default_cfg`` set so the
        loader finds its input size."""
        model = self.factory()
        model.default_cfg = {"input_size": self.input_shape[1:]}
        return model


def _conv(c_in: int, c_out: int, kernel: int = 1, groups: int = 1,
          gain: float = 1.0) -> nn.Conv2d:
    """A bias-free convolution whose output keeps its input's scale (times ``gain``)."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False)
    nn.init.normal_(conv.weight, std=gain / math.sqrt(conv.weight[0].numel()))
    return conv


class Stack(nn.Module):
    """``BLOCKS`` copies of a block, in series."""

    def __init__(self, make_block: Callable[[], nn.Module], blocks: int = BLOCKS) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(make_block() for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Parallel(nn.Module):
    """Branches on the same input, joined by summing their outputs (G3's parallel blocks)."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class Bottleneck(nn.Module):
    """ResNet's bottleneck without batch norm; ``relu`` and ``shortcut`` switch G4's parts."""

    def __init__(self, channels: int, relu: bool, shortcut: bool) -> None:
        super().__init__()
        inner = channels // 4
        gain = math.sqrt(2) if relu else 1.0  # a ReLU halves the variance
        self.conv1 = _conv(channels, inner, gain=gain)
        self.conv2 = _conv(inner, inner, kernel=3, gain=gain)
        self.conv3 = _conv(inner, channels, gain=gain / (math.sqrt(2) if shortcut else 1))
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        out = self.conv3(out)
        if self.shortcut:
            out = out + x
        return self.relu(out)


def _g1(c1: int, c2: int) -> Callable[[], nn.Module]:
    return lambda: Stack(lambda: nn.Sequential(_conv(c1, c2), _conv(c2, c1)))


def _g2(c: int, groups: int) -> Callable[[], nn.Module]:
    return lambda: Stack(lambda: _conv(c, c, groups=groups))


def _g3(c: int, fragments: int, parallel: bool) -> Callable[[], nn.Module]:
    if parallel:
        gain = 1 / math.sqrt(fragments)  # the sum of k branches has k times the variance
        return lambda: Stack(lambda: Parallel([_conv(c, c, gain=gain)
                                               for _ in range(fragments)]))
    return lambda: Stack(lambda: nn.Sequential(*(_conv(c, c) for _ in range(fragments))))


def _g4(c: int, relu: bool, shortcut: bool) -> Callable[[], nn.Module]:
    return lambda: Stack(lambda: Bottleneck(c, relu, shortcut))


# (name, label, x1 widths, factory(widths), paper throughput by platform for x1, x2, x4)
_Row = tuple[str, str, tuple[int, ...], Callable[..., Callable[[], nn.Module]],
             dict[str, tuple[float, float, float]]]

_ROWS: dict[str, list[_Row]] = {
    "G1": [
        ("g1_1to1", "1:1", (32, 32), _g1, {"GPU": (1480, 723, 232), "ARM": (76.2, 21.7, 5.3)}),
        ("g1_1to2", "1:2", (22, 44), _g1, {"GPU": (1296, 586, 206), "ARM": (72.9, 20.5, 5.1)}),
        ("g1_1to6", "1:6", (13, 78), _g1, {"GPU": (876, 489, 189), "ARM": (69.1, 17.9, 4.6)}),
        ("g1_1to12", "1:12", (9, 108), _g1,
         {"GPU": (748, 392, 163), "ARM": (57.6, 15.1, 4.4)}),
    ],
    "G2": [
        ("g2_g1", "g=1", (64,), lambda c: _g2(c, 1),
         {"GPU": (2451, 1289, 437), "CPU": (40.0, 10.2, 2.3)}),
        ("g2_g2", "g=2", (90,), lambda c: _g2(c, 2),
         {"GPU": (1725, 873, 341), "CPU": (35.0, 9.5, 2.2)}),
        ("g2_g4", "g=4", (128,), lambda c: _g2(c, 4),
         {"GPU": (1026, 644, 338), "CPU": (32.9, 8.7, 2.1)}),
        ("g2_g8", "g=8", (184,), lambda c: _g2(c, 8),
         {"GPU": (634, 445, 230), "CPU": (27.8, 7.5, 1.8)}),
    ],
    "G3": [
        ("g3_1fragment", "1-fragment", (64,), lambda c: _g3(c, 1, False),
         {"GPU": (2446, 1274, 434), "CPU": (40.2, 10.1, 2.3)}),
        ("g3_2series", "2-fragment-series", (45,), lambda c: _g3(c, 2, False),
         {"GPU": (1790, 909, 336), "CPU": (38.6, 10.1, 2.2)}),
        ("g3_4series", "4-fragment-series", (32,), lambda c: _g3(c, 4, False),
         {"GPU": (752, 745, 349), "CPU": (38.4, 10.1, 2.3)}),
        ("g3_2parallel", "2-fragment-parallel", (45,), lambda c: _g3(c, 2, True),
         {"GPU": (1537, 803, 320), "CPU": (33.4, 9.1, 2.2)}),
        ("g3_4parallel", "4-fragment-parallel", (32,), lambda c: _g3(c, 4, True),
         {"GPU": (691, 572, 292), "CPU": (35.0, 8.4, 2.1)}),
    ],
    "G4": [
        ("g4_relu_shortcut", "ReLU, short-cut", (32,), lambda c: _g4(c, True, True),
         {"GPU": (2427, 2066, 1436), "CPU": (56.7, 16.9, 5.0)}),
        ("g4_relu_noshortcut", "ReLU, no short-cut", (32,), lambda c: _g4(c, True, False),
         {"GPU": (2647, 2256, 1735), "CPU": (61.9, 18.8, 5.2)}),
        ("g4_norelu_shortcut", "no ReLU, short-cut", (32,), lambda c: _g4(c, False, True),
         {"GPU": (2672, 2121, 1458), "CPU": (57.3, 18.2, 5.1)}),
        ("g4_norelu_noshortcut", "no ReLU, no short-cut", (32,),
         lambda c: _g4(c, False, False),
         {"GPU": (2842, 2376, 1782), "CPU": (66.3, 20.2, 5.4)}),
    ],
}

def variants(experiment: str | None = None, quick: bool = False) -> list[Variant]:
    """Every benchmark network, in table order (experiment, row, scale), or one experiment's.

    ``quick`` gives the same rows at ``x1`` only, on a 14x14 input (16 times fewer
    Mult-Adds): the same structure in milliseconds, for smoke tests.
    """
    if experiment is not None and experiment not in _ROWS:
        raise ValueError(f"unknown experiment {experiment!r} (expected one of "
                         f"{', '.join(_ROWS)})")
    out = []
    for exp in [experiment] if experiment else list(_ROWS):
        for name, label, widths, factory, paper in _ROWS[exp]:
            for index, (scale, multiplier) in enumerate(SCALES.items()):
                if quick and scale != "x1":
                    continue
                size = QUICK_SIZE if quick else SIZE
                sized = tuple(w * multiplier for w in widths)
                out.append(Variant(
                    name=f"{name}_{scale}",
                    experiment=exp, label=label, scale=scale,
                    input_shape=(1, sized[0], size, size),
                    paper={platform: cells[index] for platform, cells in paper.items()},
                    factory=factory(*sized), widths=sized))
    return out



def __getattr__(name: str) -> Callable[[], nn.Module]:
    """Each network by name, so that a TARGET like ``costmodel.zoo.guidelines:g2_g8_x1``
    works with every command."""
    for variant in variants():
        if variant.name == name:
            return variant.build
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
