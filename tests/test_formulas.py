"""The registered aten-op formulas, checked against real PyTorch runs and hand-derived values.

Every op here runs on small real CPU tensors under ``FlopCounterMode`` (kernels that exist
only for other devices run on meta tensors). The formula under test sees only what the tracer
would give it (an ``OpCall`` with each tensor replaced by its ``TensorMeta``), and its answer is
compared with numbers taken from torch itself:

* Mult-Adds of contractions == ``FlopCounterMode`` total / 2 (it counts 2 FLOPs per
  multiply-add and ignores bias), or a hand-derived product where torch counts nothing;
* MAC == the elements of the real input and output tensors (``numel``), ``mac_bytes`` the same
  in bytes;
* FLOPs of the non-contraction families == the per-element constant that each family module
  documents, times the real output (or input) size;
* views cost nothing, and a reshape or ``contiguous`` costs a copy exactly when torch copied;
* every aten op that common ``torch.nn`` layers export to has a formula.

Each expectation comes from torch (FlopCounterMode, numel) or is derived by hand in the test.

No expectation is computed by the code under test.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torch_oracles import window_elements

from costmodel import analyze
from costmodel.cost import Cost
from costmodel.formulas import OpCall, TensorMeta, lookup

aten = torch.ops.aten
FAST = settings(max_examples=25, deadline=None)
DTYPES = st.sampled_from([torch.float32, torch.float64])
Shape = tuple[int, ...]


# --- the harness --------------------------------------------------------------------------------


class Run(NamedTuple):
    """What one op costs by its formula, and what torch says about the same call."""

    cost: Cost
    torch_flops: int
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    op_type: str


def meta_of(t: torch.Tensor) -> TensorMeta:
    return TensorMeta(tuple(t.shape), t.dtype, tuple(t.stride()))


def to_call_value(value: Any) -> Any:
    """The value with every tensor, also inside lists and tuples, replaced by its TensorMeta."""
    if isinstance(value, torch.Tensor):
        return meta_of(value)
    if isinstance(value, (list, tuple)):
        return type(value)(to_call_value(v) for v in value)
    return value


def tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    return []


def run_op(op: Any, *args: Any, **kwargs: Any) -> Run:
    """Run `op` for real under FlopCounterMode and evaluate its registered formula on the call."""
    return evaluate(op, args, kwargs, count=True)


def evaluate(op: Any, args: tuple[Any, ...], kwargs: dict[str, Any], count: bool) -> Run:
    """`run_op`; with count=False, for ops whose FlopCounterMode formula cannot take the call."""
    call_args = tuple(to_call_value(a) for a in args)  # taken before an in-place op runs
    call_kwargs = {k: to_call_value(v) for k, v in kwargs.items()}
    inputs = tensors_in(list(args)) + tensors_in(list(kwargs.values()))
    counter = FlopCounterMode(display=False)
    if count:
        with counter:
            result = op(*args, **kwargs)
    else:
        result = op(*args, **kwargs)
    outputs = tensors_in(result)
    call = OpCall(op, call_args, call_kwargs, tuple(meta_of(t) for t in outputs))
    entry = lookup(op)
    assert entry is not None, f"{op} has no formula"
    return Run(entry.formula(call), counter.get_total_flops(), inputs, outputs,
               entry.type_of(call))


def torch_flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def numel(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors)


def nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def assert_io_mac(run: Run) -> None:
    """MAC reads every real input once and writes every real output once."""
    tensors = run.inputs + run.outputs
    assert run.cost.mac == numel(tensors)
    assert run.cost.mac_bytes == nbytes(tensors)


def assert_madds_match_torch(run: Run) -> None:
    assert run.torch_flops > 0, "FlopCounterMode counted nothing: not a usable reference"
    assert run.cost.madds * 2 == run.torch_flops


def assert_zero(cost: Cost) -> None:
    assert all(v == 0 for v in cost.as_dict().values()), cost


def rand(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(tuple(shape), dtype=dtype)


# --- strategies ---------------------------------------------------------------------------------


def sizes(lo: int = 1, hi: int = 4) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


def shapes(min_dims: int = 1, max_dims: int = 4, hi: int = 4) -> st.SearchStrategy[list[int]]:
    return st.lists(sizes(1, hi), min_size=min_dims, max_size=max_dims)


@st.composite
def broadcast_pair(draw: st.DrawFn, max_dims: int = 3) -> tuple[Shape, Shape, Shape]:
    """Two shapes that broadcast together, and the full shape they could both broadcast to."""
    full = tuple(draw(shapes(1, max_dims)))

    def operand() -> Shape:
        kept = draw(st.integers(0, len(full)))
        return tuple(1 if draw(st.booleans()) else d for d in full[len(full) - kept:])

    return operand(), operand(), full


class ConvCase(NamedTuple):
    x: Shape
    w: Shape
    c_out: int
    bias: bool
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    output_padding: list[int]
    groups: int


@st.composite
def conv_cases(draw: st.DrawFn, spatial: int, transposed: bool = False,
               batched: bool | None = None) -> ConvCase:
    groups = draw(st.integers(1, 3))
    if draw(st.booleans()):  # depthwise, channel multiplier 1 or 2
        c_in, c_out = groups, groups * draw(st.integers(1, 2))
    else:
        c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    top = 3 if spatial < 3 else 2
    kernel = [draw(st.integers(1, top)) for _ in range(spatial)]
    stride = [draw(st.integers(1, top)) for _ in range(spatial)]
    dilation = [draw(st.integers(1, 2)) for _ in range(spatial)]
    out_pad = [0] * spatial
    if transposed:
        padding = [draw(st.integers(0, 1)) for _ in range(spatial)]
        out_pad = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
        size = [draw(st.integers(1, 4)) for _ in range(spatial)]
        for i, k, s, p, d, o in zip(size, kernel, stride, padding, dilation, out_pad):
            assume((i - 1) * s - 2 * p + d * (k - 1) + o + 1 >= 1)
        w = (c_in, c_out // groups, *kernel)
    else:
        padding = [draw(st.integers(0, 2)) for _ in range(spatial)]
        size = [max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 3))
                for k, p, d in zip(kernel, padding, dilation)]
        w = (c_out, c_in // groups, *kernel)
    if batched is None:
        batched = draw(st.booleans())
    lead = (draw(st.integers(1, 2)),) if batched else ()
    return ConvCase((*lead, c_in, *size), w, c_out, draw(st.booleans()), stride, padding,
                    dilation, out_pad, groups)


def conv_tensors(case: ConvCase, dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    bias = rand((case.c_out,), dtype) if case.bias else None
    return rand(case.x, dtype), rand(case.w, dtype), bias


def check_conv(run: Run, case: ConvCase) -> None:
    """Mult-Adds as torch counts them, a FLOP per output for a bias, MAC of x, w, b and y."""
    _, w, *rest = run.inputs
    (y,) = run.outputs
    assert_madds_match_torch(run)
    assert run.cost.flops == run.torch_flops + (y.numel() if case.bias else 0)
    assert_io_mac(run)
    assert run.cost.params == w.numel() + (case.c_out if case.bias else 0)
    assert len(rest) == (1 if case.bias else 0)


@pytest.mark.parametrize("spatial", [1, 2, 3])
@FAST
@given(data=st.data(), dtype=DTYPES)
def test_conv_nd(spatial: int, data: st.DataObject, dtype: torch.dtype) -> None:
    case = data.draw(conv_cases(spatial))
    x, w, b = conv_tensors(case, dtype)
    op = getattr(aten, f"conv{spatial}d").default
    run = run_op(op, x, w, b, case.stride, case.padding, case.dilation, case.groups)
    check_conv(run, case)


@pytest.mark.parametrize("spatial", [1, 2])
@FAST
@given(data=st.data(), dtype=DTYPES)
def test_conv_transpose(spatial: int, data: st.DataObject, dtype: torch.dtype) -> None:
    case = data.draw(conv_cases(spatial, transposed=True))
    x, w, b = conv_tensors(case, dtype)
    packet = getattr(aten, f"conv_transpose{spatial}d")
    op = getattr(packet, packet.overloads()[0])  # conv_transpose1d.default, 2d.input
    run = run_op(op, x, w, b, case.stride, case.padding, case.output_padding, case.groups,
                 case.dilation)
    check_conv(run, case)


@FAST
@given(data=st.data(), transposed=st.booleans())
def test_convolution_low_level(data: st.DataObject, transposed: bool) -> None:
    case = data.draw(conv_cases(2, transposed=transposed, batched=True))
    x, w, b = conv_tensors(case, torch.float32)
    run = run_op(aten.convolution.default, x, w, b, case.stride, case.padding, case.dilation,
                 transposed, case.output_padding, case.groups)
    check_conv(run, case)


@FAST
@given(case=conv_cases(2, batched=True))
def test_backend_convolutions(case: ConvCase) -> None:
    """_convolution and the CPU kernel mkldnn_convolution (not counted by FlopCounterMode:
    the reference is the same convolution run through aten.convolution)."""
    x, w, b = conv_tensors(case, torch.float32)
    reference = torch_flops(lambda: aten.convolution.default(
        x, w, b, case.stride, case.padding, case.dilation, False, [0, 0], case.groups))
    run = run_op(aten._convolution.default, x, w, b, case.stride, case.padding, case.dilation,
                 False, [0, 0], case.groups, False, False, True, True)
    check_conv(run, case)
    mkldnn = run_op(aten.mkldnn_convolution.default, x, w, b, case.padding, case.stride,
                    case.dilation, case.groups)
    assert mkldnn.cost.madds * 2 == reference
    assert_io_mac(mkldnn)


@FAST
@given(case=conv_cases(2, batched=True), keyword=st.booleans())
def test_conv2d_same_padding(case: ConvCase, keyword: bool) -> None:
    x, w, b = conv_tensors(case, torch.float32)
    args: dict[str, Any] = {"dilation": case.dilation, "groups": case.groups}
    if keyword:
        run = run_op(aten.conv2d.padding, x, w, b, padding="same", **args)
    else:
        run = run_op(aten.conv2d.padding, x, w, b, [1, 1], "same", case.dilation, case.groups)
    check_conv(run, case)


@FAST
@given(g=sizes(1, 4), a=sizes(1, 3), b=sizes(1, 3), h=sizes(1, 6), w=sizes(1, 6))
def test_conv1x1_shufflenet_v2_equations(g: int, a: int, b: int, h: int, w: int) -> None:
    """ShuffleNet V2, guideline G1/G2: a 1x1 conv costs B = h*w*c1*c2/g Mult-Adds and
    MAC = h*w*(c1 + c2) + c1*c2/g."""
    c1, c2 = a * g, b * g
    run = run_op(aten.conv2d.default, rand((1, c1, h, w)), rand((c2, c1 // g, 1, 1)), None,
                 [1], [0], [1], g)
    assert run.cost.madds == h * w * c1 * c2 // g
    assert run.cost.mac == h * w * (c1 + c2) + c1 * c2 // g
    assert run.cost.mac_bytes == 4 * (h * w * (c1 + c2) + c1 * c2 // g)


@FAST
@given(c=sizes(1, 6), h=sizes(1, 6), w=sizes(1, 6), m=sizes(1, 2))
def test_depthwise3x3_mobilenet_equation(c: int, h: int, w: int, m: int) -> None:
    """MobileNet: a depthwise 3x3 conv (same padding, stride 1) costs 3*3*M*Df*Df Mult-Adds."""
    run = run_op(aten.conv2d.default, rand((1, c, h, w)), rand((c * m, 1, 3, 3)), None,
                 [1], [1], [1], c)
    assert run.cost.madds == 9 * c * m * h * w
    assert run.cost.mac == c * h * w + c * m * 9 + c * m * h * w


# --- contractions: linear layers, matrix products, einsum ---------------------------------------


@FAST
@given(lead=shapes(0, 2), k=sizes(), n=sizes(), bias=st.booleans(), dtype=DTYPES)
def test_linear(lead: list[int], k: int, n: int, bias: bool, dtype: torch.dtype) -> None:
    x, w = rand((*lead, k), dtype), rand((n, k), dtype)
    b = rand((n,), dtype) if bias else None
    run = run_op(aten.linear.default, x, w, b)
    (y,) = run.outputs
    assert_madds_match_torch(run)
    assert run.cost.madds == math.prod(lead) * k * n
    assert run.cost.flops == run.torch_flops + (y.numel() if bias else 0)
    assert_io_mac(run)
    assert run.cost.params == n * k + (n if bias else 0)


@FAST
@given(m=sizes(), k=sizes(), n=sizes(), bias_shape=st.sampled_from(["n", "1n", "m1", "mn"]),
       dtype=DTYPES)
def test_addmm(m: int, k: int, n: int, bias_shape: str, dtype: torch.dtype) -> None:
    bias = rand([{"m": m, "n": n, "1": 1}[c] for c in bias_shape], dtype)
    run = run_op(aten.addmm.default, bias, rand((m, k), dtype), rand((k, n), dtype))
    assert_madds_match_torch(run)
    assert run.cost.flops == run.torch_flops + m * n
    assert_io_mac(run)


@FAST
@given(m=sizes(), k=sizes(), n=sizes(), dtype=DTYPES)
def test_mm(m: int, k: int, n: int, dtype: torch.dtype) -> None:
    run = run_op(aten.mm.default, rand((m, k), dtype), rand((k, n), dtype))
    assert_madds_match_torch(run)
    assert run.cost.flops == run.torch_flops
    assert_io_mac(run)


@FAST
@given(b=sizes(), m=sizes(), k=sizes(), n=sizes(), dtype=DTYPES)
def test_bmm(b: int, m: int, k: int, n: int, dtype: torch.dtype) -> None:
    run = run_op(aten.bmm.default, rand((b, m, k), dtype), rand((b, k, n), dtype))
    assert_madds_match_torch(run)
    assert run.cost.madds == b * m * k * n
    assert_io_mac(run)


@FAST
@given(b=sizes(), m=sizes(), k=sizes(), n=sizes(),
       input_shape=st.sampled_from(["bmn", "mn", "1mn", "n", "b11"]))
def test_baddbmm(b: int, m: int, k: int, n: int, input_shape: str) -> None:
    bias = rand([{"b": b, "m": m, "n": n, "1": 1}[c] for c in input_shape])
    run = run_op(aten.baddbmm.default, bias, rand((b, m, k)), rand((b, k, n)))
    assert_madds_match_torch(run)
    assert run.cost.flops == run.torch_flops + b * m * n
    assert_io_mac(run)


@FAST
@given(b=sizes(), m=sizes(), k=sizes(), n=sizes())
def test_addbmm(b: int, m: int, k: int, n: int) -> None:
    """Sums a batch of products into one (m, n) matrix (FlopCounterMode does not count it)."""
    b1, b2 = rand((b, m, k)), rand((b, k, n))
    run = run_op(aten.addbmm.default, rand((m, n)), b1, b2)
    assert run.cost.madds * 2 == torch_flops(lambda: torch.bmm(b1, b2)) == 2 * b * m * k * n
    assert_io_mac(run)


@FAST
@given(m=sizes(), k=sizes())
def test_addmv(m: int, k: int) -> None:
    a, v = rand((m, k)), rand((k,))
    run = run_op(aten.addmv.default, rand((m,)), a, v)
    assert run.cost.madds * 2 == torch_flops(lambda: torch.mm(a, v.unsqueeze(1)))
    assert_io_mac(run)


@FAST
@given(lead_a=shapes(0, 2), lead_b=shapes(0, 2), k=sizes())
def test_inner(lead_a: list[int], lead_b: list[int], k: int) -> None:
    """inner contracts the last dims: one multiply-add per output element per k."""
    a, b = rand((*lead_a, k)), rand((*lead_b, k))
    run = run_op(aten.inner.default, a, b)
    assert run.cost.madds == math.prod(lead_a) * math.prod(lead_b) * k
    assert_io_mac(run)


@st.composite
def matmul_shapes(draw: st.DrawFn) -> tuple[Shape, Shape]:
    """Operands of torch.matmul: 1-D vectors, matrices and broadcasting batches of matrices."""
    m, k, n = draw(sizes()), draw(sizes()), draw(sizes())
    batch_a, batch_b, _ = draw(broadcast_pair(max_dims=2))
    a: Shape = (k,) if draw(st.integers(0, 3)) == 0 else (*batch_a, m, k)
    b: Shape = (k,) if draw(st.integers(0, 3)) == 0 else (*batch_b, k, n)
    return a, b


@FAST
@given(operands=matmul_shapes())
def test_matmul(operands: tuple[Shape, Shape]) -> None:
    a, b = rand(operands[0]), rand(operands[1])
    run = run_op(aten.matmul.default, a, b)
    # torch lowers a 1-D operand to mv or dot, which FlopCounterMode does not count: measure the
    # same product with the vectors written as (1, k) and (k, 1) matrices.
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    reference = torch_flops(lambda: torch.matmul(a2, b2))
    assert reference > 0
    if run.torch_flops:
        assert run.torch_flops == reference
    assert run.cost.madds * 2 == reference
    assert_io_mac(run)


@FAST
@given(m=sizes(), k=sizes())
def test_mv_and_dot(m: int, k: int) -> None:
    a, v = rand((m, k)), rand((k,))
    mv = run_op(aten.mv.default, a, v)
    assert mv.cost.madds * 2 == torch_flops(lambda: torch.mm(a, v.unsqueeze(1))) == 2 * m * k
    assert_io_mac(mv)
    dot = run_op(aten.dot.default, v, v.clone())
    assert dot.cost.madds == k
    assert_io_mac(dot)


def rnn_call(layer: nn.RNNBase, x: torch.Tensor) -> tuple[Any, tuple[Any, ...]]:
    """The aten op an nn.LSTM/GRU/RNN exports to, with its arguments."""
    dirs = 2 if layer.bidirectional else 1
    lead = (layer.num_layers * dirs, *x.shape[:-1][:: -1 if layer.batch_first else 1][1:])
    hidden = layer.proj_size or layer.hidden_size
    args = (list(layer._flat_weights), layer.bias, layer.num_layers, 0.0, False,
            layer.bidirectional, layer.batch_first)
    if isinstance(layer, nn.LSTM):
        hx = [torch.zeros(*lead, hidden, device=x.device),
              torch.zeros(*lead, layer.hidden_size, device=x.device)]
        return aten.lstm.input, (x, hx, *args)
    op = aten.gru.input if isinstance(layer, nn.GRU) else getattr(
        aten, f"rnn_{layer.nonlinearity}").input
    return op, (x, torch.zeros(*lead, layer.hidden_size, device=x.device), *args)


@FAST
@given(kind=st.sampled_from(["LSTM", "LSTM-proj", "GRU", "RNN-tanh", "RNN-relu"]),
       steps=sizes(1, 3), batch=sizes(1, 2), features=sizes(1, 3),
       hidden=sizes(2, 4), layers=sizes(1, 2), bidirectional=st.booleans(),
       bias=st.booleans(), batch_first=st.booleans())
def test_recurrent(kind: str, steps: int, batch: int, features: int, hidden: int,
                   layers: int, bidirectional: bool, bias: bool, batch_first: bool) -> None:
    """On meta tensors the recurrent ops decompose into per-step matrix products, which
    FlopCounterMode counts."""
    options: dict[str, Any] = {"num_layers": layers, "bidirectional": bidirectional,
                               "bias": bias, "batch_first": batch_first}
    layer: nn.RNNBase
    if kind.startswith("LSTM"):
        layer = nn.LSTM(features, hidden, proj_size=1 if kind == "LSTM-proj" else 0, **options)
    elif kind == "GRU":
        layer = nn.GRU(features, hidden, **options)
    else:
        layer = nn.RNN(features, hidden, nonlinearity=kind[4:], **options)
    shape = (batch, steps, features) if batch_first else (steps, batch, features)
    with torch.no_grad():
        op, args = rnn_call(layer, rand(shape))
        run = evaluate(op, args, {}, count=False)
        on_meta = layer.to("meta")
        meta_op, meta_args = rnn_call(on_meta, torch.empty(shape, device="meta"))
        reference = torch_flops(lambda: meta_op(*meta_args))
    assert reference > 0
    assert run.cost.madds * 2 == reference
    assert_io_mac(run)
    assert run.op_type == "Recurrent"


# equation -> the letters of each operand; "." stands for the broadcast batch dims of "..."
EINSUMS = {
    "bij,bjk->bik": ["bij", "bjk"],
    "bhqd,bhkd->bhqk": ["bhqd", "bhkd"],
    "ij,jk": ["ij", "jk"],
    "...ij,...jk->...ik": [".ij", ".jk"],
    "ij,jk,kl->il": ["ij", "jk", "kl"],
    "bij,bjk,bkl->bil": ["bij", "bjk", "bkl"],
    "ij,jk->i": ["ij", "jk"],
    "bn,anm,bm->ba": ["bn", "anm", "bm"],
}


@pytest.mark.parametrize("equation", list(EINSUMS))
@FAST
@given(data=st.data())
def test_einsum(equation: str, data: st.DataObject) -> None:
    # Contracted lengths from 2: with a length-1 contraction torch multiplies element-wise
    # instead of calling bmm, and FlopCounterMode sees nothing to count.
    used = sorted(set("".join(EINSUMS[equation])) - {"."})
    letters = {c: data.draw(sizes(2, 4), label=c) for c in used}
    batch_a, batch_b, _ = data.draw(broadcast_pair(max_dims=2), label="...")
    batches = iter([batch_a, batch_b])
    operands = []
    for term in EINSUMS[equation]:
        dims: list[int] = []
        for c in term:
            dims.extend(next(batches) if c == "." else [letters[c]])
        operands.append(rand(dims))
    run = run_op(aten.einsum.default, equation, operands)
    assert_madds_match_torch(run)
    assert_io_mac(run)


# --- attention ----------------------------------------------------------------------------------


class SdpaCase(NamedTuple):
    b: int
    h: int
    kv_heads: int
    l: int
    s: int
    e: int
    ev: int
    mask: str  # "none", "causal", "float", "bool"
    mask_shape: Shape


@st.composite
def sdpa_cases(draw: st.DrawFn, same_head_dim: bool = False, gqa: bool = False) -> SdpaCase:
    b, h, l, s, e = (draw(sizes(1, hi)) for hi in (2, 3, 5, 5, 6))
    ev = e if same_head_dim else draw(sizes(1, 6))
    kv_heads = draw(st.sampled_from([d for d in range(1, h + 1) if h % d == 0])) if gqa else h
    mask = draw(st.sampled_from(["none", "causal", "float", "bool"]))
    mask_shape: Shape = draw(st.sampled_from([(l, s), (b, h, l, s), (b, 1, l, s), (1, 1, 1, s)]))
    if mask == "bool":
        mask_shape = (l, s)  # lower-triangular: every query keeps key 0, no row all masked
    return SdpaCase(b, h, kv_heads, l, s, e, ev, mask, mask_shape)


def sdpa_inputs(case: SdpaCase, device: str = "cpu"
                ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    q = torch.randn(case.b, case.h, case.l, case.e, device=device)
    k = torch.randn(case.b, case.kv_heads, case.s, case.e, device=device)
    v = torch.randn(case.b, case.kv_heads, case.s, case.ev, device=device)
    mask: torch.Tensor | None = None
    if case.mask == "float":
        mask = torch.randn(case.mask_shape, device=device)
    elif case.mask == "bool":
        mask = torch.ones(case.mask_shape, dtype=torch.bool, device=device).tril()
    return [q, k, v], mask


def sdpa_hand_madds(case: SdpaCase) -> int:
    """Q @ K^T and P @ V over every query head: B*H*L*S*(E + Ev)."""
    return case.b * case.h * case.l * case.s * (case.e + case.ev)


def sdpa_on_meta_madds(case: SdpaCase) -> int:
    """On meta tensors SDPA runs its math decomposition, whose bmm ops FlopCounterMode counts."""
    (q, k, v), mask = sdpa_inputs(case, "meta")
    flops = torch_flops(lambda: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=case.mask == "causal",
        enable_gqa=case.kv_heads != case.h))
    assert flops > 0 and flops % 2 == 0
    return flops // 2


@FAST
@given(case=sdpa_cases(), positional=st.booleans())
def test_scaled_dot_product_attention(case: SdpaCase, positional: bool) -> None:
    (q, k, v), mask = sdpa_inputs(case)
    causal = case.mask == "causal"
    if positional:
        run = run_op(aten.scaled_dot_product_attention.default, q, k, v, mask, 0.0, causal)
    else:
        run = run_op(aten.scaled_dot_product_attention.default, q, k, v, attn_mask=mask,
                     is_causal=causal)
    assert run.cost.madds == sdpa_hand_madds(case) == sdpa_on_meta_madds(case)
    if not causal:  # per score: a scale, the softmax (5) and, with a mask, an add
        scores = case.b * case.h * case.l * case.s
        assert run.cost.flops == 2 * run.cost.madds + scores * (6 + (mask is not None))
    assert run.cost.mac == q.numel() + k.numel() + v.numel() + (
        mask.numel() if mask is not None else 0) + numel(run.outputs)
    assert_io_mac(run)
    assert run.op_type == "Attention"


@FAST
@given(case=sdpa_cases(gqa=True))
def test_sdpa_grouped_query(case: SdpaCase) -> None:
    (q, k, v), mask = sdpa_inputs(case)
    run = run_op(aten.scaled_dot_product_attention.default, q, k, v, attn_mask=mask,
                 is_causal=case.mask == "causal", enable_gqa=True)
    assert run.cost.madds == sdpa_hand_madds(case) == sdpa_on_meta_madds(case)
    assert_io_mac(run)


@FAST
@given(case=sdpa_cases(same_head_dim=True))
def test_sdpa_flash_attention_for_cpu(case: SdpaCase) -> None:
    """What scaled_dot_product_attention dispatches to on CPU: (output, logsumexp)."""
    assume(case.mask != "bool")
    (q, k, v), mask = sdpa_inputs(case)
    run = run_op(aten._scaled_dot_product_flash_attention_for_cpu.default, q, k, v, 0.0,
                 case.mask == "causal", attn_mask=mask)
    assert len(run.outputs) == 2
    assert run.cost.madds == sdpa_hand_madds(case) == sdpa_on_meta_madds(case)
    assert_io_mac(run)
    assert run.op_type == "Attention"


@FAST
@given(b=sizes(1, 2), l=sizes(1, 5), s=sizes(1, 5), e=sizes(1, 4), ev=sizes(1, 4),
       mask=st.booleans())
def test_sdpa_without_heads(b: int, l: int, s: int, e: int, ev: int, mask: bool) -> None:
    """(B, L, E) operands: no head dimension."""
    q, k, v = rand((b, l, e)), rand((b, s, e)), rand((b, s, ev))
    attn_mask = rand((l, s)) if mask else None
    run = run_op(aten.scaled_dot_product_attention.default, q, k, v, attn_mask)
    meta_mask = None if attn_mask is None else attn_mask.to("meta")
    reference = torch_flops(lambda: torch.nn.functional.scaled_dot_product_attention(
        q.to("meta"), k.to("meta"), v.to("meta"), attn_mask=meta_mask))
    assert run.cost.madds == b * l * s * (e + ev) == reference // 2
    assert_io_mac(run)


def test_sdpa_query_broadcast_over_batch() -> None:
    q, kv = rand((1, 3, 5, 4)), rand((2, 3, 6, 4))
    run = run_op(aten.scaled_dot_product_attention.default, q, kv, kv)
    assert run.outputs[0].shape == (2, 3, 5, 4)
    reference = torch_flops(lambda: torch.nn.functional.scaled_dot_product_attention(
        q.to("meta"), kv.to("meta"), kv.to("meta")))
    assert reference == 2 * (2 * 3 * 5 * 6 * (4 + 4))
    assert run.cost.madds == 2 * 3 * 5 * 6 * (4 + 4)


# the fused kernels of other backends, run on meta tensors: (B, H, L, E) layout
BACKEND_SDPA: list[tuple[Any, Callable[..., tuple[Any, ...]]]] = [
    (aten._scaled_dot_product_flash_attention.default,
     lambda q, k, v, mask, causal: (q, k, v, 0.0, causal)),
    (aten._scaled_dot_product_efficient_attention.default,
     lambda q, k, v, mask, causal: (q, k, v, mask, True, 0.0, causal)),
    (aten._scaled_dot_product_cudnn_attention.default,
     lambda q, k, v, mask, causal: (q, k, v, mask, True, 0.0, causal)),
    (aten._scaled_dot_product_attention_math.default,
     lambda q, k, v, mask, causal: (q, k, v, mask, 0.0, causal)),
]


@pytest.mark.parametrize(("op", "arguments"), BACKEND_SDPA,
                         ids=[op.overloadpacket.__name__ for op, _ in BACKEND_SDPA])
@FAST
@given(case=sdpa_cases(same_head_dim=True))
def test_sdpa_backend_kernels_on_meta(op: Any, arguments: Callable[..., tuple[Any, ...]],
                                      case: SdpaCase) -> None:
    assume(case.mask != "bool")
    uses_mask = op is not aten._scaled_dot_product_flash_attention.default
    assume(uses_mask or case.mask != "float")
    (q, k, v), mask = sdpa_inputs(case, "meta")
    run = run_op(op, *arguments(q, k, v, mask, case.mask == "causal"))
    assert_madds_match_torch(run)
    assert run.cost.madds == sdpa_hand_madds(case)
    assert_io_mac(run)


@pytest.mark.parametrize("op", [aten._flash_attention_forward.default,
                                aten._efficient_attention_forward.default])
@FAST
@given(case=sdpa_cases(same_head_dim=True))
def test_sdpa_blhd_kernels_on_meta(op: Any, case: SdpaCase) -> None:
    """The (B, L, H, E) kernels. FlopCounterMode reads their inputs as (B, H, L, E), so the
    reference here is the hand-derived count only."""
    (q, k, v), _ = sdpa_inputs(case, "meta")
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    causal = case.mask == "causal"
    if op is aten._flash_attention_forward.default:
        args: tuple[Any, ...] = (q, k, v, None, None, case.l, case.s, 0.0, causal, False)
    else:
        args = (q, k, v, None, None, None, case.l, case.s, 0.0, int(causal), False)
    run = evaluate(op, args, {}, count=False)
    assert run.cost.madds == sdpa_hand_madds(case)
    assert_io_mac(run)


# --- attention backward -------------------------------------------------------------------------


def sdpa_backward_hand(case: SdpaCase, grads: tuple[bool, bool, bool] = (True, True, True)
                       ) -> int:
    """The math form's products: dV = P^T dO and dP = dO V^T (L*S*Ev each), dQ = dS K and
    dK = dS^T Q (L*S*E each), per batch and query head; dP only when dQ or dK is asked for."""
    dq, dk, dv = grads
    per_score = case.ev * (dv + (dq or dk)) + case.e * (dq + dk)
    return case.b * case.h * case.l * case.s * per_score


def math_backward_madds(case: SdpaCase, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None, grad_out: torch.Tensor
                        ) -> tuple[int, tuple[torch.Tensor, ...]]:
    """torch running SDPA's math path for real, on CPU tensors: FlopCounterMode's count of
    the backward alone (its bmm ops) / 2, and the gradients it computes."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    with sdpa_kernel(SDPBackend.MATH):
        out = torch.nn.functional.scaled_dot_product_attention(
            *leaves, attn_mask=mask, is_causal=case.mask == "causal")
    flops = torch_flops(lambda: out.backward(grad_out))
    assert flops > 0 and flops % 2 == 0
    return flops // 2, tuple(t.grad for t in leaves)


