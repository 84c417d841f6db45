"""Width traces made cheap: only the parameter sizes a freed width can reach are symbolic, and an
eval batch norm skips torch's decomposition. Every result is checked against hand-derived
values; a scope that falls short must fall back to the full trace, never miscount."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from costmodel import analyze
from costmodel.capture import widthscope
from costmodel.capture.load import InputSpec
from costmodel.capture.symdims import EVERYTHING, SymbolicShapes, symbol
from costmodel.capture.trace import trace
from costmodel.zoo import MODELS

C = symbol("C")
BRANCHES = {"stages.0.0.left.1": "B", "stages.0.*.right.0": "B", "stages.0.*.right.2": "B"}


def _conv_bn(prefix: str) -> set[str]:
    return {f"{prefix}.0.weight", *(f"{prefix}.1.{n}" for n in
                                    ("weight", "bias", "running_mean", "running_var"))}


def test_shufflenet_v2_scope_is_the_stage_and_the_next_stage_inputs() -> None:
    """By hand, for ShuffleNetV2 1.0x with stage 2's branch width B free: every conv-BN of the
    stage's right branches (their outputs are B), the first block's left.1 (24 -> B), and in
    stage 3's first block, which reads the 2B channels of stage 2, the depthwise left.0
    conv-BN and the weights of left.1 and right.0 (2B -> 116); nothing else: not the first
    block's left.0 (depthwise on the 24 stem channels), nor stage 3's inner width 116."""
    with torch.device("meta"):
        model = MODELS["shufflenet_v2_x1_0"]()
    concrete = trace(model, [InputSpec((1, 3, 224, 224), torch.float32)], on_meta=True)
    expected = {name for block in range(4) for part in range(3)
                for name in _conv_bn(f"stages.0.{block}.right.{part}")}
    expected |= _conv_bn("stages.0.0.left.1") | _conv_bn("stages.1.0.left.0")
    expected |= {"stages.1.0.left.1.0.weight", "stages.1.0.right.0.0.weight"}
    assert widthscope.parameter_scope(concrete, BRANCHES) == expected


def test_shufflenet_v2_width_trace_makes_only_the_scope_symbolic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage MAC of docs/free-dims.md, from a trace whose symbolic parameters are the 72
    of the scope above (the full trace makes all 338 symbolic) and with no fall-back."""
    fakified: list[str] = []
    fakify = SymbolicShapes.fakify

    def spy(self: SymbolicShapes, tensor: torch.Tensor, name: str = "") -> torch.Tensor:
        fake = fakify(self, tensor, name)
        if any(isinstance(d, torch.SymInt) for d in fake.shape):
            fakified.append(name)
        return fake

    monkeypatch.setattr(SymbolicShapes, "fakify", spy)
    with torch.device("meta"):
        model = MODELS["shufflenet_v2_x1_0"]()
    analysis = analyze(model, input_shape=(1, 3, 224, 224), widths=BRANCHES)
    from costmodel.report import by_module

    stage = next(r["mac"] for r in by_module(analysis) if r["module"] == "stages.0")
    assert stage == 7 * symbol("B") ** 2 + 92648 * symbol("B") + 226104
    assert len(fakified) == 72 and len(set(fakified)) == 72


