"""Learned per-kernel-class predictors: harvesting op configurations from a graph, sampling
around them, the smoke calibration's round trip (fit, save, load, predict), and how a
profile of another version, torch or thread count, or a corrupt one, is refused or flagged."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from costmodel import analyze
from costmodel.cli import main
from costmodel.errors import CostModelError
from costmodel.latency.calibrate import InModelRow, SourceRuns, fit_in_model
from costmodel.latency.commands import checked, mismatches
from costmodel.latency.kernels import (
    FEATURES,
    features,
    harvest,
    kernel_class,
    kernel_name,
    runner,
    size_pool,
    variant,
)
from costmodel.latency.learned import FORMAT
from costmodel.latency.predict import predict
from costmodel.latency.profile import read_profile

TINY = str(Path(__file__).parent / "models" / "tiny_net.py") + ":TinyNet"


class Net(nn.Module):
    """Two identical 3x3 convolutions (one configuration), a depthwise one, an SE-style
    broadcasting multiply, a batch-1 linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.b = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.b(self.a(x)))
        y = y * torch.sigmoid(y.mean((2, 3), keepdim=True))
        return self.fc(y.mean((2, 3)))


def net_analysis() -> object:
    with torch.device("meta"):
        model = Net().eval()
    return analyze(model, input_shape=(1, 16, 32, 32))


def test_harvest_reads_each_distinct_configuration_once_with_its_arguments() -> None:
    configs = harvest(net_analysis())
    convs = [c for c in configs if c.kclass.startswith("conv_")]
    assert [c.kclass for c in convs] == ["conv_dense", "conv_depthwise"]  # a and b: one
    dense, dw = convs
    assert tuple(dense.args[0].shape) == (1, 16, 32, 32) and dense.args[3] == [1, 1]
    assert dw.args[3] == [2, 2] and dw.args[8] == 16  # stride and groups as recorded
    # 2 * N*Ho*Wo*Co*(Ci/g)*k*k, the dense convolution's FLOPs by hand
    assert dense.cost.flops == 2 * 32 * 32 * 16 * 16 * 9
    assert {"binary", "activation", "linear", "reduction"} <= {c.kclass for c in configs}
    mul = next(c for c in configs if c.kclass == "binary")
    assert [tuple(t.shape) for t in mul.call.inputs] == [(1, 16, 16, 16), (1, 16, 1, 1)]


def test_features_read_channels_per_group_kernel_and_stride() -> None:
    configs = harvest(net_analysis())
    dw = next(c for c in configs if c.kclass == "conv_depthwise")
    row = dict(zip(FEATURES, features(dw.call, dw.op_type, dw.cost, 1e-5, {"convolution": 0})))
    assert row["channels_per_group"] == 1 and row["kernel"] == 9 and row["stride"] == 2
    assert row["spatial"] == 16 * 16 and row["op"] == 0


class Contractions(nn.Module):
    """A 1x1 convolution with and without bias; nn.Linear and GPT-2's Conv1D, which calls
    addmm(bias, x, weight) with its operands in other slots."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 64, 1, bias=False)
        self.biased = nn.Conv2d(32, 64, 1)
        self.fc = nn.Linear(32, 48)
        self.w = nn.Parameter(torch.randn(32, 48))
        self.b = nn.Parameter(torch.randn(48))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tokens = x.flatten(2).transpose(1, 2).reshape(-1, 32)
        return (self.conv(x), self.biased(x), self.fc(tokens),
                torch.addmm(self.b, tokens, self.w))


def test_contraction_features_read_data_and_weight_wherever_they_sit() -> None:
    """The bias is no operand of the features, and addmm's data is its second argument:
    otherwise a biased convolution, or GPT-2's addmm, reads as another kind of op."""
    ops = [op for op in analyze(Contractions().eval(), input_shape=(1, 32, 8, 8)).ops()
           if kernel_class(op["op_type"], op["target"], op.get("call")) in (
               "conv_pointwise", "linear")]
    rows = [dict(zip(FEATURES, features(op["call"], op["op_type"], op["cost"], 1e-5, {})))
            for op in ops]
    assert len(rows) == 4
    conv, biased, fc, addmm = rows
    data = 32 * 8 * 8 * 4  # bytes of the activation both convolutions and both gemms read
    for row, weight in ((conv, 64 * 32), (biased, 64 * 32), (fc, 32 * 48), (addmm, 32 * 48)):
        assert row["tensor_inputs"] == 2 and row["broadcast"] == 1
        assert row["log_in_bytes"] == pytest.approx(math.log1p(data))
        assert row["log_weight_bytes"] == pytest.approx(math.log1p(weight * 4))
    keys = [k for k in FEATURES if k not in ("log_flops", "log_mac_bytes", "log_roofline")]
    assert [conv[k] for k in keys] == [biased[k] for k in keys]
    assert [fc[k] for k in keys] == [addmm[k] for k in keys]