@FAST
@given(case=sdpa_cases(same_head_dim=True))
def test_sdpa_flash_attention_for_cpu_backward_on_real_tensors(case: SdpaCase) -> None:
    """The backward a model built on the CPU records with --train. torch runs the fused kernel
    for real; FlopCounterMode counts it as 0, so the reference is the math path torch runs on
    the same tensors, whose gradients the kernel's must equal."""
    assume(case.mask != "bool")
    (q, k, v), mask = sdpa_inputs(case)
    causal = case.mask == "causal"
    out, lse = aten._scaled_dot_product_flash_attention_for_cpu.default(
        q, k, v, 0.0, causal, attn_mask=mask)
    grad_out = torch.randn_like(out)
    run = evaluate(aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
                   (grad_out, q, k, v, out, lse, 0.0, causal), {"attn_mask": mask}, count=False)
    reference, math_grads = math_backward_madds(case, q, k, v, mask, grad_out)
    for fused, by_math in zip(run.outputs, math_grads):
        torch.testing.assert_close(fused, by_math, rtol=1e-4, atol=1e-4)
    assert run.cost.madds == reference == sdpa_backward_hand(case)
    assert run.cost.madds == 2 * sdpa_hand_madds(case)
    scores = case.b * case.h * case.l * case.s  # softmax backward 4, scale 1, mask 1
    assert run.cost.flops == 2 * run.cost.madds + scores * (5 + (mask is not None or causal))
    assert_io_mac(run)  # dO, Q, K, V, O, the log-sum-exp (and the mask) read; dQ, dK, dV
    assert run.op_type == "Attention"


