"""Mixture-of-experts, exactly: the grouped matmul and routing formulas against torch running
each op on small real CPU tensors, the Mixtral-style decoder against its closed form, and the
MoE report's active parameters against the published Mixtral 8x7B figures.

Expectations come from torch (the real outputs' `numel`, FlopCounterMode on the equivalent
per-group matmuls), from sums derived by hand in the test, or from published counts.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from itertools import accumulate, combinations, product
from typing import Any

import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from costmodel import analyze
from costmodel.cost import Cost
from costmodel.formulas import OpCall, TensorMeta, lookup
from costmodel.formulas.linear import expected_experts_hit
from costmodel.report import render
from costmodel.views.moe import summarize as moe_summary
from costmodel.zoo import MixtralDecoder, mixtral_8x7b

aten = torch.ops.aten
FAST = settings(max_examples=20, deadline=None)


def meta_of(t: torch.Tensor) -> TensorMeta:
    return TensorMeta(tuple(t.shape), t.dtype, tuple(t.stride()))


def call_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return meta_of(value)
    if isinstance(value, (list, tuple)):
        return type(value)(call_value(v) for v in value)
    return value


def tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def run(op: Any, *args: Any, **kwargs: Any) -> tuple[Cost, str, int]:
    """The op's formula on what the tracer would see of this call, its op type, and the
    elements torch read and wrote (every real tensor argument and output)."""
    call_args = tuple(call_value(a) for a in args)  # before an in-place op runs
    call_kwargs = {k: call_value(v) for k, v in kwargs.items()}
    inputs = tensors(list(args)) + tensors(list(kwargs.values()))
    outputs = tensors(op(*args, **kwargs))
    call = OpCall(op, call_args, call_kwargs, tuple(meta_of(t) for t in outputs))
    entry = lookup(op)
    assert entry is not None, f"{op} has no formula"
    return entry.formula(call), entry.type_of(call), sum(t.numel() for t in inputs + outputs)


def per_group_matmul_flops(pieces: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """FLOPs FlopCounterMode counts for the same work done as one matmul per group."""
    with FlopCounterMode(display=False) as counter:
        for a, b in pieces:
            torch.mm(a, b)
    return counter.get_total_flops()


# --- grouped matmul -----------------------------------------------------------------------------


@st.composite
def group_sizes(draw: st.DrawFn, groups: int) -> list[int]:
    return [draw(st.integers(0, 5)) for _ in range(groups)]


@FAST
@given(data=st.data(), groups=st.integers(1, 4), k=st.sampled_from([8, 16]),
       n=st.sampled_from([4, 8, 12]), transposed=st.booleans())
def test_grouped_mm_rows_split_among_experts(data: st.DataObject, groups: int, k: int, n: int,
                                             transposed: bool) -> None:
    """(S, K) x (G, K, N), S rows routed among G experts: Mult-Adds sum rows_g * K * N over
    the groups, S * K * N whatever the split (the routing); MAC reads a, b, offs, writes out."""
    rows = data.draw(group_sizes(groups))
    offs = torch.tensor(list(accumulate(rows)), dtype=torch.int32)
    a = torch.randn(sum(rows), k)
    b = torch.randn(groups, n, k).transpose(1, 2) if transposed else torch.randn(groups, k, n)
    cost, op_type, elements = run(aten._grouped_mm.default, a, b, offs)
    hand = sum(r * k * n for r in rows)
    starts = [0, *offs.tolist()]
    pieces = [(a[starts[g]:starts[g + 1]], b[g]) for g in range(groups)]
    assert cost.madds == hand == sum(rows) * k * n
    assert 2 * cost.madds == cost.flops == per_group_matmul_flops(pieces)
    assert cost.mac == elements == a.numel() + b.numel() + groups + sum(rows) * n
    assert op_type == "Grouped MatMul"


def test_grouped_mm_batched_and_k_split_forms() -> None:
    """3-D x 3-D: a batch of G products; 2-D x 2-D: K split among G groups, one (M, N) block
    each; 3-D x 2-D: N split among the groups."""
    a, b = torch.randn(3, 4, 16), torch.randn(3, 16, 8)
    cost, _, elements = run(aten._grouped_mm.default, a, b)
    assert cost.madds == 3 * 4 * 16 * 8 and cost.mac == elements
    ks = [16, 0, 32]
    a, b = torch.randn(4, sum(ks)), torch.randn(sum(ks), 8)
    offs = torch.tensor(list(accumulate(ks)), dtype=torch.int32)
    cost, _, elements = run(aten._grouped_mm.default, a, b, offs)
    assert cost.madds == sum(4 * k * 8 for k in ks) and cost.mac == elements
    ns = [8, 8, 16]
    a, b = torch.randn(3, 4, 16), torch.randn(sum(ns), 16).t()
    offs = torch.tensor(list(accumulate(ns)), dtype=torch.int32)
    cost, _, elements = run(aten._grouped_mm.default, a, b, offs)
    assert cost.madds == sum(4 * 16 * n for n in ns) and cost.mac == elements


def test_grouped_mm_in_bfloat16_counts_bytes_at_two() -> None:
    a, b = torch.randn(6, 16, dtype=torch.bfloat16), torch.randn(2, 16, 8, dtype=torch.bfloat16)
    offs = torch.tensor([2, 6], dtype=torch.int32)
    cost, _, _ = run(aten._grouped_mm.default, a, b, offs)
    assert cost.mac_bytes == 2 * (6 * 16 + 2 * 16 * 8 + 6 * 8) + 4 * 2


# --- routing ------------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3)


def ceil_log2(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


@FAST
@given(shape=shapes, data=st.data())
def test_topk_and_kthvalue_compare_each_element_once(shape: list[int],
                                                     data: st.DataObject) -> None:
    x = torch.randn(shape)
    k = data.draw(st.integers(1, shape[-1]))
    for op in (aten.topk.default, aten.kthvalue.default):
        cost, op_type, elements = run(op, x, k)
        assert (cost.madds, cost.flops) == (0, x.numel())
        assert cost.mac == elements == x.numel() + 2 * x.numel() // shape[-1] * (
            k if op is aten.topk.default else 1)
        assert op_type == "Routing"


@FAST
@given(shape=shapes, data=st.data(), stable=st.booleans())
def test_sort_and_argsort_are_comparison_sorts(shape: list[int], data: st.DataObject,
                                               stable: bool) -> None:
    x = torch.randn(shape)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[dim]
    expected = x.numel() * ceil_log2(n)
    if stable:
        cost, op_type, elements = run(aten.sort.stable, x, stable=True, dim=dim)
    else:
        cost, op_type, elements = run(aten.sort.default, x, dim)
    assert cost.flops == expected and cost.madds == 0
    assert cost.mac == elements == 3 * x.numel()  # read; write values and indices
    assert op_type == "Routing"
    cost, _, elements = run(aten.argsort.default, x, dim)
    assert cost.flops == expected and cost.mac == elements == 2 * x.numel()


def test_msort_sorts_along_dim_0() -> None:
    x = torch.randn(5, 3)
    cost, _, elements = run(aten.msort.default, x)
    assert cost.flops == 3 * 5 * ceil_log2(5) and cost.mac == elements == 2 * x.numel()


@FAST
@given(n=st.integers(1, 40), bins=st.integers(1, 8))
def test_histc_and_bincount_count_every_element(n: int, bins: int) -> None:
    """The routers' tokens-per-expert: histc over float expert ids, bincount over ints."""
    ids = torch.randint(0, bins, (n,))
    cost, op_type, elements = run(aten.histc.default, ids.float(), bins, 0, bins - 1)
    assert cost.flops == 3 * n and cost.mac == elements == n + bins
    assert op_type == "Routing"
    cost, _, elements = run(aten.bincount.default, ids, None, bins)
    assert cost.flops == n and cost.mac == elements == n + bins
    weights = torch.rand(n)
    cost, _, elements = run(aten.bincount.default, ids, weights, bins)
    assert cost.flops == n and cost.mac == elements == 2 * n + bins


