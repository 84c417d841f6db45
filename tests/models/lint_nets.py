"""Small models built to break one ShuffleNetV2 guideline each, for the lint tests. Every
input is 8x8 (h*w = 64) with a batch of one; convolutions are 1x1 and bias-free."""

from itertools import pairwise

import torch
from torch import nn

input_shape = (1, 16, 8, 8)


def _conv(c_in: int, c_out: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False)


def unequal_stack() -> nn.Module:
    """G1: 16 -> 16 (reads the input), then 16 -> 64 -> 16."""
    return nn.Sequential(_conv(16, 16), _conv(16, 64), _conv(64, 16))


def grouped_stack() -> nn.Module:
    """G2: 16 -> 32, then three 32 -> 32 convs in 8 groups, then a depthwise 32 -> 32."""
    return nn.Sequential(_conv(16, 32), *(_conv(32, 32, groups=8) for _ in range(3)),
                         nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False))


class FourBranches(nn.Module):
    """G3: four 1x1 convs 16 -> 16 on the same input, summed."""

    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_conv(16, 16) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class Serial(nn.Module):
    """Two 1x1 convs 16 -> 16 in series: one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = _conv(16, 16), _conv(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def parallel_block() -> nn.Module:
    return nn.Sequential(Serial(), FourBranches())


class ReluAdd(nn.Module):
    """G4: relu(relu(conv(x)) + x): a 1x1 conv 16 -> 16, two ReLUs and an add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv(16, 16)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.relu(self.conv(x)) + x)


def relu_add() -> nn.Module:
    return nn.Sequential(_conv(16, 16), ReluAdd())


class Chain(nn.Module):
    """1x1 convs in series through the given widths."""

    def __init__(self, *widths: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(a, b) for a, b in pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return x


def fragmented_block() -> nn.Module:
    """G3 by density: two blocks 32 -> 32 -> 32, then 32 -> 8 -> 8 -> 8 -> 32 (4 small ops)."""
    return nn.Sequential(_conv(16, 32), Chain(32, 32, 32), Chain(32, 32, 32),
                         Chain(32, 8, 8, 8, 32))


class ThreeLinears(nn.Module):
    """G3 on tokens: three 8 -> 8 linear layers on one (1, 4, 8) input, summed."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(8, 8, bias=False) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x) + self.k(x) + self.v(x)


def three_linears() -> nn.Module:
    """Takes a (1, 4, 8) input: 4 tokens of 8 features."""
    return nn.Sequential(ThreeLinears())
