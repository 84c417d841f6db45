"""The op graph: the seed's equations on real graph nodes, edges, module paths, control flow."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from costmodel import analyze


@settings(max_examples=15, deadline=None)
@given(g=st.sampled_from([1, 2, 4, 8]), m1=st.integers(1, 6), m2=st.integers(1, 6),
       h=st.integers(1, 9), w=st.integers(1, 9))
def test_grouped_pointwise_conv_node_matches_seed_equations(g: int, m1: int, m2: int,
                                                           h: int, w: int) -> None:
    """ShuffleNetV2 eq. (4), (5): Mult-Adds h*w*c1*c2/g, MAC h*w*(c1+c2) + c1*c2/g."""
    c1, c2 = g * m1, g * m2
    conv = nn.Conv2d(c1, c2, 1, groups=g, bias=False)
    analysis = analyze(conv, input_shape=(1, c1, h, w))
    (op,) = analysis.ops()
    assert op["cost"].madds == h * w * c1 * c2 // g
    assert op["cost"].mac == h * w * (c1 + c2) + c1 * c2 // g
    assert op["cost"].params == c1 * c2 // g


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 8:  # shape-dependent Python control flow must trace
            x = nn.functional.avg_pool2d(x, 2)
        return torch.relu(self.a(x)) + self.b(x)


def test_graph_structure_and_shape_dependent_control_flow() -> None:
    big = analyze(Branchy(), input_shape=(1, 4, 16, 16))
    small = analyze(Branchy(), input_shape=(1, 4, 8, 8))
    assert "Pooling" in {op["op_type"] for op in big.ops()}
    assert "Pooling" not in {op["op_type"] for op in small.ops()}
    graph = small.graph
    assert nx.is_directed_acyclic_graph(graph)
    inputs = [n for n, d in graph.nodes(data=True) if d["kind"] == "input"]
    assert len(inputs) == 1 and graph.out_degree(inputs[0]) == 2  # x feeds both convs
    modules = {op["module"] for op in small.ops()}
    assert {"a", "b"} <= modules
    add = next(op for op in small.ops() if op["target"].startswith("aten.add"))
    assert graph.in_degree(add["name"]) == 2
    edge = next(iter(graph.in_edges(add["name"], data=True)))[2]
    assert edge["shape"] == (1, 4, 8, 8) and edge["numel"] == 256
    conv_a = next(op for op in small.ops() if op["module"] == "a")
    assert conv_a["params"] == ["a.weight", "a.bias"]
    assert conv_a["module_class"] == "Conv2d"


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.head = nn.Linear(8, 50, bias=False)
        self.head.weight = self.emb.weight  # shared: counted once

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids))


def test_shared_parameters_count_once_and_mac_counts_each_read() -> None:
    analysis = analyze(Tied(), inputs=(torch.zeros(2, 5, dtype=torch.long),))
    assert analysis.total().params == 50 * 8
    linear = next(op for op in analysis.ops() if op["op_type"] == "Fully Connected")
    assert linear["cost"].madds == 10 * 8 * 50
    assert linear["cost"].mac == 10 * 8 + 50 * 8 + 10 * 50  # reads the shared table again
    embedding = next(op for op in analysis.ops() if op["op_type"] == "Embedding")
    assert embedding["cost"].mac == 10 + 2 * 10 * 8
    assert embedding["cost"].mac_bytes == 10 * 8 + 2 * 10 * 8 * 4  # int64 ids, float rows


class Shuffle(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # copies
        return y.flatten(1)  # a view of a contiguous tensor: free


def test_channel_shuffle_costs_one_copy_and_views_are_free() -> None:
    analysis = analyze(Shuffle(), input_shape=(1, 8, 4, 4))
    assert analysis.total().mac == 2 * 8 * 4 * 4
    copies = [op for op in analysis.ops() if op["op_type"] == "Data Movement"]
    assert [op["target"] for op in copies] == ["aten.clone.default"]  # reshape copies here


class Fused(nn.Module):
    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        attn = nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        return attn + torch.einsum("bhld,bhld->bhl", x, x)[..., None]


def test_attention_is_one_node_with_full_count() -> None:
    b, h, l, e = 2, 3, 10, 4
    analysis = analyze(Fused(), input_shape=[(b, h, l, e), (b, h, l, e)])
    attention = [op for op in analysis.ops() if op["op_type"] == "Attention"]
    assert len(attention) == 1
    assert attention[0]["cost"].madds == b * h * l * l * (e + e)
    assert attention[0]["cost"].mac == 4 * b * h * l * e  # q, k, v read; out written


def test_unsupported_op_is_listed_never_a_silent_zero() -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.special.bessel_j0(x) + x

    analysis = analyze(Odd(), input_shape=(3, 4))
    assert analysis.unsupported() == {"aten.special_bessel_j0.default": 1}


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_mac_bytes_follow_dtype(dtype: torch.dtype) -> None:
    model = nn.Linear(16, 8).to(dtype=dtype)
    analysis = analyze(model, input_shape=(4, 16), dtype=dtype)
    mac = 4 * 16 + 16 * 8 + 8 + 4 * 8
    assert analysis.total().mac == mac
    assert analysis.total().mac_bytes == mac * dtype.itemsize


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_batch_norm_at_inference_writes_only_its_output(device: str) -> None:
    """Reads x, weight, bias, running mean and variance; writes y and nothing else: the meta
    kernel's full-size saved statistics are not written by a real inference kernel."""
    n, c, h, w = 2, 8, 5, 3
    with torch.device(device):
        bn = nn.BatchNorm2d(c)
    (op,) = [op for op in analyze(bn, input_shape=(n, c, h, w)).ops() if op["op_type"] == "Norm"]
    assert op["cost"].mac == 2 * n * c * h * w + 4 * c
    assert op["cost"].flops == 2 * n * c * h * w