@FAST
@given(boundaries=st.integers(1, 9), values=shapes)
def test_searchsorted_and_bucketize_binary_search(boundaries: int, values: list[int]) -> None:
    edges, x = torch.sort(torch.randn(boundaries)).values, torch.randn(values)
    per_value = ceil_log2(boundaries + 1)
    for op, args in ((aten.searchsorted.Tensor, (edges, x)), (aten.bucketize.Tensor, (x, edges))):
        cost, op_type, elements = run(op, *args)
        assert cost.flops == x.numel() * per_value
        assert cost.mac == elements == boundaries + 2 * x.numel()
        assert op_type == "Routing"


@FAST
@given(n=st.integers(1, 30))
def test_unique_sorts_then_compares_neighbours(n: int) -> None:
    x = torch.randint(0, 5, (n,))
    cost, _, elements = run(aten._unique2.default, x, True, True, True)
    assert cost.flops == n * ceil_log2(n) + n and cost.mac == elements
    cost, _, elements = run(aten.unique_consecutive.default, x, True, True)
    assert cost.flops == n and cost.mac == elements


@FAST
@given(rows=st.integers(1, 6), dim=st.integers(1, 5), picks=st.integers(1, 8))
def test_index_add_and_scatter_add_add_each_source_element(rows: int, dim: int,
                                                           picks: int) -> None:
    """The expert loop's combine step: out.index_add_(0, token_idx, expert_out)."""
    index = torch.randint(0, rows, (picks,))
    source = torch.randn(picks, dim)
    cost, op_type, elements = run(aten.index_add_.default, torch.zeros(rows, dim), 0, index,
                                  source)
    assert cost.flops == picks * dim and cost.madds == 0
    assert cost.mac == elements == 2 * rows * dim + picks + picks * dim
    assert op_type == "Data Movement"
    cost, _, elements = run(aten.scatter_add.default, torch.zeros(rows, dim), 0,
                            index[:, None].expand(picks, dim), source)
    assert cost.flops == picks * dim and cost.mac == elements
    cost, _, elements = run(aten.scatter_reduce.two, torch.zeros(rows, dim), 0,
                            index[:, None].expand(picks, dim), source, "amax")
    assert cost.flops == picks * dim and cost.mac == elements


