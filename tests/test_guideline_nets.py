"""The ShuffleNetV2 paper's four benchmark networks: structure, widths and equal Mult-Adds.

Mult-Adds are measured with PyTorch's own FlopCounterMode (FLOPs / 2; these networks have
only convolutions that count) on meta tensors, independently of the cost model.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from costmodel.capture.load import load
from costmodel.zoo.guidelines import Variant, variants

#: The paper's widths make Mult-Adds equal to within 5.5% (G1's (22, 44) against (32, 32)).
TOLERANCE = 0.06


class OpNames(TorchDispatchMode):
    """Records the name of every aten op torch runs."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


def torch_madds(variant: Variant) -> int:
    with torch.device("meta"):
        model = variant.build().eval()
        x = torch.empty(variant.input_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def test_the_tables_rows_and_sizes() -> None:
    every = variants()
    assert len({v.name for v in every}) == len(every) == (4 + 4 + 5 + 4) * 3
    assert [len(variants(e)) for e in ("G1", "G2", "G3", "G4")] == [12, 12, 15, 12]
    assert all(v.input_shape[2:] == (56, 56) and v.input_shape[0] == 1 for v in every)
    by_name = {v.name: v for v in every}
    assert by_name["g1_1to2_x1"].label == "1:2"
    assert by_name["g1_1to2_x1"].paper == {"GPU": 1296, "ARM": 72.9}
    assert by_name["g2_g4_x2"].paper == {"GPU": 644, "CPU": 8.7}
    assert by_name["g3_2series_x1"].label == "2-fragment-series"
    assert by_name["g4_relu_noshortcut_x4"].label == "ReLU, no short-cut"
    assert by_name["g4_relu_noshortcut_x4"].paper["CPU"] == 5.2
    # x1 uses the paper's ARM/CPU widths; x2 and x4 double and quadruple them.
    assert [by_name[f"g1_1to12_{s}"].input_shape[1] for s in ("x1", "x2", "x4")] == [9, 18, 36]
    assert by_name["g2_g2_x1"].input_shape[1] == 90
    assert by_name["g3_1fragment_x4"].input_shape[1] == 256
    with pytest.raises(ValueError, match="unknown experiment"):
        variants("G5")


def test_quick_is_the_same_rows_small() -> None:
    quick = variants(quick=True)
    assert [(v.experiment, v.label) for v in quick] == [
        (v.experiment, v.label) for v in variants() if v.scale == "x1"]
    assert all(v.input_shape[2:] == (14, 14) for v in quick)


def test_g1_madds_by_hand() -> None:
    """10 blocks of two 1x1 convs at 56x56: 10 * 2 * 56*56 * c1*c2."""
    (v,) = [v for v in variants("G1") if v.name == "g1_1to6_x1"]
    assert torch_madds(v) == 10 * 2 * 56 * 56 * 13 * 78


def test_blocks_are_the_papers() -> None:
    """Layer counts and shapes of one block of each experiment."""
    def convs(name: str) -> list[nn.Conv2d]:
        (v,) = [v for v in variants() if v.name == name]
        with torch.device("meta"):
            return [m for m in v.build().modules() if isinstance(m, nn.Conv2d)]

    g1 = convs("g1_1to2_x1")
    assert len(g1) == 20 and (g1[0].in_channels, g1[0].out_channels) == (22, 44)
    assert (g1[1].in_channels, g1[1].out_channels) == (44, 22)
    g2 = convs("g2_g8_x1")
    assert len(g2) == 10 and all(c.groups == 8 and c.kernel_size == (1, 1) for c in g2)
    assert len(convs("g3_4series_x1")) == len(convs("g3_4parallel_x1")) == 40
    g4 = convs("g4_relu_shortcut_x1")
    assert [c.kernel_size[0] for c in g4[:3]] == [1, 3, 1]
    assert [(c.in_channels, c.out_channels) for c in g4[:3]] == [(32, 8), (8, 8), (8, 32)]


def test_g4_switches_relu_and_shortcut() -> None:
    """The G4 variants differ only by ReLUs and the shortcut add: count them as torch runs."""
    counts = {}
    for v in variants("G4", quick=True):
        with torch.device("meta"):
            model = v.build().eval()
        with OpNames() as spy, torch.no_grad():
            model(torch.empty(v.input_shape, device="meta"))
        seen = spy.names
        counts[v.label] = (sum("relu" in s for s in seen), sum(s.startswith("add") for s in seen))
    assert counts == {"ReLU, short-cut": (30, 10), "ReLU, no short-cut": (30, 0),
                      "no ReLU, short-cut": (0, 10), "no ReLU, no short-cut": (0, 0)}


@pytest.mark.parametrize("experiment", ["G1", "G2", "G3", "G4"])
@pytest.mark.parametrize("scale", ["x1", "x2", "x4"])
def test_equal_madds_within_an_experiment(experiment: str, scale: str) -> None:
    madds = [torch_madds(v) for v in variants(experiment) if v.scale == scale]
    assert max(madds) <= min(madds) * (1 + TOLERANCE)


def test_a_network_is_a_target() -> None:
    loaded = load("costmodel.zoo.guidelines:g2_g8_x1", None, torch.float32)
    assert [s.shape for s in loaded.inputs] == [(1, 184, 56, 56)]
