"""Training-step costs: backward ops tied to their forward ops, backward Mult-Adds against torch's
FlopCounterMode and against closed forms where FlopCounterMode is wrong (grouped convolutions),
the optimizer's update and state, and one-line errors for bad training input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from costmodel import analyze
from costmodel.cli import main
from costmodel.formulas import OpCall, TensorMeta, lookup
from costmodel.train import phase_totals
from costmodel.zoo import MODELS

aten = torch.ops.aten


def _meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return MODELS[name]()


def _flop_counter_madds(model: nn.Module, inputs: list[torch.Tensor]) -> int:
    """torch's own count of forward + backward, on meta tensors: FLOPs / 2 for contractions."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(*inputs)
        out.backward(torch.ones_like(out))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name, shape, dtype", [
    ("resnet18", (2, 3, 64, 64), torch.float32),
    ("llama_tiny", (2, 32), torch.int64),
])
def test_training_mult_adds_equal_flop_counter_without_grouped_convs(
        name: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    model = _meta_model(name)
    analysis = analyze(model, input_shape=shape, dtype=dtype, train=True)
    phases = phase_totals(analysis.ops())
    expected = _flop_counter_madds(model, [torch.empty(shape, dtype=dtype, device="meta")])
    assert phases["forward"].madds + phases["backward"].madds == expected
    assert phases["backward"].madds > phases["forward"].madds  # the backward really is there


def _depthwise_case() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    x, w = torch.randn(2, 8, 6, 6), torch.randn(8, 1, 3, 3)
    grad_out = torch.randn(2, 8, 6, 6)
    return x, w, grad_out


def test_depthwise_backward_is_two_forward_convolutions_executed_on_real_tensors() -> None:
    """torch's convolution_backward of a depthwise 3x3 conv (8 channels) computes exactly what
    two grouped forward convolutions compute, each with the forward's work; FlopCounterMode
    counts those forward convolutions correctly, and our formula equals their sum."""
    x, w, grad_out = _depthwise_case()
    n, c, h, wd, k = 2, 8, 6, 6, 3
    grad_input, grad_weight, _ = aten.convolution_backward(
        grad_out, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], c, [True, True, False])
    with FlopCounterMode(display=False) as counter:
        gi = F.conv_transpose2d(grad_out, w, padding=1, groups=c)
        # weight gradient: each channel's input correlated with its output gradient, summed
        # over the batch: the batch folds into the channels of a grouped convolution
        gw = F.conv2d(x.transpose(0, 1).reshape(1, c * n, h, wd), grad_out.transpose(0, 1),
                      padding=1, groups=c).reshape(c, 1, k, k)
    torch.testing.assert_close(gi, grad_input)
    torch.testing.assert_close(gw, grad_weight)
    executed_madds = counter.get_total_flops() // 2
    hand = 2 * (n * c * h * wd * k * k)  # 2 x the forward's N*C*H*W*9
    assert executed_madds == hand

    meta = [TensorMeta(tuple(t.shape), t.dtype) for t in (grad_out, x, w)]
    call = OpCall(aten.convolution_backward.default,
                  (*meta, None, [1, 1], [1, 1], [1, 1], False, [0, 0], c, [True, True, False]),
                  {}, (meta[1], meta[2]))
    ours = lookup(call.target).formula(call)
    assert ours.madds == hand
    assert ours.flops == 2 * hand
    # MAC: read grad_out, the weight and the input, write both gradients
    assert ours.mac == grad_out.numel() + 2 * (w.numel() + x.numel())
    assert lookup(call.target).type_of(call) == "Conv DW 3x3"

    with FlopCounterMode(display=False) as wrong:  # the trap the formula avoids: 9x, not 2x
        aten.convolution_backward(grad_out, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
                                  c, [True, True, False])
    assert wrong.get_total_flops() // 2 == (c + 1) * hand // 2


@pytest.mark.parametrize("name", ["mobilenet_v1", "shufflenet_v1_g3"])
def test_grouped_models_backward_is_the_closed_form(name: str) -> None:
    """Backward Mult-Adds = 2 x every conv and linear layer's forward, less the input gradient
    of the first convolution (its input, the image, needs none)."""
    analysis = analyze(_meta_model(name), input_shape=(1, 3, 64, 64), train=True)
    forward = [op for op in analysis.ops() if op.get("phase") == "forward"]
    contractions = [op for op in forward if op["cost"].madds]
    first_conv = next(op for op in forward if op["target"] == "aten.convolution.default")
    closed = 2 * sum(op["cost"].madds for op in contractions) - first_conv["cost"].madds
    assert phase_totals(analysis.ops())["backward"].madds == closed
    # and the first layer's backward node computes only the weight gradient
    grads = [op for op in analysis.ops() if op.get("differentiates") == first_conv["name"]
             and op["target"] == "aten.convolution_backward.default"]
    assert [op["cost"].madds for op in grads] == [first_conv["cost"].madds]