@FAST
@given(tokens=st.integers(1, 12), experts=st.integers(2, 6), top_k=st.integers(1, 2))
def test_the_other_ops_routers_run(tokens: int, experts: int, top_k: int) -> None:
    """What transformers' and the reference routers run besides topk and sort, on their real
    tensors: one_hot's scatter of ones, the expert mask's nonzero, cumsum of the counts into
    offsets, the token of each pick (floor_divide), the inverse permutation (index_put_).
    Each reads its arguments and writes its outputs, as numel says, with no Mult-Adds."""
    picks = torch.randint(0, experts, (tokens, top_k))
    flat = picks.reshape(-1)
    order = torch.argsort(flat)
    cases: list[tuple[Any, tuple[Any, ...], int]] = [  # op, args, FLOPs
        (aten.scatter.value, (torch.zeros(tokens, top_k, experts), -1, picks[..., None], 1.0),
         0),
        (aten.nonzero.default, (picks == 1,), 0),
        (aten.cumsum.default, (torch.bincount(flat, minlength=experts), 0), experts),
        (aten.floor_divide.default, (order, torch.tensor(top_k)), flat.numel()),
        (aten.index_put_.default, (torch.empty_like(order), [order],
                                   torch.arange(order.numel())), 0),
    ]
    for op, args, flops in cases:
        cost, _, elements = run(op, *args)
        assert cost.madds == 0 and cost.flops == flops, op
        assert cost.mac == elements, op