def _seed() -> torch.Tensor:
    return torch.empty((), dtype=torch.int64, device="meta")


# the backward kernels of other backends, on meta tensors (B, H, L, E): their arguments after
# (grad_out, q, k, v, out, logsumexp); FlopCounterMode counts each with the scores recomputed
BACKEND_SDPA_BACKWARD: list[tuple[Any, Callable[..., tuple[Any, ...]]]] = [
    (aten._scaled_dot_product_flash_attention_backward.default,
     lambda g, q, k, v, o, lse, mask, c: (g, q, k, v, o, lse, None, None, q.shape[2],
                                          k.shape[2], 0.0, c, _seed(), _seed())),
    (aten._scaled_dot_product_efficient_attention_backward.default,
     lambda g, q, k, v, o, lse, mask, c: (g, q, k, v, mask, o, lse, _seed(), _seed(), 0.0,
                                          [True, True, True, False], c)),
    (aten._scaled_dot_product_cudnn_attention_backward.default,
     lambda g, q, k, v, o, lse, mask, c: (g, q, k, v, o, lse, _seed(), _seed(), mask, None,
                                          None, q.shape[2], k.shape[2], 0.0, c)),
]


@pytest.mark.parametrize(("op", "arguments"), BACKEND_SDPA_BACKWARD,
                         ids=[op.overloadpacket.__name__ for op, _ in BACKEND_SDPA_BACKWARD])
