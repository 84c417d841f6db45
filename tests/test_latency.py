"""The latency model on fixed synthetic profiles: exact roofline arithmetic, bounds, classes,
profile files and their errors, and the calibration fit on data of known truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from costmodel import analyze
from costmodel.errors import CostModelError
from costmodel.latency.calibrate import Sample, fit_class, fit_profile, slope, width_table
from costmodel.latency.classes import CLASSES, class_of
from costmodel.latency.commands import describe
from costmodel.latency.predict import MODULE_CALLS, predict
from costmodel.latency.profile import (
    DeviceProfile,
    Efficiency,
    builtin_names,
    from_json,
    load_profile,
    read_profile,
)
from costmodel.latency.render import render


def synthetic(peak: float = 1e9, bandwidth: float = 1e9, overhead: float = 1e-7,
              **classes: Efficiency) -> DeviceProfile:
    efficiency = {cls: Efficiency(1.0, 1.0) for cls in CLASSES}
    efficiency.update(classes)
    return DeviceProfile("synthetic", "cpu", {"float32": peak}, bandwidth, overhead,
                         efficiency, threads=1)


def conv_relu() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.ReLU(), nn.Flatten())


# Conv 1x1 3->8 on 4x4: 16*8*3 = 384 Mult-Adds, 768 FLOPs; reads 48 + 24, writes 128 elements
CONV_FLOPS, CONV_BYTES = 768, 4 * (48 + 24 + 128)
# ReLU on 128 elements: 128 FLOPs, reads and writes 128 elements
RELU_FLOPS, RELU_BYTES = 128, 4 * 256


def test_each_op_is_the_max_of_compute_and_memory_plus_overhead() -> None:
    analysis = analyze(conv_relu(), input_shape=(1, 3, 4, 4))
    profile = synthetic(peak=1e9, bandwidth=2e9, overhead=1e-7,
                        conv_pointwise=Efficiency(0.5, 1.0), elementwise=Efficiency(1.0, 0.25))
    pred = predict(analysis, profile)
    assert [n.op_type for n in pred.nodes] == ["Conv 1x1", "Activation"]  # no View nodes
    conv, relu = pred.nodes
    assert conv.compute_s == pytest.approx(CONV_FLOPS / (1e9 * 0.5))
    assert conv.memory_s == pytest.approx(CONV_BYTES / 2e9)
    assert conv.latency_s == pytest.approx(CONV_FLOPS / 5e8 + 1e-7)
    assert conv.bound == "compute"  # 1.536 us of compute against 0.4 us of memory
    assert relu.memory_s == pytest.approx(RELU_BYTES / (2e9 * 0.25))
    assert relu.latency_s == pytest.approx(RELU_BYTES / 5e8 + 1e-7)
    assert relu.bound == "memory"
    assert pred.total() == pytest.approx(CONV_FLOPS / 5e8 + RELU_BYTES / 5e8 + 2e-7)
    assert pred.total("overhead_s") == pytest.approx(2e-7)


def test_overhead_bound_and_per_class_overhead() -> None:
    analysis = analyze(conv_relu(), input_shape=(1, 3, 4, 4))
    profile = synthetic(overhead=1e-3, conv_pointwise=Efficiency(1.0, 1.0, overhead_s=5e-3))
    conv, relu = predict(analysis, profile).nodes
    assert conv.overhead_s == 5e-3 and relu.overhead_s == 1e-3
    assert conv.bound == relu.bound == "overhead"
    rows = predict(analysis, profile).by_op_type()
    assert [r["label"] for r in rows] == ["Conv 1x1", "Activation"]  # slowest first
    assert rows[0]["latency_s"] == pytest.approx(5e-3 + CONV_BYTES / 1e9)


def test_bandwidth_curve_interpolates_log_log() -> None:
    profile = synthetic()
    curved = DeviceProfile(**{**profile.__dict__,
                              "bandwidth_curve": [(1e3, 1e11), (1e5, 1e9)]})
    assert curved.bandwidth_at(1e4) == pytest.approx(1e10)  # halfway in log: 10 GB/s
    assert curved.bandwidth_at(10) == pytest.approx(1e11)  # clamped at the ends
    assert curved.bandwidth_at(1e9) == pytest.approx(1e9)
    assert profile.bandwidth_at(1e4) == 1e9  # no curve: the single figure


@pytest.mark.parametrize(("op_type", "target", "cls"), [
    ("Conv 1x1", "aten.convolution.default", "conv_pointwise"),
    ("Conv 3x3", "aten.convolution.default", "conv_dense"),
    ("Conv 7x7", "aten.convolution.default", "conv_dense"),
    ("Conv DW 3x3", "aten.convolution.default", "conv_depthwise"),
    ("Conv GW 1x1", "aten.convolution.default", "conv_grouped"),
    ("Conv1d 3", "aten.convolution.default", "conv_dense"),
    ("Conv1d 1", "aten.convolution.default", "conv_pointwise"),
    ("Fully Connected", "aten.linear.default", "matmul"),
    ("Attention", "aten.scaled_dot_product_attention.default", "attention"),
    ("Norm", "aten.native_batch_norm.default", "norm"),
    ("Pooling", "aten.max_pool2d_with_indices.default", "max_pool"),
    ("Pooling", "aten.avg_pool2d.default", "pooling"),
    ("Data Movement", "aten.cat.default", "data_movement"),
    ("Activation", "aten.relu.default", "elementwise"),
    ("Reduction", "aten.mean.dim", "elementwise"),
])
def test_op_types_map_to_classes(op_type: str, target: str, cls: str) -> None:
    assert class_of(op_type, target) == cls


def test_fit_recovers_known_throughputs() -> None:
    """Samples made from t = o + max(F/C, M/B) with chosen C, B, o: the fit finds them."""
    peak, bandwidth, o = 1e11, 1e10, 3e-6
    true_c, true_e = 0.4 * peak, 0.7  # compute at 40% of peak, memory at 70% of bandwidth
    points = [(1e6, 1e5), (1e7, 2e5), (1e5, 1e6), (1e4, 4e6), (5e6, 5e6)]
    samples = [Sample("s", "conv_dense", f, m, 1,
                      o + max(f / true_c, m / (bandwidth * true_e))) for f, m in points]
    samples.append(Sample("tiny", "conv_dense", 1, 1, 1, o, tiny=True))
    eff = fit_class(samples, 1e-6, peak, lambda _: bandwidth)
    assert eff.compute == pytest.approx(0.4, rel=1e-3)
    assert eff.memory == pytest.approx(0.7, rel=1e-3)
    assert eff.overhead_s == pytest.approx(o)


def test_fit_profile_reads_overhead_peak_and_bandwidth() -> None:
    base = [Sample("relu 1", "overhead", 1, 8, 1, 2e-6),
            Sample("matmul", "peak", 2e9, 1e7, 1, 2e-6 + 2e9 / 5e10),
            Sample("copy small", "bandwidth", 0, 1e5, 1, 2e-6 + 1e5 / 4e10),
            Sample("copy big", "bandwidth", 0, 1e8, 1, 2e-6 + 1e8 / 1e10)]
    per_class = [Sample(c, c, 1e6, 1e6, 1, 1e-4) for c in CLASSES]
    profile = fit_profile(base + per_class, "cpu", 1, "test")
    assert profile.overhead_s == pytest.approx(2e-6)
    assert profile.peak("float32") == pytest.approx(5e10)
    assert profile.memory_bandwidth == pytest.approx(1e10)  # the largest copy
    assert profile.bandwidth_at(1e5) == pytest.approx(4e10)
    assert set(profile.efficiency) == set(CLASSES)


def test_builtin_profiles_load_and_cite_sources() -> None:
    names = builtin_names()
    assert {"nvidia-h100-sxm", "nvidia-a100-sxm4-80gb", "nvidia-gtx-1080-ti",
            "snapdragon-855-cpu"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.sources and all("http" in s for s in profile.sources)
        assert not profile.measured
    assert load_profile("nvidia-h100-sxm").memory_bandwidth == 3.35e12  # datasheet: 3.35 TB/s


def _valid() -> dict:
    return synthetic().to_json()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["efficiency"].pop("norm"), "missing key 'efficiency.norm'"),
    (lambda d: d.pop("memory_bandwidth"), "missing key 'memory_bandwidth'"),
    (lambda d: d.update(memory_bandwidth=-1), "memory_bandwidth must be a positive number"),
    (lambda d: d["efficiency"]["matmul"].update(compute="x"),
     "efficiency.matmul.compute must be a positive number"),
    (lambda d: d.update(device="tpu"), "device 'tpu' is not one of cpu, cuda"),
    (lambda d: d.update(schema="other/1"), "schema is 'other/1'"),
    (lambda d: d.update(threads=0), "threads must be a positive integer"),
    (lambda d: d.update(view_s=-1e-6), "view_s must be a number >= 0"),
    (lambda d: d.update(module_call_s="1us"), "module_call_s must be a number >= 0"),
    (lambda d: d["efficiency"].update(gemm={"compute": 1, "memory": 1}),
     "efficiency.gemm is not a class"),
    (lambda d: d["efficiency"]["conv_dense"].update(width_table=[[8, 0.5], [4, 0.9]]),
     "efficiency.conv_dense.width_table must be in increasing width"),
    (lambda d: d["efficiency"]["conv_dense"].update(width_table=[[8, 0]]),
     "efficiency.conv_dense.width_table share must be a positive number"),
])
def test_a_bad_profile_names_its_key(edit, message: str) -> None:
    data = _valid()
    edit(data)
    with pytest.raises(CostModelError, match=message.replace("(", r"\(")):
        from_json(data, "p.json")


def test_profile_round_trips_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_valid()))
    assert read_profile(path) == synthetic()
    tabled = synthetic(conv_grouped=Efficiency(0.5, 1.0, width_table=((8.0, 0.3), (64.0, 0.9))))
    path.write_text(json.dumps(tabled.to_json()))
    assert read_profile(path) == tabled
    path.write_text("{not json")
    with pytest.raises(CostModelError, match=r"p.json:1: not JSON"):
        read_profile(path)
    with pytest.raises(CostModelError, match="unknown profile 'nope'"):
        load_profile("nope")


def test_predict_json_contract() -> None:
    analysis = analyze(conv_relu(), input_shape=(1, 3, 4, 4))
    report = json.loads(render(predict(analysis, synthetic()), "json"))
    assert report["schema"] == "costmodel-predict/1"
    assert report["profile"] == "synthetic"
    assert set(report["totals"]) >= {"latency_s", "compute_s", "memory_s", "overhead_s"}
    assert math.isclose(report["totals"]["latency_s"],
                        sum(n["latency_s"] for n in report["nodes"]))
    assert all({"op_type", "latency_s", "bound"} <= set(r) for r in report["by_op_type"])
    assert all({"name", "latency_s", "bound"} <= set(n) for n in report["nodes"])
    assert {n["bound"] for n in report["nodes"]} <= {"compute", "memory", "overhead"}


def test_symbolic_analysis_cannot_be_predicted() -> None:
    analysis = analyze(conv_relu(), input_shape=(1, 3, "H", "W"))
    with pytest.raises(CostModelError, match="symbolic"):
        predict(analysis, synthetic())


def test_convolution_width_scales_compute_efficiency() -> None:
    # Conv 1x1 3->8: 3 channels per group (the fewer of 3 in and 8 out)
    shapes = [(1, 3, 4, 4), (8, 3, 1, 1)]
    from costmodel.latency.classes import conv_width

    assert conv_width(shapes) == 3
    assert conv_width([(1, 64, 8, 8), (64, 8, 1, 1)]) == 8  # 8 groups of 8 -> 8
    assert conv_width([(4, 16), (16,)]) is None  # not a convolution
    analysis = analyze(conv_relu(), input_shape=(1, 3, 4, 4))
    profile = synthetic(peak=1e9, conv_pointwise=Efficiency(1.0, 1.0, width_half=1.0))
    conv = predict(analysis, profile).nodes[0]
    assert conv.compute_s == pytest.approx(CONV_FLOPS / (1e9 * 3 / (3 + 1)))


def test_fit_recovers_the_width_falloff() -> None:
    peak, bandwidth = 1e11, 1e10
    points = [(f, w) for f in (1e6, 1e7, 1e8) for w in (2, 8, 32, 128)]
    samples = [Sample("s", "conv_grouped", f, 1e3, 1, 1e-6 + f / (0.8 * peak * w / (w + 6)),
                      width=w) for f, w in points]
    eff = fit_class(samples, 1e-6, peak, lambda _: bandwidth)
    assert eff.compute == pytest.approx(0.8, rel=1e-3)
    assert eff.width_half == pytest.approx(6, rel=1e-3)


def test_a_width_table_overrides_the_falloff_and_interpolates_in_log() -> None:
    """Shares 0.25 at width 1 and 1.0 at width 4: width 2 is halfway in log width, so its
    share is halfway in log share, 0.5; outside the table the end points hold."""
    table = Efficiency(0.9, 1.0, width_half=3.0, width_table=((1.0, 0.25), (4.0, 1.0)))
    assert table.compute_share(2.0) == pytest.approx(0.5)
    assert table.compute_share(0.5) == pytest.approx(0.25)
    assert table.compute_share(64.0) == pytest.approx(1.0)
    assert table.compute_share(None) == 0.9  # not a convolution: the class's share
    analysis = analyze(conv_relu(), input_shape=(1, 3, 4, 4))  # the conv's width is 3
    profile = synthetic(peak=1e9, conv_pointwise=Efficiency(
        1.0, 1.0, width_half=1.0, width_table=((1.0, 0.1), (3.0, 0.6), (9.0, 0.9))))
    conv = predict(analysis, profile).nodes[0]
    assert conv.compute_s == pytest.approx(CONV_FLOPS / (1e9 * 0.6))


def test_width_table_is_each_widths_measured_share() -> None:
    """share = FLOPs / ((t - ops x overhead) x peak), geometric mean per width; tiny
    benchmarks (the fixed cost) and non-convolutions are left out."""
    peak, o = 1e11, 2e-6
    samples = [Sample("a", "conv_dense", 4e6, 1e3, 2, 2 * o + 4e6 / (0.2 * peak), width=8),
               Sample("b", "conv_dense", 1e6, 1e3, 1, o + 1e6 / (0.8 * peak), width=8),
               Sample("c", "conv_dense", 1e7, 1e3, 1, o + 1e7 / (0.9 * peak), width=64),
               Sample("tiny", "conv_dense", 10, 10, 1, o, tiny=True, width=2)]
    table = width_table(samples, o, peak)
    assert table is not None
    assert [w for w, _ in table] == [8, 64]
    assert table[0][1] == pytest.approx(math.sqrt(0.2 * 0.8))  # 0.4
    assert table[1][1] == pytest.approx(0.9)
    assert width_table(samples[2:], o, peak) is None  # one width is no table


def test_fit_reads_each_ops_bandwidth_as_the_predictor_does() -> None:
    """A chain of 4 ops of 1 MB each streams at the bandwidth of 1 MB, not of 4 MB: with a
    curve giving 1e10 B/s at 1 MB and 1e9 at 4 MB, a sample taking 4 x 1 MB / 5e9 B/s has
    memory efficiency 0.5."""
    curve = {1e6: 1e10, 4e6: 1e9}
    samples = [Sample("chain", "elementwise", 0, 4e6, 4, 4e6 / 5e9),
               Sample("one", "elementwise", 0, 1e6, 1, 1e6 / 5e9)]
    eff = fit_class(samples, 1e-12, 1e11, lambda b: curve[b])
    assert eff.memory == pytest.approx(0.5, rel=1e-3)


def test_module_calls_are_counted_per_call() -> None:
    """Sequential + conv + ReLU + Flatten = 4 calls; a module called twice counts twice;
    nn.Identity runs no op but is still called."""
    assert analyze(conv_relu(), input_shape=(1, 3, 4, 4)).graph.graph["module_call_count"] == 4

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act, self.skip = nn.ReLU(), nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.skip(self.act(self.act(x)))

    assert analyze(Twice(), input_shape=(1, 4)).graph.graph["module_call_count"] == 4


def test_module_calls_and_views_add_their_python_time() -> None:
    """conv_relu makes 4 module calls and one view (Flatten): 4 m + 1 v on top of the ops."""
    analysis = analyze(conv_relu(), input_shape=(1, 3, 4, 4))
    base = synthetic()
    ops_only = predict(analysis, base).total()
    profile = DeviceProfile(**{**base.__dict__, "module_call_s": 3e-6, "view_s": 5e-7})
    pred = predict(analysis, profile)
    assert pred.total() == pytest.approx(ops_only + 4 * 3e-6 + 5e-7)
    assert pred.total("overhead_s") == pytest.approx(base.overhead_s * 2 + 4 * 3e-6 + 5e-7)
    calls = [n for n in pred.nodes if n.name == MODULE_CALLS]
    assert len(calls) == 1 and calls[0].bound == "overhead"
    assert [n.op_type for n in pred.nodes if n.efficiency_class == "view"] == ["View"]
    rows = json.loads(render(pred, "json"))
    assert {n["bound"] for n in rows["nodes"]} <= {"compute", "memory", "overhead"}
    assert {"Module call", "View"} <= {r["op_type"] for r in rows["by_op_type"]}


def test_fit_profile_takes_python_time_from_chain_slopes() -> None:
    """Chains of 8 and 64 calls at 1 us each over a fixed 4 us, views at 0.25 us: the slopes
    are 1 us and 0.25 us, and the one-op overhead benchmark (one module call) nets to 2 us."""
    m, v = 1e-6, 2.5e-7
    chains = [Sample("id 8", "module_call", 0, 0, 0, 4e-6 + 9 * m, module_calls=9),
              Sample("id 64", "module_call", 0, 0, 0, 4e-6 + 65 * m, module_calls=65),
              Sample("view 8", "view", 0, 0, 0, 4e-6 + m + 8 * v, module_calls=1, views=8),
              Sample("view 64", "view", 0, 0, 0, 4e-6 + m + 64 * v, module_calls=1, views=64)]
    base = [Sample("relu 1", "overhead", 1, 8, 1, 2e-6 + m, module_calls=1),
            Sample("matmul", "peak", 2e9, 1e7, 1, 2e-6 + m + 2e9 / 5e10, module_calls=1),
            Sample("copy big", "bandwidth", 0, 1e8, 1, 2e-6 + m + 1e8 / 1e10, module_calls=1)]
    per_class = [Sample(c, c, 1e6, 1e6, 1, 1e-4) for c in CLASSES]
    profile = fit_profile(chains + base + per_class, "cpu", 1, "test")
    assert profile.module_call_s == pytest.approx(m)
    assert profile.view_s == pytest.approx(v)
    assert profile.overhead_s == pytest.approx(2e-6)
    assert profile.peak("float32") == pytest.approx(5e10)
    assert profile.memory_bandwidth == pytest.approx(1e10)
    assert slope([], lambda s: s.views) == 0.0


def test_profiles_without_python_terms_default_to_zero() -> None:
    data = _valid()
    del data["module_call_s"], data["view_s"]
    profile = from_json(data, "p.json")
    assert profile.module_call_s == 0.0 and profile.view_s == 0.0
    analysis = analyze(conv_relu(), input_shape=(1, 3, 4, 4))
    assert [n.op_type for n in predict(analysis, profile).nodes] == ["Conv 1x1", "Activation"]


def test_profile_description_names_the_python_terms_it_has() -> None:
    base = synthetic()
    assert "module call" not in describe(base) and "per view" not in describe(base)
    text = describe(DeviceProfile(**{**base.__dict__, "module_call_s": 7.5e-7}))
    assert "0.75 us per module call" in text and "per view" not in text


def test_cold_matvec_benches_outgrow_the_last_level_cache() -> None:
    """The batch-1 linear benchmarks read their weights from main memory, as a classifier
    does: 64 MB or more in all (beyond a 32 MB L3), 4 to 10 MB per layer like a classifier's."""
    from costmodel.latency.microbench import cold_matvec_benches

    for bench in cold_matvec_benches():
        with torch.device("meta"):
            layers = list(bench.build().modules())[1:]
        sizes = [sum(p.numel() * 4 for p in layer.parameters()) for layer in layers]
        assert sum(sizes) >= 64 << 20
        assert all(4 << 20 <= s <= 10 << 20 for s in sizes)
        assert bench.role == "matmul" and bench.shapes[0][0] == 1  # batch 1
