"""Cost formulas, one module per op family, all reached through one registry.

The functions exported here take dimensions as ints or sympy symbols and return a `Cost` (fields
sympy expressions when any dimension is a symbol): convolution (`conv`, `conv2d`), contractions
(`linear`, `matmul`, `attention`), `elementwise`, normalisation (`norm`, `batch_norm`,
`layer_norm`, `group_norm`, `instance_norm`, `rms_norm`), pooling (`pool`, `pool2d`,
`adaptive_pool`, `adaptive_avg_pool2d`) and data movement (`copy`, `concat`, `channel_shuffle`,
`pad2d`). The aten-op formulas registered in each family module call them with the shapes of a
traced op (data movement's MAC is the registry's read-once, write-once rule). docs/symbolic.md
shows them at work.
"""

from costmodel.formulas import (
    attention as _attention,
)
from costmodel.formulas import backward as _backward  # noqa: F401
from costmodel.formulas import conv as _conv
from costmodel.formulas import elementwise as _elementwise
from costmodel.formulas import linear as _linear
from costmodel.formulas import movement as _movement
from costmodel.formulas import norm as _norm
from costmodel.formulas import pooling as _pooling
from costmodel.formulas import recurrent as _recurrent  # noqa: F401
from costmodel.formulas import reduction as _reduction  # noqa: F401
from costmodel.formulas import routing as _routing  # noqa: F401
from costmodel.formulas import spectral as _spectral  # noqa: F401
from costmodel.formulas.registry import REGISTRY, Entry, OpCall, TensorMeta, lookup

attention = _attention.attention
conv = _conv.conv
conv2d = _conv.conv2d
conv_out_size = _conv.conv_out_size
linear = _linear.linear
matmul = _linear.matmul
einsum_madds = _linear.einsum_madds
elementwise = _elementwise.elementwise
norm = _norm.norm
batch_norm = _norm.batch_norm
layer_norm = _norm.layer_norm
group_norm = _norm.group_norm
instance_norm = _norm.instance_norm
rms_norm = _norm.rms_norm
pool = _pooling.pool
pool2d = _pooling.pool2d
adaptive_pool = _pooling.adaptive_pool
adaptive_avg_pool2d = _pooling.adaptive_avg_pool2d
copy = _movement.copy
concat = _movement.concat
channel_shuffle = _movement.channel_shuffle
pad2d = _movement.pad2d

__all__ = [
    "REGISTRY", "Entry", "OpCall", "TensorMeta", "adaptive_avg_pool2d", "adaptive_pool",
    "attention", "batch_norm", "channel_shuffle", "concat", "conv", "conv2d", "conv_out_size",
    "copy", "einsum_madds", "elementwise", "group_norm", "instance_norm", "layer_norm", "linear",
    "lookup", "matmul", "norm", "pad2d", "pool", "pool2d", "rms_norm",
]