@FAST
@given(case=sdpa_cases(same_head_dim=True))
def test_sdpa_backend_backward_kernels_on_meta(op: Any, arguments: Callable[..., tuple[Any, ...]],
                                               case: SdpaCase) -> None:
    """torch's FlopCounterMode counts these with the recompute of Q K^T (B*H*L*S*E); the
    convention here leaves it out, so the formula is torch's count less that product."""
    assume(case.mask != "bool")
    assume(op is not aten._scaled_dot_product_flash_attention_backward.default
           or case.mask != "float")
    (q, k, v), mask = sdpa_inputs(case, "meta")
    out = torch.empty(case.b, case.h, case.l, case.ev, device="meta")
    lse = torch.empty(case.b, case.h, case.l, device="meta")
    run = run_op(op, *arguments(torch.empty_like(out), q, k, v, out, lse, mask,
                                case.mask == "causal"))
    recompute = case.b * case.h * case.l * case.s * case.e
    assert run.torch_flops > 0
    assert run.cost.madds == run.torch_flops // 2 - recompute == sdpa_backward_hand(case)
    assert_io_mac(run)


@FAST
@given(case=sdpa_cases(same_head_dim=True), grads=st.tuples(*[st.booleans()] * 3))
def test_sdpa_backward_grad_input_mask(case: SdpaCase, grads: tuple[bool, bool, bool]) -> None:
    """The efficient and overridable kernels take which gradients to compute: dV alone needs
    only P^T dO; dQ or dK need dP = dO V^T and then their own product."""
    (q, k, v), _ = sdpa_inputs(case, "meta")
    out = torch.empty(case.b, case.h, case.l, case.ev, device="meta")
    lse = torch.empty(case.b, case.h, case.l, device="meta")
    run = evaluate(aten._scaled_dot_product_efficient_attention_backward.default,
                   (torch.empty_like(out), q, k, v, None, out, lse, _seed(), _seed(), 0.0,
                    [*grads, False], False), {}, count=False)
    assert run.cost.madds == sdpa_backward_hand(case, grads)
    run = evaluate(aten._scaled_dot_product_fused_attention_overrideable_backward.default,
                   (torch.empty_like(out), q, k, v, None, [*grads, False], out, lse, None,
                    None, case.l, case.s, 0.0, False, _seed(), _seed()), {}, count=False)
    assert run.cost.madds == sdpa_backward_hand(case, grads)


@pytest.mark.parametrize("op", [aten._flash_attention_backward.default,
                                aten._efficient_attention_backward.default])
@FAST
@given(case=sdpa_cases(same_head_dim=True))
def test_sdpa_blhd_backward_kernels_on_meta(op: Any, case: SdpaCase) -> None:
    """The (B, L, H, E) kernels; FlopCounterMode reads them as (B, H, L, E) and cannot be the
    reference (it fails on L != S), so the count is the hand-derived one."""
    (q, k, v), _ = sdpa_inputs(case, "meta")
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = torch.empty(case.b, case.l, case.h, case.ev, device="meta")
    lse = torch.empty(case.b, case.h, case.l, device="meta")
    causal = case.mask == "causal"
    g = torch.empty_like(out)
    if op is aten._flash_attention_backward.default:
        args: tuple[Any, ...] = (g, q, k, v, out, lse, None, None, case.l, case.s, 0.0, causal,
                                 _seed(), _seed())
    else:
        args = (g, q, k, v, None, out, None, None, case.l, case.s, lse, 0.0, _seed(), _seed(),
                int(causal), False)
    run = evaluate(op, args, {}, count=False)
    assert run.cost.madds == sdpa_backward_hand(case)
    scores = case.b * case.h * case.l * case.s
    assert run.cost.flops == 2 * run.cost.madds + scores * (5 + causal)
    assert_io_mac(run)


def test_cudnn_attention_kernels_without_a_meta_kernel() -> None:
    """`_cudnn_attention_forward` and its backward have no meta kernel: the formula sees the
    call a CUDA run would record, built by hand; the counts are derived here."""
    b, h, l, s, e = 2, 4, 6, 10, 8
    q, k, v = (TensorMeta((b, h, n, e), torch.bfloat16) for n in (l, s, s))
    out, lse = TensorMeta((b, h, l, e), torch.bfloat16), TensorMeta((b, h, l), torch.float32)
    seed = TensorMeta((), torch.int64)
    forward = OpCall(aten._cudnn_attention_forward.default,
                     (q, k, v, None, None, None, l, s, True, 0.0, True, False), {},
                     (out, lse, seed, seed))
    cost = lookup(forward.target).formula(forward)
    assert cost.madds == b * h * l * s * 2 * e
    assert cost.flops == 2 * cost.madds + b * h * l * s * 7  # scale, softmax 5, causal mask
    backward = OpCall(aten._cudnn_attention_backward.default,
                      (out, q, k, v, out, lse, seed, seed, None, None, None, l, s, 0.0, True),
                      {}, (q, k, v))
    cost = lookup(backward.target).formula(backward)
    assert cost.madds == 2 * b * h * l * s * 2 * e
    elements = 2 * b * h * l * e + 2 * b * h * s * e + b * h * l + 2  # dO, Q, K, V, O, lse, seeds
    grads = b * h * (l + 2 * s) * e
    assert cost.mac == elements + b * h * l * e + grads
    assert cost.mac_bytes == 2 * (elements - b * h * l - 2 + b * h * l * e + grads) \
        + 4 * b * h * l + 16


@FAST
@given(b=sizes(1, 2), l=sizes(1, 4), heads=sizes(1, 3), head_dim=sizes(1, 3),
       need_weights=st.booleans())
def test_native_multi_head_attention(b: int, l: int, heads: int, head_dim: int,
                                     need_weights: bool) -> None:
    """nn.MultiheadAttention's fused path: 3 in-projections, attention, 1 out-projection."""
    d = heads * head_dim
    x = rand((b, l, d))
    run = run_op(aten._native_multi_head_attention.default, x, x, x, d, heads,
                 rand((3 * d, d)), rand((3 * d,)), rand((d, d)), rand((d,)), None, need_weights)
    assert run.cost.madds == 4 * b * l * d * d + b * heads * l * l * 2 * head_dim
    assert_io_mac(run)
    assert run.op_type == "Attention"


# --- element-wise arithmetic, activations, softmax ----------------------------------------------

# op, extra keyword arguments, FLOPs per output element as the element-wise module documents them
ACTIVATIONS: list[tuple[Any, dict[str, Any], int]] = [
    (aten.relu.default, {}, 1),
    (aten.relu_.default, {}, 1),
    (aten.gelu.default, {}, 5),
    (aten.gelu.default, {"approximate": "tanh"}, 9),
    (aten.gelu_.default, {"approximate": "tanh"}, 9),
    (aten.silu.default, {}, 5),
    (aten.silu_.default, {}, 5),
    (aten.hardswish.default, {}, 5),
    (aten.hardswish_.default, {}, 5),
    (aten.hardsigmoid.default, {}, 4),
    (aten.sigmoid.default, {}, 4),
    (aten.tanh.default, {}, 1),
    (aten.hardtanh.default, {}, 2),
    (aten.leaky_relu.default, {}, 2),
    (aten.elu.default, {}, 4),
    (aten.mish.default, {}, 5),
    (aten.softplus.default, {}, 3),
    (aten.neg.default, {}, 1),
    (aten.exp.default, {}, 1),
    (aten.sqrt.default, {}, 1),
]


@pytest.mark.parametrize(("op", "kwargs", "per_element"), ACTIVATIONS,
                         ids=[f"{op}{''.join(kw.values())}" for op, kw, _ in ACTIVATIONS])
@FAST
@given(shape=shapes(), dtype=DTYPES)
def test_unary(op: Any, kwargs: dict[str, Any], per_element: int, shape: list[int],
               dtype: torch.dtype) -> None:
    x = rand(shape, dtype).abs()  # sqrt of a positive number
    run = run_op(op, x, **kwargs)
    (y,) = run.outputs
    assert run.cost.madds == 0
    assert run.cost.flops == per_element * y.numel()
    assert_io_mac(run)
    assert run.cost.mac == 2 * x.numel()  # in place too: read x, write x


@pytest.mark.parametrize("op", [aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor,
                                aten.div.Tensor, aten.maximum.default])
@FAST
@given(pair=broadcast_pair(), dtype=DTYPES)
def test_binary_broadcasting(op: Any, pair: tuple[Shape, Shape, Shape],
                             dtype: torch.dtype) -> None:
    a, b = rand(pair[0], dtype), rand(pair[1], dtype)
    run = run_op(op, a, b)
    (y,) = run.outputs
    assert run.cost.madds == 0
    assert run.cost.flops == y.numel()
    assert run.cost.mac == a.numel() + b.numel() + y.numel()  # each operand at its own size
    assert_io_mac(run)


@pytest.mark.parametrize("op", [aten.max.other, aten.min.other])
def test_elementwise_max_min_broadcasting(op: Any) -> None:
    """torch.max(a, b) as export records it: one comparison per output element."""
    run = run_op(op, rand((3, 1)), rand((1, 4)))
    assert run.cost.flops == 12
    assert run.cost.mac == 3 + 4 + 12


def test_add_broadcast_example() -> None:
    run = run_op(aten.add.Tensor, rand((4, 1, 5)), rand((3, 5)))
    assert run.cost.mac == 20 + 15 + 60
    assert run.cost.mac_bytes == 4 * (20 + 15 + 60)
    assert run.cost.flops == 60


@pytest.mark.parametrize("op", [aten.add_.Tensor, aten.mul_.Tensor])
@FAST
@given(pair=broadcast_pair())
def test_binary_in_place(op: Any, pair: tuple[Shape, Shape, Shape]) -> None:
    x, other = rand(pair[2]), rand(pair[1])
    run = run_op(op, x, other)
    assert run.outputs[0] is x
    assert run.cost.mac == 2 * x.numel() + other.numel()
    assert run.cost.flops == x.numel()
    assert_io_mac(run)


@FAST
@given(pair=broadcast_pair(), scalar=st.booleans())
def test_add_with_alpha_and_scalars(pair: tuple[Shape, Shape, Shape], scalar: bool) -> None:
    a = rand(pair[0])
    if scalar:  # a Python number is no tensor: nothing to read
        run = run_op(aten.add.Scalar, a, 2.0)
    else:
        run = run_op(aten.add.Tensor, a, rand(pair[1]), alpha=2)
    assert run.cost.flops == run.outputs[0].numel()
    assert_io_mac(run)


@FAST
@given(shape=shapes())
def test_clamp_and_where(shape: list[int]) -> None:
    x = rand(shape)
    clamp = run_op(aten.clamp.default, x, -0.5, 0.5)
    assert clamp.cost.flops == 2 * x.numel()
    assert_io_mac(clamp)
    cond = x > 0
    where = run_op(aten.where.self, cond, x, rand(shape[-1:]))
    assert where.cost.flops == x.numel()
    assert_io_mac(where)


@pytest.mark.parametrize("op", [aten.softmax.int, aten._softmax.default, aten.log_softmax.int,
                                aten._log_softmax.default])
@FAST
@given(shape=shapes(), dim=st.integers(-1, 0))
def test_softmax(op: Any, shape: list[int], dim: int) -> None:
    x = rand(shape)
    run = run_op(op, x, dim, False) if op.overloadpacket.__name__.startswith("_") else run_op(
        op, x, dim)
    assert run.cost.madds == 0
    assert run.cost.flops == 5 * x.numel()
    assert_io_mac(run)
    assert run.op_type == "Activation"


# --- normalisation ------------------------------------------------------------------------------


