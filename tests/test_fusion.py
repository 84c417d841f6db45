"""Fusion-aware MAC (docs/fusion.md): kernels read from inductor, the engine rules, the bytes a
fused kernel moves derived by hand, the reports, and the one-line errors.

The slow tests compare our kernels with the groups inductor's own code generation makes for
the same graph, and one real torch.compile's output code: they fail if either side moves."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

import costmodel
from costmodel.cli import main
from costmodel.views.fusion import ENGINE_RULES, fuse

F32 = 4


class Chain(nn.Module):
    """Four element-wise ops on one tensor: (2x + 1).relu() * x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 2 + 1).relu() * x


def conv_bn_relu(c1: int = 4, c2: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2),
                         nn.ReLU())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- bytes derived by hand ------------------------------------------------------------------

# conv 4 -> 8, 3x3, padding 1, no bias, on 1x4x8x8; batch norm over 8 channels; ReLU
X, W, Y, STATS = 4 * 8 * 8, 8 * 4 * 3 * 3, 8 * 8 * 8, 4 * 8  # elements
EAGER = ((X + W + Y)  # conv: input, weight, output
         + (Y + Y + STATS)  # batch norm: input, output, mean, var, weight, bias
         + 2 * Y) * F32  # relu


def test_engine_folds_conv_bn_relu_into_one_kernel() -> None:
    analysis = costmodel.analyze(conv_bn_relu(), input_shape=(1, 4, 8, 8))
    assert analysis.total().mac_bytes == EAGER
    fusion = fuse(analysis, "engine")
    (kernel,) = fusion.kernels
    assert kernel.ops == ("convolution_default", "native_batch_norm_default", "relu_default")
    # one kernel reads the image and the folded weight and bias (8 channels), writes the result
    assert kernel.bytes_read == (X + W + 8) * F32
    assert kernel.bytes_written == Y * F32
    assert fusion.mac_bytes_fused == (X + W + 8 + Y) * F32
    assert {d["kernel"] for d in analysis.ops() if d["op_type"] != "View"} == {0}


def test_engine_fuses_an_element_wise_chain_reading_its_input_once() -> None:
    analysis = costmodel.analyze(Chain(), input_shape=(1, 16, 32, 32))
    n = 16 * 32 * 32
    assert analysis.total().mac_bytes == (2 + 2 + 2 + 3) * n * F32  # mul, add, relu, mul
    (kernel,) = fuse(analysis, "engine").kernels
    assert len(kernel.ops) == 4
    assert (kernel.bytes_read, kernel.bytes_written) == (n * F32, n * F32)


def test_inductor_conv_bn_relu_bytes_by_hand() -> None:
    analysis = costmodel.analyze(conv_bn_relu(), input_shape=(1, 4, 8, 8))
    fusion = fuse(analysis, "inductor")
    kinds = [(k.kind, k.ops) for k in fusion.kernels]
    # inductor's CPU layout pass copies the image and weight to channels-last for the
    # convolution (one generated kernel), calls the library convolution, then one generated
    # kernel computes batch norm and ReLU: the batch norm's output never reaches memory
    assert kinds == [("generated", ("convolution_default",)),
                     ("extern", ("convolution_default",)),
                     ("generated", ("native_batch_norm_default", "relu_default"))]
    copy, conv, bn_relu = fusion.kernels
    assert (copy.bytes_read, copy.bytes_written) == ((X + W) * F32, (X + W) * F32)
    assert (conv.bytes_read, conv.bytes_written) == ((X + W) * F32, Y * F32)
    assert conv.call == "extern_kernels.convolution"
    assert (bn_relu.bytes_read, bn_relu.bytes_written) == ((Y + STATS) * F32, Y * F32)
    assert fusion.mac_bytes_fused == (2 * (X + W) + (X + W + Y) + (2 * Y + STATS)) * F32
    node = analysis.graph.nodes
    assert node["convolution_default"]["kernel"] == 1  # the library call, not the copy
    assert node["relu_default"]["kernel"] == 2


