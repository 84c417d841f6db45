"""The public formula functions, called with plain dimensions, against torch running the same op.

Each function is called at random sizes and compared with the op executed on small real CPU
tensors: Mult-Adds with ``FlopCounterMode`` (which counts 2 FLOPs per multiply-add), MAC with
the ``numel()`` of the real inputs, weights and outputs, params with the module's parameters.
FlopCounterMode counts nothing for norms, pooling and copies, so there the FLOPs are the
per-element constants derived by hand in each test. Each function is also called with sympy
symbols in place of its sizes; substituting the sizes back must give the integer call's answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import sympy
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch_oracles import window_elements

from costmodel import analyze, formulas
from costmodel.cost import Cost
from costmodel.zoo import channel_shuffle as zoo_channel_shuffle

FAST = settings(max_examples=25, deadline=None)
small = st.integers(1, 4)


def torch_madds(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(multiply-adds FlopCounterMode counts, the result) of running fn for real."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2, result


def numel(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() for t in tensors if t is not None)


def assert_symbolic_agrees(fn: Callable[..., Cost], keys: list[str], **kwargs: Any) -> None:
    """fn with the int arguments named in `keys` replaced by positive symbols, substituted
    back, equals fn called with the ints, field by field."""
    syms = {k: sympy.Symbol(k, positive=True) for k in keys}
    symbolic = fn(**{**kwargs, **syms})
    concrete = fn(**kwargs)
    back = {syms[k]: kwargs[k] for k in keys}
    assert any(isinstance(v, sympy.Basic) and v.free_symbols for v in symbolic.as_dict().values())
    for name, value in symbolic.as_dict().items():
        assert sympy.sympify(value).subs(back) == getattr(concrete, name), name


def assert_bytes(cost: Cost, itemsize: int = 4) -> None:
    assert cost.mac_bytes == cost.mac * itemsize


# --- contractions -------------------------------------------------------------------------------


@FAST
@given(n=small, groups=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 3),
       h=st.integers(1, 8), w=st.integers(1, 8), k=st.integers(1, 3), s=st.integers(1, 3),
       p=st.integers(0, 1), d=st.integers(1, 2), bias=st.booleans())
def test_conv2d(n: int, groups: int, cin: int, cout: int, h: int, w: int, k: int, s: int,
                p: int, d: int, bias: bool) -> None:
    h, w = h + d * (k - 1), w + d * (k - 1)  # the window fits
    c_in, c_out = groups * cin, groups * cout
    x, weight = torch.randn(n, c_in, h, w), torch.randn(c_out, cin, k, k)
    b = torch.randn(c_out) if bias else None
    madds, y = torch_madds(lambda: F.conv2d(x, weight, b, s, p, d, groups))
    args = dict(n=n, c_in=c_in, c_out=c_out, h_in=h, w_in=w, kernel=k, stride=s, padding=p,
                dilation=d, groups=groups, bias=bias)
    cost = formulas.conv2d(**args)
    assert cost.madds == madds > 0
    assert cost.flops == 2 * madds + (y.numel() if bias else 0)
    assert cost.mac == numel(x, weight, b, y)
    assert cost.params == numel(weight, b)
    assert_bytes(cost)
    assert_symbolic_agrees(formulas.conv2d, ["n", "c_in", "c_out", "h_in", "w_in", "stride",
                                             "padding", "groups"], **args)


@FAST
@given(spatial=st.sampled_from([1, 3]), n=small, c_in=small, c_out=small, data=st.data())
def test_conv_any_rank(spatial: int, n: int, c_in: int, c_out: int, data: st.DataObject) -> None:
    kernel = tuple(data.draw(st.integers(1, 2)) for _ in range(spatial))
    size = tuple(k + data.draw(st.integers(0, 3)) for k in kernel)
    x, weight = torch.randn(n, c_in, *size), torch.randn(c_out, c_in, *kernel)
    conv = F.conv1d if spatial == 1 else F.conv3d
    madds, y = torch_madds(lambda: conv(x, weight))
    cost = formulas.conv(n, c_in, c_out, size, tuple(y.shape[2:]), kernel)
    assert cost.madds == madds
    assert cost.mac == numel(x, weight, y) and cost.params == weight.numel()
    assert_symbolic_agrees(lambda **a: formulas.conv(a["n"], a["c_in"], a["c_out"], size,
                                                     tuple(y.shape[2:]), kernel),
                           ["n", "c_in", "c_out"], n=n, c_in=c_in, c_out=c_out)


@FAST
@given(n=small, groups=st.integers(1, 2), cin=small, cout=small, h=small, w=small,
       k=st.integers(1, 3), s=st.integers(1, 2), bias=st.booleans())
def test_conv_transposed(n: int, groups: int, cin: int, cout: int, h: int, w: int, k: int,
                         s: int, bias: bool) -> None:
    """A transposed conv does one multiply-add per kernel tap per *input* element."""
    c_in, c_out = groups * cin, groups * cout
    x, weight = torch.randn(n, c_in, h, w), torch.randn(c_in, cout, k, k)
    b = torch.randn(c_out) if bias else None
    madds, y = torch_madds(lambda: F.conv_transpose2d(x, weight, b, s, groups=groups))
    cost = formulas.conv(n, c_in, c_out, (h, w), tuple(y.shape[2:]), (k, k), groups, bias,
                         transposed=True)
    assert cost.madds == madds
    assert cost.flops == 2 * madds + (y.numel() if bias else 0)
    assert cost.mac == numel(x, weight, b, y) and cost.params == numel(weight, b)


@FAST
@given(rows=small, fin=small, fout=small, bias=st.booleans())
def test_linear(rows: int, fin: int, fout: int, bias: bool) -> None:
    layer = nn.Linear(fin, fout, bias=bias)
    x = torch.randn(rows, fin)
    madds, y = torch_madds(lambda: layer(x))
    cost = formulas.linear(rows, fin, fout, bias)
    assert cost.madds == madds
    assert cost.flops == 2 * madds + (y.numel() if bias else 0)
    assert cost.mac == numel(x, layer.weight, layer.bias, y)
    assert cost.params == sum(p.numel() for p in layer.parameters())
    assert_symbolic_agrees(formulas.linear, ["rows", "in_features", "out_features"], rows=rows,
                           in_features=fin, out_features=fout, bias=bias)


@FAST
@given(batch=small, m=small, k=small, n=small)
def test_matmul(batch: int, m: int, k: int, n: int) -> None:
    a, b = torch.randn(batch, m, k), torch.randn(batch, k, n)
    madds, y = torch_madds(lambda: torch.bmm(a, b))
    cost = formulas.matmul(batch, m, k, n)
    assert cost.madds == madds and cost.flops == 2 * madds
    assert cost.mac == numel(a, b, y) and cost.params == 0
    assert_symbolic_agrees(formulas.matmul, ["batch", "m", "k", "n"], batch=batch, m=m, k=k, n=n)


@FAST
@given(b=small, kv_heads=st.integers(1, 2), ratio=st.integers(1, 2), q_len=small,
       kv_len=small, e=small, ev=small, mask=st.booleans())
def test_attention(b: int, kv_heads: int, ratio: int, q_len: int, kv_len: int, e: int, ev: int,
                   mask: bool) -> None:
    """softmax(Q K^T * scale + M) V written out in matmuls, so FlopCounterMode counts both
    products; the fused kernel's MAC reads Q, K, V (and the mask) and writes the output."""
    heads = kv_heads * ratio
    q = torch.randn(b, heads, q_len, e)
    k, v = torch.randn(b, kv_heads, kv_len, e), torch.randn(b, kv_heads, kv_len, ev)
    m = torch.randn(b, heads, q_len, kv_len) if mask else None

    def explicit() -> torch.Tensor:
        kk, vv = k.repeat_interleave(ratio, 1), v.repeat_interleave(ratio, 1)
        scores = q @ kk.transpose(-1, -2) / math.sqrt(e)
        return torch.softmax(scores + m if mask else scores, -1) @ vv

    madds, y = torch_madds(explicit)
    cost = formulas.attention(b * heads, q_len, kv_len, e, ev, mask, kv_heads_ratio=ratio)
    scores = b * heads * q_len * kv_len
    assert cost.madds == madds
    assert cost.flops == 2 * madds + scores * (1 + 5 + mask)  # scale, softmax, mask add
    assert cost.mac == numel(q, k, v, m, y)
    assert_symbolic_agrees(formulas.attention, ["batch_heads", "q_len", "kv_len", "head_dim",
                                                "v_head_dim", "kv_heads_ratio"],
                           batch_heads=b * heads, q_len=q_len, kv_len=kv_len, head_dim=e,
                           v_head_dim=ev, mask=mask, kv_heads_ratio=ratio)


