"""Normalisation layers, costed as they run at inference.

FLOPs per element: batch norm with running statistics 2 (multiply by the folded scale, add the
folded shift); a norm that computes its statistics (layer, group, instance, and batch norm in
training or without running stats) 6 (mean: 1; variance: subtract, square, add; normalise:
subtract, multiply by the inverse root); RMS norm 3 (square, add, multiply by the inverse root);
plus 1 for an affine scale and 1 for a shift where present. Weight normalisation of a weight v
(w = g * v / ||v||) 3 per element of v (square, add, multiply by the per-row g / ||v||).
Per-row roots and divides are not counted. Mult-Adds are 0. MAC reads the input, the affine
parameters and the running statistics, and writes every output, except the saved statistics of
an eval batch norm, which real kernels leave empty. The functions `batch_norm`, `layer_norm`,
`group_norm`, `instance_norm` and `rms_norm` give the same counts from plain dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

from costmodel.cost import Cost, Num, div, prod
from costmodel.formulas.registry import OpCall, TensorMeta, access, register

BATCH_NORM_FLOPS = 2
STATS_NORM_FLOPS = 6
RMS_NORM_FLOPS = 3


def norm(elements: Num, flops_per_element: Num, params: Num = 0, stats: Num = 0,
         itemsize: int = 4) -> Cost:
    """Cost of a normalisation over `elements` values that reads `params` affine parameters (the
    learnable ones) and `stats` running statistics and writes an output of the input's size."""
    mac = 2 * elements + params + stats
    return Cost(flops=elements * flops_per_element, mac=mac, mac_bytes=mac * itemsize,
                params=params)


def batch_norm(n: Num, c: Num, spatial: Sequence[Num] = (), training: bool = False,
               weight: bool = True, bias: bool = True, itemsize: int = 4) -> Cost:
    """BatchNorm on an (n, c, *spatial) input. With running statistics (training=False) the
    affine step folds into one scale and shift (2 FLOPs/element) and the statistics are read;
    computing batch statistics costs 6 FLOPs/element plus 1 each for a scale and a shift."""
    elements, affine = n * c * prod(spatial), int(weight) + int(bias)
    per = STATS_NORM_FLOPS + affine if training else BATCH_NORM_FLOPS
    return norm(elements, per, c * affine, 0 if training else 2 * c, itemsize)


def layer_norm(rows: Num, features: Num, weight: bool = True, bias: bool = True,
               itemsize: int = 4) -> Cost:
    """LayerNorm over the last `features` elements of each of `rows` rows."""
    affine = int(weight) + int(bias)  # bools: sympy cannot multiply a symbol by True
    return norm(rows * features, STATS_NORM_FLOPS + affine, features * affine, 0, itemsize)


def group_norm(n: Num, c: Num, spatial: Sequence[Num] = (), groups: Num = 1,
               weight: bool = True, bias: bool = True, itemsize: int = 4) -> Cost:
    """GroupNorm on an (n, c, *spatial) input: statistics per (sample, group); the number of
    groups changes no count, only which elements share statistics."""
    del groups
    affine = int(weight) + int(bias)
    return norm(n * c * prod(spatial), STATS_NORM_FLOPS + affine, c * affine, 0, itemsize)


def instance_norm(n: Num, c: Num, spatial: Sequence[Num] = (), weight: bool = False,
                  bias: bool = False, itemsize: int = 4) -> Cost:
    """InstanceNorm on an (n, c, *spatial) input: statistics per (sample, channel)."""
    return group_norm(n, c, spatial, c, weight, bias, itemsize)


def rms_norm(rows: Num, features: Num, weight: bool = True, itemsize: int = 4) -> Cost:
    """RMSNorm over the last `features` elements of each row: square, add, scale by the root."""
    return norm(rows * features, RMS_NORM_FLOPS + int(weight), features * int(weight), 0,
                itemsize)