@pytest.mark.parametrize("name", ["topk", "sort", "argsort", "histc", "bincount", "scatter",
                                  "gather", "index_add", "index_select", "scatter_add",
                                  "_grouped_mm", "searchsorted", "nonzero", "cumsum",
                                  "_unique2", "kthvalue"])
def test_routing_ops_have_formulas(name: str) -> None:
    assert lookup(getattr(aten, name)) is not None


# --- the Mixtral-style decoder and the MoE report -----------------------------------------------


def closed_form(layers: int, d: int, kv: int, hidden: int, experts: int, top_k: int,
                vocab: int, s: Any) -> Any:
    """q and o; k and v (grouped-query); QK^T and PV; the router; top_k SwiGLU experts per
    token (gate, up, down); the LM head."""
    per_layer = (2 * s * d * d + 2 * s * d * kv + 2 * s * s * d + s * d * experts
                 + 3 * s * top_k * d * hidden)
    return layers * per_layer + s * d * vocab


def tokens(seq: int) -> list[torch.Tensor]:
    return [torch.zeros(1, seq, dtype=torch.long, device="meta")]


def test_small_mixtral_matches_closed_form_on_meta() -> None:
    with torch.device("meta"):
        model = MixtralDecoder(vocab_size=320, dim=64, n_layers=3, n_heads=4, n_kv_heads=2,
                               hidden_dim=96, n_experts=4, top_k=2, seq_len=48)
    analysis = analyze(model)
    assert analysis.total().madds == closed_form(3, 64, 32, 96, 4, 2, 320, 48)
    assert sum(op["op_type"] == "Grouped MatMul" for op in analysis.ops()) == 2 * 3
    assert not analysis.unsupported()


def test_mixtral_8x7b_shapes_match_closed_form_and_published_parameters() -> None:
    """Mixtral 8x7B: 46.7 B parameters, 12.9 B active per token (Jiang et al. 2024, and
    the released model card); the counts below are the released checkpoint's tensors summed
    by hand: embeddings and head 2 * 32000 * 4096, per layer q, o 4096^2, k, v 4096 * 1024,
    router 8 * 4096, experts 8 * 3 * 4096 * 14336, two norms 2 * 4096, final norm 4096."""
    with torch.device("meta"):
        model = mixtral_8x7b()
    analysis = analyze(model, inputs=tokens(64))
    assert analysis.total().madds == closed_form(32, 4096, 1024, 14336, 8, 2, 32000, 64)
    dense = 2 * 32000 * 4096 + 4096 + 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 8 * 4096
                                            + 2 * 4096)
    experts = 32 * 8 * 3 * 4096 * 14336
    assert analysis.total().params == dense + experts == 46_702_792_704
    moe = moe_summary(analysis)
    assert (len(moe.layers), moe.layers[0].experts, moe.layers[0].top_k) == (32, 8, 2)
    assert moe.expert_params == experts
    assert moe.active_params == dense + experts * 2 // 8 == 12_879_925_248


def test_mixtral_in_float32_built_on_the_cpu_and_in_a_free_sequence_length() -> None:
    """A float32 Mixtral built on the CPU runs on fake tensors (the grouped matmul's shape rule
    takes bfloat16 only, and is given it); a free sequence length L gives the closed form as a
    polynomial in L."""
    model = MixtralDecoder(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                           hidden_dim=96, n_experts=4, top_k=2, seq_len=32, dtype=torch.float32)
    analysis = analyze(model)
    assert analysis.total().madds == closed_form(2, 64, 32, 96, 4, 2, 256, 32)
    assert not analysis.unsupported()
    grouped = [op for op in analysis.ops() if op["op_type"] == "Grouped MatMul"]
    assert all(op["dtypes"] == ["torch.float32"] for op in grouped)
    free = analyze("costmodel.zoo:mixtral_tiny", input_shape=(1, "L"), dtype=torch.long,
                   hints={"L": 32})
    length = sympy.Symbol("L", positive=True)  # a free dimension is a positive symbol
    assert sympy.expand(free.total().madds - closed_form(2, 64, 32, 96, 4, 2, 256, length)) == 0