@FAST
@given(shape=st.lists(small, min_size=1, max_size=4), operands=st.integers(1, 3))
def test_elementwise(shape: list[int], operands: int) -> None:
    """ReLU (1 input), add (2), addcmul (3, 3 FLOPs per element: a + v * b * c)."""
    xs = [torch.randn(shape) for _ in range(operands)]
    op = {1: torch.relu, 2: torch.add, 3: torch.addcmul}[operands]
    y = op(*xs)
    per = {1: 1, 2: 1, 3: 3}[operands]
    cost = formulas.elementwise(y.numel(), per, operands)
    assert cost.flops == y.numel() * per and cost.madds == 0
    assert cost.mac == numel(*xs, y)
    assert_symbolic_agrees(formulas.elementwise, ["elements"], elements=y.numel(),
                           flops_per_element=per, operands=operands)


# --- normalisation ------------------------------------------------------------------------------


@FAST
@given(n=st.integers(2, 4), c=small, spatial=st.lists(small, max_size=2), affine=st.booleans(),
       running=st.booleans())
def test_batch_norm(n: int, c: int, spatial: list[int], affine: bool, running: bool) -> None:
    """Eval mode. Running statistics: a folded scale and shift, 2 FLOPs/element, and the two
    statistics read. Without (track_running_stats=False) the batch statistics are computed:
    6 FLOPs/element (mean 1; subtract, square, add; subtract, multiply) + 1 scale + 1 shift."""
    bn = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[len(spatial)](
        c, affine=affine, track_running_stats=running).eval()
    x = torch.randn(n, c, *spatial)
    y = bn(x)
    cost = formulas.batch_norm(n, c, spatial, training=not running, weight=affine, bias=affine)
    assert cost.flops == x.numel() * (2 if running else 6 + 2 * affine)
    assert cost.mac == numel(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, y)
    assert cost.params == sum(p.numel() for p in bn.parameters())
    assert_bytes(cost)
    assert_symbolic_agrees(lambda n, c: formulas.batch_norm(n, c, spatial, not running, affine,
                                                            affine), ["n", "c"], n=n, c=c)


