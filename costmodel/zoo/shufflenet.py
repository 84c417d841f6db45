"""ShuffleNet V1 and V2, written from the papers' architecture tables.

Both models are plain :mod:`torch.nn` compositions and use only PyTorch's default parameter
initialisation, so they can be built on the ``meta`` device.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ShuffleNetV1",
    "ShuffleNetV2",
    "channel_shuffle",
    "shufflenet_v1_g1",
    "shufflenet_v1_g2",
    "shufflenet_v1_g3",
    "shufflenet_v1_g4",
    "shufflenet_v1_g8",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel shuffle: view ``(N, C, H, W)`` as ``(N, g, C/g, H, W)``, swap axes 1 and 2.

    Afterwards the channels of each of the ``g`` groups are interleaved, so that a following
    grouped convolution sees inputs from every group of the preceding one.
    """
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(n, c, h, w)


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    relu: bool = False,
) -> nn.Sequential:
    """``Conv2d(bias=False)`` -> ``BatchNorm2d`` -> optional ``ReLU``, with "same" padding."""
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
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# ShuffleNet V1
# --------------------------------------------------------------------------------------------

#: Output channels of stages 2, 3 and 4 for each number of groups (paper, Table 1).
SHUFFLENET_V1_STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}

#: Units per stage (stages 2, 3, 4): the first of each has stride 2.
_STAGE_REPEATS: tuple[int, int, int] = (4, 8, 4)