class _TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8, bias=False)
        self.act = nn.ReLU()
        self.b = nn.Linear(8, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(x)))


def test_each_backward_op_is_attributed_to_the_forward_op_it_differentiates() -> None:
    with torch.device("meta"):
        model = _TwoLayers()
    analysis = analyze(model, input_shape=(3, 4), train=True)
    ops = {op["name"]: op for op in analysis.ops()}
    backward = [op for op in ops.values() if op["phase"] == "backward"]
    by_target = {}
    for op in backward:
        if op["differentiates"] is not None:
            by_target.setdefault(ops[op["differentiates"]]["module"], set()).add(op["target"])
    # b: grad of its input (3x2 @ 2x8) and of its weight; act: threshold_backward; a: only the
    # weight gradient, since x needs none
    assert "aten.threshold_backward.default" in by_target["act"]
    assert {"aten.mm.default"} <= by_target["b"] and {"aten.mm.default"} <= by_target["a"]
    madds = {m: sum(op["cost"].madds for op in backward if op["module"] == m)
             for m in ("a", "b", "act")}
    assert madds == {"a": 3 * 4 * 8, "b": 2 * 3 * 2 * 8, "act": 0}
    # AccumulateGrad steals each weight gradient into .grad: the mm that wrote it
    grads = analysis.graph.graph["grads"]
    assert set(grads) == {"a.weight", "b.weight"}
    writers = {name: [op["module"] for op in backward if op["target"] == "aten.mm.default"
                      and op["storages"][0][0] == grads[name]] for name in grads}
    assert writers == {"a.weight": ["a"], "b.weight": ["b"]}


def test_optimizer_state_bytes_equal_torch_optimizers_state() -> None:
    from costmodel.views.memory import analyze_memory

    torch.manual_seed(0)
    for name, make in [("sgd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
                       ("adam", lambda p: torch.optim.Adam(p)),
                       ("adamw", lambda p: torch.optim.AdamW(p))]:
        model = _TwoLayers()
        optimizer = make(model.parameters())
        model(torch.randn(3, 4)).sum().backward()
        optimizer.step()
        real = sum(t.nbytes for state in optimizer.state.values() for t in state.values()
                   if isinstance(t, torch.Tensor))
        with torch.device("meta"):
            meta_model = _TwoLayers()
        memory = analyze_memory(meta_model, input_shape=(3, 4), train=True, optimizer=name)
        assert memory.optimizer_bytes == real, name


def test_optimizer_step_costs_its_element_wise_update() -> None:
    with torch.device("meta"):
        model = _TwoLayers()
    params = 4 * 8 + 8 * 2
    for name, flops, mac in [("sgd", 4, 5), ("adam", 13, 7), ("adamw", 14, 7)]:
        analysis = analyze(model, input_shape=(3, 4), train=True, optimizer=name)
        step = phase_totals(analysis.ops())["optimizer"]
        assert (step.madds, step.flops, step.mac, step.mac_bytes) == (
            0, flops * params, mac * params, 4 * mac * params)


def test_json_reports_the_split(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "costmodel.zoo:llama_tiny", "--train", "--optimizer", "adam",
                 "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["train"] and report["optimizer"] == "adam"
    phases = report["phases"]
    assert phases["backward"]["madds"] == 2 * phases["forward"]["madds"]  # no convolutions
    assert sum(p["madds"] for p in phases.values()) == report["totals"]["madds"]
    rows = {r["op_type"]: r for r in report["by_op_type"]}
    assert rows["Attention"]["backward_madds"] == 2 * (
        rows["Attention"]["madds"] - rows["Attention"]["backward_madds"])


FROZEN = '''\
import torch
from torch import nn

input_shape = (1, 4)


def frozen():
    model = nn.Linear(4, 2)
    model.requires_grad_(False)
    return model
'''


@pytest.mark.parametrize("argv, message", [
    (["analyze", "costmodel.zoo:llama_tiny", "--train", "--optimizer", "nosuch"],
     "unknown optimizer 'nosuch'"),
    (["memory", "costmodel.zoo:llama_tiny", "--train", "--optimizer", "nosuch"],
     "unknown optimizer 'nosuch'"),
    (["analyze", "costmodel.zoo:llama_tiny", "--optimizer", "adam"], "needs --train"),
    (["analyze", "{frozen}:frozen", "--train"], "no output depends on a parameter"),
    (["memory", "{frozen}:frozen", "--train"], "no output depends on a parameter"),
])
def test_bad_training_input_is_one_line_and_exit_2(
        argv: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "frozen.py").write_text(FROZEN)
    argv = [a.format(frozen=tmp_path / "frozen.py") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), groups=st.sampled_from([1, 2, 4]), per_group=st.integers(1, 3),
       out_per_group=st.integers(1, 3), size=st.integers(5, 9), kernel=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), padding=st.integers(0, 1),
       mask=st.sampled_from([(True, True, False), (False, True, False), (True, False, False),
                             (True, True, True)]))