def test_inductor_grouping_runs_no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither a C++ build nor a compiler search happens: both fail here, and the grouping
    still works."""
    from torch._inductor import cpp_builder

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the C++ compiler was asked for")

    monkeypatch.setattr(cpp_builder.CppBuilder, "build", refuse)
    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", refuse)
    analysis = costmodel.analyze(conv_bn_relu(), input_shape=(1, 4, 8, 8))
    assert len(fuse(analysis, "inductor").kernels) == 3


def test_inductor_element_wise_chain_is_one_kernel() -> None:
    analysis = costmodel.analyze(Chain(), input_shape=(1, 16, 32, 32))
    (kernel,) = fuse(analysis, "inductor").kernels
    n = 16 * 32 * 32
    assert kernel.kind == "generated" and len(kernel.ops) == 4
    assert (kernel.bytes_read, kernel.bytes_written) == (n * F32, n * F32)


def test_engine_keeps_a_tensor_two_ops_read() -> None:
    """A residual block: the shortcut is read by the add, so the first ReLU's output is
    written; the add and the last ReLU join the second convolution's kernel."""

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = conv_bn_relu(8, 8)
            self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            return torch.relu(self.b(y) + y)

    analysis = costmodel.analyze(Residual(), input_shape=(1, 8, 8, 8))
    fusion = fuse(analysis, "engine")
    labels = [k.label for k in fusion.kernels]
    assert labels == ["Conv 3x3 + Norm + Activation", "Conv 3x3 + Norm + Elementwise + Activation"]
    first, second = fusion.kernels
    y = 8 * 64
    w = 8 * 8 * 9
    assert first.bytes_written == y * F32
    # the second kernel reads y twice (the convolution's windows, then the add's elements:
    # different loops), the weight and the folded bias
    assert second.bytes_read == (y + w + 8 + y) * F32
    assert second.bytes_written == y * F32


def test_engine_rules_are_listed_once() -> None:
    assert [name for name, _ in ENGINE_RULES] == [
        "views are free", "batch norm folds", "activation fuses", "element-wise chains fuse"]


def test_attribution_sums_to_the_fused_total() -> None:
    analysis = costmodel.analyze("costmodel.zoo:mobilenet_v1")
    fusion = fuse(analysis, "engine")
    assert abs(sum(fusion.fused_bytes.values()) - fusion.mac_bytes_fused) <= len(fusion.kernels)
    # every op but the views is in a kernel; views in none
    for op in analysis.ops():
        assert (op["kernel"] is None) == (op["op_type"] == "View"), op["name"]


# -- reports --------------------------------------------------------------------------------

def test_json_gains_kernels_and_fused_bytes_next_to_the_per_op_figures(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", "costmodel.zoo:mobilenet_v1", "--fuse", "engine",
                       "--format", "json")
    assert code == 0
    report = json.loads(out)
    totals = report["totals"]
    assert {"madds", "flops", "mac", "mac_bytes", "params"} <= set(totals)
    assert isinstance(totals["kernels"], int) and isinstance(totals["mac_bytes_fused"], int)
    assert totals["kernels"] == 29  # 27 conv-bn-relu, the pool, the classifier
    assert totals["mac_bytes_fused"] == sum(k["mac_bytes"] for k in report["fusion"]["kernels"])
    assert totals["mac_bytes_fused"] < totals["mac_bytes"]
    assert all("kernel" in n for n in report["nodes"])
    norm = next(r for r in report["by_op_type"] if r["op_type"] == "Norm")
    assert norm["mac_removed_pct"] > 99  # folded: its input, output and statistics all go
    plain = json.loads(run(capsys, "analyze", "costmodel.zoo:mobilenet_v1", "--format",
                           "json")[1])
    assert plain["totals"]["mac_bytes"] == totals["mac_bytes"]
    assert "kernels" not in plain["totals"] and "fusion" not in plain