@pytest.mark.parametrize("affine", [True, False])
def test_traced_batch_norm_in_eval_matches(affine: bool) -> None:
    """The analyzer traces on meta tensors, where an eval batch-norm kernel also returns C-sized
    saved statistics; on a real device they are empty, so its MAC is x, the parameters and the
    running statistics read, y written: what formulas.batch_norm says."""
    bn = nn.BatchNorm2d(5, affine=affine).eval()
    x = torch.randn(2, 5, 3, 4)
    traced = analyze(bn, input_shape=(2, 5, 3, 4)).total()
    expected = formulas.batch_norm(2, 5, (3, 4), weight=affine, bias=affine)
    assert traced.mac == expected.mac == numel(x, bn.weight, bn.bias, bn.running_mean,
                                               bn.running_var, bn(x))
    assert traced.flops == expected.flops and traced.params == expected.params


@FAST
@given(rows=small, features=small, affine=st.booleans(), bias=st.booleans())
def test_layer_norm(rows: int, features: int, affine: bool, bias: bool) -> None:
    ln = nn.LayerNorm(features, elementwise_affine=affine, bias=bias)
    x = torch.randn(rows, features)
    y = ln(x)
    cost = formulas.layer_norm(rows, features, weight=affine, bias=affine and bias)
    assert cost.flops == x.numel() * (6 + affine + (affine and bias))
    assert cost.mac == numel(x, *ln.parameters(), y)
    assert cost.params == sum(p.numel() for p in ln.parameters())
    assert_symbolic_agrees(formulas.layer_norm, ["rows", "features"], rows=rows,
                           features=features, weight=affine, bias=affine and bias)


