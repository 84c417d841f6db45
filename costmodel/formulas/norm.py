"""Normalisation layers, costed as they run at inference.

FLOPs per element: batch norm with running statistics 2 (multiply by the folded scale, add the
folded shift); layer, group and instance norm compute their statistics, 6 (mean: 1; variance:
subtract, square, add; normalise: subtract, multiply by the inverse root) plus 2 for an affine
scale and shift; RMS norm 3 (square, add, multiply by the inverse root) plus 1 for its scale.
Per-row roots and divides are not counted. Mult-Adds are 0. MAC reads the input, the affine
parameters and the running statistics, and writes every output.
"""

from __future__ import annotations

from costmodel.cost import Cost
from costmodel.formulas.registry import OpCall, register

BATCH_NORM_FLOPS = 2
STATS_NORM_FLOPS = 6
RMS_NORM_FLOPS = 3
AFFINE_FLOPS = 2


def _has_weight(call: OpCall, index: int) -> bool:
    return call.arg(index, "weight") is not None


@register(["batch_norm", "native_batch_norm", "_native_batch_norm_legit",
           "_native_batch_norm_legit_no_training", "_batch_norm_no_update",
           "_batch_norm_with_update", "cudnn_batch_norm", "miopen_batch_norm"], "Norm")
def _batch_norm(call: OpCall) -> Cost:
    x = call.arg(0, "input")
    training = call.arg(5, "training", False) if "legit" in str(call.target) else False
    per = STATS_NORM_FLOPS + AFFINE_FLOPS if training is True else BATCH_NORM_FLOPS
    return Cost(flops=x.numel * per) + call.io()


def _stats_norm(weight_at: int, per: int):
    def formula(call: OpCall) -> Cost:
        x = call.arg(0, "input")
        affine = AFFINE_FLOPS if _has_weight(call, weight_at) else 0
        if per == RMS_NORM_FLOPS and affine:
            affine = 1  # RMS norm has a scale and no shift
        return Cost(flops=x.numel * (per + affine)) + call.io()

    return formula


register(["layer_norm", "native_layer_norm"], "Norm")(_stats_norm(2, STATS_NORM_FLOPS))
register(["group_norm", "instance_norm"], "Norm")(_stats_norm(2, STATS_NORM_FLOPS))
register("native_group_norm", "Norm")(_stats_norm(1, STATS_NORM_FLOPS))
register(["rms_norm", "_fused_rms_norm"], "Norm")(_stats_norm(2, RMS_NORM_FLOPS))
