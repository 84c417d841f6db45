"""Memory from liveness: hand-derived on a small model, against the live-bytes curve torch's
profiler records on the CPU, against the storages autograd saves, symbolic in a free batch
size, and through the `memory` and `check` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sympy
import torch
from torch import nn

from costmodel.cli import main
from costmodel.views.memory import analyze_memory
from costmodel.views.memory_measure import measure_peak, saved_tensor_bytes
from costmodel.zoo import MODELS

pytest_plugins = ["pytester"]

CONTRACT = {"schema", "model", "params_bytes", "grads_bytes", "optimizer_bytes",
            "saved_activation_bytes", "peak_activation_bytes", "peak_bytes", "peak_at"}


class Chain(nn.Module):
    """x (3x4) -> a: Linear 4->8 -> relu -> b: Linear 8->2, no biases."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8, bias=False)
        self.b = nn.Linear(8, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _meta(factory: type[nn.Module] | object) -> nn.Module:
    with torch.device("meta"):
        return factory()  # type: ignore[operator]


def test_inference_liveness_by_hand() -> None:
    """a's output (3x8 floats, 96 B) lives until relu reads it; at relu both are alive (192 B),
    the peak; at b, relu's output and b's (24 B). Parameters (32 + 16) x 4 B, input 48 B."""
    memory = analyze_memory(_meta(Chain), input_shape=(3, 4))
    assert memory.peak_activation_bytes == 192
    assert memory.peak_at == {"node": "relu_default", "module": ""}
    assert (memory.params_bytes, memory.inputs_bytes) == (192, 48)
    assert memory.peak_bytes == 192 + 48 + 192
    assert (memory.grads_bytes, memory.optimizer_bytes, memory.saved_activation_bytes) == (
        0, 0, 0)


def test_training_memory_by_hand() -> None:
    """Saved for backward: x (a's weight gradient, 48 B) and relu's output (relu's own
    backward and b's weight gradient, 96 B); a's output is not saved. Gradients as large as
    the parameters; Adam keeps two states per element and a 4-byte step per tensor."""
    memory = analyze_memory(_meta(Chain), input_shape=(3, 4), train=True, optimizer="adam")
    assert memory.saved_activation_bytes == 48 + 96
    assert memory.grads_bytes == 192
    assert memory.optimizer_bytes == 2 * 192 + 2 * 4
    assert memory.peak_bytes >= memory.params_bytes + memory.grads_bytes + memory.optimizer_bytes


def test_in_place_ops_and_views_allocate_nothing() -> None:
    class Views(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 2  # 64 B
            y.relu_()  # in place: same storage
            return y.view(16).t().reshape(4, 4)  # views

    memory = analyze_memory(Views(), input_shape=(4, 4))
    assert memory.peak_activation_bytes == 64


class _Nested(nn.Module):
    """y = 2x (4x4 floats, 64 B), then sigmoid(relu(y)): 64 B more per op."""

    def __init__(self, nested: bool) -> None:
        super().__init__()
        self.nested, self.a, self.b = nested, nn.ReLU(), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        if self.nested:
            return self.b(self.a(y))  # `y` still holds 2x while b runs
        y = self.a(y)  # rebinding `y` frees 2x before b runs
        return self.b(y)


@pytest.mark.parametrize("nested, peak", [(True, 3 * 64), (False, 2 * 64)])
def test_python_variables_keep_tensors_alive(nested: bool, peak: int) -> None:
    memory = analyze_memory(_Nested(nested), input_shape=(4, 4))
    assert memory.peak_activation_bytes == peak
    model, x = _Nested(nested), torch.randn(4, 4)
    assert measure_peak(model, [x]).tensor_peak_bytes == peak  # and so says the profiler


def _cpu_case(name: str) -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    if name.startswith("llama"):
        return model, [torch.randint(0, 100, (1, 32))]
    return model, [torch.randn(2, 3, 32, 32)]


ZOO_SAMPLE = ["resnet18", "mobilenet_v1", "mobilenet_v2", "shufflenet_v2_x0_5",
              "shufflenet_v1_g3", "llama_tiny"]  # ShuffleNetV1's units nest their calls


@pytest.mark.parametrize("name", ZOO_SAMPLE)
def test_inference_peak_is_within_5_percent_of_the_profiled_cpu_run(name: str) -> None:
    model, inputs = _cpu_case(name)
    measured = measure_peak(model, inputs)
    ours = analyze_memory(_meta(MODELS[name]), inputs=inputs).peak_activation_bytes
    assert abs(ours - measured.tensor_peak_bytes) <= 0.05 * measured.tensor_peak_bytes
    assert measured.tensor_peak_bytes <= measured.peak_bytes  # workspaces only add


@pytest.mark.parametrize("name", ZOO_SAMPLE)
def test_saved_activations_equal_the_storages_autograd_saves(name: str) -> None:
    model = _meta(MODELS[name])
    _, inputs = _cpu_case(name)
    meta_inputs = [torch.empty(t.shape, dtype=t.dtype, device="meta") for t in inputs]
    ours = analyze_memory(model, inputs=meta_inputs, train=True).saved_activation_bytes
    assert ours == saved_tensor_bytes(model, meta_inputs)


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5"])
def test_saved_activations_match_a_real_cpu_run(name: str) -> None:
    """The same storages on the CPU (convolutions and batch norms save what they do on meta;
    attention differs: the CPU's fused kernel saves less than the math form, docs/memory.md)."""
    model, inputs = _cpu_case(name)
    ours = analyze_memory(_meta(MODELS[name]), inputs=inputs, train=True)
    assert ours.saved_activation_bytes == saved_tensor_bytes(model, inputs)


def test_symbolic_batch_gives_the_concrete_peak_at_every_batch() -> None:
    model = _meta(MODELS["llama_tiny"])
    free = analyze_memory(model, input_shape=("B", 32), dtype=torch.int64, train=True,
                          optimizer="adamw", hints={"B": 4})
    B = next(iter(sympy.sympify(free.peak_bytes).free_symbols))
    for batch in (3, 5, 8):
        concrete = analyze_memory(model, input_shape=(batch, 32), dtype=torch.int64,
                                  train=True, optimizer="adamw")
        for key in ("peak_bytes", "peak_activation_bytes", "saved_activation_bytes",
                    "optimizer_bytes", "grads_bytes"):
            value = sympy.sympify(getattr(free, key)).subs(B, batch)
            assert value == getattr(concrete, key), (key, batch)
    # the largest batch under a budget is one solve away
    budget = analyze_memory(model, input_shape=(6, 32), dtype=torch.int64, train=True,
                            optimizer="adamw").peak_bytes
    fits = [b for b in range(1, 20) if sympy.sympify(free.peak_bytes).subs(B, b) <= budget]
    assert max(fits) == 6


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_memory_json_follows_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "memory", "costmodel.zoo:resnet18", "--input-shape",
                       "1,3,64,64", "--format", "json")
    report = json.loads(out)
    assert code == 0 and set(report) >= CONTRACT and report["schema"] == "costmodel-memory/1"
    assert report["grads_bytes"] == report["optimizer_bytes"] == 0
    assert report["saved_activation_bytes"] == 0
    assert report["params_bytes"] == 4 * 11_689_512
    code, out, _ = run(capsys, "memory", "costmodel.zoo:resnet18", "--input-shape",
                       "1,3,64,64", "--format", "json", "--train", "--optimizer", "sgd")
    report = json.loads(out)
    assert report["grads_bytes"] == report["optimizer_bytes"] == 4 * 11_689_512
    assert report["peak_bytes"] > 3 * report["params_bytes"]


def test_memory_plot_and_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "timeline.png"
    code, out, _ = run(capsys, "memory", "costmodel.zoo:llama_tiny", "--train", "--plot",
                       str(png), "--format", "csv")
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    lines = out.splitlines()
    assert lines[0] == "index,node,activations,backward,gradients"
    assert int(lines[-1].split(",")[4]) == 527_616  # every parameter's gradient at the end


BUDGET = '''\
[tool.costmodel.models.tiny]
target = "costmodel.zoo:llama_tiny"
{limits}
'''


@pytest.mark.parametrize("limits, code, message", [
    ('train = true\nmax_peak_bytes = "10MB"', 0, ""),
    ('train = true\noptimizer = "adamw"\nmax_peak_bytes = "1KB"', 1,
     "Peak bytes 2,"),
    ('max_peak_activation_bytes = 1000', 1, "Peak activation bytes"),
    ('max_peak_bytes = "lots"', 2, "max_peak_bytes: bad number 'lots'"),
    ('max_peak_bytes = -5', 2, "max_peak_bytes: bad number -5"),
    ('train = "yes"', 2, "train: expected true or false"),
    ('train = true\noptimizer = "nosuch"', 2, "unknown optimizer"),
])
def test_check_limits_memory(limits: str, code: int, message: str, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pyproject.toml").write_text(BUDGET.format(limits=limits))
    monkeypatch.chdir(tmp_path)
    got, out, err = run(capsys, "check")
    assert got == code, out + err
    if code == 2:
        assert err.count("\n") == 1 and message in err and "pyproject.toml:" in err
    else:
        assert message in out


def test_check_train_flag_counts_the_training_step(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "costmodel.zoo:llama_tiny", "--train", "--format",
                       "json")
    assert code == 0
    code, inference, _ = run(capsys, "check", "costmodel.zoo:llama_tiny", "--format", "json")
    assert "peak_bytes" in out and "peak_bytes" not in inference


PLUGIN_TESTS = """
import pytest
import torch
from torch import nn


def chain():
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False))


@pytest.mark.costmodel(max_peak_bytes=432)
def test_fits(costmodel_budget):
    record = costmodel_budget(chain(), input_shape=(3, 4))
    assert record.totals["peak_bytes"] == 432


@pytest.mark.costmodel(max_peak_bytes=431)
def test_over_by_one(costmodel_budget):
    costmodel_budget(chain(), input_shape=(3, 4))


def test_training_step(costmodel_budget):
    record = costmodel_budget(chain(), (3, 4), train=True, optimizer="sgd",
                              max_saved_activation_bytes=144)
    assert record.totals["madds"] == 3 * 4 * 8 + 3 * 8 * 2 + 3 * 4 * 8 + 2 * 3 * 8 * 2
"""


def test_pytest_plugin_limits_memory(pytester: pytest.Pytester) -> None:
    """The Chain model of test_inference_liveness_by_hand, as a Sequential: peak 432 bytes;
    training saves 144 bytes; Mult-Adds forward 96 + 48, backward 96 (a's weight) + 96 (b)."""
    pytester.makepyfile(test_chain=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    assert "Peak bytes 432 exceeds max_peak_bytes = 431 by 1" in result.stdout.str()
