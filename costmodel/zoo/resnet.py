"""ResNet-18 and ResNet-50, written from the paper's architecture table.

Plain :mod:`torch.nn` compositions with PyTorch's default parameter initialisation, so the
models can be built on the ``meta`` device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free convolution with "same" padding (``(k - 1) // 2``)."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2,
        bias=False,
    )


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or a 1x1 convolution + BN projection when the shape changes (option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        _conv(in_channels, out_channels, 1, stride=stride), nn.BatchNorm2d(out_channels)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN, ReLU after the first and after the residual add."""

    #: Ratio of a block's output channels to its width.
    expansion: int = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv(in_channels, width, 3, stride=stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, out_channels, 3)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand (x4), each with BN."""

    #: Ratio of a block's output channels to its width.
    expansion: int = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv(in_channels, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride=stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, out_channels, 1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Residual network for ImageNet.

    He et al., "Deep Residual Learning for Image Recognition", arXiv:1512.03385 (Table 1).

    7x7 stride-2 convolution with 64 channels + BN + ReLU, 3x3 stride-2 max pooling, four
    stages of ``layers[i]`` blocks with widths 64, 128, 256, 512 (stages 3-5 start with
    stride 2), global average pooling and a fully connected classifier with bias.
    Convolutions have no bias and are followed by batch normalisation; shortcuts that change
    the shape are 1x1 convolution + BN projections (the paper's option B).

    Deviation (the common "v1.5" variant): in a bottleneck block the stride sits on the 3x3
    convolution rather than on the first 1x1 convolution as in the paper. This raises
    ResNet-50 from the paper's 3.8 G to 4.09 G Mult-Adds; parameter counts are unchanged.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.default_cfg = {"input_size": (3, 224, 224)}
        self.stem = nn.Sequential(
            _conv(3, 64, 7, stride=2), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_channels = 64
        for index, (width, repeats) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks: list[nn.Module] = []
            for i in range(repeats):
                stride = 2 if index > 0 and i == 0 else 1
                blocks.append(block(in_channels, width, stride))
                in_channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = self.stages(x)
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


def resnet18() -> ResNet:
    """ResNet-18 (11.7 M parameters, 1.81 G Mult-Adds)."""
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50() -> ResNet:
    """ResNet-50 with the stride on the 3x3 convolution (25.6 M parameters, 4.09 G Mult-Adds)."""
    return ResNet(Bottleneck, (3, 4, 6, 3))