def test_convolution_backward_formula_over_shapes(
        n: int, groups: int, per_group: int, out_per_group: int, size: int, kernel: int,
        stride: int, padding: int, mask: tuple[bool, bool, bool]) -> None:
    """Dense: equal to FlopCounterMode on convolution_backward itself. Any groups: each
    requested gradient costs one forward convolution, as FlopCounterMode counts the forward."""
    c_in, c_out = groups * per_group, groups * out_per_group
    x = torch.empty(n, c_in, size, size, device="meta")
    w = torch.empty(c_out, per_group, kernel, kernel, device="meta")
    with FlopCounterMode(display=False) as forward:
        y = F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
    grad_out = torch.empty_like(y)
    args = (grad_out, x, w, [c_out] if mask[2] else None, [stride] * 2, [padding] * 2, [1, 1],
            False, [0, 0], groups, list(mask))
    outs = aten.convolution_backward(*args)
    meta = [TensorMeta(tuple(t.shape), t.dtype) for t in (grad_out, x, w)]
    call = OpCall(aten.convolution_backward.default, (*meta, *args[3:]), {},
                  tuple(TensorMeta(tuple(t.shape), t.dtype) for t in outs if t is not None))
    ours = lookup(call.target).formula(call)
    assert ours.madds == forward.get_total_flops() // 2 * (int(mask[0]) + int(mask[1]))
    assert ours.flops == 2 * ours.madds + (grad_out.numel() if mask[2] else 0)
    if groups == 1:
        with FlopCounterMode(display=False) as backward:
            aten.convolution_backward(*args)
        assert ours.madds == backward.get_total_flops() // 2


def test_tables_show_the_backward_share(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "costmodel.zoo:llama_tiny", "--train"]) == 0
    out = capsys.readouterr().out
    assert "Bwd Mult-Adds" in out and "training step: forward Mult-Adds 3.95M" in out
    assert main(["diff", "costmodel.zoo:llama_tiny", "costmodel.zoo:llama_tiny", "--train",
                 "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["models"][0]["totals"]
    assert totals["madds"]["after"] == 3 * 3_948_544  # forward + backward, twice the forward
    assert totals["peak_bytes"]["after"] > 0


def _tiny_llm() -> nn.Module:
    """A LLaMA-style decoder written outside the project: plain modules, a fused QKV, and
    F.scaled_dot_product_attention(is_causal=True)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tiny_llm", Path(__file__).parent / "models" / "tiny_llm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


@pytest.mark.parametrize("build", [_tiny_llm, lambda: MODELS["llama_tiny"]()],
                         ids=["tiny_llm", "llama_tiny"])
def test_a_decoder_built_on_the_cpu_trains_at_the_meta_models_count(build) -> None:
    """Built on the CPU, SDPA takes the fused flash kernel for CPU and its backward; built on
    meta it decomposes into matmuls. Both count the same training step, FlopCounterMode's on
    meta (which has no fused op to miss), with nothing unsupported."""
    shape = (2, 16)
    torch.manual_seed(0)
    on_cpu = build()
    analysis = analyze(on_cpu, input_shape=shape, dtype=torch.int64, train=True)
    targets = {op["target"] for op in analysis.ops()}
    assert "aten._scaled_dot_product_flash_attention_for_cpu_backward.default" in targets
    assert not analysis.unsupported()
    with torch.device("meta"):
        on_meta = build()
    expected = _flop_counter_madds(on_meta, [torch.zeros(shape, dtype=torch.int64,
                                                         device="meta")])
    phases = phase_totals(analysis.ops())
    assert phases["forward"].madds + phases["backward"].madds == expected
    meta_analysis = analyze(on_meta, input_shape=shape, dtype=torch.int64, train=True)
    assert meta_analysis.total().madds == analysis.total().madds
