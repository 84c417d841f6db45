"""Reductions: each input element is combined once.

FLOPs: one per input element (sum, max, any...), plus one divide per output element for a mean;
variance and standard deviation take three per input element (subtract the mean, square, add)
and a norm two (square, add) plus a root per output. Mult-Adds are 0; MAC reads the input once
and writes the (smaller) output.
"""

from __future__ import annotations

from costmodel.cost import Cost, Num
from costmodel.formulas.registry import OpCall, register

_PER_INPUT = {
    "sum": 1, "nansum": 1, "prod": 1, "amax": 1, "amin": 1, "max": 1, "min": 1, "aminmax": 1,
    "argmax": 1, "argmin": 1, "all": 1, "any": 1, "count_nonzero": 1, "cumsum": 1,
    "cumprod": 1, "cummax": 1, "cummin": 1, "logcumsumexp": 3,
    "mean": 1, "nanmean": 1, "var": 3, "std": 3, "var_mean": 3, "std_mean": 3,
    "norm": 2, "linalg_vector_norm": 2, "logsumexp": 3,
}
_PER_OUTPUT = {"mean": 1, "nanmean": 1, "std": 1, "std_mean": 1, "norm": 1,
               "linalg_vector_norm": 1, "logsumexp": 1, "var": 1, "var_mean": 1}


def _reduction(call: OpCall) -> Cost:
    name = call.target.overloadpacket.__name__
    if call.target._overloadname in ("other", "binary"):  # max(a, b): element-wise
        return Cost(flops=call.out.numel) + call.io()
    x = call.inputs[0]
    flops = x.numel * _PER_INPUT[name] + call.out.numel * _PER_OUTPUT.get(name, 0)
    return Cost(flops=flops) + call.io()


register(list(_PER_INPUT), "Reduction")(_reduction)

#: per broadcast input element, per output element
_SIMILARITY = {"cosine_similarity": (6, 3), "pairwise_distance": (3, 1), "cdist": (3, 1),
               "_cdist_forward": (3, 1)}


def _broadcast_numel(a: tuple[Num, ...], b: tuple[Num, ...]) -> Num:
    """Elements of the shape two operands broadcast to (sizes align on the right)."""
    total: Num = 1
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        total *= y if x == 1 else x
    return total


@register(list(_SIMILARITY), "Reduction")
def _similarity(call: OpCall) -> Cost:
    """cosine similarity: x1*x2, x1^2, x2^2 summed (6 per element), then root, product, divide;
    a p-distance: subtract, power, add per element, then a root. cdist compares every pair."""
    name = call.target.overloadpacket.__name__
    per_input, per_output = _SIMILARITY[name]
    x1 = call.inputs[0]
    if name in ("cdist", "_cdist_forward"):  # (.., P, M), (.., R, M) -> (.., P, R): all pairs
        elements = call.out.numel * x1.shape[-1]
    else:  # every element of the two operands broadcast against each other
        elements = _broadcast_numel(call.inputs[0].shape, call.inputs[1].shape)
    return Cost(flops=elements * per_input + call.out.numel * per_output) + call.io()
