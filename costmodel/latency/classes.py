"""Which efficiency class of a device profile an op type runs at.

A profile measures a handful of kernel families, not every op type: the op types that run
the same kind of kernel (ReLU and an add both stream memory once) share a class.
"""

from __future__ import annotations

#: The efficiency classes every profile carries, in the order tables list them.
CLASSES: tuple[str, ...] = (
    "conv_pointwise", "conv_dense", "conv_depthwise", "conv_grouped", "matmul", "attention",
    "elementwise", "pooling", "max_pool", "norm", "data_movement",
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
    """The efficiency class of a report op type (`Conv DW 3x3` -> conv_depthwise; dense 1x1
    convolutions, a matrix product per pixel, apart from larger kernels); element-wise
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
        return "conv_pointwise" if op_type.endswith((" 1", " 1x1", " 1x1x1")) else "conv_dense"
    return "elementwise"


#: Classes whose compute efficiency falls with few channels per group (vector lanes and
#: register blocks left empty): their op's `width` enters the prediction.
WIDTH_CLASSES: tuple[str, ...] = ("conv_pointwise", "conv_dense", "conv_grouped")


def conv_width(input_shapes: list[tuple[int, ...]]) -> float | None:
    """Channels per group of a convolution, the fewer of input and output: weight
    (c_out, c_in / g, k...) and input (n, c_in, ...) give g = c_in / (c_in / g). None when the
    shapes are not a convolution's."""
    if len(input_shapes) < 2 or len(input_shapes[0]) < 3 or len(input_shapes[1]) < 3:
        return None
    x, w = input_shapes[0], input_shapes[1]
    try:
        groups = int(x[1]) // int(w[1])
        return float(min(int(w[1]), int(w[0]) // max(groups, 1)))
    except (TypeError, ZeroDivisionError):
        return None