def test_kernel_classes_of_op_types() -> None:
    assert kernel_class("Conv GW 1x1", "aten.convolution.default") == "conv_grouped"
    assert kernel_class("Fully Connected", "aten.linear.default") == "linear"
    assert kernel_class("MatMul", "aten.bmm.default") == "matmul"
    assert kernel_class("Norm", "aten.native_layer_norm.default") == "layer_norm"
    assert kernel_class("Pooling", "aten.max_pool2d.default") == "pool_window"
    assert kernel_class("View", "aten.view.default") is None


def test_a_sampled_variant_is_consistent_and_counted_by_the_registry() -> None:
    dw = next(c for c in harvest(net_analysis()) if c.kclass == "conv_depthwise")
    rng = random.Random(1)
    near = [v for v in (variant(dw, rng) for _ in range(20)) if v is not None]
    assert near and all(v.kclass == "conv_depthwise" for v in near)
    for v in near:
        x, w = v.call.inputs[0], v.call.inputs[1]
        assert v.args[8] == x.shape[1] == w.shape[0]  # depthwise stays depthwise
        out = v.call.outputs[0]
        assert v.cost.flops == 2 * out.numel * 9
        result = runner(v)()  # runs on real tensors, at the recorded output shape
        assert tuple(result.shape) == tuple(out.shape)


def test_grouped_convolution_variants_take_other_group_counts() -> None:
    """The sources group 1x1 convolutions by 3 only: their variants also take 2, 4, 8...
    that divide both channel counts, the weight's input channels following, and each runs
    at its recorded output shape with its FLOPs counted per group by hand."""
    with torch.device("meta"):
        model = nn.Conv2d(48, 96, 1, groups=3, bias=False).eval()
    grouped = next(c for c in harvest(analyze(model, input_shape=(1, 48, 28, 28)))
                   if c.kclass == "conv_grouped")
    rng = random.Random(0)
    near = [v for v in (variant(grouped, rng) for _ in range(40)) if v is not None]
    assert {v.args[8] for v in near} - {3}
    for v in near:
        x, w, g = v.call.inputs[0], v.call.inputs[1], v.args[8]
        assert v.kclass == "conv_grouped" and x.shape[1] % g == 0 and w.shape[0] % g == 0
        assert w.shape[1] == x.shape[1] // g
        assert v.cost.flops == 2 * v.call.outputs[0].numel * w.shape[1]
    result = runner(near[0])()
    assert tuple(result.shape) == tuple(near[0].call.outputs[0].shape)


def test_aliases_of_one_kernel_share_the_regressors_op_name() -> None:
    assert {kernel_name(t) for t in ("aten.linear.default", "aten.addmm.default",
                                     "aten.mm.default")} == {"gemm"}
    assert kernel_name("aten.relu_.default") == kernel_name("aten.relu.default") == "relu"
    assert kernel_name("aten.bmm.default") == "bmm"  # batched: its own kernel