@FAST
@given(n=small, groups=small, per=small, spatial=st.lists(small, max_size=2),
       affine=st.booleans())
def test_group_and_instance_norm(n: int, groups: int, per: int, spatial: list[int],
                                 affine: bool) -> None:
    c = groups * per
    x = torch.randn(n, c, *spatial, 2)
    gn = nn.GroupNorm(groups, c, affine=affine)
    cost = formulas.group_norm(n, c, (*spatial, 2), groups, affine, affine)
    assert cost.flops == x.numel() * (6 + 2 * affine)
    assert cost.mac == numel(x, *gn.parameters(), gn(x))
    assert cost.params == sum(p.numel() for p in gn.parameters())
    inorm = nn.InstanceNorm1d(c, affine=affine) if len(spatial) == 0 else \
        [nn.InstanceNorm2d, nn.InstanceNorm3d][len(spatial) - 1](c, affine=affine)
    cost = formulas.instance_norm(n, c, (*spatial, 2), affine, affine)
    assert cost.flops == x.numel() * (6 + 2 * affine)
    assert cost.mac == numel(x, *inorm.parameters(), inorm(x))
    assert_symbolic_agrees(lambda n, c: formulas.group_norm(n, c, (*spatial, 2), groups, affine,
                                                            affine), ["n", "c"], n=n, c=c)


@FAST
@given(rows=small, features=small, weight=st.booleans())
def test_rms_norm(rows: int, features: int, weight: bool) -> None:
    """Square, add, multiply by the inverse root: 3 FLOPs/element, + 1 for the scale."""
    rn = nn.RMSNorm(features, elementwise_affine=weight)
    x = torch.randn(rows, features)
    cost = formulas.rms_norm(rows, features, weight)
    assert cost.flops == x.numel() * (3 + weight)
    assert cost.mac == numel(x, *rn.parameters(), rn(x))
    assert cost.params == sum(p.numel() for p in rn.parameters())
    assert_symbolic_agrees(formulas.rms_norm, ["rows", "features"], rows=rows,
                           features=features, weight=weight)


# --- pooling ------------------------------------------------------------------------------------


@FAST
@given(n=small, c=small, k=st.integers(1, 3), s=st.integers(1, 3), h=st.integers(0, 5),
       w=st.integers(0, 5), pad=st.booleans(), default_stride=st.booleans())
def test_pool2d(n: int, c: int, k: int, s: int, h: int, w: int, pad: bool,
                default_stride: bool) -> None:
    """One FLOP per window element inside the input per output (max: compares, average: adds
    and the divide): padding is never read."""
    h, w, p = h + k, w + k, k // 2 if pad else 0
    stride = None if default_stride else s
    x = torch.randn(n, c, h, w)
    for pool in (F.max_pool2d, F.avg_pool2d):
        y = pool(x, k, stride, p)
        cost = formulas.pool2d(n, c, h, w, k, stride, p)
        assert cost.flops == window_elements(x.shape, [k, k], [s, s] if stride else [k, k],
                                             [p, p], False)
        assert cost.flops <= y.numel() * k * k
        assert cost.mac == numel(x, y)
    assert_symbolic_agrees(formulas.pool2d, ["n", "c", "h_in", "w_in", "kernel", "padding"],
                           n=n, c=c, h_in=h, w_in=w, kernel=k, stride=stride, padding=p)


