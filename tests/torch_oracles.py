"""Counts torch itself gives, for tests whose expectation FlopCounterMode does not cover."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def window_elements(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                    padding: Sequence[int], ceil_mode: bool) -> int:
    """What the pool's windows read, counted by torch: a sum-pool of ones that leaves the
    padding out gives each output the number of input elements its window covers."""
    ones = torch.ones(shape)
    return int(torch.nn.functional.avg_pool2d(ones, kernel, stride, padding, ceil_mode,
                                              count_include_pad=False,
                                              divisor_override=1).sum())
