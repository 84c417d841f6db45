"""MobileNet V1 and V2, written from the papers' architecture tables.

Both models are plain :mod:`torch.nn` compositions (``nn.Conv2d``, ``nn.BatchNorm2d``,
``nn.ReLU``/``nn.ReLU6``, ``nn.Linear``) and use only PyTorch's default parameter
initialisation, so they can be built on the ``meta`` device.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileNetV1", "MobileNetV2", "make_divisible", "mobilenet_v1", "mobilenet_v2"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below 90 % of it.

    This is the channel-rounding rule of the MobileNetV2 reference implementation; it keeps
    every layer width a multiple of ``divisor`` for any width multiplier.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """``Conv2d(bias=False)`` -> ``BatchNorm2d`` -> optional activation, with "same" padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


# --------------------------------------------------------------------------------------------
# MobileNet V1
# --------------------------------------------------------------------------------------------

#: (output channels, stride) of the 13 depthwise-separable blocks (paper, Table 1).
_MOBILENET_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv + BN + ReLU followed by 1x1 pointwise conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            ConvBNAct(in_channels, in_channels, 3, stride=stride, groups=in_channels),
            ConvBNAct(in_channels, out_channels, 1),
        )


class MobileNetV1(nn.Module):
    """MobileNet V1.

    Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
    Applications", arXiv:1704.04861 (Table 1).

    A standard 3x3 stride-2 convolution with 32 channels, 13 depthwise-separable blocks
    (3x3 depthwise conv + BN + ReLU, 1x1 pointwise conv + BN + ReLU), global average pooling
    and a fully connected classifier. All convolutions have ``bias=False`` and are followed by
    batch normalisation; the classifier has a bias. The width multiplier ``alpha`` scales every
    channel count to ``int(c * alpha)``; the resolution multiplier only changes the input size
    recorded in ``default_cfg``.

    At ``width_mult=1.0`` and 224x224 input this is 568,740,352 Mult-Adds and 4,209,088
    conv + FC weights (the paper's 569 M and 4.2 M).

    Deviations from the paper's Table 1: the last depthwise layer has stride 1, not the
    listed stride 2 (the feature map stays 7x7, as the table's input sizes show); the model
    returns logits (no softmax layer).
    """

    def __init__(
        self, width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.default_cfg = {"input_size": (3, resolution, resolution)}

        def ch(c: int) -> int:
            return int(c * width_mult)

        layers: list[nn.Module] = [ConvBNAct(3, ch(32), 3, stride=2)]
        in_channels = ch(32)
        for out, stride in _MOBILENET_V1_BLOCKS:
            layers.append(DepthwiseSeparable(in_channels, ch(out), stride))
            in_channels = ch(out)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


# --------------------------------------------------------------------------------------------
# MobileNet V2
# --------------------------------------------------------------------------------------------

#: (expansion t, output channels c, repeats n, first stride s) (paper, Table 2).
_MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Inverted residual: 1x1 expansion + 3x3 depthwise + linear 1x1 projection.

    The expansion layer is omitted when the expansion factor is 1. The input is added to the
    output when the stride is 1 and the channel counts match.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden, activation=nn.ReLU6),
            ConvBNAct(hidden, out_channels, 1, activation=None),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet V2.

    Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    arXiv:1801.04381 (Table 2).

    A 3x3 stride-2 convolution with 32 channels, the 17 inverted-residual bottlenecks of the
    paper's (t, c, n, s) table with ReLU6, a 1x1 convolution to 1280 channels, global average
    pooling, dropout (p = 0.2) and a fully connected classifier. Every convolution has
    ``bias=False`` and is followed by batch normalisation; the classifier has a bias.

    Channel counts are ``make_divisible(c * width_mult, 8)``, and the last convolution keeps
    at least 1280 channels for width multipliers below 1, as in the authors' reference
    implementation. At ``width_mult=1.0`` and 224x224 input: 300,774,272 Mult-Adds (the
    paper's 300 M) and 3,504,872 parameters, of which 3,469,760 are conv and FC weights (the
    paper's Table 4 lists 3.4 M).
    """

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        self.default_cfg = {"input_size": (3, 224, 224)}
        in_channels = make_divisible(32 * width_mult)
        last_channels = make_divisible(1280 * max(1.0, width_mult))

        layers: list[nn.Module] = [ConvBNAct(3, in_channels, 3, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in _MOBILENET_V2_SETTINGS:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t))
                in_channels = out_channels
        layers.append(ConvBNAct(in_channels, last_channels, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


def mobilenet_v1() -> MobileNetV1:
    """MobileNet V1 1.0-224 (569 M Mult-Adds, 4.2 M weights)."""
    return MobileNetV1()


def mobilenet_v2() -> MobileNetV2:
    """MobileNet V2 1.0-224 (300 M Mult-Adds, 3.5 M parameters)."""
    return MobileNetV2()