@FAST
@given(k=st.integers(1, 5), s=st.integers(1, 3), extra=st.integers(0, 9), data=st.data())
def test_pool_taps_with_a_free_size(k: int, s: int, extra: int, data: st.DataObject) -> None:
    """A window along a free size h, substituted back, reads what torch's windows read at
    that size: padding taps left out on both edges, whatever h's remainder, in floor and in
    ceil mode."""
    p = data.draw(st.integers(0, k // 2))
    size = k + extra
    h = sympy.Symbol("h", positive=True, integer=True)
    taps = formulas.pooling.window_taps(h, formulas.conv_out_size(h, k, s, p), k, s, p, 1,
                                        ceil_mode=False)
    assert sympy.sympify(taps).subs(h, size) == window_elements((1, 1, size, 1), [k, 1],
                                                                [s, 1], [p, 0], False)
    # ceil mode (the last window may start in the padding), at torch's own output length
    out = F.avg_pool2d(torch.ones(1, 1, size, 1), [k, 1], [s, 1], [p, 0], True).shape[2]
    taps = formulas.pooling.window_taps(h, out, k, s, p, 1, ceil_mode=True)
    assert sympy.sympify(taps).subs(h, size) == window_elements((1, 1, size, 1), [k, 1],
                                                                [s, 1], [p, 0], True)


@FAST
@given(n=small, c=small, h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 4),
       ow=st.integers(1, 4))
def test_adaptive_avg_pool2d(n: int, c: int, h: int, w: int, oh: int, ow: int) -> None:
    """Window i spans [floor(i*in/out), ceil((i+1)*in/out)): summed by hand."""
    x = torch.randn(n, c, h, w)
    y = F.adaptive_avg_pool2d(x, (oh, ow))

    def taps(size: int, out: int) -> int:
        return sum(math.ceil((i + 1) * size / out) - math.floor(i * size / out)
                   for i in range(out))

    cost = formulas.adaptive_avg_pool2d(n, c, h, w, (oh, ow))
    assert cost.flops == n * c * taps(h, oh) * taps(w, ow)
    assert cost.mac == numel(x, y)
    assert formulas.adaptive_avg_pool2d(n, c, h, w).flops == x.numel()  # global pooling
    assert_symbolic_agrees(formulas.adaptive_avg_pool2d, ["n", "c", "h_in", "w_in"],
                           n=n, c=c, h_in=h, w_in=w, output_size=1)


# --- data movement ------------------------------------------------------------------------------


@FAST
@given(n=small, groups=small, per=small, h=small, w=small)
def test_channel_shuffle_and_copy(n: int, groups: int, per: int, h: int, w: int) -> None:
    """The zoo's channel shuffle and a contiguous permuted copy: read and write each element."""
    c = groups * per
    x = torch.randn(n, c, h, w)
    y = zoo_channel_shuffle(x, groups)
    cost = formulas.channel_shuffle(n, c, h, w)
    assert cost.flops == 0 and cost.mac == numel(x, y)
    z = x.permute(0, 2, 3, 1).contiguous()
    assert formulas.copy(x.numel()).mac == numel(x, z)
    assert_symbolic_agrees(formulas.channel_shuffle, ["n", "c", "h", "w"], n=n, c=c, h=h, w=w)


@FAST
@given(parts=st.lists(small, min_size=1, max_size=4), n=small, h=small)
def test_concat(parts: list[int], n: int, h: int) -> None:
    xs = [torch.randn(n, p, h) for p in parts]
    y = torch.cat(xs, dim=1)
    cost = formulas.concat([t.numel() for t in xs])
    assert cost.mac == numel(*xs, y) and cost.flops == 0
    syms = sympy.symbols(f"p0:{len(parts)}", positive=True)
    symbolic = formulas.concat([n * s * h for s in syms])
    assert symbolic.mac.subs(dict(zip(syms, parts))) == cost.mac


@FAST
@given(n=small, c=small, h=small, w=small, pads=st.lists(st.integers(0, 2), min_size=4,
                                                         max_size=4))
def test_pad2d(n: int, c: int, h: int, w: int, pads: list[int]) -> None:
    x = torch.randn(n, c, h, w)
    y = F.pad(x, pads)
    assert formulas.pad2d(n, c, h, w, pads).mac == numel(x, y)
    assert formulas.pad2d(n, c, h, w, 1).mac == numel(x, F.pad(x, (1, 1, 1, 1)))
    assert_symbolic_agrees(formulas.pad2d, ["n", "c", "h", "w", "padding"], n=n, c=c, h=h, w=w,
                           padding=pads[0])