@FAST
@given(n=sizes(), c=sizes(), spatial=shapes(0, 3), affine=st.booleans(), dtype=DTYPES)
def test_batch_norm_eval(n: int, c: int, spatial: list[int], affine: bool,
                         dtype: torch.dtype) -> None:
    x = rand((n, c, *spatial), dtype)
    w, b = (rand((c,), dtype), rand((c,), dtype)) if affine else (None, None)
    mean, var = rand((c,), dtype), rand((c,), dtype).abs()
    run = run_op(aten.batch_norm.default, x, w, b, mean, var, False, 0.1, 1e-5, False)
    assert run.cost.madds == 0
    assert run.cost.flops == 2 * x.numel()
    assert run.cost.mac == 2 * x.numel() + (4 if affine else 2) * c
    assert_io_mac(run)
    assert run.op_type == "Norm"


def _no_stats(x: torch.Tensor) -> tuple[None, None]:
    return None, None


def _zero_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(x.shape[1]), torch.ones(x.shape[1])


# op, its running statistics, the arguments after (input, weight, bias[, mean, var])
BATCH_STATS_BN: list[Any] = [
    pytest.param(aten.batch_norm.default, _no_stats, (True, 0.1, 1e-5, False), id="batch_norm"),
    pytest.param(aten.native_batch_norm.default, _no_stats, (True, 0.1, 1e-5),
                 id="native_batch_norm"),
    pytest.param(aten._native_batch_norm_legit.no_stats, None, (True, 0.1, 1e-5),
                 id="_native_batch_norm_legit.no_stats"),
    pytest.param(aten._batch_norm_with_update.default, _zero_stats, (0.1, 1e-5),
                 id="_batch_norm_with_update"),
    pytest.param(aten._native_batch_norm_legit.default, _zero_stats, (True, 0.1, 1e-5),
                 id="_native_batch_norm_legit"),
]


@pytest.mark.parametrize(("op", "stats", "rest"), BATCH_STATS_BN)
def test_batch_norm_with_batch_statistics(
        op: Any, stats: Callable[[torch.Tensor], tuple[Any, Any]] | None,
        rest: tuple[Any, ...]) -> None:
    """BatchNorm2d(track_running_stats=False) computes its statistics even in eval mode (export
    records aten.batch_norm with training=True): 6 FLOPs/element, plus 2 for scale and shift,
    as the norm module documents for the norms that compute statistics."""
    x, w, b = rand((2, 3, 4, 4)), rand((3,)), rand((3,))
    running = stats(x) if stats is not None else ()
    run = run_op(op, x, w, b, *running, *rest)
    assert run.cost.flops == 8 * x.numel()
    assert_io_mac(run)


def test_instance_norm_weight_without_bias() -> None:
    """A scale with no shift is still an affine step: it costs more than no affine at all,
    and no less than a shift alone."""
    x, w, b = rand((2, 3, 4, 4)), rand((3,)), rand((3,))
    rest = (None, None, True, 0.1, 1e-5, False)
    plain = int(run_op(aten.instance_norm.default, x, None, None, *rest).cost.flops)
    scale = int(run_op(aten.instance_norm.default, x, w, None, *rest).cost.flops)
    shift = int(run_op(aten.instance_norm.default, x, None, b, *rest).cost.flops)
    assert plain == 6 * x.numel()
    assert scale > plain
    assert scale >= shift


@FAST
@given(n=sizes(), c=sizes(), spatial=shapes(0, 2), affine=st.booleans())
def test_instance_norm(n: int, c: int, spatial: list[int], affine: bool) -> None:
    x = rand((n, c, *spatial, 2))
    w, b = (rand((c,)), rand((c,))) if affine else (None, None)
    run = run_op(aten.instance_norm.default, x, w, b, None, None, True, 0.1, 1e-5, False)
    assert run.cost.flops == (8 if affine else 6) * x.numel()
    assert_io_mac(run)


@FAST
@given(n=sizes(), c=sizes(), spatial=shapes(0, 2))
def test_native_batch_norm_no_training(n: int, c: int, spatial: list[int]) -> None:
    x = rand((n, c, *spatial))
    stats = [rand((c,)), rand((c,)), rand((c,)), rand((c,)).abs()]
    run = run_op(aten._native_batch_norm_legit_no_training.default, x, *stats, 0.1, 1e-5)
    assert run.cost.flops == 2 * x.numel()
    assert_io_mac(run)  # all three outputs written


@FAST
@given(lead=shapes(1, 2), normalized=shapes(1, 2), affine=st.booleans())
def test_layer_norm(lead: list[int], normalized: list[int], affine: bool) -> None:
    x = rand((*lead, *normalized))
    w, b = (rand(normalized), rand(normalized)) if affine else (None, None)
    run = run_op(aten.layer_norm.default, x, normalized, w, b)
    assert run.cost.madds == 0
    assert run.cost.flops == (8 if affine else 6) * x.numel()
    assert_io_mac(run)
    native = run_op(aten.native_layer_norm.default, x, normalized, w, b, 1e-5)
    assert int(native.cost.flops) == int(run.cost.flops)
    assert len(native.outputs) == 3
    assert_io_mac(native)


@FAST
@given(n=sizes(), groups=sizes(1, 3), per_group=sizes(1, 3), spatial=shapes(0, 2),
       affine=st.booleans())
def test_group_norm(n: int, groups: int, per_group: int, spatial: list[int],
                    affine: bool) -> None:
    c = groups * per_group
    x = rand((n, c, *spatial))
    w, b = (rand((c,)), rand((c,))) if affine else (None, None)
    run = run_op(aten.group_norm.default, x, groups, w, b)
    assert run.cost.flops == (8 if affine else 6) * x.numel()
    assert_io_mac(run)


@FAST
@given(lead=shapes(1, 2), normalized=shapes(1, 2), weight=st.booleans())
def test_rms_norm(lead: list[int], normalized: list[int], weight: bool) -> None:
    x = rand((*lead, *normalized))
    w = rand(normalized) if weight else None
    run = run_op(aten.rms_norm.default, x, normalized, w, 1e-6)
    assert run.cost.flops == (4 if weight else 3) * x.numel()
    assert_io_mac(run)


@FAST
@given(shape=shapes(2, 4), data=st.data())
def test_weight_norm(shape: list[int], data: st.DataObject) -> None:
    """w = g * v / ||v|| (wav2vec2's positional convolution): square and add per element for
    the norms, one multiply by the per-row g / ||v||; reads v and g, writes w and the norms."""
    dim = data.draw(st.sampled_from([0, len(shape) - 1]), label="dim")  # the kernel's two
    v = rand(shape)
    g = rand([s if i == dim else 1 for i, s in enumerate(shape)])
    run = run_op(aten._weight_norm_interface.default, v, g, dim)
    assert torch.allclose(run.outputs[0], torch._weight_norm(v, g, dim))
    assert run.cost.flops == 3 * v.numel()
    assert run.cost.madds == 0
    assert_io_mac(run)
    assert run.op_type == "Norm"