class Halves(nn.Module):
    """conv 3->4 (freed as C), chunk in two, a 1x1 conv 2->5 on the second half: that conv's
    input channels are C - ceil(C/2) = floor(C/2), a tie torch records only as a guard."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 1, bias=False)
        self.c = nn.Conv2d(2, 5, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.left(x).chunk(2, dim=1)[1])


class AddConv(nn.Module):
    """conv a 3->8 (freed as C) plus conv b 3->8: the add ties b's outputs to C."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1, bias=False)
        self.b = nn.Conv2d(3, 8, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


@pytest.mark.parametrize("model, widths, drop, params", [
    # the scope misses c: the guard Eq(floor((C + 1)/2), 2) pins C: by hand 3C + 5 floor(C/2)
    (Halves, {"left": "C"}, "c.weight", lambda c: 3 * c + 5 * (c // 2)),
    # the scope misses b: the add fixes C to 8 (an error in the scoped trace): by hand 6C
    (AddConv, {"a": "C"}, "b.weight", lambda c: 6 * c),
])
def test_a_scope_that_falls_short_falls_back_to_the_full_trace(
        monkeypatch: pytest.MonkeyPatch, model: type[nn.Module], widths: dict[str, str],
        drop: str, params: Callable[[int], int]) -> None:
    scope = widthscope.parameter_scope
    assert drop in scope(trace(model(), [InputSpec((1, 3, 4, 4), torch.float32)],
                               on_meta=True), widths)
    monkeypatch.setattr(widthscope, "parameter_scope", lambda *a: scope(*a) - {drop})
    scopes: list[object] = []
    traced = widthscope.trace

    def spy(*args: object, **kwargs: object) -> object:
        scopes.append(kwargs.get("scope"))
        return traced(*args, **kwargs)

    monkeypatch.setattr(widthscope, "trace", spy)
    total = analyze(model(), input_shape=(1, 3, 4, 4), widths=widths).total()
    assert all(total.params.subs(C, c) == params(c) for c in range(1, 13))
    assert scopes[-1] is EVERYTHING and isinstance(scopes[-2], set)


def test_width_traces_skip_the_batch_norm_decomposition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch norm's ties come from `torch._check`, not from its Python decomposition, which
    is not run on symbolic sizes (it is on the concrete ones, where it is cheap): conv 3->C,
    BN(C), conv C->8, BN(8) gives 27C + 2C + 8C + 16 params by hand, and the first BN's
    inputs follow C."""
    from torch._decomp import decompositions

    calls: list[int] = []
    helper = decompositions.native_batch_norm_helper

    def spy(x: torch.Tensor, *args: object, **kwargs: object) -> object:
        if any(isinstance(d, torch.SymInt) for d in x.shape):
            calls.append(1)
        return helper(x, *args, **kwargs)

    monkeypatch.setattr(decompositions, "native_batch_norm_helper", spy)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8),
                          nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)).eval()
    analysis = analyze(model, input_shape=(1, 3, 6, 6), widths={"0": "C"})
    assert analysis.total().params == 37 * C + 16 and calls == []
    assert analysis.total().madds == 16 * (27 * C + 8 * C)  # 4x4 pixels out
    norms = [op["input_shapes"] for op in analysis.ops()
             if op["target"] == "aten.native_batch_norm.default"]
    assert norms == [[(1, C, 4, 4)] + [(C,)] * 4, [(1, 8, 4, 4)] + [(8,)] * 4]


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_batch_norm_shortcut_returns_what_the_decomposition_does(
        device: str, dtype: torch.dtype) -> None:
    """Shapes, dtypes and strides of the three outputs, against torch's own decomposition on
    the same symbolic fake tensors (a channels-last input, so strides are not trivial)."""
    from torch._decomp import decompositions

    from costmodel.capture.symdims import _eval_batch_norm

    shapes = SymbolicShapes(widths={"x": "C"})
    x = torch.empty(2, 6, 5, 4, dtype=dtype, device=device).to(
        memory_format=torch.channels_last)
    stats = [torch.empty(6, device=device) for _ in range(4)]
    with torch.device(device):
        fakes = [shapes.fakify(t, f"t{i}") for i, t in enumerate([x, *stats])]
    args = (*fakes, False, 0.1, 1e-5)
    with shapes.fake_mode:
        expected = decompositions.native_batch_norm(*args)
    got = _eval_batch_norm(shapes.fake_mode, *args)

    def sizes(values: tuple[object, ...]) -> list[object]:
        return [shapes.env.replace(v.node.expr) if isinstance(v, torch.SymInt) else v
                for v in values]

    assert len(got) == len(expected) == 3
    for e, g in zip(expected, got):
        assert (sizes(g.shape), sizes(g.stride()), g.dtype, g.device) == (
            sizes(e.shape), sizes(e.stride()), e.dtype, e.device)