# --- the aten ops: FLOPs from the functions above, MAC from the tensors the op really reads and
# writes (some variants also write saved statistics) --------------------------------------------

# where each batch-norm op keeps its `training` flag (None: a fixed answer)
_TRAINING_AT: dict[str, int | bool] = {
    "batch_norm": 5, "native_batch_norm": 5, "_native_batch_norm_legit": 5,
    "cudnn_batch_norm": 5, "miopen_batch_norm": 5, "_native_batch_norm_legit_no_training": False,
    "_batch_norm_no_update": False, "_batch_norm_with_update": True,
}


def _has(call: OpCall, index: int, name: str) -> bool:
    return isinstance(call.arg(index, name), TensorMeta)


def _nc(x: TensorMeta) -> tuple[Num, Num, tuple[Num, ...]]:
    """(n, c, spatial) of an (n, c, *spatial) input; a 1-D input is one sample."""
    return (x.shape[0], x.shape[1], x.shape[2:]) if x.ndim >= 2 else (1, x.numel, ())


def _with_io(cost: Cost, call: OpCall) -> Cost:
    """The family's FLOPs, with the MAC of the tensors this op variant really reads and writes."""
    return Cost(flops=cost.flops) + call.io()


@register(list(_TRAINING_AT), "Norm")
def _batch_norm(call: OpCall) -> Cost:
    """With running statistics: a folded scale and shift, and only the output written.
    Computing batch statistics (training, or track_running_stats=False): the statistics, the
    normalisation and the affine step."""
    x = call.arg(0, "input")
    where = _TRAINING_AT[call.target.overloadpacket.__name__]
    if call.target._overloadname == "no_stats":  # (input, weight, bias, training, ...)
        where = 3
    training = where if isinstance(where, bool) else bool(call.arg(where, "training", False))
    n, c, spatial = _nc(x)
    cost = batch_norm(n, c, spatial, training, _has(call, 1, "weight"), _has(call, 2, "bias"),
                      x.itemsize)
    if training:
        return _with_io(cost, call)
    # In eval the kernels write only the output: the saved mean and inverse std they return are
    # empty on real devices, though meta tensors (which the tracer uses) give them C elements.
    return Cost(flops=cost.flops) + access(*call.inputs, call.out)


def _rows_features(call: OpCall) -> tuple[Num, Num]:
    x = call.arg(0, "input")
    features = prod(call.arg(1, "normalized_shape"))
    return div(x.numel, features), features


@register(["layer_norm", "native_layer_norm"], "Norm")
def _layer_norm(call: OpCall) -> Cost:
    rows, features = _rows_features(call)
    return _with_io(layer_norm(rows, features, _has(call, 2, "weight"), _has(call, 3, "bias")),
                    call)


@register(["rms_norm", "_fused_rms_norm"], "Norm")
def _rms_norm(call: OpCall) -> Cost:
    rows, features = _rows_features(call)
    return _with_io(rms_norm(rows, features, _has(call, 2, "weight")), call)


@register(["group_norm", "native_group_norm", "instance_norm"], "Norm")
def _group_norm(call: OpCall) -> Cost:
    name = call.target.overloadpacket.__name__
    weight_at = 2 if name == "group_norm" else 1
    n, c, spatial = _nc(call.arg(0, "input"))
    return _with_io(group_norm(n, c, spatial, 1, _has(call, weight_at, "weight"),
                               _has(call, weight_at + 1, "bias")), call)


@register(["_weight_norm_interface", "_weight_norm"], "Norm")
def _weight_norm(call: OpCall) -> Cost:
    """w = g * v / ||v|| over every dim but `dim`: 3 FLOPs per element of v (the per-row
    g / ||v|| folds the scale); reads v and g, writes w (and the norms, where returned)."""
    v = call.arg(0, "v")
    return Cost(flops=v.numel * RMS_NORM_FLOPS) + call.io()