def test_moe_report_in_json_and_table_header() -> None:
    analysis = analyze("costmodel.zoo:mixtral_tiny")
    experts = 2 * 4 * 3 * 64 * 96  # layers * experts * (gate, up, down) * d * hidden
    section = json.loads(render(analysis, "json"))["moe"]
    assert section["total_params"] == analysis.total().params
    assert section["expert_params"] == experts
    assert section["active_params"] == analysis.total().params - experts + experts * 2 // 4
    assert (section["layers"], section["experts"], section["top_k"]) == (2, 4, 2)
    header = render(analysis).splitlines()[2]
    assert header.startswith("MoE: 2 layers of 4 experts, top 2: params 205.63K, active per")


def test_dense_model_has_no_moe_section() -> None:
    analysis = analyze("costmodel.zoo:llama_tiny")
    assert moe_summary(analysis) is None
    assert "moe" not in json.loads(render(analysis, "json"))
    assert "MoE" not in render(analysis)


def tiny_transformers_mixtral(**options: Any) -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.MixtralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
        num_experts_per_tok=2, **options)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_transformers_mixtral_grouped_mm_experts_are_counted(dtype: torch.dtype) -> None:
    """`transformers`' Mixtral (grouped-matmul experts) on meta: nothing unsupported, and the
    Mult-Adds are the closed form (its attention has 2 KV heads of 16). On meta the grouped
    matmul's kernel takes bfloat16 only; float32 is traced all the same."""
    from transformers import MixtralForCausalLM

    config = tiny_transformers_mixtral()
    with torch.device("meta"):
        model = MixtralForCausalLM(config).to(dtype)
    analysis = analyze(model, inputs=tokens(16))
    assert not analysis.unsupported()
    assert analysis.total().madds == closed_form(2, 64, 32, 96, 4, 2, 128, 16)
    grouped = [op for op in analysis.ops() if op["op_type"] == "Grouped MatMul"]
    assert len(grouped) == 4 and all(op["dtypes"] == [str(dtype)] for op in grouped)
    moe = moe_summary(analysis)
    assert moe is not None and moe.expert_params == 2 * 4 * 3 * 64 * 96


def test_transformers_mixtral_expert_loop_under_execute() -> None:
    """`transformers`' eager experts loop over the experts hit (`nonzero`, `torch.where`):
    executed on the CPU, the total is the closed form, and the MoE report finds the stacked
    expert weights it indexes one expert at a time."""
    from transformers import MixtralForCausalLM

    torch.manual_seed(0)
    model = MixtralForCausalLM(tiny_transformers_mixtral(experts_implementation="eager"))
    analysis = analyze(model, inputs=[torch.zeros(1, 16, dtype=torch.long)], execute=True)
    assert any(op["target"] == "aten.nonzero.default" for op in analysis.ops())
    assert not analysis.unsupported()
    assert analysis.total().madds == closed_form(2, 64, 32, 96, 4, 2, 128, 16)
    moe = moe_summary(analysis)
    assert moe is not None and moe.expert_params == 2 * 4 * 3 * 64 * 96
    assert moe.active_params == analysis.total().params - moe.expert_params // 2


# --- the expert weights a step reads ------------------------------------------------------------


def _enumerated_experts_hit(experts: int, top_k: int, tokens: int) -> Fraction:
    """The mean number of distinct experts over every way `tokens` tokens can each pick
    `top_k` distinct experts of `experts`: a reference by enumeration, not by the formula."""
    choices = list(combinations(range(experts), top_k))
    ways = list(product(choices, repeat=tokens))
    return Fraction(sum(len(set().union(*way)) for way in ways), len(ways))


@pytest.mark.parametrize(("experts", "top_k", "tokens"),
                         [(4, 1, 1), (4, 2, 3), (5, 2, 2), (6, 3, 3), (8, 2, 1), (8, 2, 2)])
