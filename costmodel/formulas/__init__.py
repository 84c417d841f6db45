"""Cost formulas, one module per op family, all reached through one registry.

The functions exported here (`conv`, `conv2d`, `linear`, `matmul`, `attention`, `elementwise`)
take dimensions as ints or sympy symbols and return a `Cost`; the aten-op formulas registered in
each family module call them with the shapes of a traced op.
"""

from costmodel.formulas import (
    attention as _attention,
)
from costmodel.formulas import conv as _conv
from costmodel.formulas import elementwise as _elementwise
from costmodel.formulas import linear as _linear
from costmodel.formulas import movement as _movement  # noqa: F401
from costmodel.formulas import norm as _norm  # noqa: F401
from costmodel.formulas import pooling as _pooling  # noqa: F401
from costmodel.formulas import recurrent as _recurrent  # noqa: F401
from costmodel.formulas import reduction as _reduction  # noqa: F401
from costmodel.formulas.registry import REGISTRY, Entry, OpCall, TensorMeta, lookup

attention = _attention.attention
conv = _conv.conv
conv2d = _conv.conv2d
conv_out_size = _conv.conv_out_size
linear = _linear.linear
matmul = _linear.matmul
einsum_madds = _linear.einsum_madds
elementwise = _elementwise.elementwise

__all__ = [
    "REGISTRY", "Entry", "OpCall", "TensorMeta", "attention", "conv", "conv2d", "conv_out_size",
    "einsum_madds", "elementwise", "linear", "lookup", "matmul",
]
