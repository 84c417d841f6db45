"""Which efficiency class of a device profile an op type runs at.

A profile measures a handful of kernel families, not every op type: the op types that run
the same kind of kernel (ReLU and an add both stream memory once) share a class.
"""

from __future__ import annotations

#: The efficiency classes every profile carries, in the order tables list them.
CLASSES: tuple[str, ...] = (
    "conv_dense", "conv_depthwise", "conv_grouped", "matmul", "attention", "elementwise",
    "pooling", "max_pool", "norm", "data_movement",
)

_FIXED: dict[str, str] = {
    "Fully Connected": "matmul",
    "MatMul": "matmul",
    "Recurrent": "matmul",
    "Attention": "attention",
    "Pooling": "pooling",
    "Norm": "norm",
    "Data Movement": "data_movement",
    "Embedding": "data_movement",
}


def class_of(op_type: str, target: str = "") -> str:
    """The efficiency class of a report op type (`Conv DW 3x3` -> conv_depthwise); element-wise
    for activations, reductions and anything else that streams memory. Max pooling (the aten
    `target` tells) runs a kernel of its own, many times slower per byte than average pooling
    on CPUs."""
    if op_type == "Pooling" and "max_pool" in target:
        return "max_pool"
    if op_type in _FIXED:
        return _FIXED[op_type]
    if op_type.startswith(("Conv", "ConvTranspose")):
        if " DW " in op_type:
            return "conv_depthwise"
        if " GW " in op_type:
            return "conv_grouped"
        return "conv_dense"
    return "elementwise"