@pytest.mark.parametrize(("op", "shape", "args", "flops"), [
    # 3 transforms of length 8: 5 x 8 x log2 8 each
    (aten._fft_c2c.default, (3, 8), ([1], 0, True), 3 * 5 * 8 * 3),
    # length 6 is not a power of two: log2 rounded up to 3
    (aten._fft_c2c.default, (2, 6), ([1], 0, True), 2 * 5 * 6 * 3),
    # over two dims: length 4 x 8 = 32, log2 32 = 5; normalised: one multiply per component
    (aten._fft_c2c.default, (2, 4, 8), ([1, 2], 1, True), 2 * 5 * 32 * 5 + 64 * 2),
    # real input: half of 5 x 16 x 4, a one-sided output of 9 per row
    (aten._fft_r2c.default, (4, 16), ([1], 0, True), 4 * 5 * 16 * 4 // 2),
    # real output of length 16 along the last dim, from 9 one-sided values
    (aten._fft_c2r.default, (4, 9), ([1], 0, 16), 4 * 5 * 16 * 4 // 2),
])
def test_fft(op: Any, shape: Shape, args: tuple[Any, ...], flops: int) -> None:
    """The radix-2 estimate the spectral module documents, derived by hand per case; MAC from
    the real (complex) tensors torch reads and writes."""
    complex_input = op is not aten._fft_r2c.default
    x = torch.randn(shape, dtype=torch.complex64 if complex_input else torch.float32)
    run = run_op(op, x, *args)
    assert run.cost.flops == flops
    assert run.cost.madds == 0
    assert_io_mac(run)
    assert run.op_type == "FFT"


def test_fnet_token_mixing_fft_is_counted() -> None:
    """torch.fft.fftn as FNet calls it reaches the registered FFT ops, none unsupported."""

    class Mixing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft(torch.fft.fft(x, dim=-1), dim=-2).real

    analysis = analyze(Mixing(), input_shape=(1, 16, 8))
    assert not analysis.unsupported()
    assert {op["op_type"] for op in analysis.ops()} >= {"FFT"}


# --- pooling and resizing -----------------------------------------------------------------------


class PoolCase(NamedTuple):
    x: Shape
    kernel: list[int]
    stride: list[int]
    padding: list[int]
    ceil_mode: bool


@st.composite
def pool_cases(draw: st.DrawFn) -> PoolCase:
    kernel = [draw(sizes(1, 3)) for _ in range(2)]
    stride = [draw(sizes(1, 3)) for _ in range(2)]
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    size = [k + draw(st.integers(0, 4)) for k in kernel]
    lead = draw(shapes(1, 2, hi=3))
    return PoolCase((*lead, *size), kernel, stride, padding, draw(st.booleans()))


@FAST
@given(case=pool_cases())
def test_max_pool2d(case: PoolCase) -> None:
    x = rand(case.x)
    for op in (aten.max_pool2d.default, aten.max_pool2d_with_indices.default):
        run = run_op(op, x, case.kernel, case.stride, case.padding, [1, 1], case.ceil_mode)
        y = run.outputs[0]
        assert run.cost.madds == 0
        assert run.cost.flops == window_elements(case.x, case.kernel, case.stride,
                                                 case.padding, case.ceil_mode)
        assert run.cost.flops <= y.numel() * case.kernel[0] * case.kernel[1]
        assert_io_mac(run)  # with_indices also writes the indices
        assert run.op_type == "Pooling"


@FAST
@given(case=pool_cases(), square=st.booleans())
def test_avg_pool2d(case: PoolCase, square: bool) -> None:
    x, kernel, padding = rand(case.x), case.kernel, case.padding
    if square:  # kernel_size=[k] means (k, k)
        kernel, padding = kernel[:1], padding[:1]
        x = rand((*case.x[:-2], max(case.x[-2:]), max(case.x[-2:])))
    run = run_op(aten.avg_pool2d.default, x, kernel, case.stride, padding, case.ceil_mode)
    assert len(run.outputs) == 1
    assert run.cost.flops == window_elements(tuple(x.shape), kernel * (3 - len(kernel)),
                                             case.stride, padding * (3 - len(padding)),
                                             case.ceil_mode)
    assert_io_mac(run)


def test_pool_window_larger_than_the_map() -> None:
    """HF EfficientNet pools with AvgPool2d(1280, ceil_mode=True): on a 7x7 map each of the
    1280 outputs reads its channel's 49 elements, not a 1280 x 1280 window."""
    run = run_op(aten.avg_pool2d.default, rand((1, 1280, 7, 7)), [1280, 1280], [1280, 1280],
                 [0, 0], True)
    assert run.outputs[0].shape == (1, 1280, 1, 1)
    assert run.cost.flops == 1280 * 49


def test_max_pool_dilated_window_taps() -> None:
    """A dilated 3-tap window (dilation 2) with padding 1 on a length-6 row, stride 2: the
    windows start at -1 and 1 and read {1, 3} and {1, 3, 5}: 5 elements, not 6."""
    run = run_op(aten.max_pool2d_with_indices.default, rand((1, 1, 1, 6)), [1, 3], [1, 2],
                 [0, 1], [1, 2], False)
    assert run.outputs[0].shape == (1, 1, 1, 2)
    assert run.cost.flops == 5


def adaptive_taps(size_in: int, size_out: int) -> list[int]:
    """Window lengths of ATen's adaptive pooling: [floor(i*in/out), ceil((i+1)*in/out))."""
    return [math.ceil((i + 1) * size_in / size_out) - math.floor(i * size_in / size_out)
            for i in range(size_out)]


@pytest.mark.parametrize("op", [aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default,
                                aten.adaptive_max_pool2d.default])
@FAST
@given(lead=shapes(1, 2, hi=3), h=sizes(1, 9), w=sizes(1, 9), data=st.data())
def test_adaptive_pool2d(op: Any, lead: list[int], h: int, w: int, data: st.DataObject) -> None:
    oh, ow = data.draw(sizes(1, h + 2), label="oh"), data.draw(sizes(1, w + 2), label="ow")
    x = rand((*lead, h, w))
    run = run_op(op, x, [oh, ow])
    windows = sum(th * tw for th in adaptive_taps(h, oh) for tw in adaptive_taps(w, ow))
    assert run.cost.flops == math.prod(lead) * windows
    assert_io_mac(run)


@FAST
@given(lead=shapes(1, 2, hi=3), h=sizes(1, 9), w=sizes(1, 9))
def test_adaptive_avg_pool2d_to_one(lead: list[int], h: int, w: int) -> None:
    x = rand((*lead, h, w))
    run = run_op(aten.adaptive_avg_pool2d.default, x, [1, 1])
    assert run.cost.flops == x.numel()
    assert run.cost.mac == x.numel() + math.prod(lead)


def test_adaptive_avg_pool_overlapping_windows() -> None:
    """7 -> 3: windows [0, 3), [2, 5), [4, 7), three taps each (they overlap)."""
    assert adaptive_taps(7, 3) == [3, 3, 3]
    run = run_op(aten.adaptive_avg_pool2d.default, rand((1, 2, 7, 7)), [3, 3])
    assert run.cost.flops == 2 * 9 * 9
    run = run_op(aten.adaptive_avg_pool1d.default, rand((2, 5)), [3])
    assert run.cost.flops == 2 * (2 + 3 + 2)  # 5 -> 3: [0, 2), [1, 4), [3, 5)


# op, spatial dims, arguments between the input and the scale factors, FLOPs per output:
# an n-tap interpolation costs n multiplies and n - 1 adds
UPSAMPLES: list[tuple[Any, int, tuple[Any, ...], int]] = [
    (aten.upsample_nearest1d.vec, 1, (), 0),
    (aten.upsample_nearest2d.vec, 2, (), 0),
    (aten._upsample_nearest_exact2d.vec, 2, (), 0),
    (aten.upsample_nearest3d.vec, 3, (), 0),
    (aten.upsample_linear1d.vec, 1, (False,), 3),
    (aten.upsample_bilinear2d.vec, 2, (False,), 7),
    (aten.upsample_bilinear2d.vec, 2, (True,), 7),
    (aten.upsample_bicubic2d.vec, 2, (False,), 31),
    (aten.upsample_trilinear3d.vec, 3, (False,), 15),
]


@pytest.mark.parametrize(("op", "spatial", "extra", "per_output"), UPSAMPLES,
                         ids=[f"{u[0].overloadpacket.__name__}{u[2]}" for u in UPSAMPLES])
@FAST
@given(lead=shapes(2, 2, hi=3), size=shapes(3, 3), scale=sizes(1, 3))
def test_upsample(op: Any, spatial: int, extra: tuple[Any, ...], per_output: int,
                  lead: list[int], size: list[int], scale: int) -> None:
    x = rand((*lead, *size[:spatial]))
    run = run_op(op, x, None, *extra, [float(scale)] * spatial)
    (y,) = run.outputs
    assert y.shape[2:] == tuple(s * scale for s in size[:spatial])
    assert run.cost.flops == per_output * y.numel()
    assert_io_mac(run)
    assert run.op_type == "Upsample"


# --- reductions ---------------------------------------------------------------------------------


@FAST
@given(shape=shapes(), keepdim=st.booleans(), data=st.data())
def test_reductions(shape: list[int], keepdim: bool, data: st.DataObject) -> None:
    x = rand(shape)
    dims = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True))
    cases: list[tuple[Any, tuple[Any, ...], int, int]] = [  # op, args, per input, per output
        (aten.sum.dim_IntList, (dims, keepdim), 1, 0),
        (aten.mean.dim, (dims, keepdim), 1, 1),
        (aten.amax.default, (dims, keepdim), 1, 0),
        (aten.max.dim, (dims[0], keepdim), 1, 0),
    ]
    for op, args, per_in, per_out in cases:
        run = run_op(op, x, *args)
        y = run.outputs[0]
        assert run.cost.madds == 0
        assert run.cost.flops == per_in * x.numel() + per_out * y.numel(), op
        assert_io_mac(run)  # max.dim writes values and indices
        assert run.op_type == "Reduction"
    whole = run_op(aten.mean.default, x)
    assert whole.cost.flops == x.numel() + 1
    assert whole.cost.mac == x.numel() + 1


# --- views and data movement --------------------------------------------------------------------


def shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@FAST
@given(shape=shapes(2, 4), data=st.data())
def test_views_cost_nothing(shape: list[int], data: st.DataObject) -> None:
    x = rand(shape)
    perm = data.draw(st.permutations(range(len(shape))), label="perm")
    d0, d1 = (data.draw(st.integers(0, len(shape) - 1), label=f"dim{i}") for i in range(2))
    start = data.draw(st.integers(0, shape[d0] - 1), label="start")
    step = data.draw(sizes(1, 2), label="step")
    grown = [1 + s for s in shape]  # expand a (1, ..., 1)-shaped tensor
    calls: list[tuple[Any, tuple[Any, ...]]] = [
        (aten.view.default, (x, [-1])),
        (aten.view.default, (x, [shape[0] * shape[1], *shape[2:]])),
        (aten.permute.default, (x, list(perm))),
        (aten.transpose.int, (x, d0, d1)),
        (aten.slice.Tensor, (x, d0, start, shape[d0], step)),
        (aten.expand.default, (rand([1] * len(shape)), grown)),
        (aten.unsqueeze.default, (x, 0)),
        (aten.select.int, (x, d0, start)),
    ]
    for op, args in calls:
        run = run_op(op, *args)
        assert shares_storage(run.outputs[0], args[0])  # torch made a view: the oracle
        assert_zero(run.cost)
        assert run.op_type == "View", op


@pytest.mark.parametrize(("op", "args"), [
    (aten.as_strided_.default, ((2, 3), (1, 2))),  # timm's convnext, swin, maxvit...
    (aten.transpose_.default, (0, 1)),
    (aten.t_.default, ()),
    (aten.unsqueeze_.default, (0,)),
    (aten.squeeze_.dim, (0,)),
    (aten.swapaxes_.default, (0, 1)),
    (aten.swapdims_.default, (0, 1)),
])
def test_in_place_views_cost_nothing(op: Any, args: tuple[Any, ...]) -> None:
    """An in-place view restrides its input over the same storage: it moves no data."""
    x = rand((1, 6)) if op is aten.squeeze_.dim else rand((3, 2))
    storage, before = x.untyped_storage().data_ptr(), x.clone()
    run = run_op(op, x, *args)
    assert run.outputs[0] is x and x.untyped_storage().data_ptr() == storage  # the oracle
    assert torch.equal(x.reshape(-1).sort().values, before.reshape(-1).sort().values)
    assert_zero(run.cost)
    assert run.op_type == "View", op


@pytest.mark.parametrize(("op", "args"), [
    (aten.uniform_.default, (-1.0, 1.0)),  # BigBird's random attention blocks
    (aten.normal_.default, (0.0, 1.0)),
    (aten.random_.default, ()),
    (aten.bernoulli_.float, (0.5,)),
    (aten.exponential_.default, ()),
    (aten.zero_.default, ()),
    (aten.fill_.Scalar, (3.0,)),
])
def test_in_place_fills_write_their_tensor_once(op: Any, args: tuple[Any, ...]) -> None:
    x = torch.zeros(3, 5)
    run = run_op(op, x, *args)
    assert run.outputs[0] is x  # in place: the oracle for what is written
    assert run.cost.mac == x.numel() and run.cost.mac_bytes == x.numel() * x.element_size()
    assert run.cost.flops == 0 and run.cost.madds == 0
    assert run.op_type == "Data Movement"


def test_reshape_contiguous_is_a_view() -> None:
    run = run_op(aten.reshape.default, rand((2, 3, 4)), [6, 4])
    assert_zero(run.cost)
    assert run.op_type == "View"


def test_reshape_after_permute_copies() -> None:
    x = rand((2, 3, 4)).permute(2, 0, 1)
    run = run_op(aten.reshape.default, x, [-1])
    assert run.cost.mac == 2 * x.numel()
    assert run.cost.mac_bytes == 8 * x.numel()
    assert run.op_type == "Data Movement"


@FAST
@given(shape=shapes(1, 4), data=st.data(), contiguous_op=st.booleans())
def test_reshape_and_contiguous_copy_exactly_when_torch_copies(
        shape: list[int], data: st.DataObject, contiguous_op: bool) -> None:
    perm = data.draw(st.permutations(range(len(shape))), label="perm")
    x = rand(shape).permute(*perm)
    if contiguous_op:
        run = run_op(aten.contiguous.default, x)
    else:
        target = data.draw(st.sampled_from([[-1], [x.shape[0], -1], list(x.shape)]), label="to")
        run = run_op(aten.reshape.default, x, target)
    if shares_storage(run.outputs[0], x):
        assert_zero(run.cost)
        assert run.op_type == "View"
    else:
        assert run.cost.mac == 2 * x.numel()
        assert (run.cost.madds, run.cost.flops) == (0, 0)
        assert run.op_type == "Data Movement"


@FAST
@given(shape=shapes(1, 4), source=DTYPES, target=DTYPES, channels_last=st.booleans())
def test_dtype_cast_copies_exactly_when_torch_copies(
        shape: list[int], source: torch.dtype, target: torch.dtype, channels_last: bool) -> None:
    x = rand(shape, source)
    run = run_op(aten.to.dtype, x, target)
    if shares_storage(run.outputs[0], x):
        assert_zero(run.cost)
    else:
        assert run.cost.mac == 2 * x.numel()
        assert run.cost.mac_bytes == x.numel() * (x.element_size() + target.itemsize)
    copy = run_op(aten._to_copy.default, x, dtype=target)
    assert_io_mac(copy)


def test_flatten_contiguous_is_a_view() -> None:
    run = run_op(aten.flatten.using_ints, rand((2, 3, 4, 5)), 1)
    assert shares_storage(run.outputs[0], run.inputs[0])
    assert_zero(run.cost)
    assert run.op_type == "View"


def assert_copied(run: Run) -> None:
    """torch wrote a new tensor: the op reads its input and writes its output."""
    x, (y,) = run.inputs[0], run.outputs
    assert not shares_storage(y, x)
    assert run.cost.mac == x.numel() + y.numel()
    assert run.op_type == "Data Movement"


def test_flatten_after_permute_copies() -> None:
    assert_copied(run_op(aten.flatten.using_ints, rand((2, 3, 4, 5)).permute(0, 2, 3, 1), 1))


def test_contiguous_to_channels_last_copies() -> None:
    assert_copied(run_op(aten.contiguous.default, rand((2, 3, 4, 5)),
                         memory_format=torch.channels_last))