def test_by_kernel_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", "costmodel.zoo:resnet18", "--fuse", "engine",
                       "--by", "kernel")
    assert code == 0
    assert "Fused bytes" in out and "Conv 3x3 + Norm + Elementwise + Activation" in out
    assert re.search(r"fused \(engine: .*\): \d+ kernels", out)


def test_fused_engine_with_free_dims_is_a_formula() -> None:
    analysis = costmodel.analyze(conv_bn_relu(), input_shape=(1, 4, "H", "W"), hints={"H": 8,
                                                                                      "W": 8})
    fused = fuse(analysis, "engine").mac_bytes_fused
    assert not isinstance(fused, int)
    assert fused.subs({s: 8 for s in fused.free_symbols}) == (X + W + 8 + Y) * F32


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["analyze", "costmodel.zoo:resnet18", "--fuse", "xla"], "invalid choice: 'xla'"),
    (["lint", "costmodel.zoo:resnet18", "--fuse", "tensorrt"], "invalid choice: 'tensorrt'"),
    (["analyze", "costmodel.zoo:resnet18", "--fuse", "inductor", "--train"],
     "costmodel.zoo:resnet18: --fuse inductor groups an inference pass"),
    (["analyze", "costmodel.zoo:resnet18", "--fuse", "engine", "--train"],
     "cannot be combined with --train"),
    (["analyze", "costmodel.zoo:resnet18", "--by", "kernel"], "--by kernel needs --fuse"),
    (["analyze", "costmodel.zoo:resnet18", "--fuse", "inductor", "--symbolic", "H,W"],
     "--fuse inductor needs concrete sizes"),
    # half-precision inputs into float32 weights: aot-autograd's trace stops at the first conv
    (["analyze", "costmodel.zoo:resnet18", "--fuse", "inductor", "--dtype", "float16"],
     "inductor cannot trace op convolution_default: Input type (torch.float16)"),
])
def test_bad_fuse_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str],
                                           argv: list[str], message: str) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own error, one line through the parser
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_op_inductor_cannot_lower_is_named(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from torch._inductor import lowering

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("no lowering for this test")

    monkeypatch.setitem(lowering.lowerings, torch.ops.aten.relu.default, refuse)
    code, _, err = run(capsys, "analyze", "costmodel.zoo:mobilenet_v1", "--fuse", "inductor")
    assert code == 2
    assert "inductor cannot lower op" in err and err.count("\n") == 1


# -- the same kernels as inductor's own code generation (slow: it generates the code) --------

def _codegen_groups(analysis: costmodel.Analysis) -> list[tuple[str, tuple[str, ...]]]:
    """The kernels inductor's code generation writes for our graph: every flush of the CPU
    backend's kernel group and every extern call, with the scheduler nodes in each. The
    compile stops once the source is written: no C++ compiler runs."""
    from unittest import mock

    from torch._inductor import config
    from torch._inductor.codegen.cpp import CppScheduling
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.graph import GraphLowering
    from torch._inductor.scheduler import Scheduler

    from costmodel.capture.inductor import graph_module

    groups: list[tuple[str, tuple[str, ...]]] = []
    flush, extern = CppScheduling.flush, Scheduler.codegen_extern_call

    def recording_flush(self: Any) -> Any:
        if self.kernel_group.scheduled_nodes:
            groups.append(("generated", tuple(n.get_name() for n in
                                              self.kernel_group.scheduled_nodes)))
        return flush(self)

    def recording_extern(self: Any, node: Any) -> Any:
        groups.append(("extern", (node.get_name(),)))
        return extern(self, node)

    class Done(Exception):
        pass

    def codegen_only(self: Any) -> Any:
        self.codegen()
        raise Done

    gm, examples = graph_module(analysis.graph.graph["fx"], analysis.graph.graph["outputs"],
                                analysis.model)
    with config.patch(fx_graph_cache=False), \
            mock.patch.object(CppScheduling, "flush", recording_flush), \
            mock.patch.object(Scheduler, "codegen_extern_call", recording_extern), \
            mock.patch.object(GraphLowering, "compile_to_module", codegen_only), \
            pytest.raises(Exception) as stopped, torch.no_grad():
        compile_fx(gm, examples)
    assert "Done" in repr(stopped.value) or isinstance(stopped.value, Done)
    return groups


def _ours(analysis: costmodel.Analysis) -> list[tuple[str, tuple[str, ...]]]:
    """Our kernels as (kind, inductor's scheduler nodes in each)."""
    from costmodel.capture.inductor import schedule

    found = schedule(analysis.graph.graph["fx"], analysis.graph.graph["outputs"],
                     analysis.model)
    return [(k.kind, k.nodes) for k in found.kernels]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenet_v1", "resnet18", "shufflenet_v2_x1_0",
                                   "mobilenet_v2"])