def test_variants_draw_sizes_from_the_class_pool() -> None:
    """A harvested 16-channel conv and (by hand) a pool holding 24 for its class: some
    variants take 24 exactly, which scaling 16 by 0.5-2x and rounding never gives."""
    dense = next(c for c in harvest(net_analysis()) if c.kclass == "conv_dense")
    pool = size_pool([dense])
    assert 16 in pool["conv_dense"] and 32 in pool["conv_dense"]
    pool["conv_dense"] = sorted(set(pool["conv_dense"]) | {24})
    rng = random.Random(3)
    near = [v for v in (variant(dense, rng, pool) for _ in range(40)) if v is not None]
    channels = {v.call.inputs[0].shape[1] for v in near}
    assert 24 in channels
    for v in near:  # still a consistent, runnable convolution
        assert tuple(runner(v)().shape) == tuple(v.call.outputs[0].shape)


def test_in_model_fit_recovers_a_known_scale_and_per_op_cost() -> None:
    """Sources made up so that measured = 1.3 L + 8 us x ops + O exactly: the fit finds 1.3
    and 8 us and every source fits to 1."""
    shapes = [(2e-3, 40, 5e-4), (8e-3, 300, 1e-3), (1e-3, 200, 2e-4), (4e-3, 90, 9e-4)]
    rows = [InModelRow(f"m{i}", 1.3 * lrn + 8e-6 * n + o, lrn, n, o)
            for i, (lrn, n, o) in enumerate(shapes)]
    fitted = fit_in_model(rows)
    assert fitted.scale == pytest.approx(1.3, rel=1e-6)
    assert fitted.op_s == pytest.approx(8e-6, rel=1e-6)
    assert all(v == pytest.approx(1.0, rel=1e-9) for v in fitted.fit.values())
    # two sources: too few for two unknowns, the scale alone is their median ratio
    two = fit_in_model(rows[:2])
    ratios = [(r.measured_s - r.other_s) / r.learned_s for r in rows[:2]]
    assert two.op_s == 0 and two.scale == pytest.approx(sum(ratios) / 2)


def test_source_runs_keep_each_sources_least_pass() -> None:
    """Three passes over two sources, the second pass in a slow phase: each source keeps
    its fastest pass, and the spread names the worst source's slowest over fastest."""
    passes = iter([[0.010, 0.020], [0.0115, 0.024], [0.0102, 0.019]])
    runs = SourceRuns(["a", "b"], lambda: [(s, True) for s in next(passes)])
    for _ in range(3):
        runs.time_pass()
    assert runs.least() == {"a": 0.010, "b": 0.019}
    assert runs.spread() == pytest.approx(0.024 / 0.019 - 1)


def test_the_per_op_cost_is_added_to_every_op_but_views(smoke: Path, tmp_path: Path) -> None:
    import dataclasses

    class Flat(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x).flatten(1).transpose(0, 1) + 1

    profile = read_profile(smoke)
    analysis = analyze(Flat(), input_shape=(2, 3, 4, 4))
    zero = dataclasses.replace(profile, kernels=dataclasses.replace(profile.kernels,
                                                                    in_model_op_s=0.0))
    some = dataclasses.replace(profile, kernels=dataclasses.replace(profile.kernels,
                                                                    in_model_op_s=1e-5))
    before = {n.name: n for n in predict(analysis, zero).nodes}
    after = {n.name: n for n in predict(analysis, some).nodes}
    ops = {op["name"]: op["op_type"] for op in analysis.ops()}
    assert "View" in ops.values() and len(set(ops.values())) > 1
    for name, op_type in ops.items():
        extra = 0.0 if op_type == "View" else 1e-5
        assert after[name].latency_s == pytest.approx(before[name].latency_s + extra, rel=1e-9)
    data = json.loads(smoke.read_text())
    data["kernels"]["in_model_op_s"] = "fast"
    bad = tmp_path / "op_s.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CostModelError, match=r"kernels\.in_model_op_s"):
        read_profile(bad)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def smoke(smoke_profile: Path) -> Path:
    return smoke_profile  # the shared smoke calibration (tests/conftest.py)