def test_to_with_copy_flag_copies() -> None:
    assert_copied(run_op(aten.to.dtype, rand((2, 3)), torch.float32, False, True))


@FAST
@given(shape=shapes(1, 3), parts=sizes(1, 3), data=st.data())
def test_cat(shape: list[int], parts: int, data: st.DataObject) -> None:
    dim = data.draw(st.integers(0, len(shape) - 1))
    tensors = [rand([*shape[:dim], data.draw(sizes()), *shape[dim + 1:]]) for _ in range(parts)]
    run = run_op(aten.cat.default, tensors, dim)
    assert run.cost.mac == 2 * numel(tensors)
    assert_io_mac(run)
    assert (run.cost.madds, run.cost.flops) == (0, 0)


@FAST
@given(shape=shapes(1, 4), data=st.data())
def test_constant_pad_nd(shape: list[int], data: st.DataObject) -> None:
    x = rand(shape)
    padded_dims = data.draw(st.integers(1, min(2, len(shape))), label="padded dims")
    pads = data.draw(st.lists(st.integers(0, 2), min_size=2 * padded_dims,
                              max_size=2 * padded_dims), label="pads")
    run = run_op(aten.constant_pad_nd.default, x, pads, 0.0)
    assert_io_mac(run)
    assert run.cost.flops == 0


@pytest.mark.parametrize("op", [aten.channel_shuffle.default, aten.native_channel_shuffle.default])
@FAST
@given(n=sizes(1, 2), groups=sizes(1, 3), per_group=sizes(1, 3), h=sizes(), w=sizes())
def test_channel_shuffle(op: Any, n: int, groups: int, per_group: int, h: int, w: int) -> None:
    x = rand((n, groups * per_group, h, w))
    run = run_op(op, x, groups)
    assert run.cost.mac == 2 * x.numel()
    assert_io_mac(run)


@FAST
@given(rows=sizes(1, 10), dim=sizes(1, 6), index_shape=shapes(1, 3))
def test_embedding(rows: int, dim: int, index_shape: list[int]) -> None:
    table = rand((rows, dim))
    indices = torch.randint(0, rows, index_shape)
    run = run_op(aten.embedding.default, table, indices)
    (y,) = run.outputs
    assert run.cost.mac == indices.numel() + 2 * y.numel()
    assert run.cost.mac_bytes == indices.numel() * 8 + 2 * y.numel() * 4
    assert (run.cost.madds, run.cost.flops) == (0, 0)
    assert run.op_type == "Embedding"


@FAST
@given(shape=shapes(1, 3), picks=sizes(1, 5), data=st.data())
def test_index_select(shape: list[int], picks: int, data: st.DataObject) -> None:
    dim = data.draw(st.integers(0, len(shape) - 1))
    x, index = rand(shape), torch.randint(0, shape[dim], (picks,))
    run = run_op(aten.index_select.default, x, dim, index)
    (y,) = run.outputs
    assert run.cost.mac == index.numel() + 2 * y.numel()
    assert run.op_type == "Data Movement"


@FAST
@given(shape=shapes(1, 3), data=st.data())
def test_gather_and_index(shape: list[int], data: st.DataObject) -> None:
    """A gather reads the indices and the picked elements, and writes them."""
    dim = data.draw(st.integers(0, len(shape) - 1), label="dim")
    index_shape = [*shape[:dim], data.draw(sizes(1, 4), label="picks"), *shape[dim + 1:]]
    x, index = rand(shape), torch.randint(0, shape[dim], index_shape)
    gather = run_op(aten.gather.default, x, dim, index)
    assert gather.cost.mac == index.numel() + 2 * gather.outputs[0].numel()
    rows = torch.randint(0, shape[0], (data.draw(sizes(1, 4), label="rows"),))
    indexed = run_op(aten.index.Tensor, x, [rows])
    assert indexed.cost.mac == rows.numel() + 2 * indexed.outputs[0].numel()
    mask = x > 0
    masked = run_op(aten.index.Tensor, x, [mask])
    assert masked.cost.mac == mask.numel() + 2 * masked.outputs[0].numel()


@FAST
@given(pair=broadcast_pair())
def test_copy_into(pair: tuple[Shape, Shape, Shape]) -> None:
    """self.copy_(src) reads src (at its own size) and writes self; self's old data is unread."""
    dst, src = rand(pair[2]), rand(pair[1])
    run = run_op(aten.copy_.default, dst, src)
    assert run.cost.mac == src.numel() + dst.numel()


# --- op-type labels -----------------------------------------------------------------------------


def conv_type(x: Shape, w: Shape, groups: int = 1, transposed: bool = False) -> str:
    spatial = len(w) - 2
    op = (aten.conv_transpose2d.input if transposed
          else getattr(aten, f"conv{spatial}d").default)
    extra: tuple[Any, ...] = ([1] * spatial, [0] * spatial)
    extra += ([0] * spatial, groups) if transposed else ([1] * spatial, groups)
    return run_op(op, rand(x), rand(w), None, *extra).op_type


def test_op_type_labels() -> None:
    assert conv_type((1, 8, 5, 5), (4, 8, 1, 1)) == "Conv 1x1"
    assert conv_type((1, 8, 5, 5), (16, 8, 3, 3)) == "Conv 3x3"
    assert conv_type((1, 8, 5, 5), (8, 1, 3, 3), groups=8) == "Conv DW 3x3"
    assert conv_type((1, 8, 5, 5), (16, 1, 3, 3), groups=8) == "Conv DW 3x3"
    assert conv_type((1, 8, 5, 5), (8, 2, 1, 1), groups=4) == "Conv GW 1x1"
    assert conv_type((1, 8, 5), (4, 8, 3)) == "Conv1d 3"
    assert conv_type((1, 8, 5, 5), (8, 4, 2, 2), transposed=True) == "ConvTranspose 2x2"
    assert conv_type((1, 8, 5, 5, 5), (4, 8, 3, 3, 3)) == "Conv3d 3x3x3"
    assert run_op(aten.linear.default, rand((2, 3)), rand((4, 3)), None).op_type == (
        "Fully Connected")
    assert run_op(aten.bmm.default, rand((2, 3, 4)), rand((2, 4, 5))).op_type == "MatMul"
    q = rand((1, 2, 3, 4))
    assert run_op(aten.scaled_dot_product_attention.default, q, q, q).op_type == "Attention"


# --- coverage: the ops that torch.nn layers produce ---------------------------------------------

COMMON_OPS = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "convolution",
    "linear", "addmm", "mm", "bmm", "baddbmm", "matmul", "einsum", "batch_norm",
    "_native_batch_norm_legit_no_training", "layer_norm", "native_layer_norm", "group_norm",
    "instance_norm", "rms_norm", "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu",
    "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "sigmoid", "tanh", "leaky_relu",
    "elu", "mish", "prelu", "softplus", "softmax", "_softmax", "log_softmax", "add", "add_",
    "sub", "mul", "mul_", "div", "mean", "sum", "amax", "max_pool1d", "max_pool2d",
    "max_pool2d_with_indices", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_max_pool2d", "upsample_nearest2d",
    "upsample_bilinear2d", "cat", "stack", "embedding", "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention_for_cpu", "dropout", "view", "reshape", "permute",
    "transpose", "flatten", "contiguous", "expand", "slice", "select", "squeeze", "unsqueeze",
    "constant_pad_nd", "pad", "channel_shuffle", "pixel_shuffle", "index_select", "clone",
    "_to_copy", "zeros", "ones", "arange",
]


@pytest.mark.parametrize("name", COMMON_OPS)
def test_common_op_has_formula(name: str) -> None:
    packet = getattr(aten, name)
    assert lookup(packet) is not None
    for overload in packet.overloads():
        assert lookup(getattr(packet, overload)) is not None


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(shape)


def layer_case(name: str, layer: nn.Module, *inputs: torch.Tensor) -> Any:
    return pytest.param(name, layer, inputs, id=name)


def _layers() -> list[Any]:
    """(name, layer, example inputs) for the torch.nn layers people use."""
    seq = nn.Sequential
    return [
        layer_case("Conv1d", nn.Conv1d(4, 6, 3), _x(2, 4, 7)),
        layer_case("Conv2d", nn.Conv2d(4, 8, 3, padding=1, groups=2), _x(2, 4, 6, 6)),
        layer_case("Conv3d", nn.Conv3d(2, 4, 3), _x(1, 2, 4, 4, 4)),
        layer_case("ConvTranspose1d", nn.ConvTranspose1d(4, 2, 3), _x(1, 4, 5)),
        layer_case("ConvTranspose2d", nn.ConvTranspose2d(4, 2, 2, stride=2), _x(1, 4, 3, 3)),
        layer_case("ConvTranspose3d", nn.ConvTranspose3d(2, 2, 2), _x(1, 2, 3, 3, 3)),
        layer_case("Linear", nn.Linear(4, 5), _x(2, 3, 4)),
        layer_case("Bilinear", nn.Bilinear(3, 4, 5), _x(2, 3), _x(2, 4)),
        layer_case("BatchNorm1d", nn.BatchNorm1d(4), _x(2, 4)),
        layer_case("BatchNorm2d", nn.BatchNorm2d(4), _x(2, 4, 3, 3)),
        layer_case("BatchNorm2d-batch-stats", nn.BatchNorm2d(4, track_running_stats=False),
                   _x(2, 4, 3, 3)),
        layer_case("LayerNorm", nn.LayerNorm(4), _x(2, 3, 4)),
        layer_case("GroupNorm", nn.GroupNorm(2, 4), _x(2, 4, 3, 3)),
        layer_case("InstanceNorm2d", nn.InstanceNorm2d(4, affine=True), _x(2, 4, 3, 3)),
        layer_case("RMSNorm", nn.RMSNorm(4), _x(2, 3, 4)),
        layer_case("LocalResponseNorm", nn.LocalResponseNorm(2), _x(2, 4, 3, 3)),
        layer_case("activations", seq(
            nn.ReLU(), nn.ReLU6(), nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.Hardswish(),
            nn.Hardsigmoid(), nn.Sigmoid(), nn.Tanh(), nn.LeakyReLU(), nn.ELU(), nn.CELU(),
            nn.SELU(), nn.Mish(), nn.PReLU(), nn.RReLU(), nn.Softplus(), nn.Softsign(),
            nn.LogSigmoid(), nn.Hardshrink(), nn.Tanhshrink(), nn.Threshold(0.1, 0.0),
            nn.Softmax(-1), nn.Softmin(-1), nn.LogSoftmax(-1), nn.Dropout(), nn.AlphaDropout(),
            nn.Identity(), nn.GLU()), _x(2, 4)),
        layer_case("pooling", seq(
            nn.MaxPool2d(2), nn.AvgPool2d(2, ceil_mode=True), nn.LPPool2d(2, 2),
            nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d(2), nn.AdaptiveAvgPool2d(1)),
            _x(1, 2, 9, 9)),
        layer_case("pooling3d", seq(nn.MaxPool3d(2), nn.AvgPool3d(1), nn.AdaptiveAvgPool3d(1)),
                   _x(1, 2, 4, 4, 4)),
        layer_case("resizing", seq(
            nn.Upsample(scale_factor=2), nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Upsample(scale_factor=1, mode="bicubic"),
            nn.Upsample(scale_factor=1, mode="nearest-exact"), nn.PixelShuffle(2),
            nn.PixelUnshuffle(2), nn.ZeroPad2d(1), nn.ReflectionPad2d(1),
            nn.ReplicationPad2d(1), nn.CircularPad2d(1), nn.ChannelShuffle(2), nn.Dropout2d(),
            nn.Flatten(), nn.Unflatten(1, (2, -1))), _x(1, 8, 3, 3)),
        layer_case("Embedding", nn.Embedding(10, 4), torch.randint(0, 10, (2, 3))),
        layer_case("MultiheadAttention", nn.MultiheadAttention(8, 2, batch_first=True),
                   _x(2, 3, 8), _x(2, 3, 8), _x(2, 3, 8)),
        layer_case("TransformerEncoderLayer",
                   nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), _x(2, 3, 8)),
        layer_case("Transformer", nn.Transformer(8, 2, 1, 1, 16, batch_first=True),
                   _x(2, 3, 8), _x(2, 4, 8)),
        layer_case("LSTM", nn.LSTM(4, 5, batch_first=True), _x(2, 3, 4)),
        layer_case("GRU", nn.GRU(4, 5, batch_first=True), _x(2, 3, 4)),
        layer_case("RNN", nn.RNN(4, 5), _x(3, 2, 4)),
        layer_case("EmbeddingBag", nn.EmbeddingBag(10, 4), torch.randint(0, 10, (2, 3))),
        layer_case("Unfold", nn.Unfold(2), _x(1, 2, 4, 4)),
        layer_case("Fold", nn.Fold((3, 3), 2), _x(1, 8, 4)),
        layer_case("CosineSimilarity", nn.CosineSimilarity(), _x(2, 3), _x(2, 3)),
        layer_case("PairwiseDistance", nn.PairwiseDistance(), _x(2, 3), _x(2, 3)),
    ]