def test_kernels_equal_inductors_own_code_generation(model: str) -> None:
    analysis = costmodel.analyze(f"costmodel.zoo:{model}")
    fusion = fuse(analysis, "inductor")
    theirs = [(kind, set(nodes)) for kind, nodes in _codegen_groups(analysis)]
    ours = [(kind, set(nodes)) for kind, nodes in _ours(analysis)]
    assert ours == theirs
    assert len(fusion.kernels) == len(theirs)
    # and every kernel maps to ops of our graph: the ops in each are inductor's origins
    assert all(kernel.ops for kernel in fusion.kernels)


@pytest.mark.slow
def test_kernel_calls_equal_a_real_torch_compile() -> None:
    """torch.compile of the model itself (Dynamo, inductor, the C++ compiler): its output code
    calls as many generated and extern kernels as our schedule lists."""
    from torch._inductor.utils import run_and_get_code

    from costmodel.zoo import mobilenet_v1

    analysis = costmodel.analyze("costmodel.zoo:mobilenet_v1")
    fusion = fuse(analysis, "inductor")
    model = mobilenet_v1().eval()
    torch._dynamo.reset()
    with torch.no_grad():
        _, (code, *_) = run_and_get_code(torch.compile(model), torch.randn(1, 3, 224, 224))
    body = code[code.index("def call("):]
    generated = re.findall(r"^\s+cpp_fused_\w+\(", body, re.M)
    extern = re.findall(r"extern_kernels\.\w+\(", body)
    kinds = Counter(k.kind for k in fusion.kernels)
    assert (len(generated), len(extern)) == (kinds["generated"], kinds["extern"])
    defined = set(re.findall(r"^(cpp_fused_\w+) = async_compile", code, re.M))
    assert len(defined) == 12  # the sources inductor writes once and calls several times


# -- lint and check -------------------------------------------------------------------------

def test_lint_g4_is_priced_on_what_fusion_cannot_remove() -> None:
    from costmodel.lint.rules import lint
    from costmodel.lint.settings import Settings

    plain = costmodel.analyze("costmodel.zoo:mobilenet_v2")
    fused = costmodel.analyze("costmodel.zoo:mobilenet_v2")
    fusion = fuse(fused, "engine")
    settings = Settings(rules=("G4",))
    before, after = lint(plain, settings).findings, lint(fused, settings).findings
    assert after and len(after) < len(before)
    assert all("priced on what fusion cannot remove" in f.message for f in after)
    assert all(f.details["fused"] == "engine" for f in after)
    # a finding's MAC is what its ops' kernels still move for them, in elements
    for finding in after:
        left = sum(fused.graph.nodes[n]["cost"].mac * fusion.fused_bytes[n]
                   / fused.graph.nodes[n]["cost"].mac_bytes for n in finding.nodes)
        assert abs(finding.mac_excess - left) <= len(finding.nodes)
    # the ReLU6 after a depthwise conv folds away: only the depthwise conv is left to price
    assert all(sum(fused.graph.nodes[n]["op_type"] == "Activation" and fusion.fused_bytes[n] > 0
                   for n in f.nodes) == 0 for f in after)


