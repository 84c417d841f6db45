"""Contractions other than convolution: linear layers, matrix products, einsum and grouped
matrix products (the experts of mixture-of-experts layers, `_grouped_mm`).

Mult-Adds are one multiply-accumulate per (output element, contracted index); FLOPs are
2 * Mult-Adds plus one add per output element for a fused bias (addmm, baddbmm, addmv, linear
with bias); alpha/beta scalings are taken as 1. MAC reads every operand once and writes the output.
A grouped matmul reads only the experts' weights its rows reach: exactly, from the offsets a run
on real tensors (`--execute`) saw, or on shapes alone the expected number of distinct experts B
tokens reach choosing k of E each under uniform routing, E (1 - (1 - k/E)^B) (docs/moe.md).
A product of complex operands counts real multiply-adds: each complex multiply-accumulate is 4
real ones (4 multiplies, 4 adds), so its Mult-Adds are 4 x the complex count.
"""

from __future__ import annotations

from fractions import Fraction

import sympy

from costmodel.cost import Cost, Num, div, prod
from costmodel.formulas.registry import OpCall, TensorMeta, register


def linear(rows: Num, in_features: Num, out_features: Num, bias: bool = False,
           itemsize: int = 4) -> Cost:
    """Cost of y = x @ W.T (+ b) for `rows` input rows (batch and token dims flattened)."""
    madds = rows * in_features * out_features
    weight = in_features * out_features
    bias_elems = out_features if bias else 0
    mac = rows * in_features + weight + bias_elems + rows * out_features
    return Cost(madds=madds, flops=2 * madds + (rows * out_features if bias else 0), mac=mac,
                mac_bytes=mac * itemsize, params=weight + bias_elems)


def matmul(batch: Num, m: Num, k: Num, n: Num, itemsize: int = 4) -> Cost:
    """Cost of a (batch of) (m x k) @ (k x n) product with no learnable operand."""
    madds = batch * m * k * n
    mac = batch * (m * k + k * n + m * n)
    return Cost(madds=madds, flops=2 * madds, mac=mac, mac_bytes=mac * itemsize)


#: real multiply-adds per complex multiply-accumulate: (a + bi)(c + di) added to (e + fi)
COMPLEX_MADDS = 4


def real_madds_per(*tensors: TensorMeta) -> int:
    """Real multiply-adds per multiply-add of a product of `tensors`: 4 when complex."""
    return COMPLEX_MADDS if any(t.dtype.is_complex for t in tensors) else 1


def _linear_cost(call: OpCall) -> Cost:
    x, w, b = call.arg(0, "input"), call.arg(1, "weight"), call.arg(2, "bias")
    in_features = w.shape[-1]
    out_features = w.shape[0] if w.ndim == 2 else 1
    rows = div(x.numel, in_features)
    cost = linear(rows, in_features, out_features, b is not None, x.itemsize)
    factor = real_madds_per(x, w)
    if factor == 1:
        return cost
    madds = cost.madds * factor  # a complex bias add is 2 real adds
    bias_adds = 2 * rows * out_features if b is not None else 0
    return cost.replace(madds=madds, flops=2 * madds + bias_adds)


register("linear", "Fully Connected")(_linear_cost)


def _product(call: OpCall, a: TensorMeta, fused_add: bool) -> Cost:
    """madds = output elements * contracted length; MAC from the actual operands."""
    k = a.shape[-1]
    out = call.out.numel
    factor = real_madds_per(a, call.out)
    madds = out * k * factor
    return Cost(madds=madds, flops=2 * madds + (out * min(factor, 2) if fused_add else 0)) \
        + call.io()


@register(["mm", "bmm", "matmul", "mv", "dot", "vdot", "inner"], "MatMul")
def _matmul_cost(call: OpCall) -> Cost:
    return _product(call, call.arg(0, "self"), fused_add=False)


@register(["addmm", "_addmm_activation"], "Fully Connected")
def _addmm_cost(call: OpCall) -> Cost:
    return _product(call, call.arg(1, "mat1"), fused_add=True)


@register(["baddbmm", "addbmm", "addmv"], "MatMul")
def _baddbmm_cost(call: OpCall) -> Cost:
    name = call.target.overloadpacket.__name__
    cost = _product(call, call.arg(1, "batch1" if name != "addmv" else "mat"), fused_add=True)
    if name == "addbmm":  # the batch is summed into one (m, n) output: b*m*n*k Mult-Adds
        batch1 = call.arg(1, "batch1")
        madds = prod(batch1.shape) * call.arg(2, "batch2").shape[-1]
        cost = cost.replace(madds=madds, flops=2 * madds + call.out.numel)
    return cost


# --- einsum -------------------------------------------------------------------------------------

_ELLIPSIS_DIMS = [chr(0x3B1 + i) for i in range(24)]  # Greek letters: never an einsum subscript


def _parse_einsum(equation: str, ndims: list[int]) -> tuple[list[str], str]:
    """Operand subscripts and output subscripts, '...' spelled out one letter per dimension."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    widths = [n - (len(t) - 3) if "..." in t else 0 for t, n in zip(terms, ndims)]
    width = max(widths, default=0)
    fill = _ELLIPSIS_DIMS[:width]

    def spell(term: str, w: int) -> str:  # broadcast dims align on the right
        return term.replace("...", "".join(fill[width - w:]))

    terms = [spell(t, w) for t, w in zip(terms, widths)]
    if arrow:
        return terms, spell(rhs, width)
    letters = "".join(terms)
    once = sorted(c for c in set(letters) if letters.count(c) == 1 and c not in fill)
    return terms, "".join(fill) + "".join(once)


def einsum_madds(equation: str, shapes: list[tuple[Num, ...]]) -> tuple[Num, Num]:
    """(Mult-Adds, other FLOPs) of an einsum contracted left to right, as torch.einsum does.

    Before each pairwise product, an index that neither the other operand, the later operands
    nor the output needs is summed out (a reduction: FLOPs, no Mult-Adds); the product then costs
    one multiply-accumulate per combination of the indices left in the pair.
    """
    terms, out = _parse_einsum(equation, [len(s) for s in shapes])
    sizes: dict[str, Num] = {}
    for term, shape in zip(terms, shapes):
        for c, n in zip(term, shape):
            if sizes.get(c, 1) == 1:  # a broadcast size-1 dim yields to the real size
                sizes[c] = n
    madds: Num = 0
    reductions: Num = 0

    def keep_only(term: str, needed: set[str]) -> str:
        nonlocal reductions
        kept = "".join(c for c in dict.fromkeys(term) if c in needed)
        if kept != "".join(dict.fromkeys(term)):
            reductions = reductions + prod(sizes[c] for c in dict.fromkeys(term))
        return kept

    current = terms[0]
    for i, nxt in enumerate(terms[1:], start=1):
        later = set(out).union(*map(set, terms[i + 1:]))
        current = keep_only(current, set(nxt) | later)
        nxt = keep_only(nxt, set(current) | later)
        pair = "".join(dict.fromkeys(current + nxt))
        madds = madds + prod(sizes[c] for c in pair)
        current = "".join(c for c in pair if c in later)
    if len(terms) == 1:
        keep_only(current, set(out))
    return madds, reductions


@register("einsum", "MatMul")
def _einsum_cost(call: OpCall) -> Cost:
    operands = call.arg(1, "tensors")
    madds, reductions = einsum_madds(call.arg(0, "equation"), [t.shape for t in operands])
    factor = real_madds_per(*operands)
    return Cost(madds=madds * factor, flops=2 * madds * factor + reductions * min(factor, 2)) \
        + call.io()


# --- grouped matmul (mixture-of-experts layers) ---------------------------------------------------


def grouped_mm_madds(a: tuple[Num, ...], b: tuple[Num, ...], out: tuple[Num, ...]) -> Num:
    """Mult-Adds of torch._grouped_mm(a, b, offs): one matmul per group, summed.

    Whatever way `offs` splits the rows (tokens routed to each expert), the groups' products
    add up to a shape-only total: 2-D x 3-D (rows split among G weights, the MoE case) and
    3-D x 2-D / 3-D x 3-D contract a's last dim once per output element; 2-D x 2-D splits the
    contracted dim K itself, so each of the G output blocks contracts only its share of it.
    Rows beyond offs[-1], which the kernel skips, are taken as computed.
    """
    k = a[-1]
    elements = prod(out)
    if len(a) == 2 and len(b) == 2:  # (M, K) x (K, N) -> (G, M, N), K split among the groups
        return div(elements * k, out[0])
    return elements * k


#: the largest denominator of an expected number of experts read by weights of free size
EXPERTS_DENOMINATOR = 2**16


def groups_hit(offsets: tuple[int, ...]) -> int:
    """Groups (experts) given at least one row by the cumulative row counts `offsets`."""
    return sum(1 for lo, hi in zip((0, *offsets), offsets) if hi > lo)


def expected_experts_hit(experts: Num, top_k: int, tokens: Num) -> Num:
    """Expected distinct experts that `tokens` tokens reach, each picking `top_k` of
    `experts` uniformly at random: an expert is missed by one token with probability
    1 - k/E, so by all of them with (1 - k/E)^B, and E (1 - (1 - k/E)^B) are hit. Exact
    (a Fraction) for concrete sizes, a sympy expression for symbolic ones."""
    if isinstance(experts, int) and isinstance(tokens, int):
        return experts * (1 - Fraction(experts - top_k, experts) ** tokens)
    miss = 1 - sympy.Rational(top_k) / experts
    return experts * (1 - miss ** tokens)


def grouped_mm_weights_read(call: OpCall) -> Num:
    """Elements of the stacked weights (E, K, N) that a grouped matmul reads: the experts the
    offsets give rows to, where an executed trace saw them; on shapes alone, with the router's
    top_k known, the expected experts a batch of rows / k tokens reaches under uniform routing,
    rounded to whole elements (for weights of free size, the experts to 1/65536 of one); else
    all E."""
    a, b = call.arg(0, "self"), call.arg(1, "mat2")
    offsets = call.arg(2, "offs")
    if a.ndim != 2 or b.ndim != 3 or not isinstance(offsets, TensorMeta):
        return b.numel
    per_expert = div(b.numel, b.shape[0])
    if offsets.values is not None:
        return groups_hit(offsets.values) * per_expert
    top_k = call.context.get("top_k")
    if top_k is None or not top_k or (isinstance(b.shape[0], int) and top_k > b.shape[0]):
        return b.numel
    hit = expected_experts_hit(b.shape[0], top_k, div(a.shape[0], top_k))
    if not isinstance(hit, Fraction):  # a free number of tokens: the formula in it
        return hit * per_expert
    if isinstance(per_expert, int):
        return round(hit * per_expert)
    # free weight sizes: the expected experts to 1/2^16 of one, not a 40-digit fraction
    return sympy.Rational(hit.limit_denominator(EXPERTS_DENOMINATOR)) * per_expert


@register("_grouped_mm", "Grouped MatMul")
def _grouped_mm_cost(call: OpCall) -> Cost:
    """Mult-Adds from `grouped_mm_madds`; a fused bias adds one FLOP per output element; MAC
    reads the experts' weights that `grouped_mm_weights_read` counts."""
    a, b, bias = call.arg(0, "self"), call.arg(1, "mat2"), call.arg(3, "bias")
    madds = grouped_mm_madds(a.shape, b.shape, call.out.shape)
    unread = b.numel - grouped_mm_weights_read(call)
    return Cost(madds=madds, flops=2 * madds + (call.out.numel if bias is not None else 0)) \
        + call.io() + Cost(mac=-unread, mac_bytes=-unread * b.itemsize)