@pytest.mark.parametrize(("name", "layer", "inputs"), _layers())
def test_traced_layer_ops_have_formulas(name: str, layer: nn.Module,
                                        inputs: tuple[torch.Tensor, ...]) -> None:
    """Trace each layer as `analyze` does, on its real CPU weights (fake tensors) and again
    built on meta: every aten op it records has a formula."""
    for model in (layer, copy.deepcopy(layer).to("meta")):
        analysis = analyze(model, inputs=inputs)
        assert analysis.ops(), name
        assert not analysis.unsupported(), f"{name}: no formula for {analysis.unsupported()}"


# --- similarity and distance ----------------------------------------------------------------
# (cosine_similarity and pairwise_distance decompose before a dispatch-mode trace sees them;
# their formulas serve any trace that keeps them whole. cdist reaches it as _cdist_forward.)


@FAST
@given(n=st.integers(1, 4), m=st.integers(1, 4), d=st.integers(1, 5))
def test_similarity_counts_every_broadcast_pair(n: int, m: int, d: int) -> None:
    """x1 (n, 1, d) against x2 (1, m, d) compares n*m pairs of d elements. Per the documented
    constants: cosine similarity 6 FLOPs per compared element and 3 per output, a p-distance
    3 and 1; MAC reads the real operands once and writes the output."""
    x1, x2 = rand((n, 1, d)), rand((1, m, d))
    cosine = evaluate(aten.cosine_similarity.default, (x1, x2, -1), {}, count=False)
    assert cosine.outputs[0].shape == (n, m)
    assert cosine.cost.flops == 6 * n * m * d + 3 * n * m
    assert_io_mac(cosine)
    distance = evaluate(aten.pairwise_distance.default, (x1, x2), {}, count=False)
    assert distance.outputs[0].shape == (n, m)
    assert distance.cost.flops == 3 * n * m * d + n * m
    assert_io_mac(distance)
    assert cosine.cost.madds == distance.cost.madds == 0


@FAST
@given(b=st.integers(1, 3), p=st.integers(1, 5), r=st.integers(1, 5), d=st.integers(1, 5))
def test_cdist_compares_all_pairs(b: int, p: int, r: int, d: int) -> None:
    """cdist of (b, p, d) and (b, r, d): b*p*r distances of d elements each."""
    x1, x2 = rand((b, p, d)), rand((b, r, d))
    for op, args in ((aten.cdist.default, (x1, x2)),
                     (aten._cdist_forward.default, (x1, x2, 2.0, None))):
        run = evaluate(op, args, {}, count=False)
        assert run.outputs[0].shape == (b, p, r)
        assert run.cost.flops == 3 * b * p * r * d + b * p * r
        assert_io_mac(run)
        assert run.op_type == "Reduction"


# --- element-wise and norm backward ops a transformer's training step records -------------------


@pytest.mark.parametrize(("approximate", "per_element"), [("none", 11), ("tanh", 19)])
def test_gelu_backward_counts_its_derivative(approximate: str, per_element: int) -> None:
    """g * (Phi(x) + x phi(x)): the derivative whose operations the count is (backward.py);
    torch's kernel computes that derivative (checked against autograd of the forward)."""
    x, g = rand((3, 5)), rand((3, 5))
    run = evaluate(aten.gelu_backward.default, (g, x), {"approximate": approximate},
                   count=False)
    leaf = x.clone().requires_grad_()
    torch.nn.functional.gelu(leaf, approximate=approximate).backward(g)
    torch.testing.assert_close(run.outputs[0], leaf.grad)
    assert run.cost.flops == per_element * x.numel()
    assert_io_mac(run)


def test_tanh_backward() -> None:
    y, g = torch.tanh(rand((4, 6))), rand((4, 6))
    run = evaluate(aten.tanh_backward.default, (g, y), {}, count=False)
    torch.testing.assert_close(run.outputs[0], g * (1 - y * y))  # 3 operations
    assert run.cost.flops == 3 * y.numel()
    assert_io_mac(run)


@pytest.mark.parametrize("mask", [(True, True, True), (True, False, False),
                                  (False, True, True)])
def test_layer_norm_backward(mask: tuple[bool, bool, bool]) -> None:
    """x_hat 2, sum of g 1, sum of g * x_hat 2, the input gradient 4, the weight's scale 1;
    MAC the real tensors read and written."""
    x, w, b = rand((2, 3, 8)), rand((8,)), rand((8,))
    _, mean, rstd = aten.native_layer_norm.default(x, [8], w, b, 1e-5)
    run = evaluate(aten.native_layer_norm_backward.default,
                   (rand((2, 3, 8)), x, [8], mean, rstd, w, b, list(mask)), {}, count=False)
    dx, dw, db = mask
    per = 2 * (dx or dw) + (dx or db) + 2 * (dx or dw) + 4 * dx + dx
    assert run.cost.flops == per * x.numel()
    assert_io_mac(run)


# --- complex arithmetic -------------------------------------------------------------------------


class RealArithmetic(TorchDispatchMode):
    """Counts the real arithmetic torch runs: one per output element of each arithmetic op
    (views, copies and stacking are not arithmetic)."""

    ARITHMETIC = frozenset({aten.mul, aten.add, aten.sub, aten.div, aten.cos, aten.sin,
                            aten.neg})

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in self.ARITHMETIC:
            self.count += out.numel()
        return out


def real_ops(fn: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    with RealArithmetic() as counter:
        result = fn()
    return counter.count, result


def complex_rand(shape: Shape) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.complex64)


@FAST
@given(shape=shapes(1, 3), broadcast=st.booleans())
def test_complex_multiply_counts_real_multiplies_and_adds(shape: list[int],
                                                          broadcast: bool) -> None:
    """(a + bi)(c + di) = (ac - bd) + (ad + bc)i, written out on real tensors and run by torch:
    4 multiplies and 2 adds per element; MAC in complex64's 8 bytes."""
    x = complex_rand(tuple(shape))
    y = complex_rand((1,) * (len(shape) - 1) + (shape[-1],) if broadcast else tuple(shape))
    run = run_op(aten.mul.Tensor, x, y)

    def by_parts() -> torch.Tensor:
        a, b, c, d = x.real, x.imag, y.real, y.imag
        return torch.complex(a * c - b * d, a * d + b * c)

    count, expected = real_ops(by_parts)
    torch.testing.assert_close(run.outputs[0], expected)
    assert run.cost.flops == count == 6 * x.numel()
    assert run.cost.mac_bytes == 8 * run.cost.mac
    assert_io_mac(run)


def test_complex_times_real_and_complex_add() -> None:
    x, r = complex_rand((3, 4)), rand((3, 4))
    count, _ = real_ops(lambda: torch.complex(x.real * r, x.imag * r))
    assert run_op(aten.mul.Tensor, x, r).cost.flops == count == 2 * 12
    assert run_op(aten.mul.Tensor, x, 0.5).cost.flops == 2 * 12  # a Python float: real
    assert run_op(aten.mul.Tensor, x, 2j).cost.flops == 6 * 12
    y = complex_rand((3, 4))
    count, _ = real_ops(lambda: torch.complex(x.real + y.real, x.imag + y.imag))
    assert run_op(aten.add.Tensor, x, y).cost.flops == count == 2 * 12
    assert run_op(aten.add.Tensor, x, r).cost.flops == 12  # only the real parts add
    assert run_op(aten.mul.Tensor, r, r).cost.flops == 12  # real arithmetic unchanged


@FAST
@given(shape=shapes(1, 3))
def test_polar(shape: list[int]) -> None:
    """polar(r, t) = r cos t + i r sin t: cos, sin and 2 multiplies, run by torch."""
    r, t = rand(shape).abs(), rand(shape)
    run = run_op(aten.polar.default, r, t)
    count, expected = real_ops(lambda: torch.complex(r * torch.cos(t), r * torch.sin(t)))
    torch.testing.assert_close(run.outputs[0], expected)
    assert run.cost.flops == count == 4 * r.numel()
    assert run.cost.mac == 3 * r.numel()
    assert run.cost.mac_bytes == 4 * r.numel() * 2 + 8 * r.numel()
    assert run.op_type == "Elementwise"


@FAST
@given(b=sizes(1, 2), m=sizes(1, 4), k=sizes(1, 4), n=sizes(1, 4))
def test_complex_matmul_is_four_real_products(b: int, m: int, k: int, n: int) -> None:
    """A complex product is 4 real products (FlopCounterMode counts them), for bmm and einsum."""
    x, y = complex_rand((b, m, k)), complex_rand((b, k, n))
    run = run_op(aten.bmm.default, x, y)
    parts = [(x.real, y.real), (x.imag, y.imag), (x.real, y.imag), (x.imag, y.real)]
    reference = torch_flops(lambda: [torch.bmm(p, q) for p, q in parts])
    assert run.cost.madds * 2 == reference == 2 * 4 * b * m * k * n
    einsum = run_op(aten.einsum.default, "bmk,bkn->bmn", [x, y])
    assert einsum.cost.madds == run.cost.madds
    assert_io_mac(run)


def test_llama4_rotary_embedding_from_transformers() -> None:
    """transformers' Llama-4 rotary embedding (polar, a complex scale, view_as_complex, complex
    multiplies, view_as_real) costs its real arithmetic, with nothing unsupported."""
    from transformers import Llama4TextConfig
    from transformers.models.llama4 import modeling_llama4 as llama4

    config = Llama4TextConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                              head_dim=16, num_hidden_layers=1, vocab_size=32)

    class Rope(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rotary = llama4.Llama4TextRotaryEmbedding(config)

        def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, ...]:
            positions = torch.arange(q.shape[1])[None]
            return llama4.apply_rotary_emb(q, k, self.rotary(q, positions))

    b, seq, heads, kv_heads, half = 2, 5, 4, 2, 8
    analysis = analyze(Rope(), input_shape=[(b, seq, heads, 2 * half),
                                            (b, seq, kv_heads, 2 * half)])
    assert not analysis.unsupported()
    complex_ops = [op for op in analysis.ops()
                   if op["target"].startswith(("aten.polar", "aten.mul"))
                   and "torch.complex64" in op["dtypes"]]
    flops = sum(op["cost"].flops for op in complex_ops)
    # polar over (1, seq, half) frequencies, times the real attention scaling, then q and k
    assert flops == (4 + 2) * seq * half + 6 * b * seq * (heads + kv_heads) * half
