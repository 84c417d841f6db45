"""A small model file used by the CLI tests, in the form users write them."""

import torch
from torch import nn

input_shape = (1, 3, 16, 16)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # depends on values: cannot be traced
            return x * 2
        return x


def make_two_inputs() -> nn.Module:
    class Two(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a @ b

    return Two()


class NeedsData(nn.Module):
    """Reads a tensor's value while it is built: construction on the meta device fails."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 64)
        self.scale = float(torch.ones(1).sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale
