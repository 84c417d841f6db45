"""Routing: the selection, sorting, counting and scatter-add ops that mixture-of-experts layers
(and samplers, and sparse updates) run between their matmuls.

None of them multiplies-and-adds, so Mult-Adds are 0; FLOPs count comparisons and additions, by
one convention per op, taken from how the op is defined (not from a particular kernel):

* `topk` and `kthvalue`: one comparison per input element (as a max does);
* `sort` (argsort, msort) and `unique`: a comparison sort, n * ceil(log2 n) comparisons per
  sorted slice of n elements (`unique` adds n comparisons of neighbours; `unique_consecutive`
  makes only those);
* `searchsorted` and `bucketize`: a binary search, ceil(log2(n + 1)) comparisons per value over
  n boundaries;
* `histc`: three per input element (shift and scale into bin units, truncate, add one to the
  bin); `bincount`: one (add one, or the weight, to the bin);
* `index_add`, `scatter_add`, `scatter_reduce`: one addition (or reduction) per source element.

MAC reads every tensor argument once and writes every output (values and indices) once.
"""

from __future__ import annotations

import sympy

from costmodel.cost import Cost, Num, div
from costmodel.formulas.registry import OpCall, register


def ceil_log2(n: Num) -> Num:
    """ceil(log2 n) for n >= 1: an int for an int, a sympy expression for a symbol."""
    if isinstance(n, int):
        return (n - 1).bit_length()
    return sympy.ceiling(sympy.log(n, 2))


def comparison_sort(slices: Num, n: Num) -> Num:
    """Comparisons of sorting `slices` independent slices of n elements each."""
    return slices * n * ceil_log2(n)


def _dim_size(call: OpCall, dim_index: int, default: int = -1) -> tuple[Num, Num]:
    """(slices, elements per slice) of the op's first tensor along its `dim` argument."""
    x = call.inputs[0]
    if x.ndim == 0:
        return 1, 1
    dim = call.arg(dim_index, "dim", default)
    n = x.shape[dim]
    return div(x.numel, n), n


@register(["topk", "kthvalue"], "Routing")
def _select(call: OpCall) -> Cost:
    """One comparison per input element, whatever k."""
    return Cost(flops=call.inputs[0].numel) + call.io()


@register(["sort", "argsort", "msort"], "Routing")
def _sort(call: OpCall) -> Cost:
    """A comparison sort of every slice along `dim` (msort: dim 0)."""
    msort = call.target.overloadpacket.__name__ == "msort"
    slices, n = _dim_size(call, 1, 0 if msort else -1)
    return Cost(flops=comparison_sort(slices, n)) + call.io()


@register(["_unique", "_unique2", "unique_dim", "unique_consecutive", "unique_dim_consecutive"],
          "Routing")
def _unique(call: OpCall) -> Cost:
    """Sort, then compare neighbours; the consecutive forms only compare neighbours."""
    n = call.inputs[0].numel
    name = call.target.overloadpacket.__name__
    sort = 0 if "consecutive" in name else comparison_sort(1, n)
    return Cost(flops=sort + n) + call.io()


@register(["searchsorted", "bucketize"], "Routing")
def _search(call: OpCall) -> Cost:
    """Binary search of each value among n sorted boundaries (searchsorted's first argument,
    bucketize's second; a scalar value counts as one)."""
    name = call.target.overloadpacket.__name__
    tensors = call.inputs
    if name == "searchsorted":
        boundaries, values = tensors[0], call.out
    else:
        boundaries, values = tensors[-1], call.out
    n = boundaries.shape[-1] if boundaries.ndim else 1
    return Cost(flops=values.numel * ceil_log2(n + 1)) + call.io()


@register("histc", "Routing")
def _histc(call: OpCall) -> Cost:
    """Tokens per expert, from float expert ids: three per input element."""
    return Cost(flops=3 * call.inputs[0].numel) + call.io()


@register("bincount", "Routing")
def _bincount(call: OpCall) -> Cost:
    """Tokens per expert, from integer ids: one addition per input element."""
    return Cost(flops=call.inputs[0].numel) + call.io()


@register(["index_add", "index_add_", "scatter_add", "scatter_add_", "scatter_reduce",
           "scatter_reduce_"], "Data Movement")
def _scatter_add(call: OpCall) -> Cost:
    """One addition per source element (the last tensor argument); MAC as any copy."""
    name = call.target.overloadpacket.__name__
    source = call.arg(3, "source" if name.startswith("index_add") else "src")
    return Cost(flops=source.numel) + call.io()