class ShuffleUnitV1(nn.Module):
    """ShuffleNet unit (paper, Fig. 2 (b) and (c)).

    Grouped 1x1 conv + BN + ReLU -> channel shuffle -> 3x3 depthwise conv + BN -> grouped 1x1
    conv + BN. A stride-1 unit adds its input and applies ReLU; a stride-2 unit concatenates
    the branch with a 3x3 average pool (stride 2, padding 1) of its input and applies ReLU, so
    its branch produces ``out_channels - in_channels`` channels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        stride: int,
        group_first_conv: bool = True,
    ) -> None:
        super().__init__()
        self.stride = stride
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        bottleneck = out_channels // 4
        first_groups = groups if group_first_conv else 1
        # A shuffle after an ungrouped convolution only permutes channels, so it is skipped.
        self.shuffle_groups = first_groups
        self.compress = _conv_bn(in_channels, bottleneck, 1, groups=first_groups, relu=True)
        self.depthwise = _conv_bn(bottleneck, bottleneck, 3, stride=stride, groups=bottleneck)
        self.expand = _conv_bn(bottleneck, branch_out, 1, groups=groups)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compress(x)
        if self.shuffle_groups > 1:
            out = channel_shuffle(out, self.shuffle_groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 2:
            return self.relu(torch.cat((self.shortcut(x), out), dim=1))
        return self.relu(out + x)


class ShuffleNetV1(nn.Module):
    """ShuffleNet (V1).

    Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
    Devices", arXiv:1707.01083 (Table 1, Fig. 2).

    3x3 stride-2 convolution with 24 channels + BN + ReLU, 3x3 stride-2 max pooling, three
    stages of 4 / 8 / 4 ShuffleNet units whose output channels depend on the number of groups
    ``g`` (Table 1), global average pooling and a fully connected classifier with bias.
    Bottleneck width is a quarter of the stage's output channels. The first pointwise
    convolution of stage 2 is not grouped because its input has only 24 channels.

    ``scale`` is the paper's "ShuffleNet s x" multiplier on the stage channels (the 24-channel
    stem is kept). Deviations: scaled stage channels are rounded to a multiple of ``4 * g`` so
    that every grouped layer divides evenly (no rounding happens at ``scale=1.0``); the channel
    shuffle after the ungrouped first pointwise convolution of stage 2 is omitted, being a
    mere channel permutation there; the stem has BN + ReLU, which the paper's table leaves
    implicit.

    Mult-Adds at 224x224, ``scale=1.0``: 143.1 / 140.8 / 137.5 / 134.3 / 138.4 M for
    ``g`` = 1 / 2 / 3 / 4 / 8 (the paper's Table 1: 143 / 140 / 137 / 133 / 137 M; within 1 %).
    """

    def __init__(self, groups: int = 3, scale: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        if groups not in SHUFFLENET_V1_STAGE_CHANNELS:
            raise ValueError(
                f"groups must be one of {sorted(SHUFFLENET_V1_STAGE_CHANNELS)}, got {groups}"
            )
        self.default_cfg = {"input_size": (3, 224, 224)}
        multiple = 4 * groups
        stage_channels = [
            max(multiple, round(c * scale / multiple) * multiple)
            for c in SHUFFLENET_V1_STAGE_CHANNELS[groups]
        ]

        self.stem = _conv_bn(3, 24, 3, stride=2, relu=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_channels = 24
        for stage_index, (out_channels, repeats) in enumerate(
            zip(stage_channels, _STAGE_REPEATS, strict=True)
        ):
            units: list[nn.Module] = []
            for i in range(repeats):
                units.append(
                    ShuffleUnitV1(
                        in_channels,
                        out_channels,
                        groups,
                        stride=2 if i == 0 else 1,
                        group_first_conv=not (stage_index == 0 and i == 0),
                    )
                )
                in_channels = out_channels
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = self.stages(x)
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


# --------------------------------------------------------------------------------------------
# ShuffleNet V2
# --------------------------------------------------------------------------------------------

#: Output channels of conv1, stages 2-4 and conv5 for each model size (paper, Table 5).
SHUFFLENET_V2_CHANNELS: dict[float, tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


class ShuffleUnitV2(nn.Module):
    """ShuffleNet V2 unit (paper, Fig. 3 (c) basic unit and (d) down-sampling unit).

    Basic unit (stride 1): split the channels in halves; one half passes through 1x1 conv +
    BN + ReLU -> 3x3 depthwise conv + BN -> 1x1 conv + BN + ReLU and is concatenated with the
    untouched half. Down-sampling unit (stride 2): no split; the left branch is 3x3 depthwise
    conv (stride 2) + BN -> 1x1 conv + BN + ReLU, the right branch is the basic branch with a
    stride-2 depthwise conv, and both are concatenated, doubling the channels. Both end with
    a channel shuffle with 2 groups.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = out_channels // 2
        if stride == 1:
            if in_channels != out_channels:
                raise ValueError("a stride-1 unit keeps the channel count")
            self.left: nn.Module = nn.Identity()
            branch_in = half
        else:
            self.left = nn.Sequential(
                _conv_bn(in_channels, in_channels, 3, stride=2, groups=in_channels),
                _conv_bn(in_channels, half, 1, relu=True),
            )
            branch_in = in_channels
        self.right = nn.Sequential(
            _conv_bn(branch_in, half, 1, relu=True),
            _conv_bn(half, half, 3, stride=stride, groups=half),
            _conv_bn(half, half, 1, relu=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            identity, x = x.chunk(2, dim=1)
            out = torch.cat((identity, self.right(x)), dim=1)
        else:
            out = torch.cat((self.left(x), self.right(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2.

    Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    arXiv:1807.11164 (Table 5, Fig. 3).

    conv1 (3x3 stride 2, 24 channels) + BN + ReLU, 3x3 stride-2 max pooling, three stages of
    4 / 8 / 4 units (the first of each a down-sampling unit), conv5 (1x1, 1024 channels, 2048
    for 2.0x) + BN + ReLU, global average pooling and a fully connected classifier with bias.
    ``scale`` selects the column of Table 5: 0.5, 1.0, 1.5 or 2.0.

    Deviations: none in the layers listed above; this is the plain Table 5 network (the
    paper's larger models with squeeze-and-excitation and residual connections are not
    built). At 224x224 the four sizes have 40.5 / 144.9 / 295.8 / 583.3 M conv + FC
    Mult-Adds and 1,366,792 / 2,278,604 / 3,503,624 / 7,393,996 parameters. Table 5 lists
    41 / 146 / 299 / 591 M FLOPs, 0.8-1.3 % more; the paper does not say what the extra
    count covers.
    """

    def __init__(self, scale: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        if scale not in SHUFFLENET_V2_CHANNELS:
            raise ValueError(f"scale must be one of {sorted(SHUFFLENET_V2_CHANNELS)}, got {scale}")
        self.default_cfg = {"input_size": (3, 224, 224)}
        conv1, *stage_channels, conv5 = SHUFFLENET_V2_CHANNELS[scale]

        self.conv1 = _conv_bn(3, conv1, 3, stride=2, relu=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_channels = conv1
        for out_channels, repeats in zip(stage_channels, _STAGE_REPEATS, strict=True):
            units: list[nn.Module] = []
            for i in range(repeats):
                units.append(ShuffleUnitV2(in_channels, out_channels, 2 if i == 0 else 1))
                in_channels = out_channels
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.conv5 = _conv_bn(in_channels, conv5, 1, relu=True)
        self.fc = nn.Linear(conv5, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stages(x))
        x = x.mean(dim=(2, 3))
        return self.fc(x)


def shufflenet_v1_g1() -> ShuffleNetV1:
    """ShuffleNet 1x, g = 1 (143 M Mult-Adds)."""
    return ShuffleNetV1(groups=1)


def shufflenet_v1_g2() -> ShuffleNetV1:
    """ShuffleNet 1x, g = 2 (140 M Mult-Adds)."""
    return ShuffleNetV1(groups=2)


def shufflenet_v1_g3() -> ShuffleNetV1:
    """ShuffleNet 1x, g = 3 (137 M Mult-Adds)."""
    return ShuffleNetV1(groups=3)


def shufflenet_v1_g4() -> ShuffleNetV1:
    """ShuffleNet 1x, g = 4 (133 M Mult-Adds)."""
    return ShuffleNetV1(groups=4)


def shufflenet_v1_g8() -> ShuffleNetV1:
    """ShuffleNet 1x, g = 8 (137 M Mult-Adds)."""
    return ShuffleNetV1(groups=8)


def shufflenet_v2_x0_5() -> ShuffleNetV2:
    """ShuffleNet V2 0.5x (1.37 M parameters)."""
    return ShuffleNetV2(scale=0.5)


def shufflenet_v2_x1_0() -> ShuffleNetV2:
    """ShuffleNet V2 1.0x (2.28 M parameters)."""
    return ShuffleNetV2(scale=1.0)


def shufflenet_v2_x1_5() -> ShuffleNetV2:
    """ShuffleNet V2 1.5x (3.50 M parameters)."""
    return ShuffleNetV2(scale=1.5)


def shufflenet_v2_x2_0() -> ShuffleNetV2:
    """ShuffleNet V2 2.0x (7.39 M parameters)."""
    return ShuffleNetV2(scale=2.0)