def test_smoke_calibration_round_trip_fits_saves_loads_and_predicts(smoke: Path) -> None:
    data = json.loads(smoke.read_text())
    kernels = data["kernels"]
    assert kernels["format"] == FORMAT and kernels["features"] == list(FEATURES)
    assert kernels["sources"] == ["smoke"] and "conv_dense" in kernels["classes"]
    assert data["extra"]["protocol"]["rounds"] >= 1 and data["extra"]["environment"]["cpu"]
    first, second = read_profile(smoke), read_profile(smoke)
    analysis = net_analysis()
    a, b = predict(analysis, first), predict(analysis, second)
    assert a.total() == b.total() > 0  # refitted on load, deterministically
    learned = {n.efficiency_class for n in a.nodes}
    assert "conv_dense" in learned and "linear" in learned
    # a class with timed rows predicts near those rows' own times
    entry = first.kernels.classes["conv_dense"]
    assert len(entry.rows) >= 1 and entry.cv_error is not None


def test_profile_of_another_kernels_format_is_an_error_naming_both(smoke: Path,
                                                                    tmp_path: Path) -> None:
    data = json.loads(smoke.read_text())
    data["kernels"]["format"] = "costmodel-kernels/0"
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CostModelError, match=r"costmodel-kernels/0.*costmodel-kernels/2"):
        read_profile(bad)
    data["schema"] = "costmodel-profile/0"
    bad.write_text(json.dumps(data))
    with pytest.raises(CostModelError, match=r"costmodel-profile/0.*costmodel-profile/1"):
        read_profile(bad)


def test_profile_of_another_torch_warns_naming_both(smoke: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(smoke.read_text())
    data["torch"] = "1.0.0"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    profile = read_profile(other)
    assert any("torch 1.0.0" in m and torch.__version__ in m for m in mismatches(profile))
    code, _, err = run(capsys, "predict", TINY, "--profile", str(other), "--format", "json")
    assert code == 0 and "warning" in err and "torch 1.0.0" in err
    assert torch.__version__ in err


def test_profile_of_another_thread_count_is_an_error_naming_both(smoke: Path) -> None:
    with pytest.raises(CostModelError, match="1 threads, not --threads 2"):
        checked(read_profile(smoke), 2)


@pytest.mark.parametrize("content", [b"{\"schema\": ", b"\xff\xfe\x00garbage", b"[1, 2]"])
def test_corrupt_profile_is_one_line_exit_2(content: bytes, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    code, out, err = run(capsys, "predict", TINY, "--profile", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_corrupt_kernel_rows_are_named(smoke: Path, tmp_path: Path) -> None:
    data = json.loads(smoke.read_text())
    data["kernels"]["classes"]["conv_dense"]["rows"][0] = [1.0, "x"]
    bad = tmp_path / "rows.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CostModelError, match=r"kernels\.classes\.conv_dense\.rows\[0\]"):
        read_profile(bad)


def test_the_in_model_scale_is_measured_on_the_sources_and_scales_learned_kernels_only(
        smoke: Path, tmp_path: Path) -> None:
    """Calibration runs each source model whole and records measured over predicted for its
    learned kernels; prediction multiplies the learned kernels' time by the median of those
    ratios and leaves the rest (module calls, views, roofline classes) as it was."""
    import dataclasses

    data = json.loads(smoke.read_text())
    kernels = data["kernels"]
    assert set(kernels["in_model_ratios"]) == {"smoke"}
    assert kernels["in_model"] == kernels["in_model_ratios"]["smoke"] > 0
    profile = read_profile(smoke)
    analysis = net_analysis()
    one = dataclasses.replace(profile, kernels=dataclasses.replace(profile.kernels, in_model=1.0))
    three = dataclasses.replace(profile, kernels=dataclasses.replace(profile.kernels,
                                                                     in_model=3.0))
    by_name = {n.name: n.latency_s for n in predict(analysis, one).nodes}
    tripled = {n.name: n.latency_s for n in predict(analysis, three).nodes}
    learned = {n.name for n in predict(analysis, one).nodes
               if n.efficiency_class in profile.kernels.classes and n.op_type != "View"}
    assert learned
    for name, seconds in by_name.items():
        expected = 3 * seconds if name in learned else seconds
        assert tripled[name] == pytest.approx(expected, rel=1e-9)
    kernels["in_model"] = -1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CostModelError, match=r"kernels\.in_model"):
        read_profile(bad)


def test_quick_and_smoke_calibrations_exclude_each_other(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", "--quick", "--smoke"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err
