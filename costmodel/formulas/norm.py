"""Normalisation layers, costed as they run at inference.

FLOPs per element: batch norm with running statistics 2 (multiply by the folded scale, add the
folded shift); a norm that computes its statistics (layer, group, instance, and batch norm in
training or without running stats) 6 (mean: 1; variance: subtract, square, add; normalise:
subtract, multiply by the inverse root); RMS norm 3 (square, add, multiply by the inverse root);
plus 1 for an affine scale and 1 for a shift where present.
Per-row roots and divides are not counted. Mult-Adds are 0. MAC reads the input, the affine
parameters and the running statistics, and writes every output.
"""

from __future__ import annotations

from costmodel.cost import Cost
from costmodel.formulas.registry import OpCall, TensorMeta, register

BATCH_NORM_FLOPS = 2
STATS_NORM_FLOPS = 6
RMS_NORM_FLOPS = 3


# where each batch-norm op keeps its `training` flag (None: a fixed answer)
_TRAINING_AT: dict[str, int | bool] = {
    "batch_norm": 5, "native_batch_norm": 5, "_native_batch_norm_legit": 5,
    "cudnn_batch_norm": 5, "miopen_batch_norm": 5, "_native_batch_norm_legit_no_training": False,
    "_batch_norm_no_update": False, "_batch_norm_with_update": True,
}


def _affine_flops(call: OpCall, weight_at: int) -> int:
    """One FLOP per element for a scale, one for a shift."""
    weight = call.arg(weight_at, "weight")
    bias = call.arg(weight_at + 1, "bias")
    return isinstance(weight, TensorMeta) + isinstance(bias, TensorMeta)


@register(list(_TRAINING_AT), "Norm")
def _batch_norm(call: OpCall) -> Cost:
    """With running statistics: a folded scale and shift. Computing batch statistics (training,
    or track_running_stats=False): the statistics, the normalisation and the affine step."""
    x = call.arg(0, "input")
    where = _TRAINING_AT[call.target.overloadpacket.__name__]
    if call.target._overloadname == "no_stats":  # (input, weight, bias, training, ...)
        where = 3
    training = where if isinstance(where, bool) else bool(call.arg(where, "training", False))
    per = STATS_NORM_FLOPS + _affine_flops(call, 1) if training else BATCH_NORM_FLOPS
    return Cost(flops=x.numel * per) + call.io()


def _stats_norm(weight_at: int, per: int):
    def formula(call: OpCall) -> Cost:
        x = call.arg(0, "input")
        return Cost(flops=x.numel * (per + _affine_flops(call, weight_at))) + call.io()

    return formula


register(["layer_norm", "native_layer_norm"], "Norm")(_stats_norm(2, STATS_NORM_FLOPS))
register("group_norm", "Norm")(_stats_norm(2, STATS_NORM_FLOPS))
register("instance_norm", "Norm")(_stats_norm(1, STATS_NORM_FLOPS))
register("native_group_norm", "Norm")(_stats_norm(1, STATS_NORM_FLOPS))
register(["rms_norm", "_fused_rms_norm"], "Norm")(_stats_norm(2, RMS_NORM_FLOPS))
