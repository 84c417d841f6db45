"""The pytest plugin, run in a throwaway pytest process that finds it through its entry point:
a model over its budget fails the test with the check's report, one within it passes.

The model: linear 16->WIDTH, relu, linear WIDTH->2 on a 1x16 input (no biases). MAC, elements
read + written: fc1 16 + 16W + W, relu 2W, fc2 W + 2W + 2, so 18 + 22W; at W=8 that is 194.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch  # noqa: F401  # before pytester's sys.modules snapshot: torch cannot load twice

pytest_plugins = ["pytester"]

MODEL = """
import pytest
import torch
from torch import nn

WIDTH = {width}


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, WIDTH, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(WIDTH, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
"""

TESTS = """

@pytest.mark.costmodel(max_mac=194)
def test_fits(costmodel_budget):
    record = costmodel_budget(Mlp(), input_shape=(1, 16))
    assert record.totals["mac"] == 194


@pytest.mark.costmodel(max_mac="0.193K")
def test_over_by_one(costmodel_budget):
    costmodel_budget(Mlp(), input_shape=(1, 16))


def test_limit_in_the_call(costmodel_budget):
    costmodel_budget(Mlp(), (1, 16), modules={"fc1": {"max_params": 127}})
"""


BASELINE_TEST = """

@pytest.mark.costmodel(baseline="lock.json", tolerance="1%")
def test_against_baseline(costmodel_budget):
    costmodel_budget(Mlp(), (1, 16), name="mlp.py:Mlp")
"""


def test_entry_point_registers_the_plugin() -> None:
    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("costmodel") == "costmodel.pytest_plugin"


def test_budget_fails_over_and_passes_within(pytester: pytest.Pytester) -> None:
    """One pytest process runs both files (each run pays for importing torch)."""
    from costmodel.cli import main

    pytester.makepyfile(mlp=MODEL.format(width=8))
    assert main(["baseline", "mlp.py:Mlp", "--input-shape", "1,16", "-o", "lock.json"]) == 0
    pytester.makepyfile(test_model=MODEL.format(width=8) + TESTS,
                        test_wide=MODEL.format(width=12) + BASELINE_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert "FAILED test_model.py::test_over_by_one - Failed: costmodel budget exceeded" in out
    assert "Mlp: MAC 194 exceeds max_mac = 193 by 1" in out
    assert "Params of module 'fc1' 128 exceeds modules['fc1'].max_params = 127 by 1" in out
    # against the baseline, the same report as `costmodel check`: totals and what moved.
    # fc1: 16 + 16W + W grows by 17*4 = 68; act: 2W by 8; fc2: 3W + 2 by 12; total 22*4 = 88
    assert "above the baseline by more than 1%: MAC 194 -> 282 (+88, +45.36%)" in out
    result.stdout.fnmatch_lines(["*Modules that moved most*", "*fc1*152*220*+68*",
                                 "*fc2*26*38*+12*", "*act*16*24*+8*"])


def test_loading_the_plugin_does_not_import_torch() -> None:
    """pytest loads the plugin in every run of an environment that has costmodel: it must not
    make unrelated test suites pay for importing torch."""
    import subprocess
    import sys

    code = ("import sys, costmodel.pytest_plugin; "
            "print('torch' in sys.modules, 'costmodel.analysis' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_public_names_resolve() -> None:
    import costmodel

    for name in costmodel.__all__:
        assert getattr(costmodel, name) is not None
    with pytest.raises(AttributeError):
        _ = costmodel.no_such_name