def test_expected_experts_hit_is_the_enumerated_mean(experts: int, top_k: int,
                                                     tokens: int) -> None:
    expected = expected_experts_hit(experts, top_k, tokens)
    assert expected == _enumerated_experts_hit(experts, top_k, tokens)
    assert expected == experts * (1 - (1 - Fraction(top_k, experts)) ** tokens)


def _small_mixtral(device: str, experts: int = 8, top_k: int = 2) -> MixtralDecoder:
    with torch.device(device):
        return MixtralDecoder(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                              hidden_dim=48, n_experts=experts, top_k=top_k, seq_len=16,
                              dtype=torch.float32)


def _grouped(analysis: Any) -> list[dict[str, Any]]:
    return [op for op in analysis.ops() if op["op_type"] == "Grouped MatMul"]


def _grouped_mac(op: dict[str, Any], weights_read: int) -> int:
    """Rows read, the weights read, the offsets, the output written."""
    (rows, k), _, (experts,) = op["input_shapes"]
    (_, n), = op["output_shapes"]
    return rows * k + weights_read + experts + rows * n


@pytest.mark.parametrize("seq", [1, 3])
def test_shapes_alone_charge_the_expected_experts_a_step_reaches(seq: int) -> None:
    """One token reads its top 2 of 8 experts' weights, exactly 2; three tokens the expected
    8 (1 - (3/4)^3) = 4.625 experts' worth, rounded to whole elements. The rest of the MAC and
    every Mult-Add are unchanged."""
    analysis = analyze(_small_mixtral("meta"), inputs=[torch.zeros(1, seq, dtype=torch.long,
                                                                   device="meta")])
    hit = {1: Fraction(2), 3: Fraction(8) * (1 - Fraction(27, 64))}[seq]
    grouped = _grouped(analysis)
    assert len(grouped) == 4
    for op in grouped:
        _, (_, k, n), _ = op["input_shapes"]
        weights_read = round(hit * k * n)
        assert op["cost"].mac == _grouped_mac(op, weights_read)
        assert op["cost"].mac_bytes == 4 * op["cost"].mac
    assert analysis.total().madds == closed_form(2, 32, 16, 48, 8, 2, 64, seq)


def test_execute_reads_exactly_the_experts_the_router_picked() -> None:
    """Executed on the CPU, the offsets are seen: each grouped matmul reads the experts that
    got rows. The reference: the router's own picks, recomputed in the test from the gate's
    outputs captured while the model ran."""
    torch.manual_seed(0)
    model = _small_mixtral("cpu")
    logits: dict[str, torch.Tensor] = {}
    hooks = [layer.moe.gate.register_forward_hook(
        lambda module, args, out, name=f"layers.{i}.moe": logits.__setitem__(name, out))
        for i, layer in enumerate(model.layers)]
    analysis = analyze(model, inputs=[torch.zeros(1, 3, dtype=torch.long)], execute=True)
    for hook in hooks:
        hook.remove()
    for op in _grouped(analysis):
        picks = torch.topk(torch.softmax(logits[op["module"]].float(), -1), 2, dim=-1).indices
        hit = len(set(picks.reshape(-1).tolist()))
        _, (experts, k, n), _ = op["input_shapes"]
        assert hit < experts  # 3 tokens cannot reach all 8: the case is a real test
        assert op["cost"].mac == _grouped_mac(op, hit * k * n)


def test_a_grouped_matmul_no_router_feeds_reads_every_group() -> None:
    """Without a router upstream of the offsets, nothing says which groups are empty on shapes
    alone: all of them are read."""

    class Grouped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.empty(4, 16, 8, dtype=torch.bfloat16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            offs = torch.tensor([2, 4, 6, 6], dtype=torch.int32, device=x.device)
            return torch._grouped_mm(x, self.w, offs=offs)

    with torch.device("meta"):
        model = Grouped()
    analysis = analyze(model, input_shape=(6, 16), dtype=torch.bfloat16)
    (op,) = _grouped(analysis)
    assert op["cost"].mac == 6 * 16 + 4 * 16 * 8 + 4 + 6 * 8