def test_check_budget_on_fused_mac(tmp_path: Any, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    budget = tmp_path / "costmodel.toml"
    budget.write_text('[models.net]\ntarget = "costmodel.zoo:mobilenet_v1"\nfuse = "engine"\n'
                      'max_mac_bytes_fused = "50MB"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check")
    assert code == 1
    assert "Fused MAC bytes 57,839,936 exceeds models.net.max_mac_bytes_fused" in out
    budget.write_text('[models.net]\ntarget = "costmodel.zoo:mobilenet_v1"\n'
                      'max_mac_bytes_fused = "60MB"\n')
    code, _, err = run(capsys, "check")
    assert code == 2 and "needs a fusion mode" in err and err.count("\n") == 1
    assert run(capsys, "check", "--fuse", "engine")[0] == 0
    budget.write_text('[models.net]\ntarget = "costmodel.zoo:mobilenet_v1"\nfuse = "trt"\n')
    code, _, err = run(capsys, "check")
    assert code == 2 and "costmodel.toml:3: models.net.fuse: expected one of" in err


# -- latency --------------------------------------------------------------------------------

def test_predict_fused_prices_kernels_not_ops(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["predict", "costmodel.zoo:mobilenet_v1", "--profile", "snapdragon-855-cpu",
            "--format", "json"]
    code, out, _ = run(capsys, *argv, "--fuse", "inductor")
    assert code == 0
    fused = json.loads(out)
    eager = json.loads(run(capsys, *argv)[1])
    kernels = [n for n in fused["nodes"] if n["name"].startswith("kernel ")]
    assert len(kernels) == len(fused["nodes"]) == 56  # 28 library calls, 28 generated loops
    classes = Counter(n["class"] for n in kernels)
    assert classes["elementwise"] == 28
    assert classes["conv_pointwise"] == 13 and classes["conv_depthwise"] == 13
    # the convolutions cost what they cost eagerly; the fused loops move less than the ops
    assert fused["totals"]["latency_s"] < eager["totals"]["latency_s"]


def test_validate_fused_without_a_compiler_is_one_line(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._inductor import cpp_builder

    def none(*args: Any) -> str:
        raise RuntimeError("No working C++ compiler found")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", none)
    code, _, err = run(capsys, "validate", "costmodel.zoo:resnet18", "--profile",
                       "snapdragon-855-cpu", "--fuse", "inductor")
    assert code == 2 and "needs a C++ compiler" in err and err.count("\n") == 1
    code, _, err = run(capsys, "validate", "costmodel.zoo:resnet18", "--profile",
                       "snapdragon-855-cpu", "--fuse", "engine")
    assert code == 2 and "use --fuse inductor" in err


@pytest.mark.slow
def test_validate_fused_compiles_and_times_the_model(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    code, out, _ = run(capsys, "validate", "costmodel.zoo:shufflenet_v2_x0_5", "--profile",
                       "snapdragon-855-cpu", "--fuse", "inductor", "--repeat", "5",
                       "--warmup", "1", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["compiled"].startswith("torch.compile")
    protocol = report["protocol"]  # the eager protocol: rounds of runs, re-measured if unsettled
    runs = report["totals"]["measured_runs_s"]
    assert len(runs) >= 5 and len(runs) % (protocol["rounds"] * protocol["per_round"]) == 0
    assert min(runs) <= report["totals"]["measured_s"] <= max(runs)
    assert report["totals"]["measured_s"] > 0 and report["kernels"] > 10


def test_pytest_plugin_budgets_fused_bytes(costmodel_budget: Any) -> None:
    record = costmodel_budget(conv_bn_relu(), (1, 4, 8, 8), fuse="engine",
                              max_mac_bytes_fused=(X + W + 8 + Y) * F32)
    assert record.totals["mac_bytes_fused"] == (X + W + 8 + Y) * F32
    assert record.totals["kernels"] == 1
